"""Small helpers shared by the tests."""
from __future__ import annotations

import os
import re
import threading
import time
from contextlib import contextmanager

from werkzeug.serving import WSGIRequestHandler, make_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def eventually(check, timeout: float = 5.0, interval: float = 0.05):
    """Polls ``check`` until it returns something true; returns that value, or None."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args):
        pass


@contextmanager
def serving(app):
    """Serves a WSGI app on a free loopback port for the duration; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    # A short poll interval: shutdown() waits for one, and every test stops a server.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


@contextmanager
def running(server):
    """Runs a webserver.WebServer in a thread for the duration; yields it."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(5)


_VOLATILE = re.compile(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]+,?\s*")


def flow_table(host) -> list[str]:
    """The host's br-int flows as ovs-ofctl prints them, counters removed, sorted."""
    lines = [line for line in host.ofctl("dump-flows").splitlines() if "actions=" in line]
    return sorted(_VOLATILE.sub("", line).strip() for line in lines)
