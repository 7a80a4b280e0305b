"""The etcd backend: the store's records as etcd keys, shared by every replica.

One key per record (``/ovsfabric/state/records/<kind>/<key>``, its JSON as the value), so a
write moves only the records it touches and a replica's watch carries only what changed,
however large the fabric. Every write is one etcd transaction on the condition that none of
the guards it depends on (model/guards.py, keys ``/ovsfabric/state/guards/<name>``) was
written since the revision this replica saw it at; it writes the guards it changes, and
``/ovsfabric/state/revision``. Two replicas planning allocations from one network, one host
or one counter cannot both commit, so no VNI, address, MAC or port number is handed out
twice (the loser plans again once it has caught up); writes elsewhere commit side by side.
Each replica applies every write, its own too, from one watch, in revision order.
"""
from __future__ import annotations

import logging
import threading
from urllib.parse import quote, unquote

from model import guards, migrations
from model.errors import Conflict, StoreFull, StoreTooNew, Unavailable
from model.guards import Conditions
from model.records import Delete, Put, from_json, to_json
from model.store import Stale

from .etcd import (EtcdClient, EtcdMaybeApplied, EtcdTarget, EtcdUnavailable, decode, encode,
                   prefix_end)
from .watch import follow, shut, watch_session

LOG = logging.getLogger(__name__)

ROOT = "/ovsfabric/"
STATE = ROOT + "state/"  # what the watch follows
RECORDS = STATE + "records/"
GUARDS = STATE + "guards/"
REVISION = STATE + "revision"  # written by every write: the revision the store is at
# A key per value that must be unique (model/guards.py): nobody follows them, a transaction's
# conditions read them.
CLAIMS = ROOT + "claims/"
SCHEMA = ROOT + "schema"  # the schema version of the records (model/migrations.py)
# The seqs a replica takes at once (a host's, a network's, an endpoint's...).
SEQ_BLOCK = 64
# Replicas choose an address or port number among so many free ones: seldom the same.
ALLOCATION_SPREAD = 16
# Records per transaction of a copy, at most: etcd takes at most 128 operations by default
# (--max-txn-ops), the records' claims and guards included.
COPY_BATCH = 100
MAX_TXN_OPS = 128
# What one member is given to say the store's revision (GET /readyz).
PROBE_TIMEOUT_S = 1.0
# After a broken watch stream, how long to wait before asking another member.
WATCH_RETRY_S = 0.2
# A stream silent this long is opened again, from where it was: a member cut off from its
# peers keeps it open and says nothing.
WATCH_IDLE_S = 5.0


def open_store(url: str, cert: str | None = None, key: str | None = None,
               ca: str | None = None):
    """The store kept in the etcd cluster at ``url`` (etcd://HOST:PORT[,HOST:PORT...])."""
    from model import Store
    return Store(EtcdBackend(EtcdClient(EtcdTarget.parse(url, cert, key, ca))))


def copy_records(store, records: list, progress=None) -> None:
    """Writes ``records`` (another store's whole state) into ``store``, an etcd one that
    holds none yet, in transactions etcd takes (at most COPY_BATCH records each, fewer where
    their claims and guards would not fit)."""
    if store.records():
        raise Conflict(f"{store.backend} holds a state already: copy into an empty one")
    ops = [Put(record) for record in records]
    start = 0
    while start < len(ops):
        # The records' claims and guards are operations of the transaction too (an endpoint
        # takes up to 5 claims): fewer records per transaction when they would not fit.
        size = min(COPY_BATCH, len(ops) - start)
        while size > 1 and _operations(size, guards.conditions(
                ops[start:start + size], store.snapshot())) > MAX_TXN_OPS:
            size = size * 2 // 3
        store.apply_copied(ops[start:start + size])
        start += size
        if progress:
            progress(start, len(ops))


def _operations(records: int, conditions: Conditions) -> int:
    """The operations of a write's transaction as ``commit`` sends it: etcd limits its
    success list and its compare list each."""
    success = 2 + records + len(conditions.writes) + len(conditions.take) + \
        len(conditions.release)  # 2: the revision key read first and written last
    compare = len(conditions.guards) + len(conditions.take) + \
        len(conditions.keep | conditions.release) + len(conditions.empty)
    return max(success, compare)


