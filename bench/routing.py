"""Routing between networks, ovsfabric and OVN's logical router side by side, in one process
and one run (root, OVS, OVN, iperf3).

The labs are compare.py's (bench/sides.py: one lab per system, identical topology, network
`bench` with a pinging container on h2); on top of them each system gets one router `r` with
`bench` and network 1 attached, and more networks as the steps need them. Network k is
10.(60+k).0.0/16 with its gateway on .0.1 (`bench` is network 0); on OVN the gateway is the
logical router port of that switch. Containers use their gateway with a static neighbour
entry, so that no ARP timer is measured.

  convergence   an endpoint of network 1 bound on h1 while the pinger (network 0, on h2)
                pings its address every 5 ms: API call (OVN: lsp-add + addresses, then the
                port plugged with its iface-id) until the first routed reply; p50/p95/p99,
                samples of the two systems alternating
  convergence_same_network
                the same with the endpoint in network 0 (the pinger's), not routed: what
                routing adds
  attach        a network holding N endpoints over the hosts (S of them containers, the rest
                internal ports) attached to the router: from the attach call until each of
                the S containers has a reply from the pinger through the router; repeated
  throughput    iperf3, 1 stream: h1 to h2 in one network, and h1 to h2 routed from network 1
                into network 0; rounds alternate the order
  flows         the router with 10 networks of 100 endpoints each (bound internal ports)
                over the hosts: flows per host (lines with actions= in dump-flows)

Each step removes what it added, except flows (the last). Prints a table, writes
bench/results/routing.json after every step.

    .venv/bin/python bench/routing.py [--quick] [--only convergence,attach,...]
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

import common
from common import (PROBER, add_internal_ports, count_flows, dump_flows, on_each_host,
                    progress, summary_ms, wait_ports_programmed)
from compare import loadavg, parse_steps, per_side, run_meta, run_steps, step_parser
from flows.pipeline import decode_cookie
from lab import netns
from lab.proc import run, stop_pid
from sides import CLIENTS, FabricSide, add_lab_options, make_sides

RESULTS = os.path.join(common.ROOT, "bench", "results")
ROUTER = "r"
TARGET_NET, ATTACH_NET = 1, 2             # the convergence step's network, the attached one
CONVERGENCE_BASE, IPERF_BASE, FLOWS_BASE = 40000, 30000, 1000  # address indices per step
IPERF_PORT = 5201
WARMUP_S = 3  # an untimed iperf3 run per path before the timed rounds


# --- addresses: network k, index i -> the same MAC and IP on both sides -----------------------

def net_name(k: int) -> str:
    return "bench" if k == 0 else f"net{k}"


def net_subnet(k: int) -> str:
    return f"10.{60 + k}.0.0/16"


def net_gateway(k: int) -> str:
    return f"10.{60 + k}.0.1"


def net_ip(k: int, i: int) -> str:
    # common.ip_for for network 0: .0.1 is the gateway, addresses start at .1.1
    return f"10.{60 + k}.{1 + i // 250}.{1 + i % 250}"


def net_mac(k: int, i: int) -> str:
    # common.mac_for for network 0; the second byte tells the network apart
    return f"02:be:{k:02x}:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"


def port_name(k: int, i: int) -> str:
    return f"b{k}x{i}"  # an internal port's name on its host (15 characters at most)


# --- the two systems' routers behind one interface ------------------------------------------

class FabricRouting:
    """ovsfabric: POST /v1/routers, /v1/routers/r/networks, endpoints with or without port."""

    def __init__(self, side: FabricSide):
        self.side = side
        self.name, self.lab, self.mtu = side.name, side.lab, side.mtu
        self.bridge, self.of_version = side.bridge, side.of_version
        self.gateway_macs: dict[int, str] = {}
        self.ids: dict[tuple[int, int], str] = {}

    @property
    def client(self):
        return self.side.client

    def setup(self) -> None:
        self.client.create_router(ROUTER)
        self.gateway_macs[0] = self.client.network("bench")["gateway_mac"]
        self.ensure_network(TARGET_NET)
        for k in (0, TARGET_NET):
            self.attach_router(k)

    def ensure_network(self, k: int) -> None:
        if k not in self.gateway_macs:
            net = self.client.create_network(net_name(k), net_subnet(k))
            assert net["gateway"] == net_gateway(k), net
            self.gateway_macs[k] = net["gateway_mac"]

    def gateway_mac(self, k: int) -> str:
        # A container sends to its network's own gateway MAC, router or not (flows/routing.py)
        return self.gateway_macs[k]

    def attach_router(self, k: int) -> dict:
        """Answers once the hosts of the router's networks have confirmed their flows."""
        self.client.attach_network(ROUTER, net_name(k))
        return {"api_returned": time.perf_counter()}

    def detach_router(self, k: int) -> None:
        self.client.detach_network(ROUTER, net_name(k))

    def bind(self, c, k: int, i: int) -> dict:
        """POST /v1/endpoints with port=<veth>: the controller attaches the port itself."""
        ep = self.client.create_endpoint(net_name(k), c.host.name, port=c.port,
                                         ip=net_ip(k, i), mac=net_mac(k, i))
        self.ids[(k, i)] = ep["id"]
        return {"api_returned": time.perf_counter()}

    def unbind(self, c, k: int, i: int) -> None:
        self.client.delete_endpoint(self.ids.pop((k, i)))

    def populate(self, members: dict[int, list[int]]) -> dict:
        """Endpoints POSTed without a port by 8 clients, then bound: one OVSDB transaction per
        host adds internal ports with iface-id = endpoint id (compare.py's bulk). Converged
        when every host's table 0 has a flow on each new port."""
        todo = [(k, i) for k, idx in members.items() for i in idx]
        host_of = {(k, i): self.lab.hosts[i % len(self.lab.hosts)].name for k, i in todo}
        t0 = time.perf_counter()

        def post(key):
            k, i = key
            return key, self.client.create_endpoint(net_name(k), host_of[key], ip=net_ip(k, i),
                                                    mac=net_mac(k, i), name=port_name(k, i))["id"]
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            self.ids.update(pool.map(post, todo))
        t_api = time.perf_counter()
        ports = {h.name: [key for key in todo if host_of[key] == h.name] for h in self.lab.hosts}
        on_each_host(lambda h: add_internal_ports(
            h, self.bridge, [(port_name(*key), self.ids[key]) for key in ports[h.name]]),
            self.lab.hosts)
        seen = on_each_host(lambda h: wait_ports_programmed(
            h, self.bridge, self.of_version, [port_name(*key) for key in ports[h.name]]),
            self.lab.hosts)
        return {"api_s": round(t_api - t0, 3), "converged_s": round(max(seen) - t0, 3)}

    def depopulate(self, members: dict[int, list[int]]) -> None:
        todo = [(k, i) for k, idx in members.items() for i in idx]
        made = [self.ids.pop(key) for key in todo if key in self.ids]
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(self.client.delete_endpoint, made))
        remove_internal_ports(self.lab.hosts, self.bridge, todo)


