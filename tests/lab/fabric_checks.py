"""What the fault and replica tests measure and check on the lab: timed pings, and whether
every host holds exactly what the store says (read with the OVS tools and the audit)."""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass

import pytest
import requests

from api.client import ApiError
from lab.proc import run
from ovsdb.config import PATCH_KEY, PATCH_TO_INTEGRATION, PATCH_TO_PHYSICAL, PHYSICAL_BRIDGE, \
    tunnel_port_name


def report(name: str, **figures) -> None:
    """One line per measurement, easy to find in `pytest -s` output."""
    print(f"\n[fault] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


def eventually(check, timeout: float = 15.0, interval: float = 0.05):
    """Polls ``check`` until it returns something true; returns that value, or None."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (ApiError, requests.RequestException):
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


# ---- a ping whose every reply is timestamped -------------------------------------------------

@dataclass
class PingResult:
    sent: int
    received: int
    replies: list[tuple[int, float]]  # (icmp_seq, unix time of the reply)

    @property
    def lost(self) -> int:
        return self.sent - self.received

    def back_after(self, t0: float) -> float | None:
        """Seconds from ``t0`` until replies resumed after the longest gap following ``t0``."""
        times = [t for _, t in self.replies]
        gaps = [(b - a, b) for a, b in zip(times, times[1:]) if b > t0]
        if not gaps:
            return None
        _, resumed = max(gaps)
        return resumed - t0

    def gaps(self, t0: float, min_s: float = 0.05) -> list[str]:
        """Pauses in the replies longer than ``min_s``: "start+duration" in seconds from t0."""
        times = [t for _, t in self.replies]
        return [f"{a - t0:+.2f}+{b - a:.2f}" for a, b in zip(times, times[1:]) if b - a > min_s]

    def longest_gap(self) -> float:
        times = [t for _, t in self.replies]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


class TimedPing:
    """`ping -D -i INTERVAL -c COUNT` from a container: each reply with its timestamp, so loss
    and the outage are exact. With a count, ping waits for its last reply and ends by itself."""

    def __init__(self, container, ip: str, interval: float = 0.01, count: int = 600):
        self.out = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", container.netns, "ping", "-n", "-D", "-W", "1",
             "-i", str(interval), "-c", str(count), ip],
            stdout=self.out, stderr=subprocess.STDOUT)

    def result(self, timeout: float = 60) -> PingResult:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()  # our own child, by its PID
                self.proc.wait()
        self.out.seek(0)
        text = self.out.read()
        self.out.close()
        summary = re.search(r"(\d+) packets transmitted, (\d+) received", text)
        if not summary:
            raise RuntimeError(f"no ping summary in: {text[-500:]!r}")
        replies = sorted({int(seq): float(ts) for ts, seq in re.findall(
            r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)", text, re.M)}.items(),
            key=lambda r: r[1])
        return PingResult(int(summary.group(1)), int(summary.group(2)), replies)


# ---- what the lab's switches hold, read with the OVS tools (not through the controller) -------

def our_interfaces(host) -> dict[str, dict]:
    """Interfaces on the host that the controller made (tunnels, owned endpoint ports)."""
    out = host.vsctl("--format=json", "--columns=name,external_ids,options", "list",
                     "Interface")
    table = json.loads(out)
    result = {}
    for name, ids, options in table["data"]:
        ids, options = dict(ids[1]), dict(options[1])
        if "ovsfabric-peer" in ids or "ovsfabric-owned" in ids:
            result[name] = {"external_ids": ids, "options": options}
    return result


def dangling_port_flows(host, bridge: str = "br-int") -> list[str]:
    """Flows that match on or output to a port number the switch does not have: what a deleted
    tunnel or endpoint port leaves behind when its flows stay. Read with ovs-ofctl."""
    base = ["ovs-ofctl", "-O", "OpenFlow13", "--timeout=30", "--no-names"]
    ports = set(re.findall(r"^\s*(\d+)\(", run([*base, "show", host.bridge_mgmt(bridge)]).stdout,
                           re.M))
    flows = [line for line in run([*base, "dump-flows", host.bridge_mgmt(bridge)]).stdout
             .splitlines() if "actions=" in line]
    return [line.strip() for line in flows
            if set(re.findall(r"(?:in_port=|output:)(\d+)", line)) - ports]


def bridge_ports(host, bridge: str = "br-int") -> set[str]:
    return set(host.vsctl("list-ports", bridge).split())


def controller_target(host, bridge: str = "br-int") -> str:
    return host.vsctl("get-controller", bridge).strip()


def fabric_problems(fabric) -> list[str]:
    """Everything that differs from what the store says, on every lab host; [] when clean.

    Checked with the OVS tools on each host: exactly one tunnel port per other registered
    host (right remote_ip), no port of ours left for a deleted endpoint or host, no flow on a
    port that is gone, no controller, port or flow left on a deleted host; and through the
    audit: every registered host's table equals the desired one.
    """
    problems = []
    registered = {h["name"]: h for h in fabric.client.hosts()}
    endpoints = fabric.client.endpoints()
    for host in fabric.lab.hosts:
        if host.name not in registered:
            ours = our_interfaces(host) if "br-int" in host.vsctl("list-br").split() else {}
            if ours:
                problems.append(f"{host.name} (deleted) still has ports {sorted(ours)}")
            if PHYSICAL_BRIDGE in host.vsctl("list-br").split() and \
                    host.vsctl("get-controller", PHYSICAL_BRIDGE).strip():
                problems.append(f"{host.name} (deleted) still has a controller on "
                                f"{PHYSICAL_BRIDGE}")
            if "br-int" in host.vsctl("list-br").split():
                if controller_target(host):
                    problems.append(f"{host.name} (deleted) still has a controller")
                if host.ofctl("dump-flows").count("actions="):
                    problems.append(f"{host.name} (deleted) still has flows")
            continue
        expected_tunnels = {tunnel_port_name(h.tunnel_ip): h.tunnel_ip for h in fabric.lab.hosts
                            if h.name in registered and h is not host}
        expected_ports = {e["port"] for e in endpoints if e["host"] == host.name and e["port"]}
        ours = our_interfaces(host)
        attached = bridge_ports(host)
        for name, row in ours.items():
            if "ovsfabric-peer" in row["external_ids"]:
                if expected_tunnels.get(name) != row["options"].get("remote_ip"):
                    problems.append(f"{host.name}: stale tunnel {name} {row['options']}")
            elif PATCH_KEY in row["external_ids"]:
                # The patch between br-int and the host's physical bridge, one on each.
                if name not in (PATCH_TO_PHYSICAL, PATCH_TO_INTEGRATION):
                    problems.append(f"{host.name}: stale patch port {name}")
            elif name not in expected_ports:
                problems.append(f"{host.name}: stale endpoint port {name}")
        for name in expected_tunnels.keys() - ours.keys():
            problems.append(f"{host.name}: tunnel {name} missing")
        for name in (expected_tunnels.keys() | expected_ports) - attached:
            problems.append(f"{host.name}: port {name} not on br-int")
        problems += [f"{host.name}: flow on a missing port: {flow}"
                     for flow in dangling_port_flows(host)]
        if not registered[host.name]["connected"]:
            problems.append(f"{host.name}: not connected")
            continue
        audit = fabric.client.audit(host.name)
        if not audit["in_sync"]:
            problems.append(f"{host.name}: flows out of sync: {len(audit['missing'])} missing, "
                            f"{len(audit['extra'])} extra, {len(audit['different'])} different")
    return problems


def wait_clean(fabric, timeout: float = 20.0) -> float:
    """Seconds until fabric_problems() is empty; fails with the problems left otherwise."""
    started = time.monotonic()
    problems = ["not checked"]
    while time.monotonic() - started < timeout:
        try:
            problems = fabric_problems(fabric)
        except (ApiError, requests.RequestException) as exc:
            problems = [f"API: {exc}"]
        if not problems:
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"fabric not clean after {timeout} s: {problems}")