def record_key(kind: str, key: tuple[str, ...]) -> str:
    return RECORDS + kind + "/" + "/".join(quote(part, safe="") for part in key)


def parse_record_key(key: str) -> tuple[str, tuple[str, ...]]:
    kind, _, rest = key[len(RECORDS):].partition("/")
    return kind, tuple(unquote(part) for part in rest.split("/"))


def guard_key(name: str) -> str:
    return GUARDS + name


def claim_key(name: str) -> str:
    return CLAIMS + name


class EtcdBackend:
    follows_own_writes = True
    seq_block = SEQ_BLOCK
    spread = ALLOCATION_SPREAD

    def __init__(self, client: EtcdClient):
        self.client = client
        self._apply = self._reload = None
        self._followed = 0  # the revision the watch has delivered up to
        self._stop = threading.Event()
        self._stream = None  # the watch's open response, closed to restart it
        self._thread: threading.Thread | None = None
        self._session = watch_session(client.target)
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

    def load(self) -> tuple[list, int, dict[str, int]]:
        """Every record, the revision of the last write and the guards' revisions, read at
        one revision."""
        try:
            response = self.client.get_prefix(STATE)
        except EtcdUnavailable as exc:
            raise Unavailable(f"the state store {self} cannot be read: {exc}") from None
        records, guards_at, revision = [], {}, 0
        for kv in response.get("kvs") or ():
            key = decode(kv["key"]).decode()
            if key.startswith(RECORDS):
                records.append(from_json(parse_record_key(key)[0], decode(kv["value"])))
            elif key.startswith(GUARDS):
                guards_at[key[len(GUARDS):]] = int(kv["mod_revision"])
            elif key == REVISION:
                revision = int(kv["mod_revision"])
        self._followed = int(response["header"]["revision"])
        return records, revision, guards_at

    def stored_revision(self) -> int:
        try:  # quickly: readiness probes ask
            return self._latest(PROBE_TIMEOUT_S)
        except EtcdUnavailable as exc:
            raise Unavailable(f"the state store {self} cannot be read: {exc}") from None

    def _latest(self, timeout: float | None = None) -> int:
        """The revision of the last write, read through etcd's quorum."""
        written = self.client.get(REVISION, timeout)
        return int(written["mod_revision"]) if written else 0

    # ---- writing ---------------------------------------------------------------------------

    def commit(self, ops: list, revision: int, compare: dict[str, int],
               conditions: Conditions) -> int:
        """One transaction: the records, the guards written, the claims taken and released,
        on the condition that the guards are where this replica saw them and the claims are
        as it thought (model/guards.py)."""
        operations = _operations(len(ops), conditions)
        if operations > MAX_TXN_OPS:
            # etcd would refuse the transaction whole; one write must not be split.
            raise StoreFull(f"this write is {operations} operations, more than the "
                            f"{MAX_TXN_OPS} etcd takes in one transaction (its "
                            f"--max-txn-ops): nothing was changed; make it in smaller steps "
                            f"(such as a network's reserved addresses released before it "
                            f"is deleted)")
        requests = [_put(record_key(op.kind, op.key), to_json(op.record)) if isinstance(op, Put)
                    else _delete(record_key(op.kind, op.key)) for op in ops]
        requests += [_put(guard_key(name), "") for name in sorted(conditions.writes)]
        requests += [_put(claim_key(name), "") for name in sorted(conditions.take)]
        requests += [_delete(claim_key(name)) for name in sorted(conditions.release)]
        checks = [{"key": encode(guard_key(name)), "target": "MOD", "result": "EQUAL",
                   "mod_revision": str(at)} for name, at in sorted(compare.items())]
        checks += [_version(claim_key(name), "EQUAL") for name in sorted(conditions.take)]
        checks += [_version(claim_key(name), "GREATER")
                   for name in sorted(conditions.keep | conditions.release)]
        checks += [{**_version(claim_key(prefix), "EQUAL"),
                    "range_end": encode(prefix_end(claim_key(prefix)))}
                   for prefix in sorted(conditions.empty)]
        try:
            # Not sent again to another member: the first may have committed it unseen.
            # The revision key read first: the write just before this one.
            response = self.client.txn(checks, [_range(REVISION), *requests,
                                                _put(REVISION, "")],
                                       [_range(REVISION)], retry=False)
        except EtcdMaybeApplied as exc:
            # Once a read through etcd's quorum answers, the write is in what it read or lost
            # for good (raft commits what a new leader holds before it serves such a read).
            try:
                latest = self._latest()
            except EtcdUnavailable:
                raise Unavailable(f"the state store {self} takes no writes now: {exc}; this "
                                  f"write may or may not have been made; reads are still "
                                  f"served, from this replica's copy") from None
            raise Stale(latest, undecided=True) from None
        except EtcdUnavailable as exc:
            raise Unavailable(f"the state store {self} takes no writes now: {exc}; reads are "
                              f"still served, from this replica's copy") from None
        before = _ranged(response, 0)
        after = int(before[0]["mod_revision"]) if before else 0
        if not response.get("succeeded"):
            # Another replica wrote first: planned again once this one has seen that write.
            raise Stale(after)
        return int(response["header"]["revision"]), after

    # ---- following the other replicas ------------------------------------------------------

    def follow(self, apply, reload) -> None:
        self._apply, self._reload = apply, reload
        self._thread = threading.Thread(target=self._watch, name="etcd-watch", daemon=True)
        self._thread.start()

    def resync(self) -> None:
        """The watch seems stuck (its member cut off): open it again on another member."""
        self.client.rotate()
        shut(self._stream)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                follow(self.client, self._session, STATE, prefix_end(STATE), self._followed + 1,
                       WATCH_IDLE_S, self._message, self._opened)
            except Exception as exc:  # noqa: BLE001 - a broken or silent stream is opened again
                if not self._stop.is_set():
                    LOG.debug("etcd watch interrupted (%s); opening it again", exc)
                    self.client.rotate()
            self._stop.wait(WATCH_RETRY_S)

    def _opened(self, response) -> None:
        self._stream = response
        if response is not None and self._stop.is_set():
            shut(response)

    def _message(self, message: dict) -> bool:
        if "error" in message:
            raise EtcdUnavailable(str(message["error"]))
        self._received(message["result"])
        return not self._stop.is_set()

    def _received(self, result: dict) -> None:
        if int(result.get("compact_revision") or 0):
            # The writes since are compacted away: start again from the whole state.
            LOG.warning("etcd compacted the revisions this replica had not followed yet; "
                        "loading the whole state again")
            self._reload(*self.load())
            raise RuntimeError("watch restarted after a compaction")
        if result.get("canceled"):
            raise RuntimeError(f"watch canceled: {result.get('cancel_reason', '')}")
        writes: dict[int, tuple[list, list]] = {}  # revision -> (ops, guards), in order
        for event in result.get("events", ()):
            kv = event["kv"]
            key = decode(kv["key"]).decode()
            ops, written = writes.setdefault(int(kv["mod_revision"]), ([], []))
            if key.startswith(GUARDS):
                written.append(key[len(GUARDS):])
            elif not key.startswith(RECORDS):
                continue  # the revision key
            elif event.get("type") == "DELETE":
                ops.append(Delete(*parse_record_key(key)))
            else:
                ops.append(Put(from_json(parse_record_key(key)[0], decode(kv["value"]))))
        for revision, (ops, written) in writes.items():
            self._apply(ops, revision, written)
            self._followed = revision

    def close(self) -> None:
        self._stop.set()
        shut(self._stream)
        if self._thread is not None:
            self._thread.join(timeout=2)


def _put(key: str, value: str) -> dict:
    return {"request_put": {"key": encode(key), "value": encode(value)}}


def _range(key: str) -> dict:
    return {"request_range": {"key": encode(key)}}


def _delete(key: str) -> dict:
    return {"request_delete_range": {"key": encode(key)}}


def _version(key: str, result: str) -> dict:
    """The condition that ``key``'s version is 0 (EQUAL: it does not exist) or more
    (GREATER: it does)."""
    return {"key": encode(key), "target": "VERSION", "result": result, "version": "0"}


def _ranged(response: dict, index: int) -> list[dict]:
    """The key-values of the ``index``th range in a transaction's response."""
    responses = response.get("responses") or []
    return responses[index].get("response_range", {}).get("kvs") or [] \
        if index < len(responses) else []
