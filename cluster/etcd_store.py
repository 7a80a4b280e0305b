"""The etcd backend: the store's records as etcd keys, shared by every replica.

One key per record (``/ovsfabric/state/<kind>/<key>``, its JSON as the value), so a write
moves only the records it touches and a replica's watch carries only what changed, however
large the fabric. Every write is one etcd transaction that also puts ``/ovsfabric/revision``,
on the condition that this key was last written at the revision the write was planned on:
two replicas planning on the same state cannot both commit, so no VNI, address, MAC or port
number is handed out twice (the loser plans again once it has caught up). Each replica
follows the others' writes with a watch from the revision it loaded.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
from urllib.parse import quote, unquote

from model import migrations
from model.errors import Conflict, StoreTooNew, Unavailable
from model.records import Delete, Put, from_json, to_json
from model.store import Stale

from .etcd import EtcdClient, EtcdTarget, EtcdUnavailable, decode, encode, prefix_end

LOG = logging.getLogger(__name__)

ROOT = "/ovsfabric/"
STATE = ROOT + "state/"
REVISION = ROOT + "revision"  # written by every write: the condition of the next
SCHEMA = ROOT + "schema"  # the schema version of the records (model/migrations.py)
# Operations per transaction of a copy: etcd takes at most 128 by default (--max-txn-ops).
COPY_BATCH = 100
# After a broken watch stream, how long to wait before asking another member.
WATCH_RETRY_S = 0.2


def open_store(url: str, cert: str | None = None, key: str | None = None,
               ca: str | None = None):
    """The store kept in the etcd cluster at ``url`` (etcd://HOST:PORT[,HOST:PORT...])."""
    from model import Store
    return Store(EtcdBackend(EtcdClient(EtcdTarget.parse(url, cert, key, ca))))


def copy_records(store, records: list, progress=None) -> None:
    """Writes ``records`` (another store's whole state) into ``store``, an etcd one that
    holds none yet, in transactions etcd takes (at most COPY_BATCH operations each)."""
    if store.records():
        raise Conflict(f"{store.backend} holds a state already: copy into an empty one")
    ops = [Put(record) for record in records]
    for start in range(0, len(ops), COPY_BATCH):
        store.apply_copied(ops[start:start + COPY_BATCH])
        if progress:
            progress(min(start + COPY_BATCH, len(ops)), len(ops))


def record_key(kind: str, key: tuple[str, ...]) -> str:
    return STATE + kind + "/" + "/".join(quote(part, safe="") for part in key)


def parse_key(key: str) -> tuple[str, tuple[str, ...]]:
    kind, _, rest = key[len(STATE):].partition("/")
    return kind, tuple(unquote(part) for part in rest.split("/"))


class EtcdBackend:
    def __init__(self, client: EtcdClient):
        self.client = client
        self._apply = self._reload = None
        self._followed = 0  # the revision the watch has delivered up to
        self._stop = threading.Event()
        self._stream = None  # the watch's open response, closed to restart it
        self._thread: threading.Thread | None = None
        self._check_schema()

    def __str__(self) -> str:
        return str(self.client.target)

    def _check_schema(self) -> None:
        """A new etcd gets the current schema version; one a later release wrote is refused."""
        try:
            response = self.client.txn(
                [{"key": encode(SCHEMA), "target": "CREATE", "result": "EQUAL",
                  "create_revision": "0"}],
                [_put(SCHEMA, str(migrations.SCHEMA_VERSION))],
                [{"request_range": {"key": encode(SCHEMA)}}])
        except EtcdUnavailable as exc:
            raise Unavailable(f"the state store {self} cannot be reached: {exc}") from None
        if response.get("succeeded"):
            return
        found = int(decode(_ranged(response, 0)[0]["value"]))
        if found > migrations.SCHEMA_VERSION:
            raise StoreTooNew(f"the state in {self} has schema version {found}, newer than "
                              f"this ovsfabric reads ({migrations.SCHEMA_VERSION}): serve it "
                              f"with the release that wrote it")

    # ---- reading ---------------------------------------------------------------------------

    def load(self) -> tuple[list, int]:
        """Every record, and the revision of the last write, read in one transaction."""
        response = self._read_all()
        records = [from_json(parse_key(decode(kv["key"]).decode())[0], decode(kv["value"]))
                   for kv in _ranged(response, 0)]
        guard = _ranged(response, 1)
        self._followed = int(response["header"]["revision"])
        return records, int(guard[0]["mod_revision"]) if guard else 0

    def _read_all(self) -> dict:
        try:
            return self.client.txn([], [
                {"request_range": {"key": encode(STATE), "range_end": encode(prefix_end(STATE))}},
                {"request_range": {"key": encode(REVISION)}}])
        except EtcdUnavailable as exc:
            raise Unavailable(f"the state store {self} cannot be read: {exc}") from None

    def stored_revision(self) -> int:
        try:
            guard = self.client.get(REVISION)
        except EtcdUnavailable as exc:
            raise Unavailable(f"the state store {self} cannot be read: {exc}") from None
        return int(guard["mod_revision"]) if guard else 0

    # ---- writing ---------------------------------------------------------------------------

    def commit(self, ops: list, revision: int) -> int:
        requests = [_put(record_key(op.kind, op.key), to_json(op.record)) if isinstance(op, Put)
                    else {"request_delete_range": {"key": encode(record_key(op.kind, op.key))}}
                    for op in ops]
        try:
            response = self.client.txn(
                [{"key": encode(REVISION), "target": "MOD", "result": "EQUAL",
                  "mod_revision": str(revision)}],
                requests + [_put(REVISION, "")],
                [{"request_range": {"key": encode(REVISION)}}])
        except EtcdUnavailable as exc:
            raise Unavailable(f"the state store {self} takes no writes now: {exc}; reads are "
                              f"still served, from this replica's copy") from None
        if not response.get("succeeded"):
            guard = _ranged(response, 0)
            raise Stale(int(guard[0]["mod_revision"]) if guard else 0)
        return int(response["header"]["revision"])

    # ---- following the other replicas ------------------------------------------------------

    def follow(self, apply, reload) -> None:
        self._apply, self._reload = apply, reload
        self._thread = threading.Thread(target=self._watch, name="etcd-watch", daemon=True)
        self._thread.start()

    def resync(self) -> None:
        """The watch seems stuck (its member cut off): open it again on another member."""
        self.client.rotate()
        self._close_stream()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self._stream_events()
            except Exception as exc:  # noqa: BLE001 - a broken stream is opened again
                if not self._stop.is_set():
                    LOG.info("etcd watch interrupted (%s); opening it again", exc)
                    self.client.rotate()
            self._stop.wait(WATCH_RETRY_S)

    def _stream_events(self) -> None:
        member = self.client.current
        body = {"create_request": {"key": encode(STATE), "range_end": encode(prefix_end(STATE)),
                                   "start_revision": str(self._followed + 1)}}
        with member.session.post(member.get_url("watch"), json=body, stream=True,
                                 timeout=(self.client.timeout, None)) as response:
            self._stream = response
            if self._stop.is_set():
                return
            for line in response.iter_lines():
                if not line:
                    continue
                message = json.loads(line)
                if "error" in message:
                    raise RuntimeError(message["error"])
                self._received(message["result"])

    def _received(self, result: dict) -> None:
        if int(result.get("compact_revision") or 0):
            # The writes since are compacted away: start again from the whole state.
            LOG.warning("etcd compacted the revisions this replica had not followed yet; "
                        "loading the whole state again")
            records, revision = self.load()
            self._reload(records, revision)
            raise RuntimeError("watch restarted after a compaction")
        if result.get("canceled"):
            raise RuntimeError(f"watch canceled: {result.get('cancel_reason', '')}")
        batch: list = []
        revision = None
        for event in result.get("events", ()):
            kv = event["kv"]
            at = int(kv["mod_revision"])
            if revision is not None and at != revision:
                self._apply(batch, revision)
                batch = []
            revision = at
            kind, key = parse_key(decode(kv["key"]).decode())
            if event.get("type") == "DELETE":
                batch.append(Delete(kind, key))
            else:
                batch.append(Put(from_json(kind, decode(kv["value"]))))
        if revision is not None:
            self._apply(batch, revision)
            self._followed = revision

    def _close_stream(self) -> None:
        stream = self._stream
        if stream is not None:
            try:  # wakes the thread blocked reading it
                socket.fromfd(stream.raw._fp.fileno(), socket.AF_INET,
                              socket.SOCK_STREAM).shutdown(socket.SHUT_RDWR)
            except (AttributeError, OSError, ValueError):
                pass
            stream.close()

    def close(self) -> None:
        self._stop.set()
        self._close_stream()
        if self._thread is not None:
            self._thread.join(timeout=2)


def _put(key: str, value: str) -> dict:
    return {"request_put": {"key": encode(key), "value": encode(value)}}


def _ranged(response: dict, index: int) -> list[dict]:
    """The key-values of the ``index``th range in a transaction's response."""
    responses = response.get("responses") or []
    return responses[index].get("response_range", {}).get("kvs") or [] \
        if index < len(responses) else []
