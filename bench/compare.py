"""ovsfabric and OVN measured side by side, in one process and one run (root, OVS, OVN).

Two labs of identical topology (N hosts as network namespaces, each with its own
ovsdb-server and ovs-vswitchd) are built at once: one run by the ovsfabric controller, one by
OVN (bench/ovn_lab.py). Every step measures both, one after the other, so that each figure is
a ratio taken on one machine at one time (other load here moves absolute timings by ~30 %).

  convergence          API call until a container on another host first answers a 5 ms ping
                       (static neighbours both ends), p50/p95/p99, on a network holding only
                       the pinger; samples of the two systems alternate
  bulk                 N endpoints (internal ports) over the hosts until all programmed; flows
                       per host; CPU and peak RSS of the control plane
  api                  endpoints/s with 8 concurrent clients into the network bulk left
                       (removed again afterwards)
  convergence_loaded   convergence again, the network holding the bulk endpoints (>= 1,000)
  resync               control plane restarted, every switch's table unchanged (>= 10,000
                       flows per host): time until reconciled, flow mods
  flowrate             one switch's table wiped, then reprogrammed by its controller, beside
                       `ovs-ofctl --bundle add-flows` of the same flows into the same switch

    .venv/bin/python bench/compare.py [--quick] [--only convergence,bulk,...]

Prints a table, writes bench/results/compare.json (and the plot, with matplotlib).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import common
from common import (PROBER, CpuWindow, count_flows, dump_flows, ip_for, mac_for, progress,
                    summary_ms, vswitchd_counter)
from lab.proc import run
from sides import OvnSide, add_lab_options, make_sides

RESULTS = os.path.join(common.ROOT, "bench", "results")
CONVERGENCE_BASE, LOADED_BASE, API_BASE = 40000, 45000, 50000  # address indices per step
IDLE_S = 10  # seconds of idle CPU sampled after the resync


def per_side(sides, measure) -> dict:
    """measure(side) for each side; a side that fails is recorded and the other still runs."""
    out = {}
    for side in sides:
        try:
            out[side.name] = measure(side)
        except Exception as exc:  # noqa: BLE001 - recorded in the results, the run goes on
            progress(f"{side.name}: FAILED: {exc}")
            out[side.name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def flows_per_host(side) -> dict[str, int]:
    return {h.name: count_flows(h, side.bridge, side.of_version) for h in side.hosts}


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# --- convergence ---------------------------------------------------------------------------

def convergence_sample(side, i: int, settle: float) -> tuple[float | None, dict]:
    """One endpoint on h1, pinged from h2: ms from the API call to the first reply."""
    c = side.lab.add_container("h1", f"c{i}", mtu=side.mtu)
    try:
        c.configure(mac_for(i), ip_for(i), 16, side.mtu)
        c.neigh(ip_for(PROBER), mac_for(PROBER))
        side.prober.neigh(ip_for(i), mac_for(i))
        # `ip netns exec` execs ping: the PID waited for is ping's. It exits on the first reply.
        ping = subprocess.Popen(["ip", "netns", "exec", side.prober.netns, "ping", "-n", "-q",
                                 "-i", "0.005", "-c", "1", "-w", "5", ip_for(i)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # A new veth keeps ovs-vswitchd busy a moment, and ping needs to start sending.
        time.sleep(settle)
        t0 = time.perf_counter()
        marks = side.attach(c, i)
        answered = ping.wait() == 0
        elapsed = (time.perf_counter() - t0) * 1000
        side.detach(c, i)
    finally:
        side.lab.remove_container(c)
    return (elapsed if answered else None), {k: (v - t0) * 1000 for k, v in marks.items()}


def measure_convergence(sides, count: int, settle: float, base: int) -> dict:
    samples = {s.name: [] for s in sides}
    marks = {s.name: {} for s in sides}
    failed = {s.name: 0 for s in sides}
    for k in range(count):
        for side in sides:  # alternate, so that a burst of other load hits both
            ms, m = convergence_sample(side, base + k, settle)
            if ms is None:
                failed[side.name] += 1
            else:
                samples[side.name].append(ms)
            for name, value in m.items():
                marks[side.name].setdefault(name, []).append(value)
        if (k + 1) % 10 == 0 or k + 1 == count:
            progress(f"convergence: {k + 1}/{count} " + "  ".join(
                f"{n} p50 {statistics.median(v):.1f} ms" for n, v in samples.items() if v))
    out = {}
    for side in sides:
        ms = samples[side.name]
        out[side.name] = {**(summary_ms(ms) if ms else {"samples": 0}),
                          "failed": failed[side.name], "settle_s": settle,
                          "background_endpoints": len(side.population),
                          **{f"{k}_p50_ms": round(statistics.median(v), 2)
                             for k, v in marks[side.name].items()}}
    return out


def step_convergence(sides, args) -> dict:
    return measure_convergence(sides, args.convergence, args.settle, CONVERGENCE_BASE)


def step_convergence_loaded(sides, args) -> dict:
    for side in sides:
        ensure_population(side, args.bulk)
    return measure_convergence(sides, args.convergence, args.settle, LOADED_BASE)


# --- bulk --------------------------------------------------------------------------------------

def ensure_population(side, n: int) -> None:
    if len(side.population) < n:
        progress(f"{side.name}: {n - len(side.population)} background endpoints")
        side.populate(list(range(len(side.population), n)))


def measure_bulk(side, n: int) -> dict:
    start = len(side.population)
    progress(f"bulk: {side.name}: {n} endpoints over {len(side.hosts)} hosts")
    window = CpuWindow(side.control_pids())
    result = side.populate(list(range(start, start + n)))
    # Work left after the converged moment (e.g. reporting state back) is the system's too.
    time.sleep(max(0.0, result["converged_at"] + 2 - time.perf_counter()))
    cpu = window.stop()
    flows = flows_per_host(side)
    progress(f"bulk: {side.name}: converged in {result['converged_s']:.2f} s")
    return {"endpoints": n, "hosts": len(side.hosts),
            "endpoints_in_network": len(side.population),
            "api_s": round(result["api_s"], 3), "plugged_s": round(result["plug_s"], 3),
            "converged_s": round(result["converged_s"], 3),
            "flows_per_host": flows, "control_plane": cpu}


def step_bulk(sides, args) -> dict:
    return per_side(sides, lambda side: measure_bulk(side, args.bulk))


# --- resync and flow programming rate -------------------------------------------------------

def ensure_flows(side, target: int) -> None:
    """Adds background endpoints until every host holds at least `target` flows."""
    while (least := min(flows_per_host(side).values())) < target:
        per_endpoint = least / max(len(side.population), 1)  # over-estimates: fixed flows
        need = min(4000, math.ceil((target - least) / max(per_endpoint, 1) * 1.05) + 5)
        progress(f"{side.name}: {least} flows on the emptiest host, adding {need} endpoints "
                 f"for {target}")
        start = len(side.population)
        side.populate(list(range(start, start + need)))


def measure_resync(side, target: int) -> dict:
    ensure_flows(side, target)
    before = flows_per_host(side)
    received = {h.name: vswitchd_counter(h, "ofproto_recv_openflow") for h in side.hosts}
    progress(f"resync: {side.name}: restarting, {min(before.values())}+ flows per host")
    side.stop_control()
    t0 = time.perf_counter()
    side.start_control()
    up = time.perf_counter()
    result = side.wait_reconciled()
    after = flows_per_host(side)
    # What the control plane costs while nothing changes, at this size.
    window = CpuWindow(side.control_pids())
    time.sleep(IDLE_S)
    idle = {role: round(v["cpu_s"] / IDLE_S * 100, 1) for role, v in window.stop().items()}
    return {"idle_cpu_percent": idle,"flows_per_host": before, "flows_unchanged": before == after,
            "reconciled_s": round(result["done_at"] - t0, 3),
            "process_up_s": round(up - t0, 3),
            "flow_mods": result["flow_mods"],
            "signal": result.get("signal"),
            "controller_reported": result.get("controller_reported"),
            # Every OpenFlow message the switch took (flow mods, bundle controls, barriers,
            # the table read-back...): the same yardstick for both, since OVN counts no flow
            # mods of its own (it deletes every flow on connecting and sends its table again).
            "openflow_msgs_received": {h.name: vswitchd_counter(h, "ofproto_recv_openflow")
                                       - received[h.name] for h in side.hosts}}


def step_resync(sides, args) -> dict:
    return per_side(sides, lambda side: measure_resync(side, args.resync_flows))


def raw_bundle_rate(host, bridge: str, version: str, flows: list[str]) -> float:
    """Seconds for `ovs-ofctl --bundle add-flows` of these flows into an emptied table."""
    with tempfile.NamedTemporaryFile("w", suffix=".flows") as f:
        f.write("\n".join(flows) + "\n")
        f.flush()
        mgmt = host.bridge_mgmt(bridge)
        run(["ovs-ofctl", "-O", version, "del-flows", mgmt])
        started = time.perf_counter()
        run(["ovs-ofctl", "-O", version, "--bundle", "add-flows", mgmt, f.name], timeout=300)
        seconds = time.perf_counter() - started
    installed = count_flows(host, bridge, version)
    if installed != len(flows):
        raise RuntimeError(f"raw add-flows installed {installed} of {len(flows)} flows")
    run(["ovs-ofctl", "-O", version, "del-flows", mgmt])
    return seconds


def measure_flow_rate(side, target: int) -> dict:
    """h1's controller stopped, its table dumped and wiped; the same flows added raw with
    `ovs-ofctl --bundle add-flows` and wiped again; then the controller started: the time
    until it has the whole table back in."""
    ensure_flows(side, target)
    h = side.hosts[0]
    side.stop_control(hosts=[h])
    text = dump_flows(h, side.bridge, side.of_version, "--no-stats")
    flows = [line.strip() for line in text.splitlines() if "actions=" in line]
    progress(f"flowrate: {side.name}: {len(flows)} flows on {h.name}, raw bundle")
    raw_s = raw_bundle_rate(h, side.bridge, side.of_version, flows)
    t0 = time.perf_counter()
    side.start_control(hosts=[h])
    result = side.wait_host_programmed(h.name, len(flows))
    start = result["connected_at"] or t0
    seconds = result["done_at"] - start
    installed = count_flows(h, side.bridge, side.of_version)
    return {"host": h.name, "flows": len(flows), "installed_after": installed,
            "raw_bundle_s": round(raw_s, 3), "raw_flows_per_s": round(len(flows) / raw_s),
            "controller_s": round(seconds, 3),
            "controller_flows_per_s": round(installed / seconds),
            "counted_from": "switch connected" if result["connected_at"] else "agent started",
            "since_process_start_s": round(result["done_at"] - t0, 3),
            "flow_mods": result["flow_mods"],
            "controller_reported": result.get("controller_reported")}


def step_flowrate(sides, args) -> dict:
    return per_side(sides, lambda side: measure_flow_rate(side, args.resync_flows))


# --- API ------------------------------------------------------------------------------------

def _api_figures(n: int, r: dict) -> dict:
    return {"endpoints": n, "clients": 8, "seconds": round(r["seconds"], 3),
            "endpoints_per_s": round(n / r["seconds"], 1),
            "p50_ms": round(statistics.median(r["latencies_ms"]), 1),
            "p95_ms": round(common.percentile(r["latencies_ms"], 95), 1)}


def measure_api(side, n: int, background: int) -> dict:
    """8 clients add endpoints to the measured network as bulk left it; they are removed
    again afterwards (untimed), so that later steps find the network as it was. OVN twice:
    without waiting (a northbound commit) and with --wait=hv (flows in, like the POST)."""
    ensure_population(side, background)
    present = len(side.population)
    flows = max(flows_per_host(side).values())
    progress(f"api: {side.name}: {n} endpoints, 8 clients, {present} present")
    out = {"endpoints_present": present, "flows_per_host_before": flows,
           **_api_figures(n, side.api_rate(list(range(API_BASE, API_BASE + n))))}
    if isinstance(side, OvnSide):
        progress(f"api: {side.name}: again with --wait=hv")
        start = API_BASE + n
        out["wait_hv"] = _api_figures(n, side.api_rate(list(range(start, start + n)),
                                                       wait=True))
    side.api_cleanup()
    return out


def step_api(sides, args) -> dict:
    return per_side(sides, lambda side: measure_api(side, args.api, args.bulk))


# The default order grows the fabric: convergence on an empty network; 1,000 endpoints for
# bulk, the API (its endpoints removed again) and the loaded convergence; ~10,000 flows per
# host for resync and flowrate.
STEPS = {"convergence": step_convergence, "bulk": step_bulk, "api": step_api,
         "convergence_loaded": step_convergence_loaded, "resync": step_resync,
         "flowrate": step_flowrate}


# --- the run ---------------------------------------------------------------------------------

def versions() -> dict:
    def first_line(*cmd):
        return run(cmd).stdout.splitlines()[0]
    # The controller runs from this work tree, which others change: name the code measured.
    dirty = run(["git", "-C", common.ROOT, "status", "--porcelain", "--untracked-files=no",
                 "--", "api", "controller", "flows", "model", "ovsdb", "cli"]).stdout.split("\n")
    return {"ovs": first_line("ovs-vswitchd", "--version"),
            "ovn": first_line("ovn-controller", "--version"),
            "ovsfabric_commit": run(["git", "-C", common.ROOT, "rev-parse", "--short",
                                     "HEAD"]).stdout.strip(),
            "ovsfabric_uncommitted": [line[3:] for line in dirty if line.strip()]}


def run_steps(steps: dict, sides, args, results: dict) -> None:
    """``args.steps`` in order, each step's figures (or its error: later steps still run)
    and the load average after it into ``results``, written after every step."""
    for step in args.steps:
        progress(f"step {step} (load average {loadavg()})")
        results["meta"]["loadavg"][f"{step} start"] = loadavg()
        started = time.perf_counter()
        try:
            results[step] = steps[step](sides, args)
        except Exception as exc:  # noqa: BLE001 - recorded; later steps may still run
            progress(f"step {step} FAILED: {exc}")
            results[step] = {"error": f"{type(exc).__name__}: {exc}"}
        results["meta"]["loadavg"][step] = loadavg()
        progress(f"step {step}: {time.perf_counter() - started:.0f} s")
        write(results, args.out)  # a run killed later keeps what it measured


def write(results: dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)


def step_parser(description: str, steps, hosts: int) -> argparse.ArgumentParser:
    """The options of every side-by-side benchmark: --quick, --only (its steps), --hosts,
    --settle."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    p.add_argument("--only", default=",".join(steps),
                   help=f"comma-separated steps, run in this order: {', '.join(steps)}")
    p.add_argument("--hosts", type=int, default=hosts)
    p.add_argument("--settle", type=float, default=0.2,
                   help="seconds between creating a container's veth and the API call")
    return p