class OvnRouting:
    """OVN: one logical router; a network is a logical switch, attached by a router port and
    its switch-side peer of type router (OVN_LAB.md's commands, east-west only)."""

    def __init__(self, side):
        self.side = side
        self.ovn = side.ovn
        self.name, self.lab, self.mtu = side.name, side.lab, side.mtu
        self.bridge, self.of_version = side.bridge, side.of_version
        self.switches = {0}  # OvnSide made `bench`

    def setup(self) -> None:
        self.ovn.nbctl("lr-add", ROUTER)
        self.ensure_network(TARGET_NET)
        for k in (0, TARGET_NET):
            self.attach_router(k)
        self.ovn.wait_hv()

    def ensure_network(self, k: int) -> None:
        if k not in self.switches:
            self.ovn.nbctl("ls-add", net_name(k))
            self.switches.add(k)

    def gateway_mac(self, k: int) -> str:
        return f"02:aa:00:00:00:{k + 1:02x}"  # the router port's

    def attach_router(self, k: int) -> dict:
        """One northbound transaction, no wait (as ovsfabric's attach, timed to the reply)."""
        rp, sp = f"rp{k}", f"rs{k}"
        self.ovn.nbctl("lrp-add", ROUTER, rp, self.gateway_mac(k), f"{net_gateway(k)}/16",
                       "--", "lsp-add", net_name(k), sp, "--", "lsp-set-type", sp, "router",
                       "--", "lsp-set-addresses", sp, "router",
                       "--", "lsp-set-options", sp, f"router-port={rp}")
        return {"api_returned": time.perf_counter()}

    def detach_router(self, k: int) -> None:
        self.ovn.nbctl("lsp-del", f"rs{k}", "--", "lrp-del", f"rp{k}")
        self.ovn.wait_hv()

    def bind(self, c, k: int, i: int) -> dict:
        """The northbound call (no wait), then the port plugged with its iface-id: both inside
        the measured time, as compare.py's convergence."""
        lsp = f"p{k}x{i}"
        self.ovn.nbctl("lsp-add", net_name(k), lsp, "--", "lsp-set-addresses", lsp,
                       f"{net_mac(k, i)} {net_ip(k, i)}")
        api = time.perf_counter()
        c.host.vsctl("add-port", self.bridge, c.port, "--", "set", "Interface", c.port,
                     f"external_ids:iface-id={lsp}")
        return {"api_returned": api, "plugged": time.perf_counter()}

    def unbind(self, c, k: int, i: int) -> None:
        self.ovn.nbctl("lsp-del", f"p{k}x{i}")
        c.host.vsctl("del-port", self.bridge, c.port)
        self.ovn.wait_hv()  # the teardown is over before the next sample starts

    def populate(self, members: dict[int, list[int]]) -> dict:
        """Every lsp-add in one NB transaction, the internal ports (one OVSDB transaction per
        host), then `--wait=hv sync` (compare.py's bulk)."""
        todo = [(k, i) for k, idx in members.items() for i in idx]
        args: list[str] = []
        for k, i in todo:
            args += ["--", "lsp-add", net_name(k), f"p{k}x{i}", "--", "lsp-set-addresses",
                     f"p{k}x{i}", f"{net_mac(k, i)} {net_ip(k, i)}"]
        t0 = time.perf_counter()
        self.ovn.nbctl(*args[1:])
        t_api = time.perf_counter()
        hosts = self.lab.hosts
        on_each_host(lambda h: add_internal_ports(
            h, self.bridge, [(port_name(k, i), f"p{k}x{i}") for k, i in todo
                             if hosts[i % len(hosts)] is h]), hosts)
        self.ovn.wait_hv(timeout=600)
        return {"api_s": round(t_api - t0, 3),
                "converged_s": round(time.perf_counter() - t0, 3)}

    def depopulate(self, members: dict[int, list[int]]) -> None:
        todo = [(k, i) for k, idx in members.items() for i in idx]
        args: list[str] = []
        for k, i in todo:
            args += ["--", "lsp-del", f"p{k}x{i}"]
        self.ovn.nbctl(*args[1:])
        remove_internal_ports(self.lab.hosts, self.bridge, todo)
        self.ovn.wait_hv()


