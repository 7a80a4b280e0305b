"""The fabric service: joins the store, the hosts' OVSDB sessions and the switches' sessions.

The store is the truth. Every committed change recomputes the OVSDB configuration of the
hosts whose ports it touched (compared before anything is sent), records which compile units
(networks, endpoints) it touched on each host of the networks concerned, and wakes those hosts'
switch sessions, which recompile just those units and send only the difference.

A host has two switches: its integration bridge, and its physical bridge (the way out of the
fabric), whose few flows are rebuilt whole on every change; the fabric also resolves each
host's egress next hop through the physical bridge (controller.neighbours).

The fabric takes a leadership (controller.leadership; Standalone by default): every host's
switches are told every replica's OpenFlow target, only the leader programs switches and
writes OVSDB (fenced by its term's generation, ovsdb.fence), and a change of term, leadership
or members wakes every session (docs/replicas.md, "Roles and fencing").
"""
from __future__ import annotations

import logging
import threading
import time

from flows import compile_host
from flows.host_flows import concerned_hosts, touched_units
from flows.physical import PhysicalFlows, compile_physical
from flows.pipeline import COOKIE_KIND_SHIFT, cookie
from model import Snapshot, Store, Unavailable
from model.entities import EVERYTHING, Change
from ovsdb.config import PHYSICAL_BRIDGE, cleanup_config, host_config
from ovsdb.fence import Writer
from ovsdb.session import HostSession

from .leadership import Standalone
from .metrics import FabricMetrics
from .neighbours import NextHopResolver, Query, arp_reply_sender
from .ofctl_waiters import OfctlWaiters
from .switch import REPLY_TIMEOUT_S, SwitchSession, Work

LOG = logging.getLogger(__name__)


