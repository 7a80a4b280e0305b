"""The HTTP server of the API and the plugin's socket, with its limits, as a client meets them.

The bounds asserted are generous (a well-behaved client answered within a second); the figures
the server reaches are measured by bench/slow_clients.py.
"""
from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import threading
import time
from contextlib import ExitStack, contextmanager

import pytest

from api.app import MAX_BODY_BYTES, create_app
from controller.fabric import Fabric
from docker_plugin.app import create_app as create_plugin_app
from docker_plugin.controller import Controller
from docker_plugin.server import create_server as create_plugin_server
from model import Store
from security import certs
from webserver import MAX_HEAD_BYTES, MAX_TARGET_BYTES, WebServer
from tests.helpers import running

TOKEN = "s3cret-token-for-tests"
HEADER_TIMEOUT = 1.0
THREADS = 4  # fewer than the slow clients below: a thread per connection would be stuck




@pytest.fixture
def api(tmp_path):
    """(host, port) of the REST API served on loopback, a token required."""
    store = Store(str(tmp_path / "state.db"))
    app = create_app(Fabric(store, "tcp:127.0.0.1:6653"), token=TOKEN)
    server = WebServer.tcp(app, "127.0.0.1", 0, threads=THREADS, max_body_bytes=MAX_BODY_BYTES,
                           header_timeout=HEADER_TIMEOUT)
    with running(server):
        yield server.address
    store.close()


@pytest.fixture
def plugin_socket(tmp_path):
    path = str(tmp_path / "plugins" / "ovsfabric.sock")
    app = create_plugin_app(Controller("http://127.0.0.1:9", "h1"))
    with running(create_plugin_server(app, path, threads=THREADS,
                                      header_timeout=HEADER_TIMEOUT)):
        yield path


def connect(address) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family)
    sock.settimeout(5)
    sock.connect(address)
    return sock


def exchange(address, request: bytes, *, timeout: float = 5) -> tuple[int, dict, bytes]:
    """Sends ``request`` and reads until the server closes or a whole response is in."""
    with connect(address) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                if len(body) >= int(parse_head(head)[1].get("content-length", 0)):
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    return status, headers, body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *lines = head.decode().split("\r\n")
    fields = (line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), {name.lower(): value for name, value in fields}


def get(address, path: str = "/v1/hosts", token: str | None = TOKEN) -> tuple[int, bytes]:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    status, _, body = exchange(address, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode())
    return status, body


def activate(path: str) -> tuple[int, dict]:
    status, _, body = exchange(path, b"POST /Plugin.Activate HTTP/1.1\r\nHost: \r\n"
                                     b"Content-Length: 0\r\n\r\n")
    return status, json.loads(body)


def open_idle(stack: ExitStack, address, count: int) -> list[socket.socket]:
    return [stack.enter_context(connect(address)) for _ in range(count)]


@contextmanager
def slow_senders(address, count: int):
    """``count`` connections sending a request head one byte at a time, never finishing it."""
    socks = [connect(address) for _ in range(count)]
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.2):
            for sock in socks:
                try:
                    sock.send(b"G")
                except OSError:
                    pass

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield socks
    finally:
        stop.set()
        thread.join()
        for sock in socks:
            sock.close()


def read_until_closed(sock) -> bytes:
    """What the server sent before closing. A close that meets a trickled byte in flight is
    reported as a reset, not an end of file: closed all the same."""
    try:
        return sock.recv(1024)
    except ConnectionResetError:
        return b""


def timed(call, *args):
    start = time.monotonic()
    result = call(*args)
    return result, time.monotonic() - start


def test_answered_while_many_idle_and_slow_connections_are_open(api):
    with ExitStack() as stack:
        open_idle(stack, api, 200)
        stack.enter_context(slow_senders(api, 4 * THREADS))
        time.sleep(0.3)  # every one accepted and trickling
        for _ in range(5):
            (status, body), took = timed(get, api)
            assert status == 200 and json.loads(body) == []
            assert took < 1.0
            assert get(api, token=None)[0] == 401  # the unauthenticated get no further


def test_a_slow_header_sender_is_closed_after_the_header_timeout(api):
    with slow_senders(api, 1) as (sock,):
        start = time.monotonic()
        sock.settimeout(HEADER_TIMEOUT + 3)
        assert read_until_closed(sock) == b"", "closed without a response"
        assert HEADER_TIMEOUT - 0.1 < time.monotonic() - start < HEADER_TIMEOUT + 1.5


