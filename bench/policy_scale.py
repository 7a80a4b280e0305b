"""Simulated scale of security policies: the controller's policy computation for N endpoints
over N/100 hosts with N policies, without switches, at several N, to show how it grows.

The fabric is put into a snapshot directly (no store: its SQLite writes are not what is
measured here): networks of 1,000 endpoints, each over 10 hosts of 100 endpoints, so that the
fabric grows by adding networks as real ones do. Endpoint i is labelled app=a<i div 10> (an
app's 10 endpoints are spread over its network's 10 hosts) and tier=t<i mod 3>. Policy j
selects app=a<j mod A> (A = N/10) and lets app=a<(j+1) mod A> in on tcp/<5000 + j mod 100>:
every endpoint is selected by 10 policies, whose peers are the next app's endpoints.

Per N: the policy index (which policies select which endpoint), every host's wiring and every
host's whole table (compile_host, policies included) timed with time.perf_counter; the policy
flows and all flows per host; tracemalloc's peak over the compile and the tables kept after it
(in a second pass: tracing slows allocation); and two changes at full size, timed as the
controller makes them: a new policy (its hosts' policy flows recompiled) and a new endpoint
selected by 10 policies (its host's units recompiled). Prints a table and writes
bench/results/policy_scale.json.

    .venv/bin/python bench/policy_scale.py [--sizes 1000,2000,5000,10000]
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common import mac_for, progress, write_results  # noqa: E402

from flows import HostFlows, HostPorts, compile_host, host_wiring  # noqa: E402
from flows.host_flows import concerned_hosts, touched_units  # noqa: E402
from flows.pipeline import decode_cookie  # noqa: E402
from model.entities import Change, Endpoint, Host, Network, Snapshot  # noqa: E402
from model.policy import INGRESS, Peer, Policy, PortRange, Rule, Selector  # noqa: E402

ENDPOINTS_PER_HOST = 100
ENDPOINTS_PER_APP = 10
NETWORK_SIZE = 1000  # endpoints per network, over NETWORK_SIZE / ENDPOINTS_PER_HOST hosts
MiB = 2 ** 20


def fabric(n: int) -> tuple[Snapshot, dict[str, HostPorts]]:
    hosts = {f"h{k}": Host(k + 1, f"h{k}", f"unix:/run/h{k}", f"198.18.{k // 250}.{k % 250 + 1}")
             for k in range(max(1, n // ENDPOINTS_PER_HOST))}
    networks = {f"net{k}": Network(k + 1, f"net{k}", f"net{k}", f"10.{k}.0.0/16", f"10.{k}.0.1",
                                   100 + k, 1450)
                for k in range(-(-n // NETWORK_SIZE))}
    snap = Snapshot(hosts=hosts, networks=networks)
    names = sorted(hosts, key=lambda h: hosts[h].seq)
    hosts_per_network = NETWORK_SIZE // ENDPOINTS_PER_HOST
    ofports: dict[str, dict[str, int]] = {h: {} for h in names}
    for i in range(n):
        k, j = divmod(i, NETWORK_SIZE)  # the network, and the endpoint's place in it
        host = names[(k * hosts_per_network + j % hosts_per_network) % len(names)]
        ep = Endpoint(i + 1, f"ep{i}", f"ep{i}", f"net{k}", host, f"p{i}",
                      f"10.{k}.{2 + j // 250}.{j % 250 + 1}", mac_for(i),
                      labels=(("app", f"a{i // ENDPOINTS_PER_APP}"), ("tier", f"t{i % 3}")))
        ofports[host][ep.id] = len(ofports[host]) + 1
        snap = snap.with_endpoint(ep)
    ports = {h: HostPorts(ofports[h], {p: 1000 + k for k, p in enumerate(names) if p != h})
             for h in names}
    return snap, ports


def policies(n: int, first_rule: int = 1) -> dict[str, Policy]:
    apps = max(1, n // ENDPOINTS_PER_APP)
    out = {}
    for j in range(n):
        rule = Rule(first_rule + j, INGRESS, 0,
                    (Peer(Selector((("app", f"a{(j + 1) % apps}"),))),),
                    (PortRange("tcp", 5000 + j % 100),))
        out[f"p{j}"] = Policy(j + 1, f"p{j}", f"p{j}", Selector((("app", f"a{j % apps}"),)),
                              ingress=(rule,))
    return out


def compile_all(snap: Snapshot, ports: dict[str, HostPorts]) -> dict[str, dict]:
    return {h: compile_host(snap, h, ports[h]) for h in ports}


def is_policy_flow(flow) -> bool:
    return flow.table in (2, 4, 30, 32) or (decode_cookie(flow.cookie) or ("",))[0] == "policy"


def measure(n: int) -> dict:
    progress(f"{n} endpoints, {n // ENDPOINTS_PER_HOST} hosts, {n} policies: building")
    snap, ports = fabric(n)
    gc.collect()
    gc.disable()  # as the controller does around a rebuild
    try:
        started = time.perf_counter()
        snap = snap.with_policies(policies(n))
        index_s = time.perf_counter() - started
        started = time.perf_counter()
        tables = compile_all(snap, ports)
        compile_s = time.perf_counter() - started
    finally:
        gc.enable()
    policy_flows = [sum(1 for f in t.values() if is_policy_flow(f)) for t in tables.values()]
    all_flows = [len(t) for t in tables.values()]
    del tables
    gc.collect()
    progress(f"{n}: compiled in {compile_s:.2f} s; memory pass")
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tables = compile_all(snap, ports)
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del tables
    changes = changes_at(snap, ports, n)
    return {"endpoints": n, "hosts": len(ports), "policies": n,
            "index_s": round(index_s, 3), "compile_s": round(compile_s, 3),
            "total_s": round(index_s + compile_s, 3),
            "policy_flows": sum(policy_flows), "policy_flows_max_host": max(policy_flows),
            "flows": sum(all_flows), "flows_max_host": max(all_flows),
            "tables_mib": round((kept - base) / MiB, 1),
            "compile_peak_mib": round((peak - base) / MiB, 1), **changes}


def changes_at(snap: Snapshot, ports: dict[str, HostPorts], n: int) -> dict:
    """A new policy, then a new endpoint that 10 policies select, as the controller applies
    them: the concerned hosts, their wiring and the units the change touched."""
    tables = {}
    for host in ports:
        table = HostFlows()
        table.rebuild(snap, table.view_for(snap, host, ports[host]))
        tables[host] = table

    def apply(after: Snapshot, change: Change, new_ports=None) -> float:
        started = time.perf_counter()
        for host in concerned_hosts(snap, after, change):
            host_ports = (new_ports or ports)[host]
            tables[host].update(after, tables[host].view_for(after, host, host_ports),
                                touched_units(change))
        return time.perf_counter() - started

    extra = policies(n + 1, first_rule=10 * n)[f"p{n}"]
    extra = Policy(n + 1, "extra", "extra", extra.applies_to, ingress=extra.ingress)
    with_policy = snap.with_policies({**snap.policies, extra.id: extra})
    policy_s = apply(with_policy, Change(policies=frozenset({extra.id})))
    snap = with_policy
    host = next(iter(ports))
    ep = Endpoint(n + 1, "new", "new", "net0", host, "pnew", "10.0.255.254", mac_for(n + 1),
                  labels=(("app", "a0"), ("tier", "t0")))
    after = snap.with_endpoint(ep)
    grown = dict(ports)
    grown[host] = HostPorts({**ports[host].endpoints, ep.id: 60000}, ports[host].tunnels)
    endpoint_s = apply(after, Change(frozenset({"net0"}), endpoints=frozenset({ep.id})), grown)
    assert host_wiring(after, host, grown[host]).tracked.get(ep.id) is not None
    return {"new_policy_ms": round(policy_s * 1000, 1),
            "new_endpoint_ms": round(endpoint_s * 1000, 1)}


def print_table(rows: list[dict]) -> None:
    cols = [("endpoints", "endpoints"), ("hosts", "hosts"), ("policies", "policies"),
            ("total_s", "index+compile s"), ("policy_flows_max_host", "policy flows/host max"),
            ("flows_max_host", "flows/host max"), ("tables_mib", "tables MiB"),
            ("compile_peak_mib", "peak MiB"), ("new_policy_ms", "new policy ms"),
            ("new_endpoint_ms", "new endpoint ms")]
    print("  ".join(title for _, title in cols))
    for row in rows:
        print("  ".join(f"{row[key]:>{len(title)}}" for key, title in cols))
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        grow = last["endpoints"] / first["endpoints"]
        print(f"\n{grow:.0f}x the endpoints and policies: {last['total_s'] / first['total_s']:.1f}x "
              f"the time, {last['tables_mib'] / max(first['tables_mib'], 0.1):.1f}x the memory "
              f"of the tables")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,2000,5000,10000")
    args = parser.parse_args()
    rows = [measure(int(n)) for n in args.sizes.split(",")]
    print_table(rows)
    write_results("policy_scale", {"runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
