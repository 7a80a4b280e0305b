"""The two systems behind one small interface, so that bench/compare.py measures both with
the same code. Each side owns a lab of identical topology (see bench/ovn_lab.py for why two
labs), one measured network `bench` (10.60.0.0/16 on both) and a pinging container on h2.

    up() / down()                   build / remove everything (leftovers of killed runs too)
    attach(c, i) / detach(c, i)     the measured API call(s) for container c with address i
    populate(indices)               background endpoints on internal ports, spread over the
                                    hosts (or the hosts named); returns phase times;
                                    converged when it returns
    depopulate(indices)             removes background endpoints again
    control_pids()                  control-plane processes by role, for CPU and RSS
    stop_control / start_control    a control-plane restart; then wait_reconciled() (every
                                    host, table unchanged) or wait_host_programmed() (one
                                    host whose table was wiped)
    api_rate(indices) / api_cleanup()   8 concurrent clients add endpoints; remove them

add_lab_options(parser) / make_sides(args): the labs' prefixes, subnets and ports as
command-line options, so that two benchmarks (or two people) can run at once.
"""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
import time

from common import (PROBER, SUBNET, add_internal_ports, ip_for, last_log_time, mac_for,
                    on_each_host, progress, wait_ports_programmed)
from lab import Lab
from lab.controller import ControllerProcess
from lab.proc import alive, cmdline, read_pidfile, stop_pid
from ovn_lab import INT_BRIDGE, OvnLab

CLIENTS = 8  # concurrent REST clients: the API figure, and how ovsfabric fills up


def _by_host(hosts, indices, only: list[str] | None = None) -> dict:
    """Background endpoint i goes to host i mod N (the same placement on both sides), N the
    hosts named in `only` if given."""
    placed = {h.name: [] for h in hosts}
    hosts = [h for h in hosts if only is None or h.name in only]
    for i in indices:
        placed[hosts[i % len(hosts)].name].append(i)
    return placed


def _remove_internal_ports(hosts, bridge: str, host_of: dict[int, str]) -> None:
    """Background ports b<i> of the given indices, one OVSDB transaction per host (deleting a
    port of the userspace datapath costs ~18 ms each: not one by one)."""
    def remove(h):
        args: list[str] = []
        for i, name in host_of.items():
            if name == h.name:
                args += ["--", "del-port", bridge, f"b{i}"]
        if args:
            h.vsctl(*args, timeout=300)
    on_each_host(remove, hosts)


def add_lab_options(parser, fabric_prefix: str = "ovfbn", ovn_prefix: str = "ovnb") -> None:
    g = parser.add_argument_group("labs (namespaces, links and addresses of their own)")
    g.add_argument("--fabric-prefix", default=fabric_prefix, help="ovsfabric lab's prefix")
    g.add_argument("--fabric-underlay", default="198.18.90.0/24")
    g.add_argument("--fabric-mgmt", default="198.18.91.0/24",
                   help="the controller listens on its first address")
    g.add_argument("--api-port", type=int, default=18790)
    g.add_argument("--openflow-port", type=int, default=16790)
    g.add_argument("--ovn-prefix", default=ovn_prefix, help="OVN lab's prefix")
    g.add_argument("--ovn-underlay", default="198.18.92.0/24")
    g.add_argument("--ovn-mgmt", default="198.18.93.0/24", help="built by the lab, unused")


def make_sides(args) -> list:
    """ovsfabric first, then OVN: the order every step measures them in."""
    return [FabricSide(args.hosts, args.fabric_prefix, args.api_port, args.openflow_port,
                       args.fabric_underlay, args.fabric_mgmt),
            OvnSide(args.hosts, args.ovn_prefix, args.ovn_underlay, args.ovn_mgmt)]


