"""A watch stream to a member that took the connection and answers nothing (frozen, or its
traffic dropped) is given up within the connect timeout, not held for the idle time: until
the stream's first answer there is nothing another thread could shut. Once open, a silent
stream is held for the idle time."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from cluster import watch
from cluster.etcd import EtcdClient, EtcdTarget


class Listener:
    """Accepts connections (the kernel completes the handshake) and answers nothing, or the
    headers and one message when ``answer`` is set."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)
        self.port = self.socket.getsockname()[1]
        self.answer = False


@pytest.fixture
def listener(monkeypatch):
    monkeypatch.setattr(watch, "CONNECT_TIMEOUT_S", 0.3)
    listening = Listener()
    server = listening.socket
    held = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if listening.answer:
                conn.recv(65536)
                body = b'{"result":{"created":true}}\n'
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             + f"{len(body):x}\r\n".encode() + body + b"\r\n")
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listening
    server.close()
    for conn in held:
        conn.close()


def follow(port: int, idle: float, messages: list) -> float:
    client = EtcdClient(EtcdTarget.parse(f"etcd://127.0.0.1:{port}"))
    start = time.monotonic()
    with pytest.raises(OSError):  # requests' ConnectionError is one
        watch.follow(client, watch.watch_session(client.target), "/k", None, 1, idle,
                     lambda message: messages.append(message) or True, lambda response: None)
    return time.monotonic() - start


def test_a_member_that_never_answers_is_given_up_within_the_connect_timeout(listener):
    took = follow(listener.port, idle=30.0, messages=[])
    assert took < watch.CONNECT_TIMEOUT_S + 0.5


def test_an_open_stream_is_held_for_the_idle_time(listener):
    listener.answer = True
    messages: list = []
    idle = watch.CONNECT_TIMEOUT_S + 0.7
    took = follow(listener.port, idle=idle, messages=messages)
    assert messages == [{"result": {"created": True}}]
    assert idle <= took < idle + 0.5