class Fabric:
    def __init__(self, store: Store, advertise: str, reply_timeout: float = REPLY_TIMEOUT_S,
                 leadership=None):
        self.store = store
        self.advertise = advertise  # this replica's own OpenFlow target
        self.leadership = leadership if leadership is not None else \
            Standalone(advertise=advertise)
        self._controllers = tuple(self.leadership.controllers())  # what the hosts are told
        # wait_on_leader(hosts, revision, bound, timeout) -> bool | None: how a follower waits
        # for what wait_programmed waits for (cluster.leader_wait); it answers None when this
        # replica has been elected meanwhile. None here: on its own switches
        self.wait_on_leader = None
        self._leadership_changed = threading.Event()
        self._stopped = threading.Event()
        self._follower = threading.Thread(target=self._follow_leadership,
                                          name="fabric-leadership", daemon=True)
        self.reply_timeout = reply_timeout  # how long a request waits for a switch's answer
        self.ovsdb_sessions: dict[str, HostSession] = {}  # by host name
        self.switches: dict[str, SwitchSession] = {}  # by host name
        # The hosts' physical bridges (br-phy), each a switch of its own with its own table.
        self.physical_switches: dict[str, SwitchSession] = {}  # by host name
        # Hosts whose physical bridge has the controller's flows: it may be fail_mode secure.
        self._physical_ready: set[str] = set()
        # host -> (address, MAC) of its egress next hop, as resolved since this process started
        self._next_hops: dict[str, tuple[str, str]] = {}
        self._resolver = NextHopResolver(self._next_hop_queries)
        self._retiring: dict[object, SwitchSession] = {}  # physical bridges being given back
        # Every connected switch by datapath id, managed or not. A switch can connect before
        # its host is registered: a controller started on an empty state, hosts registered
        # again in the same order get the same datapath ids, and OVS, seeing nothing change,
        # does not reconnect. Registration then takes over the connection already there.
        self._datapaths: dict[int, object] = {}
        self._ports_versions: dict[str, int] = {}
        self._snapshot = Snapshot()  # the last one seen: what a change changed is read from it
        # Per host, the compile units changed since its switch session last took its work;
        # None: rebuild the whole table.
        self._dirty: dict[str, set | None] = {}
        self._lock = threading.RLock()
        self._applied = threading.Condition(self._lock)
        self.ofctl_waiters = OfctlWaiters()
        self.metrics = FabricMetrics()
        self.metrics.watch(self)

    def start(self) -> None:
        self.leadership.subscribe(self._leadership_changed.set)
        self.leadership.start()
        self._controllers = tuple(self.leadership.controllers())
        self._follower.start()
        self.store.subscribe(self._store_changed)
        self._store_changed(self.store.snapshot())
        self._resolver.start()

    def stop(self) -> None:
        self._stopped.set()
        self._leadership_changed.set()
        self.leadership.stop()
        self._resolver.stop()
        with self._lock:
            switches = list(self.switches.values()) + list(self.physical_switches.values())
            sessions = list(self.ovsdb_sessions.values())
        for switch in switches:
            switch.stop()
        for session in sessions:
            session.stop()

    # ---- model changes ---------------------------------------------------------------------

    def _store_changed(self, snap: Snapshot, change: Change = EVERYTHING) -> None:
        with self._lock:
            previous, self._snapshot = self._snapshot, snap
            concerned = concerned_hosts(previous, snap, change)
            if change.hosts:
                self._hosts_changed(snap)
                self._dirty = dict.fromkeys(concerned)  # None: rebuild every table
                with_ports = concerned
            elif change.routers:
                # Rare, and it touches every endpoint of the router's networks: rebuild.
                self._dirty.update(dict.fromkeys(concerned))
                with_ports = set()
            else:
                units = touched_units(change)
                for name in concerned:
                    dirty = self._dirty.setdefault(name, set())
                    if dirty is not None:
                        dirty |= units
                # OVSDB has work only on the hosts of endpoints with a port.
                touched = [previous.endpoints.get(e) or snap.endpoints[e]
                           for e in change.endpoints]
                with_ports = {ep.host for ep in touched if ep.port} & concerned
            for name in with_ports:
                self._configure(name)
            for name in concerned:
                for switches in (self.switches, self.physical_switches):
                    switch = switches.get(name)
                    if switch is not None:
                        switch.kick()

    def _configure(self, name: str) -> None:
        snap = self._snapshot
        self.ovsdb_sessions[name].set_desired(host_config(
            snap, snap.hosts[name], self._controllers, name in self._physical_ready,
            self._next_hops.get(name)))

    # ---- leadership ----------------------------------------------------------------------------

    def leads(self) -> bool:
        return self.leadership.leads()

    def _writer(self) -> Writer:
        """Who this replica is for the hosts' databases now (ovsdb.fence): it writes only
        while it leads, under its term's generation when there are terms."""
        lead = self.leadership
        term = lead.term()
        return Writer(lead.leads(), term.generation if term is not None else None)

    def _follow_leadership(self) -> None:
        """Wakes every session after a change of term, leadership or members (the
        leadership's callback only sets an event), and tells the hosts of a change of
        members' targets."""
        while True:
            self._leadership_changed.wait()
            self._leadership_changed.clear()
            if self._stopped.is_set():
                return
            try:
                self._leadership_moved()
            except Exception:
                LOG.exception("following the leadership failed")

    def _leadership_moved(self) -> None:
        lead = self.leadership
        controllers = tuple(lead.controllers())
        LOG.info("leadership: term %s, %s, controllers %s", lead.term(),
                 "leading" if lead.leads() else "following", ", ".join(controllers))
        with self._lock:
            if controllers != self._controllers:
                self._controllers = controllers
                for name in self.ovsdb_sessions:
                    if name in self._snapshot.hosts:
                        self._configure(name)
            sessions = list(self.ovsdb_sessions.values())
            switches = [*self.switches.values(), *self.physical_switches.values()]
        for session in sessions:
            session.kick()  # the fence: claim the new generation, or stop writing
        for switch in switches:
            switch.kick()  # the role: MASTER or SLAVE in the new term

    def _hosts_changed(self, snap: Snapshot) -> None:
        for name in list(self.ovsdb_sessions):
            if name not in snap.hosts:
                self._forget_host(name)
        for host in snap.hosts.values():
            if host.name not in self.ovsdb_sessions:
                session = HostSession(host.name, host.ovsdb, self._ports_changed,
                                      self._writer)
                self.ovsdb_sessions[host.name] = session
                session.start()
            dp = self._datapaths.get(host.dpid)
            if host.name not in self.switches and dp is not None:
                self._manage(host.name, dp)
            dp = self._datapaths.get(host.physical_dpid)
            if host.name not in self.physical_switches and dp is not None:
                self._manage_physical(host.name, dp)

    def _forget_host(self, name: str) -> None:
        """A deleted host keeps no flows, tunnel ports or controller of ours."""
        session = self.ovsdb_sessions.pop(name)
        switch = self.switches.pop(name, None)
        if switch is not None:
            programs = switch.programs()
            switch.stop()
            if programs:  # a follower leaves the switch to the leader
                clear_flows(switch.dp)
        physical = self.physical_switches.pop(name, None)
        if physical is not None and not physical.programs():
            physical.stop()
            physical = None
        if physical is not None:
            # Its session answers replies until its flows are given back (session_for).
            self._retiring[physical.dp] = physical
        self._physical_ready.discard(name)
        self._next_hops.pop(name, None)
        desired = session.desired
        cleanup = cleanup_config(desired) if desired is not None else None
        threading.Thread(target=self._give_back, args=(session, cleanup, physical),
                         daemon=True).start()

    def _give_back(self, session: HostSession, cleanup, physical: SwitchSession | None) -> None:
        """The host's physical bridge gets its forwarding back, confirmed by a barrier, before
        OVSDB removes its controller (the flow mods would be lost with the connection)."""
        if physical is not None:
            clear_flows(physical.dp, keep_forwarding=True)
            try:
                physical.request(barrier_request(physical.dp), timeout=2)
            except Exception as exc:  # gone already: OVSDB still removes the rest
                LOG.warning("%s: giving its flows back unconfirmed: %s", physical.name, exc)
            physical.stop()
            with self._lock:
                self._retiring.pop(physical.dp, None)
        session.stop(cleanup)

    def _ports_changed(self, host: str) -> None:
        with self._lock:
            self._ports_versions[host] = self._ports_versions.get(host, 0) + 1
            switches = [self.switches.get(host), self.physical_switches.get(host)]
        for switch in switches:
            if switch is not None:
                switch.kick()

    # ---- switches ----------------------------------------------------------------------------

    def switch_connected(self, dp) -> None:
        with self._lock:
            self._datapaths[dp.id] = dp
            snap = self.store.snapshot()
            host = next((h for h in snap.hosts.values() if h.dpid == dp.id), None)
            if host is not None:
                self._manage(host.name, dp)
                return
            host = next((h for h in snap.hosts.values() if h.physical_dpid == dp.id), None)
            if host is not None:
                self._manage_physical(host.name, dp)
                return
            LOG.warning("switch %016x connected but belongs to no registered host: no "
                        "flows until a host with this datapath id is registered", dp.id)

    def _manage(self, host: str, dp) -> None:
        """Starts the session that keeps ``dp``'s table as host ``host`` needs it."""
        old = self.switches.get(host)
        if old is not None:
            old.stop()
        session = SwitchSession(dp, host, lambda: self._take_work(host),
                                lambda _session: self._wake_waiters(), self.metrics,
                                self.reply_timeout, leadership=self.leadership)
        self.switches[host] = session
        LOG.info("switch %016x of host %s connected", dp.id, host)
        self.metrics.switch_connects.labels(host).inc()
        session.start()

    def _manage_physical(self, host: str, dp) -> None:
        """Starts the session that keeps the host's physical bridge's table."""
        old = self.physical_switches.get(host)
        if old is not None:
            old.stop()
        name = f"{host}/{PHYSICAL_BRIDGE}"
        session = SwitchSession(dp, host, lambda: self._take_work(host, whole=True),
                                lambda s: self._physical_applied(host, s), self.metrics,
                                self.reply_timeout, table=PhysicalFlows(), name=name,
                                leadership=self.leadership)
        self.physical_switches[host] = session
        LOG.info("switch %016x, the physical bridge of host %s, connected", dp.id, host)
        self.metrics.switch_connects.labels(name).inc()
        session.start()

    def _physical_applied(self, host: str, session: SwitchSession) -> None:
        """The physical bridge has the controller's flows, their NORMAL among them: from now
        on it may keep them when the controller is away (fail_mode secure)."""
        with self._lock:
            if host not in self._physical_ready and host in self.ovsdb_sessions and \
                    self.physical_switches.get(host) is session:
                self._physical_ready.add(host)
                self._configure(host)
        self._wake_waiters()

    # ---- the egress next hop ------------------------------------------------------------------

    def _next_hop_queries(self) -> list[Query]:
        """The ARP requests the resolver may send: one per host whose physical bridge is
        connected and patched in, and whose host names a next hop."""
        queries = []
        with self._lock:
            for name, switch in self.physical_switches.items():
                if not switch.programs():  # packet-outs are the leader's, as flow mods are
                    continue
                session, host = self.ovsdb_sessions.get(name), self._snapshot.hosts.get(name)
                bridge = session.ports.physical if session is not None else None
                if host is None or bridge is None or bridge.next_hop is None:
                    continue
                queries.append(Query(name, switch.dp, bridge.uplink, bridge.mac,
                                     host.tunnel_ip, bridge.next_hop,
                                     bridge.next_hop_mac is not None))
        return queries

    def packet_in(self, dp, data: bytes) -> None:
        """A packet a switch sent up: an ARP reply of a physical bridge's next hop is its
        binding, kept in the host's OVSDB (and from there in the flows)."""
        sender = arp_reply_sender(data)
        if sender is None:
            return
        with self._lock:
            name = next((n for n, s in self.physical_switches.items() if s.dp is dp), None)
            session = self.ovsdb_sessions.get(name) if name is not None else None
            bridge = session.ports.physical if session is not None else None
            if bridge is None or bridge.next_hop != sender[0] or \
                    self._next_hops.get(name) == sender:
                return
            LOG.info("host %s: next hop %s is at %s", name, *sender)
            self._next_hops[name] = sender
            self._configure(name)

    def switch_disconnected(self, dp) -> None:
        with self._lock:
            if self._datapaths.get(dp.id) is dp:
                del self._datapaths[dp.id]
            for switches in (self.switches, self.physical_switches):
                for name, session in list(switches.items()):
                    if session.dp is dp:
                        session.stop()
                        del switches[name]
                        LOG.info("switch %016x (%s) disconnected", dp.id, session.name)
            self._applied.notify_all()  # requests waiting for it need not wait any more

    def session_for(self, dp) -> SwitchSession | None:
        with self._lock:
            sessions = [*self.switches.values(), *self.physical_switches.values(),
                        *self._retiring.values()]
        return next((s for s in sessions if s.dp is dp), None)

    def switch(self, host: str) -> SwitchSession:
        """The connected switch of a registered host, or an error saying why there is none."""
        self.store.get_host(host)
        with self._lock:
            session = self.switches.get(host)
        if session is None:
            raise Unavailable(f"host {host!r} has no OpenFlow connection to the controller")
        return session

    def physical_switch(self, host: str) -> SwitchSession | None:
        """The session of the host's physical bridge, if it is connected."""
        with self._lock:
            return self.physical_switches.get(host)

    def desired_table(self, host: str) -> dict | None:
        """What the host's table should hold now (None while its OVSDB view is not ready),
        compiled whole: the reference that audits hold the switches to."""
        return self._compiled_whole(host, compile_host)

    def desired_physical_table(self, host: str) -> dict | None:
        """The same for the host's physical bridge."""
        return self._compiled_whole(host, compile_physical)

    def _compiled_whole(self, host: str, compile_table) -> dict | None:
        with self._lock:
            session = self.ovsdb_sessions.get(host)
            if session is None or not session.synced or not self._ports_versions.get(host):
                return None
            snap, ports = self._snapshot, session.ports
        if host not in snap.hosts:
            return None
        return compile_table(snap, host, ports)

    def _take_work(self, host: str, whole: bool = False) -> Work | None:
        """What a switch session needs to bring its table up to date, taken atomically with
        the units changed since its last call (None while the host's OVSDB view is not
        ready: acting then could delete flows). ``whole``: for a table that is always
        rebuilt (the physical bridge's), which leaves the changed units to the other."""
        with self._lock:
            session = self.ovsdb_sessions.get(host)
            version = self._ports_versions.get(host, 0)
            if session is None or not session.synced or version == 0 or \
                    host not in self._snapshot.hosts:
                return None
            units = None if whole else self._dirty.pop(host, set())
            return Work(self._snapshot, session.ports, version, units)

    def port_holder(self, host: str, port: str) -> str | None:
        """What already holds OVS port ``port`` on ``host``, if anything does that an
        endpoint may not take over (as far as that host's database has been read)."""
        with self._lock:
            session = self.ovsdb_sessions.get(host)
        return session.taken_ports().get(port) if session is not None else None

    def port_error(self, host: str, endpoint_id: str) -> str | None:
        """Why OVS could not attach the endpoint's port, if it said so."""
        with self._lock:
            session = self.ovsdb_sessions.get(host)
        return session.ports.errors.get(endpoint_id) if session is not None else None

    def _wake_waiters(self) -> None:
        """A switch applied work: requests waiting for their flows look again."""
        with self._applied:
            self._applied.notify_all()

    # ---- status and waiting ------------------------------------------------------------------

    def host_status(self, name: str) -> dict:
        with self._lock:
            session = self.ovsdb_sessions.get(name)
            switch = self.switches.get(name)
        ovsdb_up = session is not None and session.synced
        return {
            "connected": bool(ovsdb_up and switch is not None),
            "ovsdb_connected": ovsdb_up,
            "openflow_connected": switch is not None,
            "dpid": f"{self.store.get_host(name).dpid:016x}",
            "flows": len(switch.installed) if switch and switch.installed is not None else None,
            # Since this controller process started; an unchanged table costs none.
            "flow_mods_sent": switch.flow_mods_sent if switch and switch.reconciles else None,
            "last_reconcile": switch.last_reconcile if switch else None,
            "error": session.last_error if session else None,
            "openflow_role": str(switch.role) if switch and switch.role else None,
            "physical": self._physical_status(name),
        }

    def _physical_status(self, name: str) -> dict | None:
        """The host's physical bridge as a switch of the controller's; None: not connected."""
        with self._lock:
            switch = self.physical_switches.get(name)
            ready = name in self._physical_ready
        if switch is None:
            return None
        return {"dpid": f"{switch.dpid:016x}",
                "flows": len(switch.installed) if switch.installed is not None else None,
                "flow_mods_sent": switch.flow_mods_sent if switch.reconciles else None,
                "last_reconcile": switch.last_reconcile, "fail_secure": ready}

    def wait_programmed(self, hosts: set[str], revision: int, bound: dict[str, str] | None = None,
                        timeout: float = 5.0) -> bool:
        """Waits until every connected host among ``hosts`` has applied ``revision``.

        ``bound`` maps endpoint id -> host for endpoints whose port must be attached and in the
        flows first. Hosts that are not connected are not waited for: they converge when
        they come back.
        """
        deadline = time.monotonic() + timeout
        if self.wait_on_leader is not None and not self.leadership.leads():
            # A follower programs nothing: the leader says when its switches have it. Elected
            # meanwhile (None), this replica programs them itself: it waits for its own.
            done = self.wait_on_leader(hosts, revision, bound or {}, timeout)
            if done is not None:
                return done
        with self._applied:
            while True:
                if all(self._host_done(h, revision, bound or {}) for h in hosts):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._applied.wait(remaining)

    def _host_done(self, host: str, revision: int, bound: dict[str, str]) -> bool:
        session, switch = self.ovsdb_sessions.get(host), self.switches.get(host)
        if session is None or switch is None or not session.synced:
            return True
        if not self.leads():
            # A follower's sessions send nothing: what the leader did is not seen from here
            # (yet), so, like a host that is not connected, it is not waited for.
            return True
        if switch.applied_revision < revision:
            return False
        physical = self.physical_switches.get(host)
        if physical is not None and physical.applied_revision < revision:
            return False
        for endpoint_id, ep_host in bound.items():
            ports = session.ports
            if ep_host == host and endpoint_id not in ports.endpoints and \
                    endpoint_id not in ports.errors:  # OVS gave up on it: nothing to wait for
                return False
        return switch.applied_ports_version >= self._ports_versions.get(host, 0)


