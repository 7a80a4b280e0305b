"""The fabric service: joins the store, the hosts' OVSDB sessions and the switches' sessions.

The store is the truth. Every committed change recomputes the OVSDB configuration of the
hosts whose ports it touched (compared before anything is sent), records which compile units
(networks, endpoints) it touched on each host of the networks concerned, and wakes those hosts'
switch sessions, which recompile just those units and send only the difference.
"""
from __future__ import annotations

import logging
import threading
import time

from flows import compile_host
from flows.host_flows import concerned_hosts, touched_units
from model import Snapshot, Store, Unavailable
from model.entities import EVERYTHING, Change
from ovsdb.config import HostConfig, host_config
from ovsdb.session import HostSession

from .metrics import FabricMetrics
from .ofctl_waiters import OfctlWaiters
from .switch import REPLY_TIMEOUT_S, SwitchSession, Work

LOG = logging.getLogger(__name__)


class Fabric:
    def __init__(self, store: Store, advertise: str, reply_timeout: float = REPLY_TIMEOUT_S):
        self.store = store
        self.advertise = advertise
        self.reply_timeout = reply_timeout  # how long a request waits for a switch's answer
        self.ovsdb_sessions: dict[str, HostSession] = {}  # by host name
        self.switches: dict[str, SwitchSession] = {}  # by host name
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
        self.store.subscribe(self._store_changed)
        self._store_changed(self.store.snapshot())

    def stop(self) -> None:
        with self._lock:
            switches = list(self.switches.values())
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
                self.ovsdb_sessions[name].set_desired(
                    host_config(snap, snap.hosts[name], self.advertise))
            for name in concerned:
                switch = self.switches.get(name)
                if switch is not None:
                    switch.kick()

    def _hosts_changed(self, snap: Snapshot) -> None:
        for name in list(self.ovsdb_sessions):
            if name not in snap.hosts:
                self._forget_host(name)
        for host in snap.hosts.values():
            if host.name not in self.ovsdb_sessions:
                session = HostSession(host.name, host.ovsdb, self._ports_changed)
                self.ovsdb_sessions[host.name] = session
                session.start()
            dp = self._datapaths.get(host.dpid)
            if host.name not in self.switches and dp is not None:
                self._manage(host.name, dp)

    def _forget_host(self, name: str) -> None:
        """A deleted host keeps no flows, tunnel ports or controller of ours."""
        session = self.ovsdb_sessions.pop(name)
        switch = self.switches.pop(name, None)
        if switch is not None:
            switch.stop()
            clear_flows(switch.dp)
        desired = session.desired
        cleanup = None
        if desired is not None:
            cleanup = HostConfig(desired.bridge, desired.datapath_type, desired.dpid,
                                 controller="")
        threading.Thread(target=session.stop, args=(cleanup,), daemon=True).start()

    def _ports_changed(self, host: str) -> None:
        with self._lock:
            self._ports_versions[host] = self._ports_versions.get(host, 0) + 1
            switch = self.switches.get(host)
        if switch is not None:
            switch.kick()

    # ---- switches ----------------------------------------------------------------------------

    def switch_connected(self, dp) -> None:
        with self._lock:
            self._datapaths[dp.id] = dp
            snap = self.store.snapshot()
            host = next((h for h in snap.hosts.values() if h.dpid == dp.id), None)
            if host is None:
                LOG.warning("switch %016x connected but belongs to no registered host: no "
                            "flows until a host with this datapath id is registered", dp.id)
                return
            self._manage(host.name, dp)

    def _manage(self, host: str, dp) -> None:
        """Starts the session that keeps ``dp``'s table as host ``host`` needs it."""
        old = self.switches.get(host)
        if old is not None:
            old.stop()
        session = SwitchSession(dp, host, lambda: self._take_work(host),
                                lambda _session: self._wake_waiters(), self.metrics,
                                self.reply_timeout)
        self.switches[host] = session
        LOG.info("switch %016x of host %s connected", dp.id, host)
        self.metrics.switch_connects.labels(host).inc()
        session.start()

    def switch_disconnected(self, dp) -> None:
        with self._lock:
            if self._datapaths.get(dp.id) is dp:
                del self._datapaths[dp.id]
            for name, session in list(self.switches.items()):
                if session.dp is dp:
                    session.stop()
                    del self.switches[name]
                    LOG.info("switch %016x of host %s disconnected", dp.id, name)
            self._applied.notify_all()  # requests waiting for it need not wait any more

    def session_for(self, dp) -> SwitchSession | None:
        with self._lock:
            return next((s for s in self.switches.values() if s.dp is dp), None)

    def switch(self, host: str) -> SwitchSession:
        """The connected switch of a registered host, or an error saying why there is none."""
        self.store.get_host(host)
        with self._lock:
            session = self.switches.get(host)
        if session is None:
            raise Unavailable(f"host {host!r} has no OpenFlow connection to the controller")
        return session

    def desired_table(self, host: str) -> dict | None:
        """What the host's table should hold now (None while its OVSDB view is not ready),
        compiled whole: the reference that audits hold the switches to."""
        with self._lock:
            session = self.ovsdb_sessions.get(host)
            if session is None or not session.synced or not self._ports_versions.get(host):
                return None
            snap, ports = self._snapshot, session.ports
        if host not in snap.hosts:
            return None
        return compile_host(snap, host, ports)

    def _take_work(self, host: str) -> Work | None:
        """What a switch session needs to bring its table up to date, taken atomically with
        the units changed since its last call (None while the host's OVSDB view is not
        ready: acting then could delete flows)."""
        with self._lock:
            session = self.ovsdb_sessions.get(host)
            version = self._ports_versions.get(host, 0)
            if session is None or not session.synced or version == 0 or \
                    host not in self._snapshot.hosts:
                return None
            units = self._dirty.pop(host, set())
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
        }

    def wait_programmed(self, hosts: set[str], revision: int, bound: dict[str, str] | None = None,
                        timeout: float = 5.0) -> bool:
        """Waits until every connected host among ``hosts`` has applied ``revision``.

        ``bound`` maps endpoint id -> host for endpoints whose port must be attached and in the
        flows first. Hosts that are not connected are not waited for: they converge when
        they come back.
        """
        deadline = time.monotonic() + timeout
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
        if switch.applied_revision < revision:
            return False
        for endpoint_id, ep_host in bound.items():
            ports = session.ports
            if ep_host == host and endpoint_id not in ports.endpoints and \
                    endpoint_id not in ports.errors:  # OVS gave up on it: nothing to wait for
                return False
        return switch.applied_ports_version >= self._ports_versions.get(host, 0)


def clear_flows(dp) -> None:
    """Deletes every flow of a switch the fabric no longer manages."""
    from os_ken.ofproto import ofproto_v1_3 as ofp
    from os_ken.ofproto import ofproto_v1_3_parser as parser
    try:
        dp.send_msg(parser.OFPFlowMod(dp, table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
                                      out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                                      match=parser.OFPMatch()))
    except Exception as exc:
        LOG.warning("could not clear flows of %016x: %s", dp.id, exc)
