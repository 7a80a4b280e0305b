"""The leader election on an etcd lease, and the members list (docs/replicas.md).

A replica keeps a lease (TTL 2 s, a keepalive every TTL/4), registers itself at
``/ovsfabric/members/<name>`` under it, and campaigns for ``/ovsfabric/leader`` with a
transaction: if the key does not exist (create_revision 0), put our record there under our
lease. The one whose put succeeds leads; its term's generation is the leader key's
create_revision, which grows with every election (a usable OpenFlow generation_id). When the
leader's lease ends (revoked by stop(), or expired because its keepalives stopped) etcd deletes
the key, the others' watches see the DELETE and campaign at once.

A leader that cannot renew its lease does not know whether etcd still holds it: it steps down
once its last successful keepalive (counted from when it was sent) is older than the TTL less
a margin (TTL/8), before etcd can expire the lease and let another replica win. A keepalive
answered with TTL 0 means the lease is gone: step down at once, grant a new lease, campaign
again.
"""
from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .etcd import EtcdClient, EtcdTarget, EtcdUnavailable, encode, prefix_end
from .members import (
    PREFIX,
    Member,
    leader_key,
    listing,
    member_key,
    members_prefix,
    put,
)
from .watch import RangeWatch

LOG = logging.getLogger(__name__)
TTL_S = 2.0


@dataclass(frozen=True)
class Term:
    """A leader's term: who, and the generation (the leader key's create_revision)."""
    leader: str
    generation: int


@dataclass(frozen=True)
class _Known:
    """The leader key as last seen: its record, generation and lease, at an etcd revision."""
    member: Member
    generation: int
    lease: int


def default_name(api: str) -> str:
    """The hostname and the API's port: unique per replica as long as one host runs each
    replica on its own port."""
    port = urlsplit(api if "//" in api else f"http://{api}").port
    return f"{socket.gethostname()}:{port}" if port else socket.gethostname()


