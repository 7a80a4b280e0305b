"""One OVSDB session per host: keeps the host's Open vSwitch configured as the store says.

The session watches the host's database (python-ovs IDL, reconnecting by itself) and turns
the difference between the desired HostConfig and what the database holds into one ovsdbapp
transaction, so that ovs-vswitchd reconfigures the bridge once per change, not once per port.
It also reports the OpenFlow port numbers of endpoint and tunnel interfaces, which the flow
compiler needs.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Mapping

from ovs.db import idl
from ovsdbapp.backend.ovs_idl import command, connection, idlutils, transaction
from ovsdbapp.schema.open_vswitch import impl_idl

from flows.compiler import HostPorts
from flows.egress import PhysicalBridge

from . import poll
from .fence import GENERATION_KEY, STANDALONE, Fenced, Verdict, Writer, seen_generation, verdict
from .config import (IFACE_ID_KEY, NEXT_HOP_BINDING_KEY, NEXT_HOP_KEY, OWNED_KEY, PATCH_KEY,
                     PATCH_TO_INTEGRATION, PATCH_TO_PHYSICAL, PEER_KEY, HostConfig,
                     next_hop_binding)
from .rows import RowCache

poll.use_poll()

LOG = logging.getLogger(__name__)

TXN_TIMEOUT_S = 10
RETRY_S = 1.0
SAFETY_RECHECK_S = 30
# Only the columns the session reads or writes: ovs-vswitchd rewrites status and statistics
# columns every few seconds (Controller.status among them), and each update would make the
# session re-read every port of the host.
COLUMNS = {
    "Open_vSwitch": ["bridges", "external_ids"],  # external_ids: the fence (ovsdb.fence)
    "Bridge": ["name", "ports", "controller", "datapath_type", "datapath_id", "fail_mode",
               "protocols", "other_config", "external_ids"],
    "Port": ["name", "interfaces"],
    "Interface": ["name", "type", "options", "external_ids", "ofport", "ofport_request",
                  "error", "mtu_request", "mac_in_use"],
    "Controller": ["target", "max_backoff", "inactivity_probe", "connection_mode"],
}
# The controller must come back fast after a restart: OVS's default backoff reaches 8 s.
CONTROLLER_SETTINGS = {"max_backoff": 1000, "inactivity_probe": 5000}
# The physical bridge carries the underlay: in-band control would add hidden flows of its own.
PHYSICAL_CONTROLLER_SETTINGS = CONTROLLER_SETTINGS | {"connection_mode": "out-of-band"}
BRIDGE_SETTINGS = ("datapath-id", "disable-in-band")  # the other_config keys the controller sets


# Columns ovs-vswitchd writes back once it has acted on a change: they feed the port view,
# but there is nothing to plan when only they changed (a plan reads every port of the bridge).
REPORTED_COLUMNS = {("Interface", "ofport"), ("Interface", "error"),
                    ("Interface", "mac_in_use")}


class _WatchedIdl(connection.OvsdbIdl):
    """An IDL that calls ``on_change`` after every run() that changed its contents, and says
    whether any change was more than OVS reporting back (``needs_plan``)."""

    on_change: Callable[[], None] | None = None
    needs_plan = True
    rows: RowCache | None = None

    def notify(self, event, row, updates=None):
        if self.rows is not None:
            self.rows.forget(row.uuid)
        if event != idl.ROW_UPDATE or updates is None or any(
                (row._table.name, column) not in REPORTED_COLUMNS for column in updates._data):
            self.needs_plan = True

    def run(self):
        before = self.change_seqno
        result = super().run()
        if self.change_seqno != before and self.on_change is not None:
            self.on_change()
        return result


class _Converge(command.BaseCommand):
    """Plans and applies the changes inside the IDL's own thread, reading a consistent copy."""

    def __init__(self, api, plan: Callable[[], tuple[list, bool]]):
        super().__init__(api)
        self.plan = plan
        self.again = False

    def run_idl(self, txn):
        commands, self.again = self.plan()
        for cmd in commands:
            cmd.run_idl(txn)
        self.result = len(commands)


