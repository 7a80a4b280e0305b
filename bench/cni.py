"""The CNI plugin (cni/) as kubelet's runtime runs it, on a lab of its own (root, OVS).

The plugin is installed as `ovsfabric cni install` installs it (a zipapp run by
`/usr/bin/python3 -IS`) and executed inside the node's (h1's) namespace by a small runtime
stand-in (bench/cni_agent.py): fork and exec, the verb in the environment, the network
configuration on stdin; each run timed from just before the fork to its exit. The controller
is a separate `ovsfabric serve` whose API the hosts reach on the management network, with a
token (the plugin reads its host token from a file, as deployed).

  version    CNI_COMMAND=VERSION, run N times one after the other: p50 / p99 (target <= 50 ms)
  parallel   P pods on h1 whose ADDs are all launched at once, as kubelet starting them
             would (their namespaces made beforehand, as the runtime does before calling the
             plugin): time until every ADD has returned and every pod has answered a ping
             from a pod on h2 (each ping starts as its ADD returns) (target <= 10 s); R
             rounds, the pods deleted between them. The last round's pods stay: the next
             step runs with P attachments on the node.
  add        with those P attachments on the node, N ADDs one after the other, each followed
             by the DEL of the same attachment (so the node stays at ~P): ADD p50 / p99
             (targets 100 / 250 ms), DEL p99 (target 100 ms); every 10th added pod is pinged
             from h2 (untimed) to prove the ADD's result works
  breakdown  B more ADD/DEL pairs, the ADD run through bench/cni_breakdown.py (the same
             interpreter and flags, the plugin's modules from its zipapp) with a stopwatch on
             the interpreter's start, the imports, every REST request and every command

    .venv/bin/python bench/cni.py [--quick] [--json] [--only version,parallel,add,breakdown]

Sizes (full / --quick): --version-runs 200 / 30, --pods 110 / 110, --parallel-rounds 3 / 1,
--adds 50 / 10, --breakdown 20 / 5. Prints a table (or, with --json, the results as JSON) on stdout, progress
on stderr; writes bench/results/cni.json.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import common
from common import CpuWindow, progress, summary_ms
from compare import loadavg, parse_steps, run_meta, step_parser
from lab import Lab, netns
from lab.cni import CniRuntime
from lab.controller import ControllerProcess
from lab.proc import alive, cmdline, read_pidfile, stop_pid
from security import tokens

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = ("version", "parallel", "add", "breakdown")
NETWORK = "cni-bench"
SUBNET = "10.62.0.0/16"
TOKEN = "cni-bench-token"
PROBE = "probe"  # the pinging pod, on h2
TARGETS = {"version_p50_ms": 50, "version_p99_ms": 50, "add_p50_ms": 100, "add_p99_ms": 250,
           "del_p99_ms": 100, "parallel_s": 10}


# --- the runtime stand-in in a host's namespace ----------------------------------------------

class Agent:
    """bench/cni_agent.py in a host's namespace: runs jobs there, answers as each ends."""

    def __init__(self, host_netns: str):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", host_netns, "/usr/bin/python3", "-IS",
             os.path.join(HERE, "cni_agent.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lock = threading.Lock()

    def run(self, jobs: list[dict], on_each=None) -> list[dict]:
        """Results in the jobs' order; on_each(result) is called as each job ends."""
        with self.lock:
            self.proc.stdin.write(json.dumps({"jobs": jobs}) + "\n")
            self.proc.stdin.flush()
            results = [None] * len(jobs)
            for _ in jobs:
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError("the CNI agent exited")
                result = json.loads(line)
                results[result["index"]] = result
                if on_each is not None:
                    on_each(result)
            return results

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                stop_pid(self.proc.pid)


class Node:
    """One lab host as a CNI node: its runtime's dirs and config, its agent, its pods."""

    def __init__(self, host, workdir: str, controller_url: str):
        os.makedirs(workdir, exist_ok=True)
        token_file = os.path.join(workdir, "token")
        with open(token_file, "w") as f:
            f.write(tokens.host_token(TOKEN, host.name))
        self.runtime = CniRuntime(host, workdir, controller_url, NETWORK, token_file=token_file)
        self.host = host
        self.agent = Agent(host.netns)
        self.pods: dict[str, str] = {}  # container id -> its netns name

    def job(self, command: str, container_id: str = "", argv: list[str] | None = None,
            config: dict | None = None) -> dict:
        env = {"CNI_COMMAND": command, "CNI_PATH": self.runtime.bin_dir,
               "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        if container_id:
            env.update(CNI_CONTAINERID=container_id, CNI_IFNAME="eth0",
                       CNI_ARGS=f"K8S_POD_NAMESPACE=bench;K8S_POD_NAME={container_id}")
            if command == "ADD":
                env["CNI_NETNS"] = f"/run/netns/{self.pods[container_id]}"
        return {"argv": argv or [self.runtime.plugin], "env": env,
                "stdin": json.dumps(config or self.runtime.config())}

    def sandbox(self, container_id: str) -> str:
        """The pod's namespace, made as a runtime makes it before calling the plugin."""
        name = f"{self.host.netns}-{container_id}"
        netns.add(name)
        self.pods[container_id] = name
        return name

    def remove_sandbox(self, container_id: str) -> None:
        netns.delete(self.pods.pop(container_id))


def check_ok(result: dict, what: str) -> dict | None:
    if result["status"] != 0:
        raise RuntimeError(f"{what}: exit {result['status']}: {result['stdout'].strip()} "
                           f"{result['stderr'].strip()}")
    return json.loads(result["stdout"]) if result["stdout"].strip() else None


def pod_ip(result: dict) -> str:
    return result["ips"][0]["address"].split("/")[0]


def ping(prober_netns: str, ip: str, wait_s: int = 5) -> bool:
    """One ping every 20 ms until the first reply (or wait_s): True if one came."""
    return subprocess.run(["ip", "netns", "exec", prober_netns, "ping", "-n", "-q", "-i",
                           "0.02", "-c", "1", "-w", str(wait_s), ip],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


# --- steps -------------------------------------------------------------------------------------

def measure_version(node: Node, runs: int) -> dict:
    samples = []
    for _ in range(runs):
        result = node.agent.run([node.job("VERSION")])[0]
        out = check_ok(result, "VERSION")
        assert "supportedVersions" in out, out
        samples.append(result["ms"])
    return {**summary_ms(samples), "interpreter": "/usr/bin/python3 -IS",
            "plugin_bytes": os.path.getsize(node.runtime.plugin)}


def measure_parallel_rounds(node: Node, prober_netns: str, pods: int, daemons: dict,
                            rounds: int) -> dict:
    """``rounds`` times ``pods`` at once (one sample each: other load here moves it by tens
    of percent); between rounds the pods are deleted again (at once, untimed). The last
    round's pods stay on the node."""
    samples = []
    for r in range(rounds):
        samples.append(measure_parallel(node, prober_netns, pods, daemons, f"par{r}-"))
        progress(f"parallel round {r + 1}/{rounds}: {samples[-1]['all_reachable_s']} s")
        if r < rounds - 1:
            ids = [cid for cid in node.pods if cid.startswith(f"par{r}-")]
            for cid, result in zip(ids, node.agent.run([node.job("DEL", cid) for cid in ids])):
                check_ok(result, f"DEL {cid}")
                node.remove_sandbox(cid)
            time.sleep(5)  # OVS removes the ports
    reach = [s["all_reachable_s"] for s in samples]
    return {"rounds": samples, "pods": pods, "host": node.host.name,
            "all_reachable_s_median": round(statistics.median(reach), 2),
            "all_reachable_s_max": max(reach), "all_reachable_s_min": min(reach)}


def measure_parallel(node: Node, prober_netns: str, pods: int, daemons: dict,
                     prefix: str = "par") -> dict:
    ids = [f"{prefix}{i:03d}" for i in range(pods)]
    progress(f"parallel: {pods} pod namespaces (untimed, the runtime's part)")
    t = time.perf_counter()
    for cid in ids:
        node.sandbox(cid)
    sandboxes_s = time.perf_counter() - t
    jobs = [node.job("ADD", cid) for cid in ids]
    pings: dict[int, concurrent.futures.Future] = {}
    reached_at: dict[int, float] = {}
    pool = concurrent.futures.ThreadPoolExecutor(pods)

    def ping_one(index: int, ip: str) -> bool:
        ok = ping(prober_netns, ip)
        reached_at[index] = time.time()
        return ok

    def on_each(result: dict) -> None:
        if result["status"] == 0:
            pings[result["index"]] = pool.submit(ping_one, result["index"],
                                                 pod_ip(json.loads(result["stdout"])))

    progress(f"parallel: {pods} ADDs at once on {node.host.name}")
    cpu = CpuWindow(daemons)
    launched = time.time()
    results = node.agent.run(jobs, on_each)
    reached = {i: f.result() for i, f in pings.items()}
    pool.shutdown()
    daemons_cpu = {role: used["cpu_s"] for role, used in cpu.stop().items()}
    failed = [f"{ids[r['index']]}: {r['stdout'].strip()}" for r in results if r["status"] != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} ADDs failed, e.g. {failed[:3]}")
    if not all(reached.values()):
        raise RuntimeError(f"{sum(not v for v in reached.values())} pods did not answer")
    first_start = min(r["start"] for r in results)
    adds_done = max(r["end"] for r in results)
    all_reached = max(reached_at.values())
    add_ms = [r["ms"] for r in results]
    return {"pods": pods, "host": node.host.name, "sandboxes_untimed_s": round(sandboxes_s, 2),
            "all_added_s": round(adds_done - first_start, 2),
            "all_reachable_s": round(all_reached - first_start, 2),
            "launch_spread_ms": round((max(r["start"] for r in results) - first_start) * 1000, 1),
            "agent_launch_lag_ms": round((first_start - launched) * 1000, 1),
            "add_p50_ms": round(statistics.median(add_ms), 1),
            "add_max_ms": round(max(add_ms), 1),
            "reached": f"{sum(reached.values())}/{pods}",
            # What the CPUs did meanwhile: the plugins (with the commands they ran) and the
            # daemons, against what 2 cores give in that time.
            "plugins_cpu_s": round(sum(r["cpu_ms"] for r in results) / 1000, 2),
            "plugin_cpu_p50_ms": round(statistics.median(r["cpu_ms"] for r in results), 1),
            "daemons_cpu_s": daemons_cpu, "cpus": os.cpu_count(), "loadavg_after": loadavg()}


def ensure_resident(node: Node, pods: int) -> None:
    """``pods`` attachments on the node (untimed: made at once if the parallel step did not)."""
    missing = [f"res{i:03d}" for i in range(pods - len(node.pods))]
    if missing:
        progress(f"{len(missing)} resident pods on {node.host.name} (untimed)")
        for cid in missing:
            node.sandbox(cid)
        for cid, result in zip(missing, node.agent.run([node.job("ADD", cid)
                                                        for cid in missing])):
            check_ok(result, f"ADD {cid}")


def measure_add(node: Node, prober_netns: str, count: int, pods: int) -> dict:
    ensure_resident(node, pods)
    resident = len(node.pods)
    adds, dels, add_cpu, pinged = [], [], [], 0
    for i in range(count):
        cid = f"add{i:03d}"
        node.sandbox(cid)
        added = node.agent.run([node.job("ADD", cid)])[0]
        result = check_ok(added, f"ADD {cid}")
        adds.append(added["ms"])
        add_cpu.append(added["cpu_ms"])
        if i % 10 == 0:
            if not ping(prober_netns, pod_ip(result)):
                raise RuntimeError(f"pod {cid} ({pod_ip(result)}) does not answer")
            pinged += 1
        deleted = node.agent.run([node.job("DEL", cid)])[0]
        check_ok(deleted, f"DEL {cid}")
        dels.append(deleted["ms"])
        node.remove_sandbox(cid)
        if (i + 1) % 10 == 0:
            progress(f"add: {i + 1}/{count}")
    return {"attachments_on_node": resident, "add": summary_ms(adds), "del": summary_ms(dels),
            "add_cpu_p50_ms": round(statistics.median(add_cpu), 1), "pinged": pinged}


def measure_breakdown(node: Node, count: int, pods: int) -> dict:
    ensure_resident(node, pods)
    argv = ["/usr/bin/python3", "-IS", os.path.join(HERE, "cni_breakdown.py"),
            node.runtime.plugin]
    runs: dict[str, list[dict]] = {"ADD": [], "DEL": []}
    for i in range(count):
        cid = f"bd{i:03d}"
        node.sandbox(cid)
        for command in ("ADD", "DEL"):
            done = node.agent.run([node.job(command, cid, argv=argv)])[0]
            check_ok(done, f"{command} {cid} (breakdown)")
            runs[command].append(_parts(done))
        node.remove_sandbox(cid)
    out = {"samples": count, "attachments_on_node": len(node.pods)}
    for command, samples in runs.items():
        names = list(samples[0]["parts"])
        out[command] = {
            "total_p50_ms": round(statistics.median(r["total"] for r in samples), 1),
            "parts_p50_ms": {n: round(statistics.median(r["parts"].get(n, 0.0)
                                                        for r in samples), 2) for n in names},
            "calls": samples[0]["counts"]}
    return out


def _parts(done: dict) -> dict:
    """One stopwatch run: its total and parts (ms), and how often each call was made."""
    timing = json.loads(done["stderr"].strip().splitlines()[-1])
    parts = {"interpreter start": (timing["t_main"] - done["start"]) * 1000,
             "imports": timing["imports_ms"]}
    for kind, what, ms in timing["calls"]:
        parts[f"{kind}: {what}"] = parts.get(f"{kind}: {what}", 0.0) + ms
    accounted = parts["interpreter start"] + parts["imports"] + sum(
        ms for _, _, ms in timing["calls"])
    parts["rest (config, checks, JSON, exit)"] = done["ms"] - accounted
    return {"total": done["ms"], "parts": parts, "counts": _counts(timing["calls"])}


def _counts(calls) -> dict:
    counts: dict[str, int] = {}
    for kind, what, _ in calls:
        counts[f"{kind}: {what}"] = counts.get(f"{kind}: {what}", 0) + 1
    return counts


# --- the run -----------------------------------------------------------------------------------

def figures(results: dict) -> list[tuple[str, str, str]]:
    """(figure, measured, target and verdict)"""
    rows = []

    def verdict(value: float, target: float, unit: str) -> str:
        if value <= target:
            return f"<= {target} {unit}: met"
        return f"<= {target} {unit}: MISSED by {value - target:.1f} {unit} ({value / target:.2f}x)"

    if (v := results.get("version")) and "error" not in v:
        rows.append(("VERSION, process start to exit, p50 / p99",
                     f"{v['p50_ms']} / {v['p99_ms']} ms ({v['samples']} runs)",
                     verdict(v["p99_ms"], TARGETS["version_p99_ms"], "ms")))
    if (par := results.get("parallel")) and "error" not in par:
        for n, p in enumerate(par["rounds"], 1):
            rows.append((f"{p['pods']} pods' ADDs launched at once on one node, until all "
                         f"attached and answering a ping from another host (round {n})",
                         f"{p['all_reachable_s']} s (all ADDs returned at "
                         f"{p['all_added_s']} s; ADD p50 {p['add_p50_ms']} ms, max "
                         f"{p['add_max_ms']} ms; {p['reached']} answered; CPU: plugins "
                         f"{p['plugins_cpu_s']} s, "
                         + ", ".join(f"{k} {v} s" for k, v in p["daemons_cpu_s"].items())
                         + f", of {p['cpus']} cores; load after {p['loadavg_after']})",
                         verdict(p["all_reachable_s"], TARGETS["parallel_s"], "s")))
        if len(par["rounds"]) > 1:
            rows.append((f"  median of the {len(par['rounds'])} rounds (min / max)",
                         f"{par['all_reachable_s_median']} s ({par['all_reachable_s_min']} / "
                         f"{par['all_reachable_s_max']} s)",
                         verdict(par["all_reachable_s_median"], TARGETS["parallel_s"], "s")))
    if (a := results.get("add")) and "error" not in a:
        rows.append((f"ADD with {a['attachments_on_node']} attachments on the node, p50",
                     f"{a['add']['p50_ms']} ms (CPU {a['add_cpu_p50_ms']} ms)", verdict(a["add"]["p50_ms"],
                                                         TARGETS["add_p50_ms"], "ms")))
        rows.append((f"ADD, p99 ({a['add']['samples']} ADDs; max {a['add']['max_ms']} ms)",
                     f"{a['add']['p99_ms']} ms", verdict(a["add"]["p99_ms"],
                                                         TARGETS["add_p99_ms"], "ms")))
        rows.append((f"DEL, p50 / p99 (max {a['del']['max_ms']} ms)",
                     f"{a['del']['p50_ms']} / {a['del']['p99_ms']} ms",
                     verdict(a["del"]["p99_ms"], TARGETS["del_p99_ms"], "ms")))
    return rows


def table(results: dict) -> str:
    lines = []
    rows = figures(results)
    if rows:
        width = max(len(r[0]) for r in rows)
        lines.append(f"{'figure':<{width}}  measured  |  target")
        for name, value, target in rows:
            lines.append(f"{name:<{width}}  {value}  |  {target}")
    if (b := results.get("breakdown")) and "error" not in b:
        for command in ("ADD", "DEL"):
            c = b[command]
            lines.append(f"\nwhere a {command}'s time goes ({b['samples']} runs with "
                         f"{b['attachments_on_node']} attachments on the node, p50 of each "
                         f"part; total p50 {c['total_p50_ms']} ms):")
            for name, ms in c["parts_p50_ms"].items():
                n = c["calls"].get(name)
                lines.append(f"  {ms:8.2f} ms  {name}" + (f"  (x{n})" if n and n > 1 else ""))
    for step in STEPS:
        if isinstance(results.get(step), dict) and "error" in results[step]:
            lines.append(f"{step}: FAILED: {results[step]['error']}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = step_parser(__doc__, STEPS, hosts=2)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--version-runs", type=int, help="VERSION runs (default 200)")
    p.add_argument("--pods", type=int, help="pods started at once, then on the node (110)")
    p.add_argument("--parallel-rounds", type=int, help="times the parallel step is run "
                                                       "(default 3)")
    p.add_argument("--adds", type=int, help="ADD/DEL pairs timed (default 50)")
    p.add_argument("--breakdown", type=int, help="ADDs with a stopwatch (default 20)")
    p.add_argument("--plugin-source", help="a directory holding the cni package to measure "
                                           "instead of this tree's (e.g. an older commit's)")
    p.add_argument("--settle-steps", type=float, default=5.0,
                   help="seconds of rest between steps")
    p.add_argument("--prefix", default="ovfcni", help="the lab's prefix")
    p.add_argument("--underlay", default="198.18.68.0/24")
    p.add_argument("--mgmt", default="198.18.69.0/24",
                   help="the controller listens on its first address (API and OpenFlow)")
    p.add_argument("--api-port", type=int, default=18840)
    p.add_argument("--openflow-port", type=int, default=16840)
    p.add_argument("--out", default=os.path.join(common.ROOT, "bench", "results", "cni.json"))
    args = parse_steps(p, argv, STEPS, dict(version_runs=(30, 200), pods=(110, 110), parallel_rounds=(1, 3),
                                            adds=(10, 50), breakdown=(5, 20)))
    if args.hosts < 2:
        p.error("--hosts: 2 at least (the node, and the prober's host)")
    return args


def plugin_from(source: str, nodes: list[Node]) -> str:
    """Replaces each node's installed plugin by the one ``source`` (a directory holding a
    ``cni`` package, e.g. an older commit's) installs, built by that package's own
    ``install.executable``: to compare two versions of the plugin on one lab."""
    built = subprocess.run(
        [sys.executable, "-c", "import sys; from cni.install import executable; "
                               "sys.stdout.buffer.write(executable('/usr/bin/python3'))"],
        cwd=source, capture_output=True, check=True, env={"PATH": os.environ["PATH"],
                                                          "PYTHONPATH": source}).stdout
    for node in nodes:
        with open(node.runtime.plugin, "wb") as f:
            f.write(built)
    return os.path.abspath(source)


def stop_stale_controller(pidfile: str, api_port: int) -> None:
    pid = read_pidfile(pidfile)
    if pid is not None and alive(pid) and "cli.main serve" in cmdline(pid) and \
            f":{api_port}" in cmdline(pid):
        progress(f"stopping the controller a killed run left (pid {pid})")
        stop_pid(pid)
    if os.path.exists(pidfile):
        os.unlink(pidfile)


def main(argv=None) -> int:
    args = parse_args(argv)
    results: dict = {"meta": run_meta(args, ("version_runs", "pods", "parallel_rounds", "adds", "breakdown"))}
    results["meta"]["targets"] = TARGETS
    lab = Lab(args.hosts, args.prefix, underlay_subnet=args.underlay, mgmt_subnet=args.mgmt)
    pidfile = f"/tmp/{args.prefix}-controller.pid"
    stop_stale_controller(pidfile, args.api_port)
    workdir = tempfile.mkdtemp(prefix=f"{args.prefix}-cni-bench-")
    nodes: list[Node] = []
    controller = None
    progress(f"lab of {args.hosts} hosts ({args.prefix})")
    lab.up()
    try:
        controller = ControllerProcess(os.path.join(workdir, "state.db"), lab.controller_ip,
                                       args.api_port, args.openflow_port, token=TOKEN,
                                       api_ip=lab.controller_ip)
        controller.start()
        with open(pidfile, "w") as f:
            f.write(str(controller.proc.pid))
        controller.register(lab.hosts)
        controller.client.create_network(NETWORK, SUBNET)
        nodes = [Node(h, os.path.join(workdir, h.name), controller.url) for h in lab.hosts]
        if args.plugin_source:
            results["meta"]["plugin_source"] = plugin_from(args.plugin_source, nodes)
        node, prober_node = nodes[0], nodes[1]
        prober_node.sandbox(PROBE)
        prober = check_ok(prober_node.agent.run([prober_node.job("ADD", PROBE)])[0], "probe")
        prober_netns = prober_node.pods[PROBE]
        results["meta"]["prober"] = pod_ip(prober)
        daemons = {"controller": [controller.proc.pid],
                   f"ovs-vswitchd ({node.host.name})": [node.host.pids()["vswitchd"]],
                   f"ovsdb-server ({node.host.name})": [node.host.pids()["ovsdb"]]}
        steps = {"version": lambda: measure_version(node, args.version_runs),
                 "parallel": lambda: measure_parallel_rounds(node, prober_netns, args.pods,
                                                             daemons, args.parallel_rounds),
                 "add": lambda: measure_add(node, prober_netns, args.adds, args.pods),
                 "breakdown": lambda: measure_breakdown(node, args.breakdown, args.pods)}
        for step in args.steps:
            progress(f"{step} (load average {loadavg()})")
            try:
                results[step] = steps[step]()
            except Exception as exc:  # noqa: BLE001 - recorded, the later steps still run
                progress(f"{step}: FAILED: {exc}")
                results[step] = {"error": f"{type(exc).__name__}: {exc}"}
            results[step]["loadavg_after"] = loadavg()
            write(results, args.out)
            time.sleep(args.settle_steps)  # what the step left running (OVS) quiets down
    finally:
        for n in nodes:
            n.agent.close()
        if controller is not None:
            controller.stop()
        stop_stale_controller(pidfile, args.api_port)
        progress("tearing down")
        lab.down()
        shutil.rmtree(workdir, ignore_errors=True)
        results["meta"]["loadavg"]["end"] = loadavg()
        write(results, args.out)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table(results))
        print(f"\nload average: {results['meta']['loadavg']}")
        print(f"written: {args.out}")
    return 0


def write(results: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
