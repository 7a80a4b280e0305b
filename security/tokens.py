"""Bearer tokens for the REST API, shared by `serve`, `plugin` and the CLI."""
from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat

LOG = logging.getLogger(__name__)

TOKEN_ENV = "OVSFABRIC_TOKEN"
TOKEN_FILE_ENV = "OVSFABRIC_TOKEN_FILE"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_token_file(path: str, token: str) -> None:
    """Writes the token readable by its owner only, an existing file included; a symlink is
    refused (OSError), so the token cannot be written through one into another file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # O_CREAT's mode applies to new files only
        out.write(token + "\n")


def load_token(token_file: str | None = None) -> str | None:
    """The configured token: a token file (option, then env) wins over the env variable."""
    path = token_file or os.environ.get(TOKEN_FILE_ENV)
    if path:
        with open(path) as source:
            if os.fstat(source.fileno()).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                LOG.warning("token file %s can be read by others than its owner: "
                            "chmod 600 it", path)
            token = source.read().strip()
        if not token:
            raise ValueError(f"token file {path} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def matches(expected: str, authorization: str | None) -> bool:
    """Checks an `Authorization: Bearer <token>` header in constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              expected.encode())
