"""What Open vSwitch itself costs to add a port, by the number of ports already on the bridge.

Every controller's convergence includes one port addition, and ovs-vswitchd reconfigures the
whole bridge on each database change, so this floor grows with the ports present: it is why
convergence in a network that already holds many endpoints is slower, for ovsfabric and OVN
alike. No controller is involved: one lab host, a netdev bridge, background internal ports
added in one transaction per step, then veths added one at a time with `ovs-vsctl add-port`
(which waits until ovs-vswitchd has applied the change) and, for reference, with --no-wait
(the ovs-vsctl process and one database round trip only).

    .venv/bin/python bench/port_add_floor.py [--steps 0,100,200,400] [--samples 10]

Prints a table and writes bench/results/port_add_floor.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common import progress, write_results  # noqa: E402

from lab import Lab  # noqa: E402

BRIDGE = "br-int"


def add_background(host, start: int, stop: int) -> None:
    args: list[str] = []
    for i in range(start, stop):
        args += ["--", "add-port", BRIDGE, f"bg{i}", "--", "set", "Interface", f"bg{i}",
                 "type=internal"]
    if args:
        host.vsctl(*args, timeout=300)


def timed_add(host, name: str, *options: str) -> float:
    host.exec("ip", "link", "add", name, "type", "veth", "peer", "name", name + "p")
    host.exec("ip", "link", "set", name, "up")
    started = time.perf_counter()
    host.vsctl(*options, "add-port", BRIDGE, name)
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", default="0,100,200,400",
                        help="ports already on the bridge at each step")
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    steps = sorted(int(s) for s in args.steps.split(","))
    lab = Lab(1, prefix="ovffloor", underlay_subnet="198.18.64.0/24",
              mgmt_subnet="198.18.65.0/24")
    progress("lab of 1 host")
    lab.up()
    rows = []
    try:
        host = lab.hosts[0]
        host.vsctl("--may-exist", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE,
                   "datapath_type=netdev")
        present = 0
        for step in steps:
            add_background(host, present, step)
            present = step
            waited = [timed_add(host, f"w{step}x{k}") for k in range(args.samples)]
            no_wait = [timed_add(host, f"n{step}x{k}", "--no-wait") for k in range(3)]
            present += args.samples + 3
            rows.append({"ports_before": step, "add_port_p50_ms": round(statistics.median(
                waited), 1), "add_port_max_ms": round(max(waited), 1),
                "no_wait_p50_ms": round(statistics.median(no_wait), 1)})
            progress(f"{step} ports: add-port p50 {rows[-1]['add_port_p50_ms']} ms")
    finally:
        lab.down()
    print(f"\n{'ports on the bridge':>19} | {'add-port, waited p50 / max ms':>29} | "
          f"{'--no-wait p50 ms':>16}")
    for r in rows:
        print(f"{r['ports_before']:>19} | {r['add_port_p50_ms']:>13} / {r['add_port_max_ms']:<13}"
              f" | {r['no_wait_p50_ms']:>16}")
    write_results("port_add_floor", {"samples": args.samples, "steps": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
