"""A key range kept up to date from etcd: read once, then followed on a watch stream.

The gateway's watch is a streaming ``POST /v3/watch``: one JSON object per line, each
``{"result": {header, events, created, canceled, compact_revision}}``. When the stream breaks
(its member died), is cancelled or compacted, or says nothing for ``idle`` seconds (a member
cut off from its peers keeps a stream open and silent), the range is read again through
whichever member answers and a new stream starts after that read's revision: nothing between
the two is missed, and a copy that went stale is replaced whole.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable

import requests

from .etcd import EtcdClient, EtcdUnavailable, decode, encode

LOG = logging.getLogger(__name__)
# A silent stream is reopened after this long: cheap (one range read) and the bound on how
# long a stream to a member cut off from its peers can hide a change.
IDLE_S = 5.0
RETRY_S = 0.2
# For connecting, and for the stream's first answer (etcd sends it at once): a member frozen
# after it accepted the connection would otherwise hold a stream that is not open yet, and so
# cannot be shut from another thread, for the whole idle time.
CONNECT_TIMEOUT_S = 1.0


def watch_session(target) -> requests.Session:
    """A session of its own for a watch stream (it holds its connection), with etcd's TLS."""
    session = requests.Session()
    if target.ca:
        session.verify = target.ca
    if target.cert and target.key:
        session.cert = (target.cert, target.key)
    return session


def follow(client: EtcdClient, session: requests.Session, key: str, range_end: str | None,
           start: int, idle: float, on_message: Callable[[dict], bool],
           opened: Callable[[requests.Response | None], None]) -> None:
    """Follows ``[key, range_end)`` from revision ``start`` on a stream to the member the
    connection answered on last (the one known to be up), giving each message of the stream
    to ``on_message`` until it returns False, the stream breaks, or it says nothing for
    ``idle`` seconds (requests raises then). ``opened(response)`` is told of the stream while
    it is open (to shut it from another thread), and of None once it is over."""
    current = client.current
    create = {"key": encode(key), "start_revision": start}
    if range_end:
        create["range_end"] = encode(range_end)
    response = session.post(f"{client.target.protocol}://{current.host}:{current.port}/v3/watch",
                            json={"create_request": create}, stream=True,
                            timeout=(CONNECT_TIMEOUT_S, CONNECT_TIMEOUT_S))
    opened(response)
    try:
        if response.status_code != 200:
            raise EtcdUnavailable(f"watch on {current.host}:{current.port}: "
                                  f"{response.status_code}")
        _socket(response).settimeout(idle)
        pending = b""
        for chunk in response.iter_content(chunk_size=None):
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip() and not on_message(json.loads(line)):
                    return
    finally:
        opened(None)
        response.close()


def shut(response: requests.Response | None) -> None:
    """Unblocks a thread reading a stream (closing the response alone does not)."""
    if response is None:
        return
    try:
        _socket(response).shutdown(socket.SHUT_RDWR)
    except (AttributeError, OSError):  # already closed
        pass


def _socket(response: requests.Response) -> socket.socket:
    return response.raw.connection.sock


class RangeWatch:
    """``kvs`` (key -> the gateway's kv, value base64) of ``[key, range_end)``, and
    ``revision`` the etcd revision it is at; ``on_update(watch)`` after each change."""

    def __init__(self, client: EtcdClient, key: str, range_end: str | None,
                 on_update: Callable[[RangeWatch], None], idle: float = IDLE_S,
                 name: str = "watch"):
        self.client = client
        self.key = key
        self.range_end = range_end
        self.on_update = on_update
        self.idle = idle
        self.name = name
        self.kvs: dict[str, dict] = {}
        self.revision = 0
        self.synced = False  # the copy has been read at least once and no stream broke since
        self._stopping = threading.Event()
        self._response: requests.Response | None = None
        self.member: tuple[str, int] | None = None  # the member the stream is on
        self._session = watch_session(client.target)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        shut(self._response)

    def follow_the_connection(self) -> None:
        """Moves the stream to the member the connection answers on now, if it is on another:
        the connection left that member because it did not answer, and a stream on a member
        that answers nothing stays silent (until ``idle``) instead of breaking."""
        current = self.client.current
        if self.member is not None and self.member != (current.host, current.port):
            shut(self._response)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @staticmethod
    def value(kv: dict) -> bytes:
        return decode(kv.get("value", ""))

    # ---- inside the thread -------------------------------------------------------------------

    def _range(self) -> dict:
        body = {"key": encode(self.key)}
        if self.range_end:
            body["range_end"] = encode(self.range_end)
        return self.client.post("kv/range", body, timeout=CONNECT_TIMEOUT_S + 1.0)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                answer = self._range()
                self.kvs = {decode(kv["key"]).decode(): kv for kv in answer.get("kvs") or []}
                self.revision = int(answer["header"]["revision"])
                self.synced = True
                self._notify()
                self._follow(self.revision + 1)
            except (EtcdUnavailable, OSError, ValueError, KeyError) as exc:
                LOG.debug("%s: %s", self.name, exc)
            except Exception:  # noqa: BLE001 - a watch that dies would leave its copy stale
                LOG.exception("%s: unexpected failure, reading again", self.name)
            if self.synced:
                self.synced = False
                self._notify()
            self._stopping.wait(RETRY_S)

    def _follow(self, start: int) -> None:
        """Applies the stream's events until it breaks, goes silent or is cancelled."""
        if self._stopping.is_set():
            return
        current = self.client.current
        self.member = (current.host, current.port)

        def opened(response):
            self._response = response
            if response is None:
                self.member = None
        follow(self.client, self._session, self.key, self.range_end, start, self.idle,
               lambda message: not self._stopping.is_set() and self._apply(message), opened)

    def _apply(self, message: dict) -> bool:
        """False: the stream is over (cancelled, compacted, or an error)."""
        if "error" in message:
            LOG.debug("%s: %s", self.name, message["error"])
            return False
        result = message.get("result") or {}
        if result.get("canceled") or int(result.get("compact_revision") or 0):
            return False
        events = result.get("events") or []
        for event in events:
            kv = event["kv"]
            key = decode(kv["key"]).decode()
            if event.get("type") == "DELETE":  # PUT is the default, left out of the JSON
                self.kvs.pop(key, None)
            else:
                self.kvs[key] = kv
        revision = int((result.get("header") or {}).get("revision") or 0)
        self.revision = max(self.revision, revision)
        if events:
            self._notify()
        return True

    def _notify(self) -> None:
        try:
            self.on_update(self)
        except Exception:
            LOG.exception("%s: update callback failed", self.name)
