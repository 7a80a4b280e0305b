"""The executable's entry point: the verb from the environment, the configuration from stdin,
the result or the spec's error on stdout."""
from __future__ import annotations

import json
import os
import sys

from .errors import CniError
from .versions import NEWEST, SUPPORTED, shaped


def version_result(stdin: bytes) -> dict:
    """VERSION, which kubelet asks before every pod: nothing imported beyond ``json``."""
    try:
        asked = json.loads(stdin).get("cniVersion") if stdin.strip() else None
    except (ValueError, AttributeError):
        asked = None
    return {"cniVersion": asked if asked in SUPPORTED else NEWEST,
            "supportedVersions": list(SUPPORTED)}


def run(environ, stdin: bytes) -> tuple[int, dict | None]:
    """(exit status, what to print): the verb's result, or the error with its code."""
    if environ.get("CNI_COMMAND") == "VERSION":
        return 0, version_result(stdin)
    from .request import answer_version, decode, parse

    version = NEWEST
    try:
        document = decode(stdin)
        version = answer_version(document)
        request = parse(environ, document)
        from . import verbs
        if request.command == "ADD":
            return 0, shaped(verbs.add(request), version)
        getattr(verbs, {"DEL": "delete"}.get(request.command, request.command.lower()))(
            request)
        return 0, None
    except CniError as exc:
        return 1, exc.result(version)
    except Exception as exc:  # noqa: BLE001 - a runtime reads only the JSON; say what broke
        return 1, CniError(999, f"internal error: {type(exc).__name__}: {exc}").result(version)


# iproute2, ethtool and nsenter, for a runtime that passes no PATH.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def main() -> None:
    os.environ.setdefault("PATH", DEFAULT_PATH)
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    status, output = run(os.environ, stdin)
    if output is not None:
        sys.stdout.write(json.dumps(output) + "\n")
    sys.stdout.flush()
    # Nothing is left to clean up (every command was waited for): skip the interpreter's
    # teardown, milliseconds of every run.
    os._exit(status)
