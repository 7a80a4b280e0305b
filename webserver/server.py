"""A WSGI app served on one asyncio loop (hypercorn), over TCP with optional TLS or a unix socket.

Request heads and bodies are read on the loop, so idle and slow clients cost a socket and a
few buffers, never a thread: the app runs on a pool of worker threads once a request is whole.
"""
from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
from concurrent.futures import ThreadPoolExecutor

from hypercorn.asyncio import serve
from hypercorn.config import Config

from .bridge import WsgiOnThreads

# A request's head, then its body, must arrive within this; an idle keep-alive connection is
# closed after it too.
HEADER_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 16 * 1024  # request line and headers together: 431 beyond
MAX_TARGET_BYTES = 8 * 1024  # the request target: 414 beyond; below the head limit to be seen
BACKLOG = 1024  # connections the kernel queues until the loop accepts them


def raise_open_file_limit() -> None:
    """Soft limit up to the hard one: every open connection is a file descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # kept as it is: fewer connections fit, nothing else changes


class WebServer:
    """serve_forever() in one thread; close() from any thread (or a signal handler)."""

    def __init__(self, app, sock: socket.socket, *, threads: int, max_body_bytes: int,
                 certfile: str | None = None, keyfile: str | None = None,
                 header_timeout: float = HEADER_TIMEOUT_S, error_field: str = "error",
                 name: str = "http"):
        self._config = _config(header_timeout, certfile, keyfile)
        if certfile:
            self._config.create_ssl_context()  # a bad certificate or key fails here, not later
        sock.listen(BACKLOG)  # now, so that a client (or a probe) never finds it refused
        self.address = sock.getsockname()
        self._sock = sock
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._app = WsgiOnThreads(app, self._executor, max_body_bytes=max_body_bytes,
                                  max_target_bytes=MAX_TARGET_BYTES,
                                  max_header_bytes=MAX_HEAD_BYTES, body_timeout=header_timeout,
                                  error_field=error_field)
        self._loop = asyncio.new_event_loop()
        self._stopping = asyncio.Event()

    @classmethod
    def tcp(cls, app, host: str, port: int, **options) -> "WebServer":
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return cls(app, socket.create_server((host, port), family=family), **options)

    @classmethod
    def unix(cls, app, path: str, mode: int, **options) -> "WebServer":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path)
        os.chmod(path, mode)  # before listen(): nobody connects while it is wider
        return cls(app, sock, **options)

    def serve_forever(self) -> None:
        raise_open_file_limit()
        self._config.bind = [f"fd://{self._sock.detach()}"]
        try:
            self._loop.run_until_complete(serve(self._app, self._config, mode="asgi",
                                                shutdown_trigger=self._stopping.wait))
        finally:
            self._loop.close()
            self._executor.shutdown(wait=False)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._sock.fileno() != -1:  # never served
            self._sock.close()
        self._loop.call_soon_threadsafe(self._stopping.set)


def _config(header_timeout: float, certfile: str | None, keyfile: str | None) -> Config:
    config = Config()
    # hypercorn's idle timer runs from the connection's start (and each request's end) until
    # a request head is whole, whatever trickles in meanwhile: a header timeout.
    config.keep_alive_timeout = header_timeout
    config.ssl_handshake_timeout = header_timeout
    config.h11_max_incomplete_size = MAX_HEAD_BYTES
    config.h2_max_header_list_size = MAX_HEAD_BYTES  # HTTP/2 by upgrade stays possible
    config.alpn_protocols = ["http/1.1"]
    config.backlog = BACKLOG
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.certfile, config.keyfile = certfile, keyfile
    return config