class Election:
    """One replica's part in the election; the duck-typed leadership the controller uses
    (start, stop, term, leads, controllers, subscribe, members, name, status)."""

    def __init__(self, client: EtcdClient, api: str, advertise: str, name: str | None = None,
                 ttl: float = TTL_S, prefix: str = PREFIX, margin: float | None = None):
        self.client = client
        self.name = name or default_name(api)
        self.me = Member(self.name, api, advertise)
        self.ttl = ttl
        # The step-down margin (TTL/8: 0.25 s): the time our step-down has to act (the
        # controller demoting itself, a local matter of milliseconds) before etcd can expire
        # the lease, and the two clocks' rates. Keepalives go every TTL/4, so a leader stays
        # through 3 lost in a row (1.75 s), which covers etcd replacing its own raft leader
        # (no lease is renewed meanwhile) when etcd's election timeout is 500 ms; TTL/4 did
        # not, in 4 of 10 kills of etcd's raft leader (docs/replicas.md).
        self.margin = ttl / 8 if margin is None else margin
        self.interval = ttl / 4
        self.prefix = prefix
        self._leader_key = leader_key(prefix)
        self._lock = threading.RLock()
        self._lease: int | None = None
        self._lease_ttl = ttl
        self._last_ok = 0.0  # monotonic time a successful grant or keepalive was sent
        self._registered = False
        self._registered_revision = 0
        self._lapsed = False  # the lease may have expired: not renewed for TTL - margin
        self._leading: int | None = None  # our generation while we hold the leader key
        self._leader: _Known | None = None
        self._leader_revision = 0  # the etcd revision _leader was read at
        self._members: dict[str, Member] = {}
        self._revision = 0
        self._callbacks: list[Callable[[], None]] = []
        self._notified: tuple | None = None
        self._notify_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._leader_watch = RangeWatch(client, self._leader_key, None, self._on_leader,
                                        name=f"election-{self.name}-leader")
        mprefix = members_prefix(prefix)
        self._members_watch = RangeWatch(client, mprefix, prefix_end(mprefix), self._on_members,
                                         name=f"election-{self.name}-members")
        self._keeper = threading.Thread(target=self._keep, name=f"election-{self.name}",
                                        daemon=True)
        self._monitor = threading.Thread(target=self._watch_deadline,
                                         name=f"election-{self.name}-deadline", daemon=True)

    @classmethod
    def connect(cls, url: str, api: str, advertise: str, *, cert: str | None = None,
                key: str | None = None, ca: str | None = None, **options) -> Election:
        """The election on the etcd at ``etcd://HOST:PORT[,...]`` (with its TLS files)."""
        return cls(EtcdClient(EtcdTarget.parse(url, cert, key, ca)), api, advertise, **options)

    # ---- the interface ----------------------------------------------------------------------

    def start(self) -> None:
        self._keeper.start()
        self._monitor.start()
        self._leader_watch.start()
        self._members_watch.start()

    def stop(self, revoke: bool = True) -> None:
        """Out of the election; ``revoke``: the lease revoked, so that the leader key and our
        record go at once and a successor is elected without waiting for the TTL (False: as
        if the process died, the lease left to expire)."""
        self._stopping.set()
        self._wake.set()
        self._leader_watch.stop()
        self._members_watch.stop()
        for thread in (self._keeper, self._monitor):
            if thread.is_alive():
                thread.join(self.ttl + 1)
        with self._lock:
            lease, self._lease, self._leading = self._lease, None, None
            self._registered = False
            if self._leader is not None and self._leader.lease == lease:
                self._leader = None
        self._notify()
        if revoke and lease is not None:
            try:
                self.client.post("kv/lease/revoke", {"ID": lease}, timeout=1.0)
            except EtcdUnavailable as exc:
                LOG.warning("%s: the lease could not be revoked (it expires within %.0f s): "
                            "%s", self.name, self._lease_ttl, exc)

    def leads(self) -> bool:
        with self._lock:
            return self._leading is not None and self._valid(time.monotonic())

    def term(self) -> Term | None:
        with self._lock:
            known = self._leader
            if known is None:
                return None
            if known.lease == self._lease and not self._valid(time.monotonic()):
                return None  # ours, and past the deadline: no longer known to hold
            return Term(known.member.name, known.generation)

    def members(self) -> list[dict]:
        with self._lock:
            term = self.term()
            return listing(self._live_members(), term.leader if term else None)

    def controllers(self) -> list[str]:
        with self._lock:
            return sorted(m.advertise for m in self._live_members().values())

    def subscribe(self, callback: Callable[[], None]) -> None:
        """``callback()`` after each change of term, leadership or members: called on one of
        the election's threads, one call at a time; it must be quick."""
        self._callbacks.append(callback)

    def status(self) -> dict:
        with self._lock:
            term = self.term()
            return {"members": self.members(), "leader": term.leader if term else None,
                    "revision": self._revision}

    # ---- state -------------------------------------------------------------------------------

    def _valid(self, now: float) -> bool:
        return (self._lease is not None and not self._lapsed
                and now - self._last_ok < self._lease_ttl - self.margin)

    def _live_members(self) -> dict[str, Member]:
        members = dict(self._members)
        if self._registered and self._valid(time.monotonic()):
            members[self.name] = self.me  # ours before the watch has shown it
        return members

    def _seen(self, revision: int) -> None:
        self._revision = max(self._revision, revision)

    def _set_leader(self, kv: dict | None, revision: int) -> None:
        """The leader key as read at ``revision`` (None: absent); older news is ignored."""
        if revision < self._leader_revision:
            return
        self._leader_revision = revision
        self._seen(revision)
        if kv is None:
            self._leader = None
            if self._leading is not None:
                LOG.warning("%s: the leader key is gone: stepping down", self.name)
                self._leading = None
            return
        member = Member.from_kv(kv)
        if member is None:
            LOG.warning("%s: %s holds no member record", self.name, self._leader_key)
            self._leader = None
            return
        known = _Known(member, int(kv["create_revision"]), int(kv.get("lease") or 0))
        self._leader = known
        if known.lease and known.lease == self._lease and self._valid(time.monotonic()):
            if self._leading != known.generation:
                LOG.info("%s: leading, generation %d", self.name, known.generation)
            self._leading = known.generation
        elif self._leading is not None:
            LOG.warning("%s: %s leads now: stepping down", self.name, member.name)
            self._leading = None

    def _on_leader(self, watch: RangeWatch) -> None:
        with self._lock:
            if watch.synced:
                self._set_leader(watch.kvs.get(self._leader_key), watch.revision)
            vacant = self._leader is None and not self._leading
        self._notify()
        if vacant:
            self._wake.set()  # campaign now

    def _on_members(self, watch: RangeWatch) -> None:
        lost = False
        with self._lock:
            if watch.synced:
                members = (Member.from_kv(kv) for kv in watch.kvs.values())
                self._members = {m.name: m for m in members if m is not None}
                self._seen(watch.revision)
                # Our record gone from etcd after we wrote it (deleted by hand, or written over
                # by a namesake): write it again.
                if (self._registered and self.name not in self._members
                        and watch.revision > self._registered_revision):
                    self._registered = False
                    lost = True
        self._notify()
        if lost:
            LOG.warning("%s: its member record is gone: writing it again", self.name)
            self._wake.set()

    def _notify(self) -> None:
        """The callbacks, once per change of term, leadership or members."""
        with self._notify_lock:
            with self._lock:
                view = (self.term(), self.leads(), repr(self.members()))
            if view == self._notified:
                return
            self._notified = view
            for callback in list(self._callbacks):
                try:
                    callback()
                except Exception:
                    LOG.exception("%s: election subscriber failed", self.name)

    # ---- the keeper: lease, registration, campaign --------------------------------------------

    def _keep(self) -> None:
        next_keepalive = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            failed = False
            try:
                if self._lease is None:
                    self._grant()
                    next_keepalive = time.monotonic() + self.interval
                elif now >= next_keepalive:
                    next_keepalive = now + self.interval
                    self._keepalive()
                if self._lease is not None and not self._lapsed:
                    if not self._registered:
                        self._register()
                    if self._leading is None and self._leader is None:
                        self._campaign()
            except EtcdUnavailable as exc:
                failed = True
                LOG.debug("%s: %s", self.name, exc)
            except (ValueError, KeyError) as exc:  # an answer not as documented
                failed = True
                LOG.warning("%s: unexpected answer from etcd: %r", self.name, exc)
            except Exception:  # noqa: BLE001 - the keeper must go on: the deadline still holds
                failed = True
                LOG.exception("%s: unexpected failure in the election", self.name)
            self._notify()
            for watch in (self._leader_watch, self._members_watch):
                watch.follow_the_connection()
            # Until the next keepalive, or a wake-up (the leader key deleted: campaign now); a
            # new lease at once, unless etcd just refused one. The state decides what is done,
            # so a wake-up lost between two turns delays nothing beyond the next one.
            if self._lease is None:
                timeout = self.interval if failed else 0.0
            else:
                timeout = max(0.0, next_keepalive - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()

    def _timeout(self) -> float:
        """Each request's limit per member: the keeper must not hang past the deadline."""
        return max(0.2, self.interval)

    def _grant(self) -> None:
        sent = time.monotonic()
        answer = self.client.post("lease/grant", {"TTL": max(1, math.ceil(self.ttl))},
                                  timeout=self._timeout())
        with self._lock:
            self._lease = int(answer["ID"])
            # etcd raises a TTL below its minimum (1.5 election timeouts) to that minimum.
            self._lease_ttl = float(answer.get("TTL") or self.ttl)
            self._last_ok = sent
            self._lapsed = False
            self._registered = False
            self._seen(int(answer["header"]["revision"]))
        LOG.info("%s: lease %x, TTL %.0f s", self.name, self._lease, self._lease_ttl)

    def _register(self) -> None:
        answer = self.client.txn([], [put(member_key(self.name, self.prefix), self.me,
                                          self._lease)], timeout=self._timeout())
        with self._lock:
            self._registered = True
            self._registered_revision = int(answer["header"]["revision"])
            self._seen(self._registered_revision)

    def _keepalive(self) -> None:
        lease = self._lease
        sent = time.monotonic()
        answer = self.client.post("lease/keepalive", {"ID": lease}, timeout=self._timeout())
        ttl = int((answer.get("result") or {}).get("TTL") or 0)
        with self._lock:
            if lease != self._lease:
                return
            if ttl <= 0:
                LOG.warning("%s: lease %x is gone: stepping down, campaigning again",
                            self.name, lease)
                self._lease = None
                self._leading = None
                self._registered = False
                if self._leader is not None and self._leader.lease == lease:
                    self._leader = None
                return
            self._last_ok = sent
            was_lapsed, self._lapsed = self._lapsed, False
        if was_lapsed:
            # Renewed after all: the lease never expired, so the leader key is as it was.
            LOG.info("%s: etcd reachable again, lease %x alive", self.name, lease)
            self._reread_leader()

    def _reread_leader(self) -> None:
        answer = self.client.post("kv/range", {"key": encode(self._leader_key)},
                                  timeout=self._timeout())
        kvs = answer.get("kvs") or []
        with self._lock:
            self._leader_revision = 0  # what was known before the lapse is void
            self._set_leader(kvs[0] if kvs else None, int(answer["header"]["revision"]))

    def _campaign(self) -> None:
        lease = self._lease
        key = encode(self._leader_key)
        answer = self.client.txn(
            [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": 0}],
            [put(self._leader_key, self.me, lease)],
            [{"request_range": {"key": key}}], timeout=self._timeout())
        revision = int(answer["header"]["revision"])
        with self._lock:
            if lease != self._lease:
                return
            if answer.get("succeeded"):
                # The put made the key: its create_revision is the txn's revision.
                kv = {"key": key, "value": encode(self.me.to_json()), "lease": lease,
                      "create_revision": revision}
            else:
                kvs = (answer["responses"][0].get("response_range") or {}).get("kvs") or []
                kv = kvs[0] if kvs else None
            self._set_leader(kv, revision)

    # ---- the deadline ---------------------------------------------------------------------------

    def _watch_deadline(self) -> None:
        """Steps down when the lease has not been renewed for TTL - margin: checked on its own
        thread, as the keeper may be stuck in a request to an unresponsive member."""
        while not self._stopping.is_set():
            with self._lock:
                now = time.monotonic()
                wait = self.interval
                if self._lease is not None and not self._lapsed:
                    deadline = self._last_ok + self._lease_ttl - self.margin
                    if now >= deadline:
                        LOG.warning("%s: lease %x not renewed for %.1f s: %s", self.name,
                                    self._lease, now - self._last_ok,
                                    "stepping down" if self._leading else "leader unknown")
                        self._lapsed = True
                        self._leading = None
                        self._leader = None
                        self._leader_revision = 0
                    else:
                        wait = min(wait, deadline - now)
            self._notify()
            self._stopping.wait(max(0.01, wait))
