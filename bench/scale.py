"""Simulated scale run (issue 6): the controller's flow computation at 100 hosts and 10,000
endpoints, without switches or OVSDB.

The wiring of controller.fabric and controller.switch, run synchronously: a Store, one
HostFlows per host, HostPorts per host (a tunnel to every other host on ofport 10+i; each
endpoint on the ofport the store assigns it), and after every store change `host_wiring` and
`HostFlows.update` on the concerned hosts with the units the change touched. Endpoints are
created one by one, in a seeded random order, into networks of --network-size endpoints
spread over --hosts-per-network hosts (every host gets the same number of network slots).

Two passes over the same sequence, because tracemalloc slows allocation-heavy code about
fivefold:
- timing pass (no tracing): per change, the update work (the store listener, host_wiring and
  HostFlows.update on every touched host) and, apart, the store write; p50/p99 per 10 % of
  the run, hosts touched, flows added, cyclic-GC pauses, flows per host, process RSS. At
  the end: a whole-table rebuild of the busiest host (a switch reconnecting), a deletion
  sample, tables checked against `compile_host`, and an ARP + ping through flowsim.
- memory pass (tracemalloc on from before the Store is made): the same endpoints, the
  tables brought up to date at each checkpoint (as a session that fell behind would: the
  same tables), memory after gc.collect(); at the end the tables are dropped to split the
  total into store and tables. SQLite's own memory is outside tracemalloc (not counted).

Prints a table (progress on stderr) and writes bench/results/scale.json.
"""
from __future__ import annotations

import argparse
import functools
import gc
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common import mac_for, percentile, progress, write_results

from flows import HostFlows, HostPorts, compile_host, host_wiring
from controller.heap import freeze_long_lived
from flows.host_flows import concerned_hosts, touched_units
from model import Store

TUNNEL_OFPORT_BASE = 10
MiB = 2 ** 20


class SimulatedController:
    """What Fabric._store_changed records and what each SwitchSession._converge computes,
    without switches: converge() runs the sessions' work for every host that has some."""

    def __init__(self, store: Store, ports: dict[str, HostPorts]):
        self.store = store
        self.ports = ports
        self.tables = {host: HostFlows() for host in ports}
        snap = store.snapshot()
        for host, table in self.tables.items():
            table.rebuild(snap, table.view_for(snap, host, ports[host]))
        self.previous = snap
        self.dirty: dict[str, set] = {}
        self.listener_seconds = 0.0
        self.view_seconds = 0.0
        store.subscribe(self._store_changed)

    def _store_changed(self, snap, change) -> None:
        # Runs inside the store's write: timed apart, so that it counts as update work.
        started = time.perf_counter()
        units = touched_units(change)
        for host in concerned_hosts(self.previous, snap, change):
            self.dirty.setdefault(host, set()).update(units)
        self.previous = snap
        self.listener_seconds += time.perf_counter() - started

    def converge(self) -> tuple[int, int, int]:
        """Brings every dirty host's table up to date; returns (hosts, flows added, deleted)."""
        snap = self.store.snapshot()
        added = deleted = 0
        dirty, self.dirty = self.dirty, {}
        for host, units in dirty.items():
            started = time.perf_counter()
            view = self.tables[host].view_for(snap, host, self.ports[host])
            self.view_seconds += time.perf_counter() - started
            changes = self.tables[host].update(snap, view, units)
            if changes is None:  # only when tunnels change, which never happens here
                raise RuntimeError(f"{host}: update asked for a rebuild")
            added += len(changes.add)
            deleted += len(changes.delete)
        return len(dirty), added, deleted

    def flows_per_host(self) -> list[int]:
        return [len(t.flows) for t in self.tables.values()]


class GcPauses:
    """Times CPython's cyclic collections: they stop the controller too, and their cost
    grows with the number of live objects."""

    def __init__(self):
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def take(self) -> list[tuple[int, float]]:
        pauses, self.pauses = self.pauses, []
        return pauses

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