def barrier_request(dp):
    return dp.ofproto_parser.OFPBarrierRequest(dp)


def clear_flows(dp, keep_forwarding: bool = False) -> None:
    """Deletes every flow of a switch the fabric no longer manages. ``keep_forwarding`` (a
    physical bridge, which the host needs): the bridge first gets back the one NORMAL flow a
    new bridge has, in place of the controller's, then the controller's flows go, by their
    cookies, so forwarding never stops."""
    from os_ken.ofproto import ofproto_v1_3 as ofp
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    def delete(cookie: int = 0, cookie_mask: int = 0):
        return parser.OFPFlowMod(dp, cookie=cookie, cookie_mask=cookie_mask,
                                 table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
                                 out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                                 match=parser.OFPMatch())
    try:
        if not keep_forwarding:
            messages = [delete()]
        else:
            normal = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [
                parser.OFPActionOutput(ofp.OFPP_NORMAL, max_len=0)])]
            kind_mask = 0xFF << COOKIE_KIND_SHIFT
            messages = [parser.OFPFlowMod(dp, table_id=0, priority=0, command=ofp.OFPFC_ADD,
                                          match=parser.OFPMatch(), instructions=normal)]
            messages += [delete(cookie(kind), kind_mask) for kind in ("host", "endpoint")]
        for message in messages:
            dp.send_msg(message)
    except Exception as exc:
        LOG.warning("could not clear flows of %016x: %s", dp.id, exc)