def remove_internal_ports(hosts, bridge: str, todo) -> None:
    def remove(h):
        args: list[str] = []
        for k, i in todo:
            if hosts[i % len(hosts)] is h:
                args += ["--", "del-port", bridge, port_name(k, i)]
        if args:
            h.vsctl(*args, timeout=300)
    on_each_host(remove, hosts)


def routed_container(rt, host: str, k: int, i: int):
    """A container of network k: its address, its gateway as default route, the gateway's MAC
    static (not bound yet)."""
    c = rt.lab.add_container(host, f"n{k}x{i}", mtu=rt.mtu)
    c.configure(net_mac(k, i), net_ip(k, i), 16, rt.mtu, gateway=net_gateway(k))
    c.neigh(net_gateway(k), rt.gateway_mac(k))
    return c


def first_reply(source, ip: str, deadline_s: float) -> subprocess.Popen:
    # `ip netns exec` execs ping: the PID waited for is ping's. It exits on the first reply.
    return subprocess.Popen(["ip", "netns", "exec", source.netns, "ping", "-n", "-q",
                             "-i", "0.005", "-c", "1", "-w", str(deadline_s), ip],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_all(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            stop_pid(proc.pid)
        proc.wait()


# --- convergence -----------------------------------------------------------------------------

def convergence_sample(rt, k: int, i: int, settle: float) -> tuple[float | None, dict]:
    """Network k's endpoint i on h1, pinged by the pinger of network 0 on h2: routed unless
    k is 0, then with static neighbours both ways (compare.py's convergence)."""
    c = routed_container(rt, "h1", k, i)
    prober = rt.side.prober
    if k == 0:
        c.neigh(prober.ip, prober.mac)
        prober.neigh(c.ip, c.mac)
    ping = None
    try:
        ping = first_reply(rt.side.prober, net_ip(k, i), 5)
        time.sleep(settle)  # the new veth keeps ovs-vswitchd busy a moment; ping starts
        t0 = time.perf_counter()
        marks = rt.bind(c, k, i)
        answered = ping.wait() == 0
        elapsed = (time.perf_counter() - t0) * 1000
        rt.unbind(c, k, i)
    finally:
        if ping is not None:
            stop_all([ping])
        rt.lab.remove_container(c)
    return (elapsed if answered else None), {n: (v - t0) * 1000 for n, v in marks.items()}


def step_convergence(rts, args) -> dict:
    return measure_convergence(rts, args, TARGET_NET)


def step_convergence_same_network(rts, args) -> dict:
    return measure_convergence(rts, args, 0)


def measure_convergence(rts, args, k: int) -> dict:
    samples = {rt.name: [] for rt in rts}
    marks = {rt.name: {} for rt in rts}
    failed = {rt.name: 0 for rt in rts}
    for n in range(args.convergence):
        for rt in rts:  # alternate, so that a burst of other load hits both
            ms, m = convergence_sample(rt, k, CONVERGENCE_BASE + n, args.settle)
            if ms is None:
                failed[rt.name] += 1
            else:
                samples[rt.name].append(ms)
            for name, value in m.items():
                marks[rt.name].setdefault(name, []).append(value)
        if (n + 1) % 10 == 0 or n + 1 == args.convergence:
            progress(f"convergence: {n + 1}/{args.convergence} " + "  ".join(
                f"{name} p50 {statistics.median(v):.1f} ms" for name, v in samples.items() if v))
    return {rt.name: {**(summary_ms(samples[rt.name]) if samples[rt.name] else {"samples": 0}),
                      "failed": failed[rt.name], "settle_s": args.settle,
                      **{f"{name}_p50_ms": round(statistics.median(v), 2)
                         for name, v in marks[rt.name].items()}} for rt in rts}


# --- attaching a populated network ----------------------------------------------------------

def attach_once(rt, pingers, target_ip: str) -> dict:
    """Each container pings the target from before the attach call; ms from the call until
    each has its first reply."""
    procs = [first_reply(c, target_ip, 30) for c in pingers]
    done: dict[int, float] = {}

    def wait(n, proc):
        if proc.wait() == 0:
            done[n] = time.perf_counter()
    threads = [threading.Thread(target=wait, args=(n, p)) for n, p in enumerate(procs)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.3)  # every ping sending
        if done:
            raise RuntimeError(f"{len(done)} pairs answered before the network was attached")
        t0 = time.perf_counter()
        marks = rt.attach_router(ATTACH_NET)
        for t in threads:
            t.join(40)
    finally:
        stop_all(procs)
        for t in threads:
            t.join()
    pairs = sorted((v - t0) * 1000 for v in done.values())
    return {"all_routed_ms": round(pairs[-1], 1) if len(pairs) == len(procs) else None,
            "pairs_routed": len(pairs), "pairs": len(procs),
            "pair_p50_ms": round(statistics.median(pairs), 1) if pairs else None,
            "api_returned_ms": round((marks["api_returned"] - t0) * 1000, 1)}


def measure_attach(rt, endpoints: int, sampled: int, repeats: int) -> dict:
    k = ATTACH_NET
    rt.ensure_network(k)
    hosts = rt.lab.hosts
    # The sampled endpoints are the first ones: i mod N spreads them over every host.
    pinger_idx = list(range(sampled))
    members = {k: list(range(sampled, endpoints))}
    progress(f"attach: {rt.name}: {endpoints - sampled} internal ports and {sampled} "
             f"containers in {net_name(k)}")
    pingers = []
    try:
        filled = rt.populate(members)
        for i in pinger_idx:
            c = routed_container(rt, hosts[i % len(hosts)].name, k, i)
            pingers.append((c, i))
            rt.bind(c, k, i)
        if isinstance(rt, OvnRouting):
            rt.ovn.wait_hv()  # every port in before the first attach
        runs = []
        for n in range(repeats):
            time.sleep(1)  # the detach (or the filling) settled
            result = attach_once(rt, [c for c, _ in pingers], common.ip_for(PROBER))
            progress(f"attach: {rt.name}: {n + 1}/{repeats}: all {result['pairs_routed']}/"
                     f"{result['pairs']} pairs in {result['all_routed_ms']} ms")
            runs.append(result)
            rt.detach_router(k)
    finally:
        for c, i in pingers:
            rt.unbind(c, k, i)
            rt.lab.remove_container(c)
        rt.depopulate(members)
    complete = [r["all_routed_ms"] for r in runs if r["all_routed_ms"] is not None]
    return {"endpoints": endpoints, "sampled_pairs": sampled, "repeats": repeats,
            "filled": filled, "runs": runs,
            "all_routed_p50_ms": round(statistics.median(complete), 1) if complete else None,
            "all_routed_max_ms": max(complete) if complete else None,
            "api_returned_p50_ms": round(statistics.median(
                r["api_returned_ms"] for r in runs), 1)}


def step_attach(rts, args) -> dict:
    return per_side(rts, lambda rt: measure_attach(rt, args.attach_endpoints,
                                                   args.attach_sampled, args.attach_repeats))


# --- throughput -----------------------------------------------------------------------------

def veth_packets(c, direction: str) -> int:
    """Packets through the host-side end of a container's veth ("rx": what the container sent
    into its host's switch; "tx": what the switch delivered to it)."""
    out = run(["ip", "-j", "-s", "link", "show", "dev", c.port], netns=c.host.netns).stdout
    return json.loads(out)[0]["stats64"][direction]["packets"]


def iperf(client, server, seconds: int) -> dict:
    """One TCP stream: Gbit/s received, the sender's retransmits, both ends' CPU, and the
    share of the sender's packets the two switches did not deliver."""
    sent, delivered = veth_packets(client, "rx"), veth_packets(server, "tx")
    out = run(["iperf3", "-c", server.ip, "-p", str(IPERF_PORT), "-t", str(seconds), "-P", "1",
               "-J"], netns=client.netns, timeout=seconds + 30).stdout
    sent, delivered = veth_packets(client, "rx") - sent, veth_packets(server, "tx") - delivered
    end = json.loads(out)["end"]
    return {"gbps": round(end["sum_received"]["bits_per_second"] / 1e9, 3),
            "retransmits": end["sum_sent"].get("retransmits"),
            "cpu_sender_percent": round(end["cpu_utilization_percent"]["host_total"], 1),
            "cpu_receiver_percent": round(end["cpu_utilization_percent"]["remote_total"], 1),
            "packets_sent": sent, "not_delivered_percent": round(100 * (sent - delivered) /
                                                                 max(sent, 1), 1)}


def sender_datapath_flows(setup) -> dict[str, list[str]]:
    """The datapath flows (megaflows) on the clients' host that match each client's packets:
    what every packet of the stream costs there once the first has been through the tables."""
    for kind in ("same", "routed"):  # 1 s each, so that neither's flows have idled out
        iperf(setup[kind], setup["server_c"], 1)
    text = setup["same"].host.appctl("dpctl/dump-flows")
    return {kind: [re.sub(r" packets:\d+, bytes:\d+, used:[^,]+,( flags:[^,]+,)?", "", line)
                   for line in text.splitlines() if f"src={setup[kind].mac}" in line]
            for kind in ("same", "routed")}


def step_throughput(rts, args) -> dict:
    """Server in network 0 on h2; clients on h1: one in network 0 (same network), one in
    network 1 (routed). Each system's pair is measured in turn; rounds alternate the order.
    Packets not delivered: what the client's veth took in against what the server's gave
    out; on this lab they are lost where the host's switch reads its packet sockets."""
    setups = {}
    try:
        for rt in rts:
            server = routed_container(rt, "h2", 0, IPERF_BASE)
            same = routed_container(rt, "h1", 0, IPERF_BASE + 1)
            routed = routed_container(rt, "h1", TARGET_NET, IPERF_BASE + 2)
            setups[rt.name] = {"containers": [(server, 0, IPERF_BASE), (same, 0, IPERF_BASE + 1),
                                              (routed, TARGET_NET, IPERF_BASE + 2)],
                               "bound": [], "server": None}
            for c, k, i in setups[rt.name]["containers"]:
                rt.bind(c, k, i)
                setups[rt.name]["bound"].append((c, k, i))
            # Same network: neighbours static too, so that no ARP sits in the first second.
            same.neigh(server.ip, server.mac)
            server.neigh(same.ip, same.mac)
            if isinstance(rt, OvnRouting):
                rt.ovn.wait_hv()
            setups[rt.name]["server"] = subprocess.Popen(
                ["ip", "netns", "exec", server.netns, "iperf3", "-s", "-p", str(IPERF_PORT)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            setups[rt.name].update(server_c=server, same=same, routed=routed)
        time.sleep(1)
        for rt in rts:  # both paths answer before anything is timed
            s = setups[rt.name]
            for c in (s["same"], s["routed"]):
                if not c.ping(s["server_c"].ip, count=3, timeout=2):
                    raise RuntimeError(f"{rt.name}: {c} cannot reach the iperf3 server")
        for rt in rts:
            # Untimed: in a fresh lab the first seconds of TCP ran at about half the rate of
            # every later run (seen with 2 hosts and nothing else on the lab).
            s = setups[rt.name]
            for c in (s["same"], s["routed"]):
                iperf(c, s["server_c"], WARMUP_S)
        gbps = {rt.name: {"same_network": [], "routed": []} for rt in rts}
        details = {rt.name: [] for rt in rts}
        for r in range(args.iperf_rounds):
            order = ("same_network", "routed") if r % 2 == 0 else ("routed", "same_network")
            for rt in rts:
                s = setups[rt.name]
                for kind in order:
                    client = s["same"] if kind == "same_network" else s["routed"]
                    measured = iperf(client, s["server_c"], args.iperf_seconds)
                    gbps[rt.name][kind].append(measured["gbps"])
                    details[rt.name].append({"round": r + 1, "path": kind,
                                             "loadavg": loadavg(), **measured})
                    progress(f"throughput: {rt.name}: round {r + 1}: {kind} "
                             f"{measured['gbps']:.2f} Gbit/s, {measured['retransmits']} "
                             f"retransmits, {measured['not_delivered_percent']} % not "
                             f"delivered (load average {loadavg()})")
        for rt in rts:
            setups[rt.name]["datapath"] = sender_datapath_flows(setups[rt.name])
    finally:
        for rt in rts:
            s = setups.get(rt.name)
            if not s:
                continue
            if s["server"] is not None:
                stop_all([s["server"]])
            for c, k, i in s["bound"]:
                rt.unbind(c, k, i)
            for c, _, _ in s["containers"]:
                rt.lab.remove_container(c)
    out = {}
    for rt in rts:
        same, routed = (statistics.median(gbps[rt.name][kind]) for kind in ("same_network",
                                                                             "routed"))
        out[rt.name] = {"seconds": args.iperf_seconds, "rounds": args.iperf_rounds,
                        "mtu": rt.mtu, "gbps": gbps[rt.name], "runs": details[rt.name],
                        "same_network_gbps": round(same, 3), "routed_gbps": round(routed, 3),
                        "routed_over_same": round(routed / same, 3),
                        "sender_datapath_flows": setups[rt.name]["datapath"],
                        # each round's two runs are minutes apart at most: their ratio is less
                        # moved by the other load on the machine than the medians are
                        "routed_over_same_per_round": [
                            round(r / s, 3) for r, s in zip(gbps[rt.name]["routed"],
                                                            gbps[rt.name]["same_network"])],
                        "retransmits_median": statistics.median(
                            d["retransmits"] for d in details[rt.name]),
                        "not_delivered_percent_median": round(statistics.median(
                            d["not_delivered_percent"] for d in details[rt.name]), 1)}
        out[rt.name]["routed_over_same_per_round_median"] = round(statistics.median(
            out[rt.name]["routed_over_same_per_round"]), 3)
    return out


# --- flows per host ------------------------------------------------------------------------

def measure_flows(rt, networks: int, per_network: int) -> dict:
    for k in range(networks):
        rt.ensure_network(k)
        if k not in (0, TARGET_NET):
            rt.attach_router(k)
    if isinstance(rt, OvnRouting):
        rt.ovn.wait_hv()
    empty = {h.name: count_flows(h, rt.bridge, rt.of_version) for h in rt.lab.hosts}
    progress(f"flows: {rt.name}: {networks} networks of {per_network} endpoints")
    members = {k: list(range(FLOWS_BASE, FLOWS_BASE + per_network)) for k in range(networks)}
    filled = rt.populate(members)
    time.sleep(2)  # anything the control plane does after its converged signal is counted
    flows = {h.name: count_flows(h, rt.bridge, rt.of_version) for h in rt.lab.hosts}
    busiest = max(rt.lab.hosts, key=lambda h: flows[h.name])
    return {"flows_on_busiest_host": {"host": busiest.name,
                                      **flow_breakdown(busiest, rt.bridge, rt.of_version)},
            "networks": networks, "endpoints_per_network": per_network,
            "hosts": len(rt.lab.hosts), "filled": filled,
            # the pinger on h2 is one more endpoint of network 0, on both sides
            "flows_per_host_router_only": empty, "flows_per_host": flows,
            "flows_per_host_max": max(flows.values()),
            "flows_per_host_mean": round(statistics.mean(flows.values()), 1)}


def flow_breakdown(host, bridge: str, version: str) -> dict:
    """The host's flows by table, and by what made them (ovsfabric's cookie kinds)."""
    by_table: dict[int, int] = {}
    by_kind: dict[str, int] = {}
    for line in dump_flows(host, bridge, version).splitlines():
        if "actions=" not in line:
            continue
        head = line.split("actions=", 1)[0]  # the actions may hold a table= of their own
        fields = dict(part.strip().split("=", 1) for part in head.split(",")
                      if part.strip().split("=", 1)[0] in ("cookie", "table"))
        table_id = int(fields.get("table", 0))
        by_table[table_id] = by_table.get(table_id, 0) + 1
        kind = decode_cookie(int(fields.get("cookie", "0"), 16))
        by_kind[kind[0] if kind else "other"] = by_kind.get(kind[0] if kind else "other", 0) + 1
    return {"by_table": dict(sorted(by_table.items())), "by_cookie_kind": by_kind}


def step_flows(rts, args) -> dict:
    return per_side(rts, lambda rt: measure_flows(rt, args.flow_networks, args.flow_endpoints))


STEPS = {"convergence": step_convergence,
         "convergence_same_network": step_convergence_same_network, "attach": step_attach,
         "throughput": step_throughput, "flows": step_flows}


# --- the table -----------------------------------------------------------------------------

def _ratio(f, o):
    return f"{f / o:.2f}" if isinstance(f, (int, float)) and isinstance(o, (int, float)) and o \
        else "-"


def table(results: dict) -> str:
    names = ("ovsfabric", "OVN")
    rows = []

    def get(step, name, *keys):
        value = results.get(step, {}).get(name)
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def row(label, step, *keys):
        f, o = (get(step, n, *keys) for n in names)
        if f is not None or o is not None:
            rows.append((label, f, o, _ratio(f, o)))

    for key in ("p50_ms", "p95_ms", "p99_ms"):
        row(f"routed convergence {key[:3]}, ms", "convergence", key)
    row("  API call returned p50, ms", "convergence", "api_returned_p50_ms")
    row("  failed samples", "convergence", "failed")
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        row(f"same-network convergence {key[:3]}, ms", "convergence_same_network", key)
    row("  failed samples", "convergence_same_network", "failed")
    row("attach populated network: all pairs routed p50, ms", "attach", "all_routed_p50_ms")
    row("  all pairs routed max, ms", "attach", "all_routed_max_ms")
    row("  attach call returned p50, ms", "attach", "api_returned_p50_ms")
    row("throughput same network, Gbit/s", "throughput", "same_network_gbps")
    row("throughput routed, Gbit/s", "throughput", "routed_gbps")
    row("  routed / same network (medians)", "throughput", "routed_over_same")
    row("  routed / same network (median of rounds)", "throughput",
        "routed_over_same_per_round_median")
    row("  TCP retransmits per run, median", "throughput", "retransmits_median")
    row("  packets not delivered, % (median)", "throughput", "not_delivered_percent_median")
    row("flows per host, max", "flows", "flows_per_host_max")
    row("flows per host, mean", "flows", "flows_per_host_mean")
    errors = []
    for step, sides in results.items():
        if step == "meta":
            continue
        if "error" in sides:  # the step itself failed
            errors.append(f"{step}: {sides['error']}")
        errors += [f"{step} {n}: {v['error']}" for n, v in sides.items()
                   if isinstance(v, dict) and "error" in v]
    width = max([len(r[0]) for r in rows] + [10])
    lines = [f"{'':{width}}  {'ovsfabric':>10}  {'OVN':>10}  {'ratio':>6}"]
    for label, f, o, ratio in rows:
        lines.append(f"{label:{width}}  {f if f is not None else '-':>10}  "
                     f"{o if o is not None else '-':>10}  {ratio:>6}")
    return "\n".join(lines + errors)


# --- the run ---------------------------------------------------------------------------------

def parse_args(argv=None):
    p = step_parser(__doc__, STEPS, hosts=5)
    p.add_argument("--convergence", type=int, help="samples per system (default 50)")
    p.add_argument("--attach-endpoints", type=int,
                   help="endpoints of the attached network (default 200)")
    p.add_argument("--attach-sampled", type=int,
                   help="of them containers that ping through the router (default 20)")
    p.add_argument("--attach-repeats", type=int, help="attach calls timed (default 5)")
    p.add_argument("--iperf-seconds", type=int, default=10)
    p.add_argument("--iperf-rounds", type=int, help="per system and path (default 10)")
    p.add_argument("--flow-networks", type=int, default=10)
    p.add_argument("--flow-endpoints", type=int, default=100, help="per network")
    p.add_argument("--out", default=os.path.join(RESULTS, "routing.json"))
    add_lab_options(p)
    args = parse_steps(p, argv, STEPS, dict(
        convergence=(5, 50), attach_endpoints=(50, 200), attach_sampled=(5, 20),
        attach_repeats=(2, 5), iperf_rounds=(1, 10)))
    if not 3 <= args.flow_networks <= 100:
        p.error("--flow-networks: 3 to 100 (networks 0 to 2 are the other steps')")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sides = make_sides(args)
    sizes = ("convergence", "attach_endpoints", "attach_sampled", "attach_repeats",
             "iperf_seconds", "iperf_rounds", "flow_networks", "flow_endpoints")
    results: dict = {"meta": run_meta(args, sizes)}
    try:
        for side in sides:
            progress(f"{side.name}: lab of {args.hosts} hosts")
            side.up()
        rts = [FabricRouting(sides[0]), OvnRouting(sides[1])]
        for rt in rts:
            rt.setup()
            # The pinger of network 0 reaches the others through its gateway.
            netns.ip("route", "replace", "default", "via", net_gateway(0), "dev", "eth0",
                     netns=rt.side.prober.netns)
            rt.side.prober.neigh(net_gateway(0), rt.gateway_mac(0))
        run_steps(STEPS, rts, args, results)
    finally:
        for side in reversed(sides):
            progress(f"{side.name}: tearing down")
            side.down()
    print(table(results))
    print(f"\nload average: {results['meta']['loadavg']}")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