def test_headers_over_the_limit_get_431(api):
    big = b"X-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n"
    status, headers, body = exchange(api, b"GET /v1/hosts HTTP/1.1\r\nHost: 127.0.0.1\r\n" + big
                                     + b"\r\n")
    assert status == 431 and "headers" in json.loads(body)["error"]
    # A head that never ends is cut once the server has buffered the limit.
    (status, _, _), took = timed(exchange, api, b"GET / HTTP/1.1\r\nX-Big: "
                                 + b"a" * (16 * MAX_HEAD_BYTES))
    assert status == 431 and took < 1.0


def test_a_request_target_over_the_limit_gets_414(api):
    status, headers, body = exchange(
        api, b"GET /v1/hosts?" + b"a" * MAX_TARGET_BYTES + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 414 and "target" in json.loads(body)["error"]
    assert headers["content-type"] == "application/json"


def test_a_negative_content_length_gets_400_at_once(api):
    (status, _, _), took = timed(exchange, api, b"POST /v1/networks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                b"Content-Length: -1\r\n\r\n")
    assert status == 400 and took < 1.0


def test_bodies_over_the_limit_get_413(api):
    head = (f"POST /v1/networks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\n")
    # Announced: refused before the body is sent.
    status, _, body = exchange(api, f"{head}Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
                               .encode())
    assert status == 413 and "larger" in json.loads(body)["error"]
    # Chunked: refused once it grows past the limit.
    chunk = b"a" * 4096
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk)
                      for _ in range(MAX_BODY_BYTES // len(chunk) + 1))
    status, _, body = exchange(api, f"{head}Transfer-Encoding: chunked\r\n\r\n".encode()
                               + chunks + b"0\r\n\r\n")
    assert status == 413


def test_a_body_that_does_not_arrive_in_time_gets_408(api):
    (status, _, body), took = timed(
        exchange, api, f"POST /v1/networks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}"
                       f"\r\nContent-Length: 100\r\n\r\n{{".encode())
    assert status == 408 and "did not arrive" in json.loads(body)["error"]
    assert HEADER_TIMEOUT - 0.1 < took < HEADER_TIMEOUT + 1.5


def test_an_unknown_method_gets_405(api):
    status, headers, _ = exchange(api, f"BREW /v1/hosts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
                                       f"Bearer {TOKEN}\r\n\r\n".encode())
    assert status == 405 and "GET" in headers["allow"]


def test_over_tls_a_connection_that_never_shakes_hands_is_closed(tmp_path):
    certs.make_ca(str(tmp_path))
    cert, key = certs.make_cert(str(tmp_path), "api", ["127.0.0.1"])
    store = Store(str(tmp_path / "state.db"))
    app = create_app(Fabric(store, "tcp:127.0.0.1:6653"))
    server = WebServer.tcp(app, "127.0.0.1", 0, threads=THREADS, max_body_bytes=MAX_BODY_BYTES,
                           certfile=cert, keyfile=key, header_timeout=HEADER_TIMEOUT)
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with running(server), ExitStack() as stack:
        stack.callback(store.close)
        silent = open_idle(stack, server.address, 4 * THREADS)
        time.sleep(0.2)
        with context.wrap_socket(connect(server.address), server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /v1/hosts HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert tls.recv(12) == b"HTTP/1.1 200"
        start = time.monotonic()
        silent[0].settimeout(HEADER_TIMEOUT + 3)
        assert silent[0].recv(1024) == b""
        assert time.monotonic() - start < HEADER_TIMEOUT + 1.5


def test_the_plugin_socket_answers_beyond_a_hundred_idle_connections(plugin_socket):
    assert stat.S_IMODE(os.stat(plugin_socket).st_mode) == 0o660
    with ExitStack() as stack:
        open_idle(stack, plugin_socket, 150)
        stack.enter_context(slow_senders(plugin_socket, 4 * THREADS))
        time.sleep(0.3)
        for _ in range(5):
            (status, body), took = timed(activate, plugin_socket)
            assert status == 200 and body["Implements"] == ["NetworkDriver", "IpamDriver"]
            assert took < 1.0


def test_the_plugin_socket_closes_slow_senders_and_answers_limits_as_docker_reads(
        plugin_socket):
    with slow_senders(plugin_socket, 1) as (sock,):
        sock.settimeout(HEADER_TIMEOUT + 3)
        assert read_until_closed(sock) == b""
    status, _, body = exchange(plugin_socket, b"POST /Plugin.Activate?" + b"a" * MAX_TARGET_BYTES
                               + b" HTTP/1.1\r\nHost: \r\n\r\n")
    assert status == 414 and "target" in json.loads(body)["Err"]
