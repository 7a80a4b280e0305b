"""Serving the plugin on a unix socket where dockerd looks for it."""
from __future__ import annotations

import os
import socket
import stat

from webserver import WebServer

from .app import MAX_BODY_BYTES

THREADS = 8  # Docker calls in parallel (container starts, joins)


def prepare_socket_path(path: str) -> None:
    """Removes a stale socket file; refuses to take over a live one or a non-socket."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SystemExit(f"ovsfabric plugin: {path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # left by a plugin that died
            return
    raise SystemExit(f"ovsfabric plugin: another process serves {path}")


def create_server(app, path: str, threads: int = THREADS, **options) -> WebServer:
    prepare_socket_path(path)
    # 0660: dockerd runs as root; the socket is not for everyone on the host.
    return WebServer.unix(app, path, 0o660, threads=threads, max_body_bytes=MAX_BODY_BYTES,
                          error_field="Err", name="plugin", **options)