def build_fabric(args) -> tuple[Store, dict[str, HostPorts], list[tuple[str, str]]]:
    """Hosts, networks and the endpoints to create, in order: (network id, host) each."""
    rng = random.Random(args.seed)
    store = Store(":memory:")
    hosts = [f"h{i}" for i in range(args.hosts)]
    for i, host in enumerate(hosts):
        store.create_host(host, f"unix:/run/{host}.sock", f"198.18.{i // 250}.{1 + i % 250}")
    ports = {host: HostPorts({}, {peer: TUNNEL_OFPORT_BASE + i for i, peer in enumerate(hosts)
                                  if peer != host})
             for host in hosts}
    per_slot = max(1, args.network_size // args.hosts_per_network)
    # Each network has hosts_per_network slots of per_slot endpoints. Slots take hosts from
    # a shuffled deck, dealt again when empty: every host gets the same number of slots.
    deck: list[str] = []
    plan = []
    for n in range(-(-args.endpoints // args.network_size)):
        network = store.create_network(f"net{n}", f"10.{n // 256}.{n % 256}.0/24").id
        for _ in range(args.hosts_per_network):
            if not deck:
                deck = rng.sample(hosts, len(hosts))
            plan += [(network, deck.pop())] * per_slot
    rng.shuffle(plan)  # networks fill evenly: at 10 % of the run each holds ~10 % of its size
    return store, ports, plan[:args.endpoints]


def create(store: Store, plan_entry: tuple[str, str], i: int):
    """Endpoint i, with a port name so that the store assigns it an OpenFlow number."""
    network, host = plan_entry
    return store.create_endpoint(network, host, port=f"p{i}", mac=mac_for(i))


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def distribution(samples_s: list[float]) -> dict:
    return {"p50_ms": ms(statistics.median(samples_s)), "p99_ms": ms(percentile(samples_s, 99)),
            "max_ms": ms(max(samples_s))}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed_change(controller: SimulatedController, write) -> dict:
    """One store write and the update work it causes, timed apart."""
    controller.listener_seconds = controller.view_seconds = 0.0
    started = time.perf_counter()
    result = write()
    written = time.perf_counter()
    hosts, added, deleted = controller.converge()
    done = time.perf_counter()
    update = controller.listener_seconds + done - written
    return {"result": result, "store_s": written - started - controller.listener_seconds,
            "update_s": update, "view_s": controller.view_seconds,
            "per_host_s": update / hosts if hosts else 0.0,
            "hosts": hosts, "added": added, "deleted": deleted}


def summarize(changes: list[dict], gc_pauses: list[tuple[int, float]]) -> dict:
    return {"changes": len(changes),
            "update": distribution([c["update_s"] for c in changes]),
            "host_wiring_p50_ms": ms(statistics.median(c["view_s"] for c in changes)),
            "update_per_touched_host_p50_ms": ms(statistics.median(
                c["per_host_s"] for c in changes)),
            "store_write": distribution([c["store_s"] for c in changes]),
            "hosts_touched_mean": round(statistics.mean(c["hosts"] for c in changes), 2),
            "hosts_touched_max": max(c["hosts"] for c in changes),
            "flows_added_mean": round(statistics.mean(c["added"] for c in changes), 2),
            "flows_deleted_mean": round(statistics.mean(c["deleted"] for c in changes), 2),
            "gc_collections": len(gc_pauses),
            "gc_full_collections": sum(1 for generation, _ in gc_pauses if generation == 2),
            "gc_pause_total_ms": ms(sum(s for _, s in gc_pauses)),
            "gc_pause_max_ms": ms(max((s for _, s in gc_pauses), default=0.0))}


# ---- timing pass ----------------------------------------------------------------------------

def timing_pass(args, rng: random.Random) -> dict:
    rss_before = rss_bytes()
    store, ports, plan = build_fabric(args)
    controller = SimulatedController(store, ports)
    progress(f"timing pass: {args.hosts} hosts, {len(store.snapshot().networks)} networks, "
             f"creating {len(plan)} endpoints")
    gc_pauses = GcPauses()
    created, checkpoints, window = [], [], []
    for i, entry in enumerate(plan, 1):
        change = timed_change(controller, functools.partial(create, store, entry, i))
        created.append(change.pop("result").id)
        window.append(change)
        if args.freeze_every and i % args.freeze_every == 0:
            freeze_long_lived()  # what the controller's heap thread does every 30 s
        if i % args.checkpoint == 0 or i == len(plan):
            flows = controller.flows_per_host()
            point = {"endpoints": i, **summarize(window, gc_pauses.take()),
                     "flows_total": sum(flows),
                     "flows_per_host_mean": round(statistics.mean(flows), 1),
                     "flows_per_host_max": max(flows),
                     "rss_growth_bytes": rss_bytes() - rss_before}
            checkpoints.append(point)
            window = []
            progress(f"{i} endpoints: update p50 {point['update']['p50_ms']} ms, "
                     f"{sum(flows)} flows")
    gc_pauses.take()
    progress("rebuilding the busiest host's table")
    rebuild = rebuild_cost(controller)
    progress(f"deleting {args.deletions} endpoints")
    deletion = [timed_change(controller, functools.partial(store.delete_endpoint, endpoint_id))
                for endpoint_id in rng.sample(created, min(args.deletions, len(created)))]
    result = {"checkpoints": checkpoints, "rebuild": rebuild,
              "deletion": summarize(deletion, gc_pauses.take())}
    gc_pauses.close()
    progress("checking tables against compile_host")
    result["check_tables"] = check_tables(controller, rng, 5)
    if not args.no_ping:
        progress("ARP and ping through flowsim")
        result["check_ping"] = check_ping(controller, rng)
    return result


def rebuild_cost(controller: SimulatedController) -> dict:
    """A switch reconnecting: the host's whole table compiled again into a fresh HostFlows."""
    snap = controller.store.snapshot()
    host = max(controller.tables, key=lambda h: len(controller.tables[h].flows))
    times = []
    for _ in range(3):
        started = time.perf_counter()
        flows = HostFlows().rebuild(snap, host_wiring(snap, host, controller.ports[host]))
        times.append(time.perf_counter() - started)
    return {"host": host, "flows": len(flows), "runs": 3, "p50_ms": ms(statistics.median(times))}


def check_tables(controller: SimulatedController, rng: random.Random, count: int) -> dict:
    snap = controller.store.snapshot()
    sample = rng.sample(sorted(controller.tables), min(count, len(controller.tables)))
    differing = [h for h in sample
                 if controller.tables[h].flows != compile_host(snap, h, controller.ports[h])]
    return {"hosts_checked": sample, "equal": not differing, "differing": differing}


def check_ping(controller: SimulatedController, rng: random.Random) -> dict:
    """Loads the tables of two hosts of one network into flowsim, joins their tunnels and
    sends an ARP request and a ping from an endpoint on one to an endpoint on the other
    (the ARP request also goes into tunnels to the network's other hosts: nobody there)."""
    from flowsim import Packet, SimFabric, SimSwitch
    from harness.simfabric import messages_for

    snap = controller.store.snapshot()
    network = rng.choice(sorted(snap.endpoints_by_network.keys()))
    members = sorted(snap.network_endpoints(network), key=lambda e: e.seq)
    src = rng.choice(members)
    dst = rng.choice([e for e in members if e.host != src.host])
    fabric = SimFabric()
    for host in (src.host, dst.host):
        switch = SimSwitch(dpid=snap.hosts[host].dpid)
        switch.apply_all(messages_for(controller.tables[host].flows))
        fabric.add_switch(host, switch)
    fabric.link_tunnel((src.host, controller.ports[src.host].tunnels[dst.host]),
                       (dst.host, controller.ports[dst.host].tunnels[src.host]))
    fabric.attach(src.id, (src.host, src.ofport))
    fabric.attach(dst.id, (dst.host, dst.ofport))
    arp = fabric.send(src.id, Packet.arp_request(src.mac, src.ip, dst.ip))
    ping = fabric.send(src.id, Packet.icmp(src.mac, dst.mac, src.ip, dst.ip))
    return {"from": f"{src.name}@{src.host}", "to": f"{dst.name}@{dst.host}",
            "arp_answered": [(n, reply.arp_sha) for n, reply in arp] == [(src.id, dst.mac)],
            "ping_delivered": [n for n, _ in ping] == [dst.id]}


# ---- memory pass ----------------------------------------------------------------------------

def memory_pass(args) -> dict:
    gc.collect()
    tracemalloc.start()
    store, ports, plan = build_fabric(args)
    controller = SimulatedController(store, ports)
    progress(f"memory pass (tracemalloc): creating {len(plan)} endpoints")
    points = []
    for i, entry in enumerate(plan, 1):
        create(store, entry, i)
        if i % args.checkpoint == 0 or i == len(plan):
            controller.converge()
            gc.collect()
            total = tracemalloc.get_traced_memory()[0]
            flows = sum(controller.flows_per_host())
            points.append({"endpoints": i, "bytes": total, "flows": flows,
                           "bytes_per_endpoint": round(total / i)})
            progress(f"{i} endpoints: {total / MiB:.1f} MiB")
    # The tables' share: what dropping them frees (strings they share with the snapshot,
    # such as MACs, stay and count as the store's).
    del controller.tables
    gc.collect()
    store_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    last = points[-1]
    tables_bytes = last["bytes"] - store_bytes
    return {"measure": "tracemalloc current after gc.collect(); SQLite's memory not included",
            "checkpoints": points,
            "at_end": {"endpoints": last["endpoints"], "flows": last["flows"],
                       "store_bytes": store_bytes,
                       "store_bytes_per_endpoint": round(store_bytes / last["endpoints"]),
                       "tables_bytes": tables_bytes,
                       "tables_bytes_per_flow": round(tables_bytes / last["flows"])},
            "fit": fit_line([p["endpoints"] for p in points], [p["bytes"] for p in points])}


def fit_line(xs: list[float], ys: list[float]) -> dict:
    """Least squares y = slope * x + intercept, and R²."""
    mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
    slope = (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
             / sum((x - mean_x) ** 2 for x in xs))
    intercept = mean_y - slope * mean_x
    residual = sum((y - slope * x - intercept) ** 2 for x, y in zip(xs, ys))
    total = sum((y - mean_y) ** 2 for y in ys)
    return {"slope_bytes_per_endpoint": round(slope, 1), "intercept_bytes": round(intercept),
            "r2": round(1 - residual / total, 5)}


# ---- report ---------------------------------------------------------------------------------

def print_table(results: dict) -> None:
    timing, memory = results["timing"], results["memory"]
    print(f"\nsimulated fabric: {results['hosts']} hosts, {results['networks']} networks of "
          f"{results['network_size']} endpoints, each on {results['hosts_per_network']} hosts")
    print("update: store listener + host_wiring + HostFlows.update on every touched host; "
          "store: the write itself (SQLite :memory:, snapshot); ms per change over the last "
          f"{results['checkpoint']} changes; gc: cyclic-GC pauses in that window; "
          "traced: tracemalloc (memory pass); RSS: growth of the process (timing pass)")
    print(f"{'endpoints':>9} | {'update p50/p99 ms':>17} | {'wiring':>9} | {'per host':>8} | "
          f"{'store p50':>9} | {'hosts':>5} | {'flows+':>6} | {'gc total/max ms':>15} | "
          f"{'flows':>7} | {'per host mean/max':>17} | {'traced MiB':>10} | {'B/endpoint':>10} | "
          f"{'RSS MiB':>7}")
    for p, m in zip(timing["checkpoints"], memory["checkpoints"]):
        print(f"{p['endpoints']:>9} | {p['update']['p50_ms']:>7.3f} / {p['update']['p99_ms']:>7.3f} | "
              f"{p['host_wiring_p50_ms']:>9.3f} | {p['update_per_touched_host_p50_ms']:>8.3f} | "
              f"{p['store_write']['p50_ms']:>9.3f} | {p['hosts_touched_mean']:>5.2f} | "
              f"{p['flows_added_mean']:>6.1f} | "
              f"{p['gc_pause_total_ms']:>7.0f} / {p['gc_pause_max_ms']:>5.1f} | "
              f"{p['flows_total']:>7} | {p['flows_per_host_mean']:>8.1f} / {p['flows_per_host_max']:>6} | "
              f"{m['bytes'] / MiB:>10.1f} | {m['bytes_per_endpoint']:>10} | "
              f"{p['rss_growth_bytes'] / MiB:>7.1f}")
    fit, end, lin = memory["fit"], memory["at_end"], results["linearity"]
    print(f"memory (traced) vs endpoints: least squares {fit['slope_bytes_per_endpoint']:.0f} B "
          f"per endpoint + {fit['intercept_bytes'] / MiB:.1f} MiB, R² {fit['r2']}")
    print(f"  at {end['endpoints']}: store {end['store_bytes'] / MiB:.1f} MiB "
          f"({end['store_bytes_per_endpoint']} B/endpoint), tables "
          f"{end['tables_bytes'] / MiB:.1f} MiB ({end['tables_bytes_per_flow']} B/flow, "
          f"{end['flows']} flows)")
    print(f"last / first checkpoint, p50: update {lin['update_p50']}, per touched host "
          f"{lin['update_per_touched_host_p50']}, host_wiring {lin['host_wiring_p50']}, "
          f"store write {lin['store_write_p50']}")
    d, r = timing["deletion"], timing["rebuild"]
    print(f"deletion of {d['changes']} endpoints: update p50 / p99 {d['update']['p50_ms']} / "
          f"{d['update']['p99_ms']} ms, store p50 {d['store_write']['p50_ms']} ms, "
          f"{d['hosts_touched_mean']} hosts touched, {d['flows_deleted_mean']} flows deleted and "
          f"{d['flows_added_mean']} added per change")
    print(f"whole-table rebuild of {r['host']} ({r['flows']} flows, what a reconnect "
          f"compiles): {r['p50_ms']} ms (median of {r['runs']})")
    t = timing["check_tables"]
    print(f"incremental tables == compile_host on {len(t['hosts_checked'])} random hosts: "
          f"{t['equal']}{'' if t['equal'] else ' (differ: ' + ', '.join(t['differing']) + ')'}")
    if "check_ping" in timing:
        c = timing["check_ping"]
        print(f"flowsim {c['from']} -> {c['to']}: ARP answered {c['arp_answered']}, "
              f"ping delivered {c['ping_delivered']}")
    print(f"total {results['seconds']} s (code: {results['commit']})")


def commit() -> str:
    """The code measured: HEAD, marked -dirty when the work tree differs from it."""
    return subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                          check=False, capture_output=True, text=True).stdout.strip()


def ratio(last: float, first: float) -> float | None:
    return round(last / first, 2) if first else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=10000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--network-size", type=int, default=100)
    parser.add_argument("--hosts-per-network", type=int, default=10)
    parser.add_argument("--checkpoint", type=int, default=None,
                        help="endpoints between checkpoints (default: a tenth of the run)")
    parser.add_argument("--deletions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--freeze-every", type=int, default=500,
                        help="changes between two gc freezes, as the controller's heap thread "
                             "does every 30 s (0: never, CPython's own collector alone)")
    parser.add_argument("--no-ping", action="store_true", help="skip the flowsim check")
    parser.add_argument("--quick", action="store_true",
                        help="1,000 endpoints on 20 hosts, 100 deletions (a smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.endpoints, args.hosts, args.deletions = 1000, 20, 100
    args.checkpoint = args.checkpoint or max(1, args.endpoints // 10)
    started = time.perf_counter()
    rng = random.Random(args.seed)
    timing = timing_pass(args, rng)
    memory = memory_pass(args)
    first, last = timing["checkpoints"][0], timing["checkpoints"][-1]
    results = {
        "hosts": args.hosts, "networks": -(-args.endpoints // args.network_size),
        "network_size": args.network_size, "hosts_per_network": args.hosts_per_network,
        "checkpoint": args.checkpoint, "seed": args.seed, "commit": commit(),
        "linearity": {
            "update_p50": ratio(last["update"]["p50_ms"], first["update"]["p50_ms"]),
            "update_p99": ratio(last["update"]["p99_ms"], first["update"]["p99_ms"]),
            "update_per_touched_host_p50": ratio(last["update_per_touched_host_p50_ms"],
                                                 first["update_per_touched_host_p50_ms"]),
            "host_wiring_p50": ratio(last["host_wiring_p50_ms"], first["host_wiring_p50_ms"]),
            "store_write_p50": ratio(last["store_write"]["p50_ms"],
                                     first["store_write"]["p50_ms"])},
        "timing": timing, "memory": memory,
        "seconds": round(time.perf_counter() - started, 1)}
    print_table(results)
    path = write_results("scale", results)
    progress(f"wrote {path}")
    checks = [timing["check_tables"]["equal"]]
    if "check_ping" in timing:
        checks += [timing["check_ping"]["arp_answered"], timing["check_ping"]["ping_delivered"]]
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