class FabricSide:
    name = "ovsfabric"
    bridge = "br-int"
    of_version = "OpenFlow13"  # the controller restricts its bridges to 1.3
    mtu = 1450                 # the network's default: 1500 less VXLAN's 50

    def __init__(self, n_hosts: int, prefix: str = "ovfbn", api_port: int = 18790,
                 openflow_port: int = 16790, underlay_subnet: str = "198.18.90.0/24",
                 mgmt_subnet: str = "198.18.91.0/24"):
        self.lab = Lab(n_hosts, prefix, underlay_subnet=underlay_subnet,
                       mgmt_subnet=mgmt_subnet)
        self.ports = (api_port, openflow_port)
        # A controller outlives a killed benchmark (it is a child, not a daemon of the lab):
        # its PID is kept here so that the next run can stop it.
        self.pidfile = f"/tmp/{prefix}-controller.pid"
        self.workdir: str | None = None
        self.controller: ControllerProcess | None = None
        self.endpoint_ids: dict[int, str] = {}
        self.population: list[int] = []
        self.background: dict[int, tuple[str, str]] = {}  # index -> (host, endpoint id)
        self.prober = None
        self._api_ids: list[str] = []

    @property
    def hosts(self):
        return self.lab.hosts

    @property
    def client(self):
        return self.controller.client

    def up(self) -> None:
        self._stop_stale_controller()
        self.lab.up()
        try:
            self.workdir = tempfile.mkdtemp(prefix=f"{self.lab.prefix}-controller-")
            self.controller = ControllerProcess(
                os.path.join(self.workdir, "state.db"), self.lab.controller_ip,
                api_port=self.ports[0], openflow_port=self.ports[1])
            self.start_control()
            for h in self.hosts:
                self.client.create_host(h.name, h.ovsdb, h.tunnel_ip,
                                        datapath_type=h.datapath_type)
            self.controller.wait_connected([h.name for h in self.hosts])
            self.client.create_network("bench", SUBNET)
            self.prober = self.lab.add_container("h2", "probe", mtu=self.mtu)
            self.prober.configure(mac_for(PROBER), ip_for(PROBER), 16, self.mtu)
            self.client.create_endpoint("bench", "h2", port=self.prober.port,
                                        ip=ip_for(PROBER), mac=mac_for(PROBER))
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
        self._stop_stale_controller()
        self.lab.down()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_stale_controller(self) -> None:
        pid = read_pidfile(self.pidfile)
        if pid is not None and alive(pid) and "cli.main serve" in cmdline(pid) and \
                f":{self.ports[0]}" in cmdline(pid):
            progress(f"{self.name}: stopping the controller a killed run left (pid {pid})")
            stop_pid(pid)
        if os.path.exists(self.pidfile):
            os.unlink(self.pidfile)

    # --- the measured calls ---------------------------------------------------------------

    def attach(self, c, i: int, labels: dict | None = None) -> dict:
        """POST /v1/endpoints with port=<veth>: the controller attaches the port itself."""
        ep = self.client.create_endpoint("bench", c.host.name, port=c.port, ip=ip_for(i),
                                         mac=mac_for(i), labels=labels)
        self.endpoint_ids[i] = ep["id"]
        return {"api_returned": time.perf_counter()}

    def detach(self, c, i: int) -> None:
        self.client.delete_endpoint(self.endpoint_ids.pop(i))

    def populate(self, indices: list[int], labels: dict[int, dict] | None = None,
                 hosts: list[str] | None = None) -> dict:
        """POSTs without a port (8 clients), then one OVSDB transaction per host adds internal
        ports whose iface-id names the endpoints (what a CNI plugin does): the binding path
        docs/api.md describes. `labels`: the endpoints' labels by index."""
        placed = _by_host(self.hosts, indices, hosts)
        host_of = {i: name for name, idx in placed.items() for i in idx}
        t0 = time.perf_counter()

        def post(i):
            return i, self.client.create_endpoint("bench", host_of[i], ip=ip_for(i),
                                                  mac=mac_for(i), name=f"b{i}",
                                                  labels=(labels or {}).get(i))["id"]
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            ids = dict(pool.map(post, indices))
        t_api = time.perf_counter()
        on_each_host(lambda h: add_internal_ports(
            h, self.bridge, [(f"b{i}", ids[i]) for i in placed[h.name]]), self.hosts)
        t_plug = time.perf_counter()
        # No single "all programmed" signal for bound ports: every host's table 0 is polled
        # for a flow on each new port (50 ms polls).
        seen = on_each_host(lambda h: wait_ports_programmed(
            h, self.bridge, self.of_version, [f"b{i}" for i in placed[h.name]]), self.hosts)
        self.population += indices
        self.background.update({i: (host_of[i], ids[i]) for i in indices})
        return {"t0": t0, "api_s": t_api - t0, "plug_s": t_plug - t0,
                "converged_s": max(seen) - t0, "converged_at": max(seen)}

    def depopulate(self, indices: list[int]) -> None:
        gone = {i: self.background.pop(i) for i in indices}
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(self.client.delete_endpoint, [ep for _, ep in gone.values()]))
        _remove_internal_ports(self.hosts, self.bridge, {i: h for i, (h, _) in gone.items()})
        self.population = [i for i in self.population if i not in gone]

    def control_pids(self) -> dict[str, list[int]]:
        return {"ovsfabric controller": [self.controller.proc.pid]}

    # --- restarts -------------------------------------------------------------------------

    def stop_control(self, hosts=None) -> None:
        """Stops the controller (SIGTERM); `hosts` is OVN's notion (one agent per host)."""
        self.controller.stop()
        os.unlink(self.pidfile)

    def start_control(self, hosts=None) -> None:
        self.controller.start()  # returns once the API answers
        with open(self.pidfile, "w") as f:
            f.write(str(self.controller.proc.pid))

    def wait_reconciled(self, timeout: float = 120.0) -> dict:
        """Until every host reports its reconciliation: `last_reconcile` (set once the switch's
        table was read back, compared and corrected, barrier included), or, from a controller
        without it, `flow_mods_sent` (set once the table was read back)."""
        deadline = time.perf_counter() + timeout
        while True:
            hosts = self.client.hosts()
            key = "last_reconcile" if "last_reconcile" in hosts[0] else "flow_mods_sent"
            if all(h[key] is not None for h in hosts):
                done = time.perf_counter()
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"hosts not reconciled within {timeout} s: {hosts}")
            time.sleep(0.01)
        if key == "flow_mods_sent":  # a non-empty difference is sent after the read-back
            time.sleep(1)
            hosts = self.client.hosts()
        return {"done_at": done, "signal": key,
                "flow_mods": {h["name"]: h["flow_mods_sent"] for h in hosts},
                "controller_reported": {h["name"]: h.get("last_reconcile") for h in hosts}}

    def wait_host_programmed(self, host: str, expected: int, timeout: float = 120.0) -> dict:
        """After the host's table was wiped: from its switch connecting to the controller until
        the controller has its whole table confirmed (`flows`, the controller's installed copy,
        is the switch's read-back (empty) until the bundle's barrier came back; a controller
        that reports `last_reconcile` sets it at the same moment). The moment
        of connection comes from ovs-vswitchd's own log: the switch may connect before the
        API answers the first poll."""
        h = self.lab.host(host)
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            status = self.client.host(host)
            if status.get("last_reconcile") or status["flows"]:
                now, wall = time.perf_counter(), time.time()
                connected = last_log_time(h.daemons.path("vswitchd.log"),
                                          f"{self.bridge}<->tcp:", ": connected")
                return {"connected_at": now - (wall - connected), "done_at": now,
                        "flow_mods": status["flow_mods_sent"],
                        "controller_reported": status.get("last_reconcile")}
            time.sleep(0.02)
        raise RuntimeError(f"{host}: not programmed within {timeout} s")

    def api_rate(self, indices: list[int]) -> dict:
        """8 clients POST endpoints (no port) into the measured network; each POST answers
        once its flows are confirmed on every host of the network."""
        hosts = [h.name for h in self.hosts]
        latencies = []

        def post(i):
            started = time.perf_counter()
            ep = self.client.create_endpoint("bench", hosts[i % len(hosts)], ip=ip_for(i),
                                             mac=mac_for(i), name=f"a{i}")
            latencies.append((time.perf_counter() - started) * 1000)
            return ep["id"]
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            self._api_ids = list(pool.map(post, indices))
        return {"seconds": time.perf_counter() - t0, "latencies_ms": latencies}

    def api_cleanup(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(self.client.delete_endpoint, self._api_ids))
        self._api_ids = []


