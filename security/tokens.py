"""Bearer tokens for the REST API, shared by `serve`, `plugin` and the CLI.

The token `serve` is given is the admin token. A host token, ``host~NAME~SIGNATURE``, is
derived from it: the signature is an HMAC-SHA256 of the host's name keyed with the admin token,
so `serve` checks one without a list of them, and a host token says which host it is for
without giving away the admin token or another host's. Host names have no ``~``; base64url has
none either.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass

LOG = logging.getLogger(__name__)

TOKEN_ENV = "OVSFABRIC_TOKEN"
TOKEN_FILE_ENV = "OVSFABRIC_TOKEN_FILE"
HOST_PREFIX = "host~"
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # api/schemas.py NAME_PATTERN


@dataclass(frozen=True)
class Scope:
    """What a valid token may do: everything (the admin token), or one host's share."""

    host: str | None = None  # None: the admin token

    @property
    def is_admin(self) -> bool:
        return self.host is None


ADMIN = Scope()


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


def host_token(admin_token: str, host: str) -> str:
    """The token of ``host``: it may read the fabric and manage that host's share of it."""
    if not HOST_NAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name")
    if host_of(admin_token) is not None:
        raise ValueError("that is a host token: host tokens are made from the admin token")
    return _signed(admin_token, host)


def host_of(token: str) -> str | None:
    """The host a token claims to be for (unchecked); None for any other token."""
    if not token.startswith(HOST_PREFIX):
        return None
    host, sep, _ = token[len(HOST_PREFIX):].partition("~")
    return host if sep and HOST_NAME.fullmatch(host) else None


def identify(admin_token: str, authorization: str | None) -> Scope | None:
    """The scope of an `Authorization: Bearer <token>` header; None for no valid token.
    Every comparison takes constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    given = given.strip()
    if hmac.compare_digest(given.encode(), admin_token.encode()):
        return ADMIN
    host = host_of(given)
    if host is not None and hmac.compare_digest(given.encode(),
                                                _signed(admin_token, host).encode()):
        return Scope(host)
    return None


def _signed(admin_token: str, host: str) -> str:
    digest = hmac.new(admin_token.encode(), f"ovsfabric host token\0{host}".encode(),
                      hashlib.sha256).digest()
    return f"{HOST_PREFIX}{host}~{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"
