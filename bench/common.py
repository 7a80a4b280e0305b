"""Helpers shared by both sides of the comparison: addresses, statistics, flow counts, OVS
ports, and the CPU and memory of control-plane processes read from /proc."""
from __future__ import annotations

import calendar
import concurrent.futures
import os
import re
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from lab.proc import run  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SUBNET = "10.60.0.0/16"  # the measured network on both sides (each side has a lab of its own)
PROBER = 62999           # the address index of the pinging container


def progress(message: str) -> None:
    print(f"-- {message}", file=sys.stderr, flush=True)


def write_results(name: str, results: dict) -> str:
    """Writes bench/results/<name>.json (not committed: results belong to a machine)."""
    import json
    directory = os.path.join(ROOT, "bench", "results")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.json")
    with open(path, "w") as out:
        json.dump(results, out, indent=2)
    return path


# --- addresses: index i -> the same MAC and IP on both sides ------------------------------

def mac_for(i: int) -> str:
    return f"02:be:00:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"


def ip_for(i: int) -> str:
    # 10.60.0.1 is ovsfabric's default gateway (reserved): start at 10.60.1.1.
    return f"10.60.{1 + i // 250}.{1 + i % 250}"


# --- statistics ----------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest rank, as bench/convergence.py computes it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary_ms(samples_ms: list[float]) -> dict:
    return {"samples": len(samples_ms),
            "p50_ms": round(statistics.median(samples_ms), 2),
            "p95_ms": round(percentile(samples_ms, 95), 2),
            "p99_ms": round(percentile(samples_ms, 99), 2),
            "max_ms": round(max(samples_ms), 2),
            "all_ms": [round(v, 2) for v in samples_ms]}


# --- flows and ports, read with the OVS tools (the same way for both systems) --------------

def dump_flows(host, bridge: str, version: str, *args: str) -> str:
    return run(["ovs-ofctl", "-O", version, "--timeout=60", "--no-names", "dump-flows",
                host.bridge_mgmt(bridge), *args], timeout=90).stdout


def count_flows(host, bridge: str, version: str) -> int:
    # One header line per multipart reply: count flows by their `actions=`, not by lines.
    return dump_flows(host, bridge, version).count("actions=")


def table0_in_ports(host, bridge: str, version: str) -> set[int]:
    """OpenFlow ports that have a flow in table 0: a local port is programmed once it has one
    (ovsfabric's ingress check, OVN's physical-to-logical flow)."""
    text = dump_flows(host, bridge, version, "table=0")
    return {int(m) for m in re.findall(r"in_port=(\d+)", text)}


def add_internal_ports(host, bridge: str, ports: list[tuple[str, str]]) -> None:
    """Internal ports with external_ids:iface-id, all of one host in one OVSDB transaction
    (ovs-vswitchd then reconfigures once, not once per port)."""
    args: list[str] = []
    for name, iface_id in ports:
        args += ["--", "add-port", bridge, name, "--", "set", "Interface", name,
                 "type=internal", f"external_ids:iface-id={iface_id}"]
    if args:
        host.vsctl(*args, timeout=300)


def ofports(host, names: list[str]) -> dict[str, int]:
    """OpenFlow port numbers of the named interfaces; -1 or missing while OVS adds them."""
    out = host.vsctl("--format=csv", "--no-headings", "--columns=name,ofport", "list",
                     "Interface")
    found = {}
    for line in out.splitlines():
        name, _, ofport = line.partition(",")
        try:
            found[name.strip('"')] = int(ofport)
        except ValueError:
            found[name.strip('"')] = -1  # "[]": not yet assigned
    wanted = set(names)
    return {n: p for n, p in found.items() if n in wanted}


def wait_ports_programmed(host, bridge: str, version: str, names: list[str],
                          timeout: float = 300.0) -> float:
    """Waits until each named port has an OpenFlow number and a table-0 flow on it; returns
    the time it was seen (perf_counter). Polls every 50 ms."""
    deadline = time.perf_counter() + timeout
    while True:
        numbers = ofports(host, names)
        if len(numbers) == len(names) and all(p > 0 for p in numbers.values()):
            if set(numbers.values()) <= table0_in_ports(host, bridge, version):
                return time.perf_counter()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{host.name}: ports not programmed within {timeout} s")
        time.sleep(0.05)


def on_each_host(fn, hosts) -> list:
    """Runs fn(host) on every host at once, as each host's own agent (CNI) would."""
    with concurrent.futures.ThreadPoolExecutor(len(hosts)) as pool:
        return list(pool.map(fn, hosts))


def vswitchd_counter(host, name: str) -> int:
    """A coverage counter of the host's ovs-vswitchd (its total since start)."""
    return int(host.appctl("coverage/read-counter", name).strip())


def last_log_time(path: str, *needles: str) -> float:
    """Epoch seconds of the last line of an OVS log holding every needle (OVS logs in UTC,
    to the millisecond: 2026-11-28T06:25:15.847Z|...)."""
    with open(path) as f:
        lines = [line for line in f if all(n in line for n in needles)]
    if not lines:
        raise RuntimeError(f"no line with {needles} in {path}")
    stamp = lines[-1].split("|", 1)[0]
    return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + \
        float("0" + stamp[19:].rstrip("Z"))


# --- CPU and memory of processes ---------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), 10 ms ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set since it started."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmHWM for pid {pid}")


class CpuWindow:
    """CPU seconds that named groups of processes use between start() and stop()."""

    def __init__(self, groups: dict[str, list[int]]):
        self.groups = groups
        self.before = {pid: cpu_seconds(pid) for pids in groups.values() for pid in pids}

    def stop(self) -> dict[str, dict]:
        result = {}
        for role, pids in self.groups.items():
            used = [cpu_seconds(pid) - self.before[pid] for pid in pids]
            result[role] = {"processes": len(pids), "cpu_s": round(sum(used), 2),
                            "cpu_s_max_one": round(max(used), 2),
                            "peak_rss_mb": round(sum(peak_rss_mb(p) for p in pids), 1),
                            "peak_rss_mb_max_one": max(peak_rss_mb(p) for p in pids)}
        return result
