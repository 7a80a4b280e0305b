"""Serving the plugin on a unix socket where dockerd looks for it."""
from __future__ import annotations

import os
import socket
import stat

import waitress

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


def create_server(app, path: str, threads: int = THREADS):
    prepare_socket_path(path)
    # 0660: dockerd runs as root; the socket is not for everyone on the host.
    return waitress.create_server(app, unix_socket=path, unix_socket_perms="660",
                                  threads=threads, ident="ovsfabric-plugin")