class OvnSide:
    name = "OVN"
    bridge = INT_BRIDGE
    of_version = "OpenFlow15"  # ovn-controller uses 1.5 features; the bridge allows all
    mtu = 1400                 # geneve with OVN's option costs more than VXLAN's 50

    def __init__(self, n_hosts: int, prefix: str = "ovnb",
                 underlay_subnet: str = "198.18.92.0/24", mgmt_subnet: str = "198.18.93.0/24"):
        self.ovn = OvnLab(n_hosts, prefix, underlay_subnet=underlay_subnet,
                          mgmt_subnet=mgmt_subnet)
        self.lab = self.ovn.lab
        self.population: list[int] = []
        self.background: dict[int, str] = {}  # index -> host
        self.prober = None
        self._api_ports: list[str] = []

    @property
    def hosts(self):
        return self.lab.hosts

    def up(self) -> None:
        self.ovn.up()
        try:
            self.ovn.nbctl("ls-add", "bench")
            self.prober = self.lab.add_container("h2", "probe", mtu=self.mtu)
            self.prober.configure(mac_for(PROBER), ip_for(PROBER), 16, self.mtu)
            self._add_lsp("probe", PROBER)
            self.lab.host("h2").vsctl("add-port", self.bridge, self.prober.port, "--", "set",
                                      "Interface", self.prober.port,
                                      "external_ids:iface-id=probe")
            self.ovn.wait_hv()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        self.ovn.down()

    def _add_lsp(self, name: str, i: int, switch: str = "bench",
                 also: tuple[str, ...] = ()) -> None:
        self.ovn.nbctl("lsp-add", switch, name, "--", "lsp-set-addresses", name,
                       f"{mac_for(i)} {ip_for(i)}", *also)

    # --- the measured calls ---------------------------------------------------------------

    def attach(self, c, i: int, also: tuple[str, ...] = ()) -> dict:
        """The northbound call (no wait), then the port plugged with its iface-id, as
        OVN_LAB.md §5 times it: both inside the measured time. `also`: more northbound
        commands for the same transaction (e.g. the port's port groups)."""
        self._add_lsp(f"p{i}", i, also=also)
        api = time.perf_counter()
        c.host.vsctl("add-port", self.bridge, c.port, "--", "set", "Interface", c.port,
                     f"external_ids:iface-id=p{i}")
        return {"api_returned": api, "plugged": time.perf_counter()}

    def detach(self, c, i: int) -> None:
        self.ovn.nbctl("lsp-del", f"p{i}")
        c.host.vsctl("del-port", self.bridge, c.port)
        self.ovn.wait_hv()  # teardown is finished before the next sample starts

    def populate(self, indices: list[int], hosts: list[str] | None = None) -> dict:
        """One NB transaction with every lsp-add + addresses, one OVSDB transaction per host
        adding internal ports with iface-id, then `--wait=hv sync` (OVN_LAB.md §5 (b))."""
        placed = _by_host(self.hosts, indices, hosts)
        args: list[str] = []
        for i in indices:
            args += ["--", "lsp-add", "bench", f"p{i}",
                     "--", "lsp-set-addresses", f"p{i}", f"{mac_for(i)} {ip_for(i)}"]
        t0 = time.perf_counter()
        self.ovn.nbctl(*args[1:])
        t_api = time.perf_counter()
        on_each_host(lambda h: add_internal_ports(
            h, self.bridge, [(f"b{i}", f"p{i}") for i in placed[h.name]]), self.hosts)
        t_plug = time.perf_counter()
        self.ovn.wait_hv(timeout=600)
        t_conv = time.perf_counter()
        # The same check as ovsfabric's, after the fact: it must pass at once.
        on_each_host(lambda h: wait_ports_programmed(
            h, self.bridge, self.of_version, [f"b{i}" for i in placed[h.name]],
            timeout=30), self.hosts)
        self.population += indices
        self.background.update({i: name for name, idx in placed.items() for i in idx})
        return {"t0": t0, "api_s": t_api - t0, "plug_s": t_plug - t0,
                "converged_s": t_conv - t0, "converged_at": t_conv}

    def depopulate(self, indices: list[int]) -> None:
        gone = {i: self.background.pop(i) for i in indices}
        args: list[str] = []
        for i in gone:
            args += ["--", "lsp-del", f"p{i}"]
        self.ovn.nbctl(*args[1:])
        _remove_internal_ports(self.hosts, self.bridge, gone)
        self.population = [i for i in self.population if i not in gone]
        self.ovn.wait_hv()

    def control_pids(self) -> dict[str, list[int]]:
        return {"ovn-northd": [self.ovn.central_pid("northd")],
                "ovn-controller (all hosts)": [self.ovn.controller_pid(h) for h in self.hosts],
                "NB+SB ovsdb-server": [self.ovn.central_pid("nb"), self.ovn.central_pid("sb")]}

    # --- restarts -------------------------------------------------------------------------

    def stop_control(self, hosts=None) -> None:
        for h in hosts or self.hosts:
            self.ovn.stop_controller(h)

    def start_control(self, hosts=None) -> None:
        for h in hosts or self.hosts:
            self.ovn.start_controller(h)

    def wait_reconciled(self) -> dict:
        """`--wait=hv sync`: a chassis reports the new nb_cfg only after its flows for it are
        installed. ovn-controller clears the switch's table on connecting and reinstalls it;
        it reports no flow-mod count (the vswitchd counters stand in, see compare.py)."""
        self.ovn.wait_hv()
        return {"done_at": time.perf_counter(), "flow_mods": None}

    def wait_host_programmed(self, host: str, expected: int, timeout: float = 120.0) -> dict:
        """After the host's table was wiped and its ovn-controller started: until the switch
        holds `expected` flows again (dump-aggregate every 20 ms). ovn-controller exposes no
        "connected" moment: the time counts from its start."""
        h = self.lab.host(host)
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            out = h.ofctl("dump-aggregate", bridge=self.bridge)
            if int(out.rsplit("flow_count=", 1)[1].split()[0]) >= expected:
                return {"connected_at": None, "done_at": time.perf_counter(), "flow_mods": None}
            time.sleep(0.02)
        raise RuntimeError(f"{host}: not programmed within {timeout} s")

    def api_rate(self, indices: list[int], wait: bool = False) -> dict:
        """For reference: 8 concurrent `ovn-nbctl lsp-add` + addresses into the measured
        switch. Without `wait` a northbound commit only (no flow installed when it returns);
        with it `--wait=hv`, which returns once every chassis has the change in its flows:
        what ovsfabric's POST waits for."""
        latencies = []

        def add(i):
            started = time.perf_counter()
            self.ovn.nbctl(*(["--wait=hv"] if wait else []), "lsp-add", "bench", f"a{i}",
                           "--", "lsp-set-addresses", f"a{i}", f"{mac_for(i)} {ip_for(i)}")
            latencies.append((time.perf_counter() - started) * 1000)
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(add, indices))
        self._api_ports += [f"a{i}" for i in indices]
        return {"seconds": time.perf_counter() - t0, "latencies_ms": latencies}

    def api_cleanup(self) -> None:
        args = []
        for name in self._api_ports:
            args += ["--", "lsp-del", name]
        self.ovn.nbctl(*args[1:])
        self._api_ports = []
        self.ovn.wait_hv()