def parse_steps(p: argparse.ArgumentParser, argv, steps, sizes: dict) -> argparse.Namespace:
    """The arguments, with each size of ``sizes`` (name: (quick, full)) not given set by
    --quick, and ``steps`` the list of steps asked for."""
    args = p.parse_args(argv)
    for name, (quick, full) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.steps) - set(steps)
    if unknown:
        p.error(f"unknown steps {sorted(unknown)}; known: {', '.join(steps)}")
    return args


def run_meta(args, sizes) -> dict:
    """What a result file says of its run: when, how big, with what, under which load."""
    return {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "hosts": args.hosts,
            "quick": args.quick, "steps": args.steps, "settle_s": args.settle,
            "sizes": {k: getattr(args, k) for k in sizes}, "command": sys.argv,
            "versions": versions(), "cpus": os.cpu_count(), "loadavg": {"start": loadavg()}}


def parse_args(argv=None):
    p = step_parser(__doc__, STEPS, hosts=5)
    p.add_argument("--convergence", type=int, help="samples per system (default 50)")
    p.add_argument("--bulk", type=int, help="bulk / background endpoints (default 1000)")
    p.add_argument("--resync-flows", type=int, help="flows per host for resync and flowrate "
                                                    "(default 10000)")
    p.add_argument("--api", type=int, help="endpoints added by the API step (default 200; OVN twice)")
    p.add_argument("--out", default=os.path.join(RESULTS, "compare.json"))
    add_lab_options(p)
    return parse_steps(p, argv, STEPS, dict(convergence=(5, 50), bulk=(100, 1000),
                                            resync_flows=(600, 10000), api=(40, 200)))


def main(argv=None) -> int:
    args = parse_args(argv)
    sides = make_sides(args)
    results: dict = {"meta": run_meta(args, ("convergence", "bulk", "resync_flows", "api"))}
    try:
        for side in sides:
            progress(f"{side.name}: lab of {args.hosts} hosts")
            side.up()
        run_steps(STEPS, sides, args, results)
    finally:
        for side in reversed(sides):
            progress(f"{side.name}: tearing down")
            side.down()
    from report import table
    print(table(results))
    print(f"\nwritten: {args.out}")
    if any(s in results for s in ("convergence", "convergence_loaded")):
        try:
            import plot
        except ImportError:  # matplotlib is the optional extra `bench`
            print("(no plot: pip install -e '.[bench]')")
        else:
            print(f"plot: {plot.plot(results, os.path.splitext(args.out)[0] + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
