"""Egress on a 2-host lab (root): how long the next hop takes to be bound once the hosts name
it, and TCP throughput (iperf3) from a container to the outside through the SNAT beside a
container on the same host and one across hosts. Prints the figures; builds its own lab and
removes it.

    .venv/bin/python bench/egress.py --prefix ovfx5 --underlay 198.18.92.0/24 \\
        --mgmt 198.18.93.0/24
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from lab import Lab  # noqa: E402
from lab.controller import ControllerProcess  # noqa: E402
from lab.outside import Outside  # noqa: E402
from lab.proc import stop_pid  # noqa: E402
from ovsdb.config import NEXT_HOP_BINDING_KEY, NEXT_HOP_KEY, PHYSICAL_BRIDGE  # noqa: E402

SECONDS = 4


def throughput(client_ns: str, server_ns: str, address: str) -> float:
    """Mbit/s received by an iperf3 server in ``server_ns`` from a client in ``client_ns``."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        result = subprocess.run(["ip", "netns", "exec", client_ns, "iperf3", "-c", address,
                                 "-t", str(SECONDS), "-J"], capture_output=True, text=True,
                                timeout=SECONDS + 20)
        return json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        stop_pid(server.pid)
        server.wait()


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--prefix", default="ovfb")
    args.add_argument("--underlay", default="198.18.60.0/24")
    args.add_argument("--mgmt", default="198.18.61.0/24")
    args.add_argument("--api-port", type=int, default=18790)
    args.add_argument("--openflow-port", type=int, default=16790)
    opts = args.parse_args()
    underlay = ipaddress.ip_network(opts.underlay)
    lab = Lab(2, prefix=opts.prefix, underlay_subnet=opts.underlay, mgmt_subnet=opts.mgmt)
    lab.up()
    controller = outside = None
    state = tempfile.mkdtemp(prefix=f"{opts.prefix}-egress-")
    try:
        controller = ControllerProcess(os.path.join(state, "ovsfabric.db"), lab.controller_ip,
                                       opts.api_port, opts.openflow_port)
        controller.start()
        controller.register(lab.hosts)
        outside = Outside(opts.prefix, lab.ul_bridge, str(underlay[200]), underlay.prefixlen)
        outside.create()
        started = time.monotonic()
        for host in lab.hosts:
            host.vsctl("set", "Bridge", PHYSICAL_BRIDGE,
                       f"external_ids:{NEXT_HOP_KEY}={outside.ip}")
        while not all(host.vsctl("--if-exists", "get", "Bridge", PHYSICAL_BRIDGE,
                                 f"external_ids:{NEXT_HOP_BINDING_KEY}").strip()
                      for host in lab.hosts):
            if time.monotonic() - started > 10:
                raise RuntimeError("the next hop was not bound within 10 s")
            time.sleep(0.01)
        print(f"next hop bound on every host after {time.monotonic() - started:.3f} s")
        network = controller.client.create_network("bench", "10.70.0.0/24")
        containers = {}
        for name, host in [("a", "h1"), ("b", "h1"), ("c", "h2")]:
            container = lab.add_container(host, name)
            ep = controller.client.create_endpoint("bench", host, port=container.port)
            container.configure(ep["mac"], ep["ip"], ep["prefix_len"], ep["mtu"],
                                gateway=network["gateway"])
            containers[name] = container
        a = containers["a"]
        for label, server_ns, address in [
                ("same host", containers["b"].netns, containers["b"].ip),
                ("across hosts", containers["c"].netns, containers["c"].ip),
                ("to the outside (SNAT)", outside.netns, outside.ip)]:
            print(f"{label}: {throughput(a.netns, server_ns, address):.0f} Mbit/s")
    finally:
        if outside is not None:
            outside.destroy()
        if controller is not None:
            controller.stop()
        lab.down()
        subprocess.run(["rm", "-rf", state], check=False)


if __name__ == "__main__":
    main()