class _Transaction(transaction.Transaction):
    """A plain transaction: ovsdbapp's vsctl one bumps next_cfg even when nothing changes,
    which would make ovs-vswitchd reconfigure the bridge on every check."""

    def pre_commit(self, txn):
        txn.expected_ifaces = set()  # ovsdbapp's add_port records new interfaces here


class HostSession:
    """``writer()`` says whether this replica may write the host's database now, and under
    which generation (ovsdb.fence); by default it always may, unfenced (a single controller).
    A replica that does not lead keeps reading the database (its port view) and writes nothing."""

    def __init__(self, name: str, target: str, on_ports_changed: Callable[[str], None],
                 writer: Callable[[], Writer] = lambda: STANDALONE):
        self.name = name
        self.target = target
        self._writer = writer
        # The later generation the host's database held when this replica last tried to
        # write under its own: it writes nothing until it has a term at least that recent.
        self.fenced_by: int | None = None
        self._on_ports_changed = on_ports_changed  # called with the host's name
        self._desired: HostConfig | None = None
        self._api = None
        self._idl: _WatchedIdl | None = None
        self._ports = HostPorts()
        self._taken: Mapping[str, str] = {}  # see taken_ports
        self._rows = RowCache()
        self._published = False  # the first complete view is published even when empty
        self._wake = threading.Event()
        self._stopped = threading.Event()
        # Held while the session's thread applies its desired config. stop() takes it to retire
        # the thread first, so that a deleted host's cleanup is the last thing applied: the
        # thread, woken by the cleanup's own changes, would otherwise put the old config back.
        self._apply_lock = threading.Lock()
        self._retired = False
        self._thread = threading.Thread(target=self._run, name=f"ovsdb-{name}", daemon=True)
        self.last_error: str | None = None

    # ---- public ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, cleanup: HostConfig | None = None) -> None:
        """Stop the session; with ``cleanup``, first remove what the controller created."""
        if cleanup is None:
            self._retired = True
        else:
            with self._apply_lock:  # waits for an apply in progress, then there is none
                self._retired = True
        if cleanup is not None and self.synced:
            try:
                self._apply(cleanup)
            except Exception as exc:  # the host may be gone already
                LOG.warning("host %s: cleanup failed: %s", self.name, exc)
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout=5)
        if self._api is not None:
            self._api.ovsdb_connection.stop(timeout=2)

    def set_desired(self, config: HostConfig) -> None:
        if config != self._desired:
            self._desired = config
            self._wake.set()

    def kick(self) -> None:
        """Look again: the writer (leadership, term) changed."""
        self._wake.set()

    @property
    def desired(self) -> HostConfig | None:
        return self._desired

    @property
    def connected(self) -> bool:
        idl = self._idl
        return idl is not None and idl._session.is_connected()

    @property
    def synced(self) -> bool:
        """Connected, with a complete copy of the database: safe to act on its view."""
        idl = self._idl
        return self.connected and idl.state == idl.IDL_S_MONITORING

    @property
    def ports(self) -> HostPorts:
        return self._ports

    def taken_ports(self) -> Mapping[str, str]:
        """Port and interface names an endpoint may not have, each with what holds it: the
        bridge's own interface, our tunnels, and ports ovsfabric did not make, on any bridge.
        Empty until the session has read the database."""
        return self._taken

    # ---- the session's thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.is_set():
            if self._api is None:
                try:
                    self._connect()
                except Exception as exc:
                    self.last_error = f"cannot connect to {self.target}: {exc}"
                    LOG.debug("host %s: %s", self.name, self.last_error)
                    self._stopped.wait(RETRY_S)
                    continue
            # Woken by model changes and by every change in the host's database (so drift made
            # by others is repaired at once); the timeout is only a safety net.
            self._wake.wait(timeout=SAFETY_RECHECK_S)
            self._wake.clear()
            if self._stopped.is_set() or self._desired is None or not self.synced:
                continue
            if not self._may_write():
                continue  # nothing to plan: a follower's, or a fenced replica's
            try:
                with self._apply_lock:
                    if self._retired:
                        return
                    self._apply(self._desired)
                self.last_error = None
            except Fenced as exc:
                # Nothing was written (a transaction in flight when the later leader took the
                # fence); a later term (a kick) or a change of the database wakes the session.
                self.last_error = str(exc)
                LOG.warning("host %s: %s: writing nothing", self.name, exc)
            except Exception as exc:
                self.last_error = str(exc)
                LOG.warning("host %s: OVSDB transaction failed: %s", self.name, exc)
                self._wake.set()
                self._stopped.wait(RETRY_S)

    def _may_write(self) -> bool:
        """Whether to plan a transaction at all, as far as the IDL's copy tells: not as a
        follower, nor under a generation older than the host's. Only a shortcut: the plan
        decides again inside the transaction (_plan_fence), which the server verifies."""
        writer = self._writer()
        if not writer.leads:
            return False
        if writer.generation is None:
            return True
        try:
            row = next(iter(self._idl.tables["Open_vSwitch"].rows.values()), None)
            seen = seen_generation(row.external_ids) if row is not None else None
        except RuntimeError:  # the IDL's thread changed the table meanwhile: let the plan say
            return True
        if verdict(writer, seen) is Verdict.FENCED:
            if self.fenced_by != seen:
                self.last_error = str(Fenced(writer.generation, seen))
                LOG.warning("host %s: %s: writing nothing", self.name, self.last_error)
            self.fenced_by = seen
            return False
        return True

    def _connect(self) -> None:
        helper = idlutils.get_schema_helper(self.target, "Open_vSwitch")
        for table, columns in COLUMNS.items():
            helper.register_columns(table, columns)
        idl = _WatchedIdl(self.target, helper)
        idl.on_change = self._idl_changed
        idl.rows = self._rows = RowCache()
        conn = connection.Connection(idl, timeout=TXN_TIMEOUT_S)
        # ovsdbapp keeps the connection on the API class: one class per host keeps the
        # sessions of different hosts apart.
        api_class = type(f"HostOvsdb_{self.name}", (impl_idl.OvsdbIdl,), {})
        self._idl = idl
        self._api = api_class(conn)
        self._idl_changed()
        self._wake.set()

    def _idl_changed(self) -> None:
        """Runs in the IDL's thread after each change: publish the port view, re-check config."""
        if not self.synced:
            return
        ports, self._taken = self._read_ports()
        LOG.debug("host %s: database changed", self.name)
        if ports != self._ports or not self._published:
            self._ports = ports
            self._published = True
            self._on_ports_changed(self.name)
        if self._idl.needs_plan:
            self._idl.needs_plan = False
            self._wake.set()

    # ---- reading the database --------------------------------------------------------------

    def _bridge_row(self):
        if self._idl is None or self._desired is None:
            return None
        return self._named_bridge(self._desired.bridge)

    def _named_bridge(self, name: str):
        rows = self._idl.tables["Bridge"].rows.values()
        return next((b for b in rows if b.name == name), None)

    def _physical_row(self):
        desired = self._desired
        if self._idl is None or desired is None or desired.physical is None:
            return None
        return self._named_bridge(desired.physical.bridge)

    def _read_ports(self) -> tuple[HostPorts, dict[str, str]]:
        """The port view of our bridge, and the names an endpoint may not take (see
        taken_ports), read in one pass over the database."""
        bridge = self._bridge_row()
        endpoints: dict[str, int] = {}
        tunnels: dict[str, int] = {}
        errors: dict[str, str] = {}
        taken: dict[str, str] = {}
        patch = None  # the patch port's number on our bridge
        for other in self._idl.tables["Bridge"].rows.values():
            if other is not bridge:
                for port in map(self._rows.port, other.ports):
                    names = [port.name, *(self._rows.interface(i).name for i in port.interfaces)]
                    taken.update(dict.fromkeys(names, f"a port of bridge {other.name}"))
        if bridge is None:
            return HostPorts(), taken
        for port in map(self._rows.port, bridge.ports):
            for iface in map(self._rows.interface, port.interfaces):
                ids = iface.external_ids
                if port.name == bridge.name:
                    holder = f"the own interface of bridge {bridge.name}"
                elif PATCH_KEY in ids:
                    holder = "the patch to the physical bridge"
                elif PEER_KEY in ids:
                    holder = f"the tunnel port to {ids[PEER_KEY]}"
                elif OWNED_KEY not in ids:
                    holder = f"a port of bridge {bridge.name} that ovsfabric did not make"
                else:
                    holder = None  # an endpoint's: the store knows whether it is still in use
                if holder is not None:
                    taken[port.name] = taken[iface.name] = holder
                ofport = iface.ofport
                if port.name == PATCH_TO_PHYSICAL:
                    patch = ofport
                if ofport <= 0:
                    if iface.error and OWNED_KEY in ids and IFACE_ID_KEY in ids:
                        errors[ids[IFACE_ID_KEY]] = iface.error
                    continue
                if PEER_KEY in ids:
                    tunnels[ids[PEER_KEY]] = ofport
                elif IFACE_ID_KEY in ids:
                    endpoints[ids[IFACE_ID_KEY]] = ofport
        return HostPorts(endpoints, tunnels, errors, self._read_physical(patch)), taken

    def _read_physical(self, patch: int | None) -> PhysicalBridge | None:
        """The physical bridge and the patch to it, once OVS numbered both ends; None while
        anything is missing, or when the uplink is not the one port besides them."""
        physical = self._physical_row()
        if physical is None:
            return None
        peer = mac = None
        uplinks = []
        for port in map(self._rows.port, physical.ports):
            for iface in map(self._rows.interface, port.interfaces):
                if port.name == physical.name:
                    mac = iface.mac_in_use
                elif iface.name == PATCH_TO_INTEGRATION:
                    peer = iface.ofport
                else:
                    uplinks.append(iface.ofport)
        if None in (patch, peer, mac) or patch <= 0 or peer <= 0 or len(uplinks) != 1 \
                or uplinks[0] <= 0:
            return None
        next_hop = physical.external_ids.get(NEXT_HOP_KEY)
        binding = next_hop_binding(physical.external_ids.get(NEXT_HOP_BINDING_KEY))
        # A binding of another address than the one named now is stale: not used.
        next_hop_mac = binding[1] if binding and next_hop and binding[0] == next_hop else None
        return PhysicalBridge(patch, peer, uplinks[0], mac, next_hop_mac, next_hop)


    # ---- converging the database -------------------------------------------------------------

    def _apply(self, desired: HostConfig) -> None:
        # A new bridge or controller row can only be adjusted once it exists: a few passes
        # then, one otherwise.
        for _ in range(4):
            started = time.monotonic()
            txn = _Transaction(self._api, self._api.ovsdb_connection,
                                          TXN_TIMEOUT_S, check_error=True)
            converge = txn.add(_Converge(self._api, lambda: self._plan(desired)))
            txn.commit()
            if not converge.result:
                return
            LOG.info("host %s: %d OVSDB change(s) in %.0f ms", self.name, converge.result,
                     (time.monotonic() - started) * 1000)
            if not converge.again:
                return

    def _plan(self, desired: HostConfig) -> tuple[list, bool]:
        """The fence first (ovsdb.fence): nothing at all unless this replica leads, and, under
        a generation, a transaction that verifies the host still holds it (claiming it first
        if the host holds an older one). Then the commands that make the database as
        desired, and whether they create rows that a second pass must then adjust."""
        fence, allowed = self._plan_fence()
        if not allowed:
            return [], False
        commands, again = self._plan_config(desired)
        # The claim goes out even when nothing else changes: it is what refuses a deposed
        # leader's transactions from now on.
        return fence + commands, again

    def _plan_fence(self) -> tuple[list, bool]:
        """The commands the fence adds (the claim of our generation, if any) and whether this
        replica may write at all. Runs in the IDL's thread, inside the transaction: the
        verify makes the server refuse the whole transaction if the fence changed since it
        was read here (TRY_AGAIN: ovsdbapp plans again, and sees the change)."""
        writer = self._writer()
        row = next(iter(self._idl.tables["Open_vSwitch"].rows.values()), None)
        seen = seen_generation(row.external_ids) if row is not None else None
        decision = verdict(writer, seen)
        if decision is Verdict.FOLLOWER:
            return [], False
        if decision is Verdict.UNFENCED:
            return [], True
        if row is None:  # an uninitialised database: nothing to fence on, nothing to write
            return [], False
        if decision is Verdict.FENCED:
            self.fenced_by = seen
            raise Fenced(writer.generation, seen)
        self.fenced_by = None
        row.verify("external_ids")
        if decision is Verdict.CLAIM:
            LOG.info("host %s: taking the OVSDB fence at generation %d (it held %s)",
                     self.name, writer.generation, seen)
            return [self._api.db_set("Open_vSwitch", row.uuid, (
                "external_ids", {GENERATION_KEY: str(writer.generation)}))], True
        return [], True

    def _plan_config(self, desired: HostConfig) -> tuple[list, bool]:
        api = self._api
        bridge = self._bridge_row()
        if bridge is None:
            return [api.add_br(desired.bridge, datapath_type=desired.datapath_type)], True
        commands, again = self._plan_bridge(bridge, desired)
        rows = self._rows
        existing = {p.name: p for p in map(rows.port, bridge.ports)}
        wanted: set[str] = set()
        for tunnel in desired.tunnels:
            wanted.add(tunnel.name)
            options = {"remote_ip": tunnel.remote_ip, "key": "flow"}
            ids = {PEER_KEY: tunnel.peer}
            port = existing.get(tunnel.name)
            if port is None:
                commands.append(api.add_port(desired.bridge, tunnel.name, type="vxlan",
                                             options=options, external_ids=ids))
                continue
            iface = rows.interface(port.interfaces[0])
            if iface.type != "vxlan" or iface.options != options or iface.external_ids != ids:
                commands.append(api.db_set("Interface", iface.uuid, ("type", "vxlan"),
                                           ("options", options), ("external_ids", ids)))
        for name, (endpoint_id, ofport) in desired.endpoint_ports.items():
            wanted.add(name)
            port = existing.get(name)
            ids = {IFACE_ID_KEY: endpoint_id, OWNED_KEY: "true"}
            if port is None:
                commands.append(api.add_port(desired.bridge, name, external_ids=ids,
                                             ofport_request=ofport))
                continue
            iface = rows.interface(port.interfaces[0])
            if any(iface.external_ids.get(k) != v for k, v in ids.items()) or \
                    iface.ofport_request != [ofport]:
                commands.append(api.db_set("Interface", iface.uuid,
                                           ("external_ids", {**iface.external_ids, **ids}),
                                           ("ofport_request", ofport)))
        physical = self._physical_row()
        if physical is not None and desired.controllers:
            wanted.add(PATCH_TO_PHYSICAL)
            commands += self._plan_patch(existing, desired.bridge, PATCH_TO_PHYSICAL,
                                         PATCH_TO_INTEGRATION)
        for name, port in existing.items():
            ours = any(PEER_KEY in i.external_ids or OWNED_KEY in i.external_ids
                       for i in map(rows.interface, port.interfaces))
            if ours and name not in wanted:
                commands.append(api.del_port(name, desired.bridge))
        if physical is not None:
            more, again_physical = self._plan_physical(physical, desired)
            commands += more
            again = again or again_physical
        return commands, again

    def _plan_patch(self, existing: dict, bridge: str, name: str, peer: str) -> list:
        options = {"peer": peer}
        ids = {OWNED_KEY: "true", PATCH_KEY: "physical"}
        port = existing.get(name)
        if port is None:
            return [self._api.add_port(bridge, name, type="patch", options=options,
                                       external_ids=ids)]
        iface = self._rows.interface(port.interfaces[0])
        if iface.type != "patch" or iface.options != options or \
                any(iface.external_ids.get(k) != v for k, v in ids.items()):
            return [self._api.db_set("Interface", iface.uuid, ("type", "patch"),
                                     ("options", options),
                                     ("external_ids", {**iface.external_ids, **ids}))]
        return []

    def _plan_physical(self, bridge, desired: HostConfig) -> tuple[list, bool]:
        """The physical bridge: the patch's other end, its controller (out of band), its
        datapath id, and fail_mode secure once asked; with no controller (a host's cleanup),
        all of that removed again. The bridge itself is the host's: never created here."""
        api, conf = self._api, desired.physical
        existing = {p.name: p for p in map(self._rows.port, bridge.ports)}
        if not desired.controllers:
            commands = []
            if PATCH_TO_INTEGRATION in existing:
                commands.append(api.del_port(PATCH_TO_INTEGRATION, conf.bridge))
            if bridge.controller:
                commands.append(api.del_controller(conf.bridge))
            if bridge.fail_mode == ["secure"]:
                commands.append(api.db_set("Bridge", bridge.uuid,
                                           ("fail_mode", "standalone")))  # what it does alone
            # db_set adds to a map column: keys are removed one by one.
            ours = [k for k in BRIDGE_SETTINGS if k in bridge.other_config]
            if ours:
                commands.append(api.db_remove("Bridge", bridge.uuid, "other_config", *ours))
            if NEXT_HOP_BINDING_KEY in bridge.external_ids:
                commands.append(api.db_remove("Bridge", bridge.uuid, "external_ids",
                                              NEXT_HOP_BINDING_KEY))
            return commands, False
        commands = self._plan_patch(existing, conf.bridge, PATCH_TO_INTEGRATION,
                                    PATCH_TO_PHYSICAL)
        changes = []
        if list(bridge.protocols) != ["OpenFlow13"]:
            changes.append(("protocols", ["OpenFlow13"]))
        other = {"datapath-id": conf.datapath_id, "disable-in-band": "true"}
        if any(bridge.other_config.get(k) != v for k, v in other.items()):
            changes.append(("other_config", {**bridge.other_config, **other}))
        if conf.secure and bridge.fail_mode != ["secure"]:
            changes.append(("fail_mode", "secure"))
        if conf.next_hop is not None:
            binding = "=".join(conf.next_hop)
            if bridge.external_ids.get(NEXT_HOP_BINDING_KEY) != binding:
                changes.append(("external_ids", {**bridge.external_ids,
                                                 NEXT_HOP_BINDING_KEY: binding}))
        if changes:
            commands.append(api.db_set("Bridge", bridge.uuid, *changes))
        more, again = self._plan_controller(bridge, conf.bridge, desired.controllers,
                                            PHYSICAL_CONTROLLER_SETTINGS)
        return commands + more, again

    def _plan_bridge(self, bridge, desired: HostConfig) -> tuple[list, bool]:
        api = self._api
        commands = []
        changes = []
        if bridge.datapath_type != desired.datapath_type:
            changes.append(("datapath_type", desired.datapath_type))
        if bridge.fail_mode != ["secure"]:
            changes.append(("fail_mode", "secure"))
        if list(bridge.protocols) != ["OpenFlow13"]:
            changes.append(("protocols", ["OpenFlow13"]))
        other = {"datapath-id": desired.datapath_id, "disable-in-band": "true"}
        if any(bridge.other_config.get(k) != v for k, v in other.items()):
            changes.append(("other_config", {**bridge.other_config, **other}))
        if changes:
            commands.append(api.db_set("Bridge", bridge.uuid, *changes))
        more, again = self._plan_controller(bridge, desired.bridge, desired.controllers,
                                            CONTROLLER_SETTINGS)
        return commands + more, again

    def _plan_controller(self, bridge, name: str, targets: tuple[str, ...],
                         settings: dict) -> tuple[list, bool]:
        """Every replica's target on the bridge (one Controller row each), each row with
        ``settings``."""
        wanted = sorted(targets)
        if sorted(c.target for c in bridge.controller) != wanted:
            # Their settings are made once they exist: a second pass.
            return [self._api.set_controller(name, wanted)], bool(wanted)
        commands = []
        for ctl in bridge.controller:
            stale = [(k, v) for k, v in settings.items() if getattr(ctl, k) != [v]]
            if stale:
                commands.append(self._api.db_set("Controller", ctl.uuid, *stale))
        return commands, False
