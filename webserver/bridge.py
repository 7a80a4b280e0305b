"""A WSGI app behind the ASGI interface: limits checked on the event loop, the app on threads.

The request head has been read by the protocol layer when this is called; the body is read
here, on the loop, within a deadline and a size limit, so a slow or oversized request costs no
thread. The app then runs on a worker thread and its whole response is collected there, so a
client that reads slowly holds no thread either.
"""
from __future__ import annotations

import asyncio
import io
import json
import sys
from concurrent.futures import Executor
from typing import Any, Callable

Send = Callable[[dict], Any]


class WsgiOnThreads:
    def __init__(self, app, executor: Executor, *, max_body_bytes: int, max_target_bytes: int,
                 max_header_bytes: int, body_timeout: float, error_field: str):
        self.app = app
        self.executor = executor
        self.max_body_bytes = max_body_bytes
        self.max_target_bytes = max_target_bytes
        self.max_header_bytes = max_header_bytes
        self.body_timeout = body_timeout
        self.error_field = error_field  # errors are {error_field: message}, as the app's are

    async def __call__(self, scope: dict, receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:  # websocket: nothing here speaks it
            await send({"type": "websocket.close"})

    async def _http(self, scope: dict, receive, send: Send) -> None:
        query = scope["query_string"]
        if len(scope["raw_path"]) + (len(query) + 1 if query else 0) > self.max_target_bytes:
            return await self._error(
                send, 414, f"the request target is longer than {self.max_target_bytes} bytes")
        # The parser bounds what it buffers of a head not yet whole; a whole one read at once
        # can be larger, and is measured here.
        if sum(len(name) + len(value) + 4 for name, value in scope["headers"]) > \
                self.max_header_bytes:
            return await self._error(
                send, 431, f"the request headers are longer than {self.max_header_bytes} bytes")
        too_large = f"the request body is larger than {self.max_body_bytes} bytes"
        length = _header(scope, b"content-length")
        if length is not None and not length.isdigit():  # HTTP/1.1's parser refuses it first
            return await self._error(send, 400, "Content-Length is not a number of bytes")
        if length is not None and int(length) > self.max_body_bytes:
            return await self._error(send, 413, too_large)
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body += message.get("body", b"")
                    if len(body) > self.max_body_bytes:
                        return await self._error(send, 413, too_large)
                    if not message.get("more_body"):
                        break
        except TimeoutError:
            return await self._error(
                send, 408, f"the request body did not arrive within {self.body_timeout:g} s")
        loop = asyncio.get_running_loop()
        status, headers, content = await loop.run_in_executor(
            self.executor, self._run, _environ(scope, bytes(body)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _error(self, send: Send, status: int, message: str) -> None:
        body = json.dumps({self.error_field: message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    def _run(self, environ: dict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        started: list = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
            if exc_info and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return chunks.append  # WSGI's legacy write()

        result = self.app(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status, headers = started
        return (int(status.split(" ", 1)[0]),
                [(name.lower().encode("latin-1"), value.encode("latin-1"))
                 for name, value in headers],
                b"".join(chunks))


async def _lifespan(receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value
    return None


def _environ(scope: dict, body: bytes) -> dict:
    """PEP 3333's environ for an ASGI HTTP scope (strings are bytes read as latin-1)."""
    server = scope.get("server") or ("localhost", 80)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if scope.get("client"):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = map(str, scope["client"])
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ
