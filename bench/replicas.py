"""Replicas on etcd against the single controller on SQLite, in one run on one lab (root, OVS,
etcd-server).

One lab of --hosts hosts. First the single controller (`serve --state FILE`), then 3 replicas
(`serve --store etcd://... --replica-name replicaI`, lab/replicas.py) on a 3-member etcd on
loopback (lab/etcd.py), on the same hosts; each phase starts from an empty store.

convergence: as bench/convergence.py: a container on h1 (its veth made --settle s before),
static neighbour entries both ways with a pinger on h2 pinging every 5 ms; the figure is from
the POST /v1/endpoints (port=<veth>) to the first reply. With replicas, sample i goes to
replica i mod 3: through the leader or a follower (which answers once the leader confirms
its switches have the flows, POST /v1/cluster/programmed).
bulk: as bench/compare.py's: --bulk endpoints over every host, POSTed without a port by 8
clients (client k through replica k mod 3; each POST returns once its flows are confirmed),
then one OVSDB transaction per host adds their internal ports (iface-id), then every host's
table 0 is polled (50 ms) for a flow on each new port; the figure is until the last.
failover (replicas only): --kills times, the leader killed with SIGKILL; the figure is from
the kill until the new leader's last switch (every host's integration and physical bridges)
answered its ROLE_REQUEST MASTER: read from the new leader's log, its line
"switch X: role master@G in Y ms" (written when the ROLE_REPLY arrives; timestamps to the
millisecond, the same clock). Beside it, the new leader's "leading, generation G" line (the
election) and a poll of its GET /v1/hosts openflow_role every 20 ms (a cross-check; the
integration bridges only). The killed replica is restarted, and back as a member, before the
next kill.

Prints a table (progress on stderr) and writes bench/results/replicas.json.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from common import (SUBNET, CpuWindow, add_internal_ports, ip_for, mac_for, on_each_host,  # noqa: E402
                    percentile, progress, wait_ports_programmed, write_results)
from lab import Lab  # noqa: E402
from lab.controller import ControllerProcess  # noqa: E402
from lab.etcd import EtcdCluster  # noqa: E402
from lab.replicas import Replicas  # noqa: E402

SLOT = int(os.environ.get("OVSFABRIC_TEST_SLOT", "5"))
PREFIX = f"ovfe{SLOT}"
UNDERLAY = f"198.18.{40 + 2 * SLOT}.0/24"
MGMT = f"198.18.{41 + 2 * SLOT}.0/24"
API_PORT = 18686 + 10 * SLOT       # the slot's ports (tests/slot.py): +0 the single
OPENFLOW_PORT = 16653 + 10 * SLOT  # controller, +1 to +3 the replicas
CLIENTS = 8
BRIDGE = "br-int"
OF_VERSION = "OpenFlow13"


def dist(samples: list[float]) -> dict:
    if not samples:
        return {"samples": 0}
    return {"samples": len(samples), "p50_ms": round(statistics.median(samples), 2),
            "p90_ms": round(percentile(samples, 90), 2),
            "p99_ms": round(percentile(samples, 99), 2), "max_ms": round(max(samples), 2)}


# --- convergence -----------------------------------------------------------------------------

def convergence(lab, clients: list, kinds: list[str], prober, count: int, offset: int,
                settle: float) -> tuple[dict, list]:
    """Sample i through clients[i % len]; kinds names each client (leader, follower...)."""
    samples: dict[str, list[float]] = {k: [] for k in set(kinds)}
    posts: dict[str, list[float]] = {k: [] for k in set(kinds)}
    containers = []
    timeline: list[dict] = []
    for n in range(count):
        i = offset + n
        c = lab.add_container("h1", f"c{i}")
        c.configure(mac_for(i), ip_for(i), 16, 1450)
        c.neigh(prober.ip, prober.mac)
        prober.neigh(ip_for(i), mac_for(i))
        containers.append(c)
        ping = subprocess.Popen(["ip", "netns", "exec", prober.netns, "ping", "-n", "-q",
                                 "-i", "0.005", "-c", "1", "-w", "5", ip_for(i)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(settle)
        which = n % len(clients)
        wall = time.time()
        started = time.perf_counter()
        ep = clients[which].create_endpoint("bench", "h1", port=c.port, ip=ip_for(i),
                                            mac=mac_for(i))
        posted = time.perf_counter()
        if ping.wait() != 0:
            raise RuntimeError(f"endpoint {i} never answered")
        samples[kinds[which]].append((time.perf_counter() - started) * 1000)
        posts[kinds[which]].append((posted - started) * 1000)
        timeline.append({"endpoint": ep["id"], "through": which, "kind": kinds[which],
                         "posted_at": wall, "post_ms": round((posted - started) * 1000, 2),
                         "reply_ms": round(samples[kinds[which]][-1], 2)})
        if (n + 1) % 10 == 0:
            progress(f"convergence: {n + 1}/{count}")
    everything = [v for k in samples for v in samples[k]]
    result = {"all": dist(everything), "timeline": timeline}
    for kind in sorted(samples):
        result[kind] = {**dist(samples[kind]), "post_p50_ms": round(
            statistics.median(posts[kind]), 2) if posts[kind] else None}
    return result, containers



def read_log(path: str) -> list[tuple[float, str]]:
    lines = []
    with open(path, errors="replace") as f:
        for line in f:
            t = stamp(line)
            if t is not None:
                lines.append((t, line))
    return lines


def first_after(lines, t: float, needle: str, until: float, also: str = "") -> float | None:
    for when, line in lines:
        if when >= t - 0.001 and needle in line and also in line:
            return when if when <= until + 0.002 else None
    return None


def breakdown(timeline: list[dict], handler_logs: list[str], leader_log: str) -> dict:
    """Where each sample's time went, from the controllers' logs (DEBUG: the service's
    "endpoint X committed", written once the store write is applied on the replica that took
    the POST; INFO: the leader's "switch h1: +N flows in" and "host h1: ... OVSDB change(s)"
    once h1's flow mods are confirmed by the barrier and once OVS has the port; 1 ms
    timestamps), in ms after the POST was sent. p50 per kind."""
    logs = {path: read_log(path) for path in set(handler_logs) | {leader_log}}
    parts: dict[str, dict[str, list[float]]] = {}
    for t in timeline:
        start, end = t["posted_at"], t["posted_at"] + t["post_ms"] / 1000
        handler = logs[handler_logs[t["through"]]]
        committed = first_after(handler, start, f"endpoint {t['endpoint']} committed", end)
        if committed is None:
            continue
        txn = first_after(handler, start, '"POST /v3/kv/txn', committed)
        flows = first_after(logs[leader_log], committed, "switch h1: +", end)
        ovsdb = first_after(logs[leader_log], start, "host h1: ", end, "OVSDB change")
        kind = parts.setdefault(t["kind"], {k: [] for k in (
            "txn_returned_ms", "committed_ms", "h1_flows_ms", "h1_port_ms", "answered_ms", "first_reply_ms")})
        kind["committed_ms"].append((committed - start) * 1000)
        if txn:
            kind["txn_returned_ms"].append((txn - start) * 1000)
        if flows:
            kind["h1_flows_ms"].append((flows - start) * 1000)
        if ovsdb:
            kind["h1_port_ms"].append((ovsdb - start) * 1000)
        kind["answered_ms"].append(t["post_ms"])
        kind["first_reply_ms"].append(t["reply_ms"])
    return {kind: {k: (round(statistics.median(v), 1) if v else None) for k, v in ps.items()}
            | {"samples": len(ps["committed_ms"])} for kind, ps in parts.items()}


def etcd_txn_probe(url: str, count: int = 40) -> dict:
    """A bare transaction of one ~1.5 KB put (an endpoint write's size) on the same etcd,
    one after the other: etcd's own round trip, its WAL fsync on a quorum included."""
    from cluster.etcd import EtcdClient, EtcdTarget, encode
    client = EtcdClient(EtcdTarget.parse(url))
    value = encode("x" * 1500)
    times = []
    for k in range(count):
        started = time.perf_counter()
        client.txn([], [{"request_put": {"key": encode(f"/bench/probe/{k}"), "value": value}}])
        times.append((time.perf_counter() - started) * 1000)
    client.post("kv/deleterange", {"key": encode("/bench/"), "range_end": encode("/bench0")})
    return dist(times)

# --- bulk --------------------------------------------------------------------------------------

def bulk(lab, clients: list, count: int, offset: int) -> tuple[dict, dict]:
    hosts = [h.name for h in lab.hosts]
    placed = {h: [] for h in hosts}
    for n in range(count):
        placed[hosts[n % len(hosts)]].append(offset + n)
    host_of = {i: h for h, idx in placed.items() for i in idx}
    indices = sorted(host_of)
    post_ms: list[float] = []

    def post(k_i):
        k, i = k_i
        started = time.perf_counter()
        ep = clients[k % CLIENTS % len(clients)].create_endpoint(
            "bench", host_of[i], ip=ip_for(i), mac=mac_for(i), name=f"b{i}")
        post_ms.append((time.perf_counter() - started) * 1000)
        return i, ep["id"]

    progress(f"bulk: {count} endpoints, {CLIENTS} clients over {len(clients)} API(s)")
    t0 = time.perf_counter()
    # Client k (of 8) takes every 8th endpoint and talks to API k mod len(clients).
    work = [(n % CLIENTS, i) for n, i in enumerate(indices)]
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        ids = dict(pool.map(post, work))
    t_api = time.perf_counter()
    on_each_host(lambda h: add_internal_ports(
        h, BRIDGE, [(f"b{i}", ids[i]) for i in placed[h.name]]), lab.hosts)
    t_plug = time.perf_counter()
    seen = on_each_host(lambda h: wait_ports_programmed(
        h, BRIDGE, OF_VERSION, [f"b{i}" for i in placed[h.name]]), lab.hosts)
    result = {"endpoints": count, "hosts": len(hosts), "apis": len(clients),
              "api_s": round(t_api - t0, 3), "plugged_s": round(t_plug - t0, 3),
              "converged_s": round(max(seen) - t0, 3),
              "post": dist(post_ms)}
    progress(f"bulk: converged in {result['converged_s']} s (API {result['api_s']} s)")
    return result, host_of


def remove_bulk_ports(lab, host_of: dict[int, str]) -> None:
    def remove(h):
        args: list[str] = []
        for i, name in host_of.items():
            if name == h.name:
                args += ["--", "del-port", BRIDGE, f"b{i}"]
        if args:
            h.vsctl(*args, timeout=300)
    on_each_host(remove, lab.hosts)


# --- failover ----------------------------------------------------------------------------------

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
ROLE = re.compile(r"switch (\S+): role master@(\d+) in ([\d.]+) ms")
LEADING = re.compile(r": leading, generation (\d+)")


def stamp(line: str) -> float | None:
    m = STAMP.match(line)
    if not m:
        return None
    # logging's asctime: local time, milliseconds after the comma
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def log_events(path: str, since: float) -> tuple[dict[str, tuple[float, int, float]],
                                                 tuple[float, int] | None]:
    """(switch -> (time, generation, role request ms)) of role master lines, and the first
    "leading" line, at or after ``since`` (epoch seconds)."""
    masters, leading = {}, None
    with open(path, errors="replace") as f:
        for line in f:
            t = stamp(line)
            if t is None or t < since - 0.001:
                continue
            if (m := ROLE.search(line)) and m.group(1) not in masters:
                masters[m.group(1)] = (t, int(m.group(2)), float(m.group(3)))
            elif (m := LEADING.search(line)) and leading is None:
                leading = (t, int(m.group(1)))
    return masters, leading


def generation(leader) -> int:
    """The term's generation, as the leader's switches confirmed it (openflow_role)."""
    roles = [h.get("openflow_role") or "" for h in leader.client.hosts()]
    return max(int(r.split("@")[1]) for r in roles if r.startswith("master@"))


def failover(replicas: Replicas, hosts: list[str], switches: set[str], kills: int,
             timeout: float = 15.0) -> dict:
    rounds = []
    names = {p: f"replica{i}" for i, p in enumerate(replicas)}
    for k in range(kills):
        leader = replicas.leader()
        before = generation(leader)
        # Every replica running and a member before the kill
        deadline = time.monotonic() + 20
        while len(replicas.cluster().get("members", [])) < len(replicas.processes):
            if time.monotonic() > deadline:
                raise RuntimeError("a replica did not come back as a member")
            time.sleep(0.1)
        time.sleep(0.5)  # a keepalive or two of the restarted one's lease
        killed_at = time.time()
        os.kill(leader.proc.pid, signal.SIGKILL)  # by its PID
        leader.proc.wait()
        # The next leader, polled: its /v1/hosts until every integration bridge is master
        new = None
        polled_at = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if new is None:
                for p in replicas.running():
                    try:
                        c = p.client.request("GET", "/v1/cluster")
                    except Exception:  # noqa: BLE001 - busy
                        continue
                    if c.get("leader") not in (None, names[leader]):
                        new = next(q for q in replicas if names[q] == c["leader"])
                        break
            if new is not None:
                try:
                    status = {h["name"]: h for h in new.client.hosts()}
                except Exception:  # noqa: BLE001
                    status = {}
                roles = [status.get(h, {}).get("openflow_role") or "" for h in hosts]
                if all(r.startswith("master@") and int(r.split("@")[1]) > before
                       for r in roles):
                    polled_at = time.time()
                    break
            time.sleep(0.02)
        if new is None or polled_at is None:
            raise RuntimeError(f"kill {k + 1}: no new leader mastering every switch within "
                               f"{timeout} s")
        # The log: every switch's master line in the new leader's log since the kill
        deadline = time.monotonic() + 5
        while True:
            masters, leading = log_events(new.log_path, killed_at)
            masters = {s: v for s, v in masters.items() if v[1] > before}
            if switches <= set(masters) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        missing = switches - set(masters)
        last = max(v[0] for v in masters.values()) if masters else None
        r = {"killed": names[leader], "new_leader": names[new], "generation_before": before,
             "generation_after": leading[1] if leading else None,
             "all_master_s": round(last - killed_at, 3) if last and not missing else None,
             "elected_s": round(leading[0] - killed_at, 3) if leading else None,
             "first_master_s": round(min(v[0] for v in masters.values()) - killed_at, 3)
             if masters else None,
             "role_request_ms_max": max(v[2] for v in masters.values()) if masters else None,
             "polled_s": round(polled_at - killed_at, 3), "switches": len(masters),
             "missing": sorted(missing)}
        rounds.append(r)
        progress(f"failover {k + 1}/{kills}: {r['killed']} -> {r['new_leader']}: all master "
                 f"{r['all_master_s']} s (elected {r['elected_s']} s, polled {r['polled_s']} s)")
        leader.start()  # the killed replica again, same name, same log
    done = [r["all_master_s"] for r in rounds if r["all_master_s"] is not None]
    return {"kills": kills, "rounds": rounds,
            "all_master_s_p50": round(statistics.median(done), 3) if done else None,
            "all_master_s_max": max(done) if done else None,
            "elected_s_p50": round(statistics.median(
                [r["elected_s"] for r in rounds if r["elected_s"] is not None]), 3),
            "polled_s_p50": round(statistics.median([r["polled_s"] for r in rounds]), 3)}


# --- the phases ----------------------------------------------------------------------------

def setup_fabric(client, lab) -> object:
    for h in lab.hosts:
        client.create_host(h.name, h.ovsdb, h.tunnel_ip, datapath_type="netdev")
    client.create_network("bench", SUBNET)


def wait_hosts(client, hosts: list[str], master: bool, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = {h["name"]: h for h in client.hosts()}
        if all(status.get(h, {}).get("connected") and
               (not master or (status[h].get("openflow_role") or "").startswith("master"))
               for h in hosts):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"hosts not ready within {timeout} s: {status}")
        time.sleep(0.05)


def add_prober(lab, client):
    prober = lab.add_container("h2", "probe")
    ep = client.create_endpoint("bench", "h2", port=prober.port, ip="10.60.250.250",
                                mac="02:be:ff:00:00:01")
    prober.configure(ep["mac"], ep["ip"], 16, ep["mtu"])
    return prober


def remove(lab, containers) -> None:
    for c in containers:
        lab.remove_container(c)


def sqlite_phase(lab, workdir: str, args) -> dict:
    progress("single controller on SQLite")
    controller = ControllerProcess(os.path.join(workdir, "single.db"), lab.controller_ip,
                                   api_port=API_PORT, openflow_port=OPENFLOW_PORT,
                                   log_path=os.path.join(workdir, "single.log"))
    containers = []
    host_of: dict = {}
    try:
        controller.start()
        setup_fabric(controller.client, lab)
        wait_hosts(controller.client, [h.name for h in lab.hosts], master=False)
        prober = add_prober(lab, controller.client)
        containers.append(prober)
        window = CpuWindow({"controller": [controller.proc.pid]})
        conv, made = convergence(lab, [controller.client], ["single"], prober,
                                 args.convergence, 0, args.settle)
        conv["cpu"] = window.stop()
        containers += made
        conv["breakdown"] = breakdown(conv["timeline"], [controller.log_path],
                                      controller.log_path)
        result = {"convergence": conv}
        if args.bulk:
            window = CpuWindow({"controller": [controller.proc.pid]})
            result["bulk"], host_of = bulk(lab, [controller.client], args.bulk, 10000)
            result["bulk"]["cpu"] = window.stop()
    finally:
        controller.stop()
        remove_bulk_ports(lab, host_of)
        remove(lab, containers)
    return result


def replicas_phase(lab, workdir: str, args) -> dict:
    progress("3 replicas on etcd")
    etcd = EtcdCluster(os.path.join(workdir, "etcd"), SLOT)
    replicas = None
    containers = []
    host_of: dict = {}
    hosts = [h.name for h in lab.hosts]
    try:
        etcd.start()
        replicas = Replicas(workdir, etcd.url, lab.controller_ip, API_PORT + 1,
                            OPENFLOW_PORT + 1, count=3)
        replicas.start()
        leader = replicas.leader(timeout=20)
        setup_fabric(leader.client, lab)
        wait_hosts(leader.client, hosts, master=True)
        prober = add_prober(lab, leader.client)
        containers.append(prober)
        kinds = ["leader" if p is leader else "follower" for p in replicas]
        result = {"leader": f"replica{replicas.processes.index(leader)}"}
        groups = {"leader": [leader.proc.pid],
                  "followers": [p.proc.pid for p in replicas if p is not leader],
                  "etcd": [etcd.pid(i) for i in range(etcd.size)]}
        window = CpuWindow(groups)
        conv, made = convergence(lab, [p.client for p in replicas], kinds, prober,
                                 args.convergence, 0, args.settle)
        conv["cpu"] = window.stop()
        containers += made
        conv["breakdown"] = breakdown(conv["timeline"], [p.log_path for p in replicas],
                                      leader.log_path)
        result["convergence"] = conv
        progress("etcd: bare transactions")
        result["etcd_txn"] = etcd_txn_probe(etcd.url)
        if args.bulk:
            window = CpuWindow(groups)
            result["bulk"], host_of = bulk(lab, [p.client for p in replicas], args.bulk, 10000)
            result["bulk"]["cpu"] = window.stop()
            result["bulk"]["posts_through"] = {
                k: sum(1 for n in range(CLIENTS) if kinds[n % 3] == k) for k in set(kinds)}
        if args.kills:
            switches = set()
            for p in replicas:
                masters, _ = log_events(p.log_path, 0)
                switches |= set(masters)
            result["failover"] = failover(replicas, hosts, switches, args.kills)
            result["failover"]["switches"] = sorted(switches)
    finally:
        if replicas is not None:
            replicas.stop()
        etcd.close()
        remove_bulk_ports(lab, host_of)
        remove(lab, containers)
    return result


def ratio(a, b):
    return round(a / b, 2) if a and b else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--convergence", type=int, default=60,
                        help="samples per system (replicas: a third through each)")
    parser.add_argument("--bulk", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--settle", type=float, default=0.2)
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    # The service's "endpoint X committed" lines (DEBUG) time the store write in breakdown()
    os.environ.setdefault("OVSFABRIC_LOG_LEVEL", "debug")
    lab = Lab(args.hosts, prefix=PREFIX, underlay_subnet=UNDERLAY, mgmt_subnet=MGMT)
    workdir = tempfile.mkdtemp(prefix=f"ovsfabric-bench-replicas-{SLOT}-")
    results: dict = {"slot": SLOT, "hosts": args.hosts, "started": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_before": os.getloadavg()}
    progress(f"lab of {args.hosts} hosts ({PREFIX}), workdir {workdir}")
    lab.up()
    try:
        if not args.skip_sqlite:
            results["sqlite"] = sqlite_phase(lab, workdir, args)
            write_results("replicas", results)
        results["etcd"] = replicas_phase(lab, workdir, args)
    finally:
        results["load_after"] = os.getloadavg()
        write_results("replicas", results)
        lab.down()
        if args.keep_logs:
            progress(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(results)
    return 0


def report(results: dict) -> None:
    s, e = results.get("sqlite", {}), results["etcd"]
    print(f"\nload average {results['load_before']} -> {results['load_after']}")
    print("convergence (POST -> first ping reply from h2), ms:")
    rows = [("SQLite, single", s.get("convergence", {}).get("all", {}))]
    rows += [(f"etcd, {k}", e["convergence"][k]) for k in ("all", "leader", "follower")
             if k in e["convergence"]]
    for name, d in rows:
        if d.get("samples"):
            print(f"  {name:<18} n={d['samples']:<3} p50 {d['p50_ms']:>7}  p90 {d['p90_ms']:>7}"
                  f"  p99 {d['p99_ms']:>7}  max {d['max_ms']:>7}"
                  + (f"  (POST p50 {d['post_p50_ms']})" if d.get("post_p50_ms") else ""))
    print("  where it goes (p50, ms after the POST; from the logs):")
    for name, side in (("SQLite", s), ("etcd", e)):
        for kind, b in (side.get("convergence", {}).get("breakdown") or {}).items():
            print(f"    {name} {kind:<8}: etcd txn returned {b['txn_returned_ms']}, "
                  f"store write applied {b['committed_ms']}, h1 flows "
                  f"confirmed {b['h1_flows_ms']}, h1 port in OVS {b['h1_port_ms']}, answered "
                  f"{b['answered_ms']}, first reply {b['first_reply_ms']} (n={b['samples']})")
    for name, side in (("SQLite", s), ("etcd", e)):
        for step in ("convergence", "bulk"):
            cpu = side.get(step, {}).get("cpu")
            if cpu:
                print(f"  CPU s during {name} {step}: " + ", ".join(
                    f"{role} {v['cpu_s']}" for role, v in cpu.items()))
    if e.get("etcd_txn"):
        t = e["etcd_txn"]
        print(f"  bare etcd transaction (one 1.5 KB put): p50 {t['p50_ms']} p90 {t['p90_ms']} ms")
    if s.get("convergence"):
        print(f"  ratio etcd/SQLite p50: "
              f"{ratio(e['convergence']['all']['p50_ms'], s['convergence']['all']['p50_ms'])}")
    for name, side in (("SQLite", s), ("etcd", e)):
        b = side.get("bulk")
        if b:
            print(f"bulk {name}: {b['endpoints']} endpoints over {b['hosts']} hosts through "
                  f"{b['apis']} API(s): converged {b['converged_s']} s (POSTs {b['api_s']} s, "
                  f"POST p50 {b['post']['p50_ms']} ms)")
    f = e.get("failover")
    if f:
        print(f"failover: {f['kills']} kills: all switches master p50 {f['all_master_s_p50']} s,"
              f" max {f['all_master_s_max']} s (elected p50 {f['elected_s_p50']} s; polled "
              f"/v1/hosts p50 {f['polled_s_p50']} s)")


if __name__ == "__main__":
    sys.exit(main())
