"""One OpenFlow session per connected switch: keeps its flow table equal to the desired one.

On (re)connection the session reads the switch's table, compiles the whole desired table and
sends only the difference, inside one atomic bundle, so traffic never stops and an unchanged
table costs no flow mod. After that it keeps its own copy of the installed table, recompiles
only the units each change touched (flows.host_flows) and sends only their difference.
An idle session probes its switch with a barrier and drops a connection that stopped answering,
so that a switch cut off without a word is reported disconnected and is reconciled on return.

With replicas (a leadership with terms, controller.leadership), the session first asks the
switch for the role its replica has in the current term (MASTER or SLAVE with the term's
generation as generation_id) and programs only as the leader, once the switch's ROLE_REPLY
confirmed MASTER in that term; a follower keeps its connection to read flows. A leader that
is deposed stops sending at once, even half-way through a table (docs/replicas.md).
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from flows import Flow, FlowDiff, HostFlows, HostPorts, diff
from model import Snapshot, Unavailable
from openflow import stats as wire_stats
from openflow import wire
from openflow.os_ken import add_message, delete_message, flow_from_stats

from .heap import collection_paused
from .leadership import Role, Standalone, may_program, wanted_role

LOG = logging.getLogger(__name__)
REPLY_TIMEOUT_S = 10
# The session numbers its requests in the upper half of the xid space: os-ken's own counter
# (Datapath.set_xid, not thread-safe, also used by os_ken.lib.ofctl) counts up from 0.
XID_BASE = 0x80000000
SAFETY_RECHECK_S = 30
SEND_BATCH = 512  # flow mods per socket write (about 85 KiB)
# A connection can die without a word (a cut cable, a host that lost power): nothing tells
# os-ken, which sends no echo requests. An idle session sends a barrier every PROBE_IDLE_S; a
# switch that leaves it unanswered for PROBE_TIMEOUT_S is dropped, so that its status says so
# and requests stop waiting for it. The switch reconnects by itself and is reconciled.
PROBE_IDLE_S = 2.0
PROBE_TIMEOUT_S = 5.0
_bundle_ids = itertools.count(1)


class NoReply(Unavailable):
    pass


class SwitchError(Exception):
    pass


class NotProgramming(Exception):
    """This replica may not program the switch now (deposed half-way through a change)."""


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    parts: list = field(default_factory=list)
    errors: list = field(default_factory=list)


@dataclass
class Work:
    """What a switch session needs to bring its table up to date."""

    snap: Snapshot
    ports: HostPorts
    ports_version: int
    units: set | None  # compile units changed since the last call; None: rebuild all


class SwitchSession:
    """``table`` keeps the desired flows (HostFlows: the integration bridge's, by compile
    unit; flows.physical.PhysicalFlows: the physical bridge's); ``name`` names the switch in
    logs and metrics, the host's name by default."""

    def __init__(self, datapath, host: str, take_work: Callable[[], Work | None],
                 on_applied: Callable[["SwitchSession"], None], metrics,
                 reply_timeout: float = REPLY_TIMEOUT_S, table=None, name: str | None = None,
                 leadership=None):
        self.dp = datapath
        self.leadership = leadership if leadership is not None else Standalone()
        # The role the switch confirmed to this replica (its ROLE_REPLY), None before any;
        # the last role it refused (OFPRRFC_STALE: a later generation asked already), which
        # is not asked again.
        self.role: Role | None = None
        self.role_refused: Role | None = None
        self.reply_timeout = reply_timeout
        self.metrics = metrics
        self.host = host
        self.name = name or host
        self._take_work = take_work
        self.table = table if table is not None else HostFlows()
        self._on_applied = on_applied
        self.installed: dict[tuple, Flow] | None = None
        self.applied_revision = -1
        self.applied_ports_version = -1
        self.flow_mods_sent = 0
        self.last_reconcile: dict | None = None
        self.reconciles = 0
        self._pending: dict[int, _Pending] = {}
        self._xids = itertools.count(XID_BASE)
        self._errors: list = []
        self._wake = threading.Event()
        self._alive = True
        self._thread = threading.Thread(target=self._run, name=f"switch-{self.name}",
                                        daemon=True)

    @property
    def dpid(self) -> int:
        return self.dp.id

    def start(self) -> None:
        self._thread.start()
        self.kick()

    def stop(self) -> None:
        self._alive = False
        self._wake.set()
        for pending in list(self._pending.values()):
            pending.done.set()

    def kick(self) -> None:
        self._wake.set()

    def programs(self) -> bool:
        """Whether this session may send flow mods and packet-outs now (controller.leadership
        .may_program): read live, so that a deposed leader stops at once."""
        lead = self.leadership
        return may_program(lead.term(), lead.leads(), self.role)

    def _settle_role(self) -> None:
        """Asks the switch for the role the current term gives this replica, unless it
        confirmed that one already or refused it, and waits for the ROLE_REPLY."""
        lead = self.leadership
        wanted = wanted_role(lead.term(), lead.leads())
        if wanted is None or wanted == self.role or wanted == self.role_refused:
            return
        request = parser.OFPRoleRequest(self.dp, wanted.role, wanted.generation)
        started = time.monotonic()
        try:
            reply = self.request(request)[0]
        except SwitchError as exc:  # OFPRRFC_STALE: a later generation asked already
            self.role, self.role_refused = None, wanted
            LOG.warning("switch %s: role %s refused: %s", self.name, wanted, exc)
            return
        self.role = Role(reply.role, reply.generation_id)
        # A new term: another replica may have programmed the switch meanwhile, so the
        # table is read again before anything is sent (an unchanged one costs no flow mod).
        self.installed = None
        if self.role != wanted:
            LOG.warning("switch %s: asked for role %s, the switch says %s", self.name, wanted,
                        self.role)
        else:
            LOG.info("switch %s: role %s in %.1f ms", self.name, self.role,
                     (time.monotonic() - started) * 1000)

    # ---- replies, routed here by the os-ken app ----------------------------------------------

    def on_reply(self, msg) -> bool:
        """Takes a reply to one of this session's requests; False if it is not one."""
        pending = self._pending.get(msg.xid)
        if pending is None:
            return False
        pending.parts.append(msg)
        if not (isinstance(msg, parser.OFPMultipartReply) and msg.flags & ofp.OFPMPF_REPLY_MORE):
            pending.done.set()
        return True

    def on_flow_stats_bytes(self, data: bytes) -> bool:
        """Takes one part of a flow-stats reply to this session, unparsed (controller.runtime
        hands them over before os-ken parses them); False if it is not one of ours."""
        info = wire_stats.reply_info(data)
        pending = self._pending.get(info[0]) if info is not None else None
        if pending is None:
            return False
        pending.parts.append(data)
        if not info[1]:
            pending.done.set()
        return True

    def on_role_status(self, role: int, generation: int) -> None:
        """The switch says, unasked, that this connection's role changed (ONF's role status,
        OpenFlow 1.3's extension): another controller took MASTER. From now on this session
        sends nothing, at once; its thread then asks again for the role its term gives it
        (stale, and so refused, if that is an older MASTER)."""
        LOG.warning("switch %s: the switch made this replica %s", self.name,
                    Role(role, generation))
        self.role = Role(role, generation)
        self.kick()

    def on_error(self, msg) -> None:
        LOG.warning("switch %s (%016x): error type=%s code=%s", self.name, self.dpid,
                    msg.type, msg.code)
        pending = self._pending.get(msg.xid)
        if pending is not None:
            pending.errors.append(msg)
            pending.done.set()
        else:
            self._errors.append(msg)

    # ---- the session's thread ------------------------------------------------------------------

    def _run(self) -> None:
        last_converge = 0.0
        while self._alive:
            # Kicks come with every model or port change; an idle session probes its switch
            # and, now and then, re-checks its table as a safety net.
            kicked = self._wake.wait(timeout=PROBE_IDLE_S)
            self._wake.clear()
            if not self._alive:
                return
            try:
                if kicked:
                    self._converge()
                elif time.monotonic() - last_converge > SAFETY_RECHECK_S:
                    last_converge = time.monotonic()
                    self._converge(rebuild=True)
                elif not self._answers():
                    self._drop(f"no reply to a probe within {PROBE_TIMEOUT_S:.0f} s")
                    return
                elif self.installed is None:  # not programmed yet (no OVSDB view): retry
                    self._converge()
            except NotProgramming as exc:
                # Deposed meanwhile: what was sent is unknown; the role goes to SLAVE next.
                LOG.info("%s: stopped programming", exc)
                self.installed = None
                self._wake.set()
            except NoReply as exc:
                if not self._alive:
                    return
                # A slow switch (a big table being read) still answers a barrier; a dead
                # connection does not.
                if not self._answers():
                    self._drop(str(exc))
                    return
                LOG.warning("switch %s: %s; re-reading its table", self.name, exc)
                self.installed = None
                self._wake.set()
            except Exception as exc:
                if not self._alive:
                    return
                LOG.warning("switch %s: programming failed (%s); re-reading its table",
                            self.name, exc)
                self.installed = None
                time.sleep(0.5)
                self._wake.set()

    def _answers(self) -> bool:
        try:
            self.request(parser.OFPBarrierRequest(self.dp), PROBE_TIMEOUT_S)
            return True
        except NoReply:
            return False

    def _drop(self, why: str) -> None:
        """Closes a connection that no longer answers; os-ken then reports it gone."""
        if not self._alive:  # stopped meanwhile: the connection is someone else's business
            return
        LOG.warning("switch %s: %s: closing its connection (it reconnects and is reconciled)",
                    self.name, why)
        self._alive = False
        try:
            self.dp.close()
        except Exception as exc:
            LOG.warning("switch %s: closing failed: %s", self.name, exc)

    def _converge(self, rebuild: bool = False) -> None:
        self._settle_role()
        if not self.programs():
            # A follower (or a leader whose MASTER is not confirmed): no flows sent. What the
            # switch holds is another replica's business until this one leads; then it reads
            # the table again. The work is taken all the same (it is redone whole then).
            self._take_work()
            self.installed = None
            return
        work = self._take_work()
        if work is None:  # the host's OVSDB view is not ready: acting now could delete flows
            return
        first = self.installed is None
        started = time.monotonic()
        if first:
            self.installed = self.dump_flows()
            self.reconciles += 1
            self.metrics.reconciles.labels(self.name).inc()
            read = time.monotonic()
        view = self.table.view_for(work.snap, self.host, work.ports)
        changes = None
        if not (first or rebuild or work.units is None):
            changes = self.table.update(work.snap, view, work.units)
        if changes is None:
            with collection_paused():
                changes = diff(self.table.rebuild(work.snap, view), self.installed)
            if rebuild and changes:  # the incremental path missed something: say so, fix it
                LOG.warning("switch %s: safety check found %d flows to correct", self.name,
                            len(changes))
        compiled = time.monotonic()
        if changes:
            if first and LOG.isEnabledFor(logging.DEBUG):
                for flow in changes.add:
                    LOG.debug("switch %s: rewriting %s (installed: %s)", self.name, flow,
                              self.installed.get(flow.key))
            # A reconnection's difference goes in one atomic bundle, so that traffic never
            # sees half of it. On failure the thread forgets what is installed: the next pass
            # re-reads the switch and rebuilds the whole table.
            with collection_paused():
                errors = self._send(changes, bundle=first)
            if errors:
                if any(e.type == ofp.OFPET_BAD_REQUEST and e.code == ofp.OFPBRC_IS_SLAVE
                       for e in errors):
                    # Another controller is MASTER now: ask again (a later generation than
                    # ours makes the switch refuse, and this replica stops).
                    self.role = None
                raise RuntimeError(f"switch rejected {len(errors)} message(s)")
            for flow in changes.add:
                self.installed[flow.key] = flow
            for flow in changes.delete:
                self.installed.pop(flow.key, None)
            LOG.info("switch %s: +%d -%d flows in %.1f ms%s", self.name, len(changes.add),
                     len(changes.delete), (time.monotonic() - started) * 1000,
                     " (reconcile)" if first else "")
        if first:
            done = time.monotonic()
            self.metrics.reconcile_seconds.observe(done - started)
            self.last_reconcile = {
                "flows_read": len(self.installed), "added": len(changes.add),
                "deleted": len(changes.delete), "read_seconds": round(read - started, 4),
                "compile_seconds": round(compiled - read, 4),
                "send_seconds": round(done - compiled, 4), "seconds": round(done - started, 4)}
            LOG.info("switch %s: reconciled %d flows in %.1f ms (read in %.1f ms), +%d -%d",
                     self.name, len(self.installed), (done - started) * 1000,
                     (read - started) * 1000, len(changes.add), len(changes.delete))
        self.applied_revision = work.snap.revision
        self.applied_ports_version = work.ports_version
        self._on_applied(self)

    # ---- OpenFlow requests ---------------------------------------------------------------------

    def dump_flows(self) -> dict[tuple, Flow]:
        """The switch's table as Flow data, read by openflow.stats (os-ken's parser costs
        ten times more); parts os-ken parsed anyway (no runtime routing) are converted."""
        table = {}
        for part in self._flow_stats_parts(ofp.OFPTT_ALL):
            if isinstance(part, bytes):
                try:
                    flows = wire_stats.flows(part)
                except ValueError as exc:
                    raise SwitchError(f"switch {self.name}: bad flow-stats reply: {exc}") \
                        from None
            else:
                flows = map(flow_from_stats, part.body)
            for flow in flows:
                table[flow.key] = flow
        return table

    def flow_stats(self, table_id: int = ofp.OFPTT_ALL) -> list:
        """The switch's live flow entries (OFPFlowStats, counters included): os-ken's parse,
        for inspection, which wants every detail and reads rarely."""
        stats = []
        for part in self._flow_stats_parts(table_id):
            if isinstance(part, bytes):
                version, msg_type, length, xid = ofproto_parser.header(part)
                part = ofproto_parser.msg(self.dp, version, msg_type, length, xid, part)
                if part is None:  # os-ken logged why
                    raise SwitchError(f"switch {self.name}: unparseable flow-stats reply")
            stats.extend(part.body)
        return stats

    def _flow_stats_parts(self, table_id: int) -> list:
        """The parts of a flow-stats reply: raw bytes, or OFPFlowStatsReply objects when they
        reached the session through os-ken's parser."""
        request = parser.OFPFlowStatsRequest(self.dp, 0, table_id, ofp.OFPP_ANY,
                                             ofp.OFPG_ANY, 0, 0, parser.OFPMatch())
        return self.request(request)

    def request(self, request, timeout: float | None = None) -> list:
        """Sends a request and returns its reply messages (all parts of a multipart reply).

        Thread-safe: the session's thread and API threads share the connection.
        """
        pending = _Pending()
        request.set_xid(self._next_xid())
        self._pending[request.xid] = pending
        try:
            self.dp.send_msg(request)
            if not pending.done.wait(timeout or self.reply_timeout) or not self._alive:
                raise NoReply(f"no reply from switch {self.name}")
            if pending.errors:
                error = pending.errors[0]
                raise SwitchError(f"switch {self.name} refused the request "
                                  f"(error type {error.type}, code {error.code})")
            return pending.parts
        finally:
            self._pending.pop(request.xid, None)

    def _send(self, changes: FlowDiff, bundle: bool) -> list:
        """Sends the flow mods of ``changes`` (adds first, in one atomic bundle when asked)
        and waits for the barrier. Returns the errors the switch reported for them.

        Messages are serialized by openflow.wire (building os-ken objects costs ~15 times
        more per flow) and written in batches as they are made, so that the switch decodes
        one batch while the next is serialized: serializing everything first made the switch
        wait for all of it.
        """
        self._errors = []
        out = _Batches(self._send_programming)
        if bundle:
            with self._bundled(out) as into:
                self._write(changes, out, into)
        else:
            self._write(changes, out, None)
        out.flush()
        self.flow_mods_sent += len(changes)
        self.metrics.flow_mods.labels(self.name).inc(len(changes))
        self.request(parser.OFPBarrierRequest(self.dp))
        return list(self._errors)

    @contextmanager
    def _bundled(self, out: "_Batches"):
        """A bundle opened in ``out`` and committed when the block ends. A block that fails
        half-way (a flow neither serializer takes) discards it: the switch must not keep an
        open bundle holding half a table. What was not written yet is never written."""
        bundle = wire.Bundle(next(_bundle_ids))
        out.write(bundle.open(self._next_xid()))
        try:
            yield bundle
        except BaseException:
            if out.written:
                self.dp.send(bundle.discard(self._next_xid()))
            raise
        out.write(bundle.commit(self._next_xid()))

    def _write(self, changes: FlowDiff, out: "_Batches", bundle: wire.Bundle | None) -> None:
        """The flow mods of ``changes``: adds, then deletes, each with its xid; inside
        ``bundle`` when given. What openflow.wire does not encode goes through os-ken."""
        xid = self._next_xid
        if bundle is None:
            add, delete, wrap = wire.flow_mod_add, wire.flow_mod_delete_strict, None
        else:
            add, delete, wrap = bundle.flow_mod_add, bundle.flow_mod_delete_strict, bundle.add
        for flow in changes.add:
            out.write(self._encode(add, add_message, wrap, flow, xid()))
        for flow in changes.delete:
            out.write(self._encode(delete, delete_message, wrap, flow, xid()))

    def _send_programming(self, data: bytes) -> None:
        """Writes flow mods, if this replica still may: a deposed leader stops between two
        batches (what it still sends, OVS refuses once the new leader is MASTER)."""
        if not self.programs():
            raise NotProgramming(f"switch {self.name}: no longer the leader")
        self.dp.send(data)

    def _next_xid(self) -> int:
        return next(self._xids) & 0xFFFFFFFF | XID_BASE  # count() is thread-safe

    def _encode(self, fast, slow, wrap, flow: Flow, xid: int) -> bytes:
        """``fast`` (openflow.wire) serializes the flow; what it does not know goes through
        os-ken (``slow``), slower, then into the bundle by ``wrap`` if there is one."""
        try:
            return fast(flow, xid)
        except ValueError as exc:
            LOG.debug("switch %s: os-ken serializes %s (%s)", self.name, flow, exc)
            msg = slow(self.dp, flow)
            msg.set_xid(xid)
            msg.serialize()
            raw = bytes(msg.buf)
            return raw if wrap is None else wrap(raw, xid)


class _Batches:
    """Messages written SEND_BATCH at a time as they come; the rest on flush()."""

    __slots__ = ("_batch", "_send", "written")

    def __init__(self, send: Callable[[bytes], object]):
        self._send = send
        self._batch: list[bytes] = []
        self.written = False

    def write(self, message: bytes) -> None:
        self._batch.append(message)
        if len(self._batch) == SEND_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._batch:
            self._send(b"".join(self._batch))
            self._batch = []
            self.written = True
