"""Convergence and bulk benchmark on the namespace lab (root, Open vSwitch).

convergence: an endpoint is requested over REST while a container on another host pings its
address every 5 ms (static neighbour entries on both ends, so the kernel's ARP timer is not
measured); the figure is the time from the POST until that ping's first reply.
bulk: N endpoints spread over the hosts, posted by 8 concurrent clients; the figure is the time
until every POST has returned (each returns once its flows are confirmed by a barrier on every
connected host of the network), checked afterwards by pinging a sample.

Prints a table and writes bench/results/convergence.json.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lab import Lab  # noqa: E402
from lab.controller import ControllerProcess  # noqa: E402
from common import SUBNET, ip_for, mac_for, percentile, progress, write_results  # noqa: E402






def make_container(lab, host: str, i: int, prober):
    c = lab.add_container(host, f"b{i}")
    c.configure(mac_for(i), ip_for(i), 16, 1450)
    c.neigh(prober.ip, prober.mac)
    prober.neigh(ip_for(i), mac_for(i))
    return c


def measure_convergence(lab, client, prober, count: int, settle: float) -> dict:
    latencies, post_times = [], []
    for i in range(count):
        c = make_container(lab, "h1", i, prober)
        ping = subprocess.Popen(["ip", "netns", "exec", prober.netns, "ping", "-n", "-q",
                                 "-i", "0.005", "-c", "1", "-w", "5", ip_for(i)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The new veth keeps ovs-vswitchd busy for a moment (it watches the host's links):
        # let it settle so that the figure is the fabric's, and let ping start sending.
        time.sleep(settle)
        started = time.perf_counter()
        client.create_endpoint("bench", "h1", port=c.port, ip=ip_for(i), mac=mac_for(i))
        posted = time.perf_counter()
        if ping.wait() != 0:
            raise RuntimeError(f"endpoint {i} never answered")
        latencies.append((time.perf_counter() - started) * 1000)
        post_times.append((posted - started) * 1000)
        if (i + 1) % 10 == 0:
            progress(f"convergence: {i + 1}/{count}")
    return {"samples": count, "settle_s": settle,
            "p50_ms": round(statistics.median(latencies), 2),
            "p95_ms": round(percentile(latencies, 95), 2),
            "max_ms": round(max(latencies), 2),
            "post_p50_ms": round(statistics.median(post_times), 2)}


def measure_bulk(lab, client, prober, count: int, offset: int) -> dict:
    hosts = [h.name for h in lab.hosts]
    progress(f"bulk: creating {count} containers")
    containers = []
    for n in range(count):
        containers.append((hosts[n % len(hosts)], make_container(
            lab, hosts[n % len(hosts)], offset + n, prober), offset + n))
    progress(f"bulk: posting {count} endpoints with 8 clients")

    def post(item):
        host, c, i = item
        client.create_endpoint("bench", host, port=c.port, ip=ip_for(i), mac=mac_for(i))

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(post, containers))
    elapsed = time.perf_counter() - started
    sample = random.Random(1).sample(containers, min(20, count))
    reached = sum(prober.ping(ip_for(i), count=1, timeout=2) for _, _, i in sample)
    flows = {h["name"]: h["flows"] for h in client.hosts()}
    return {"endpoints": count, "hosts": len(hosts), "seconds": round(elapsed, 2),
            "endpoints_per_s": round(count / elapsed, 1),
            "sample_reached": f"{reached}/{len(sample)}", "flows_per_host": flows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--convergence", type=int, default=50)
    parser.add_argument("--bulk", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--settle", type=float, default=0.2,
                        help="seconds between creating a container's veth and the POST")
    args = parser.parse_args()
    lab = Lab(args.hosts, prefix="ovfbench", underlay_subnet="198.18.50.0/24",
              mgmt_subnet="198.18.51.0/24")
    workdir = tempfile.mkdtemp(prefix="ovsfabric-bench-")
    controller = ControllerProcess(os.path.join(workdir, "state.db"), lab.controller_ip,
                                   api_port=18690, openflow_port=16690)
    progress(f"lab of {args.hosts} hosts")
    lab.up()
    try:
        controller.start()
        client = controller.client
        for h in lab.hosts:
            client.create_host(h.name, h.ovsdb, h.tunnel_ip, datapath_type="netdev")
        controller.wait_connected([h.name for h in lab.hosts])
        client.create_network("bench", SUBNET)
        prober = lab.add_container("h2", "probe")
        ep = client.create_endpoint("bench", "h2", port=prober.port)
        prober.configure(ep["mac"], ep["ip"], 16, ep["mtu"])
        results = {"convergence": measure_convergence(lab, client, prober, args.convergence,
                                                      args.settle),
                   "bulk": measure_bulk(lab, client, prober, args.bulk, args.convergence)}
    finally:
        controller.stop()
        lab.down()
    conv, bulk = results["convergence"], results["bulk"]
    print(f"\nconvergence (POST -> first reply from another host), {conv['samples']} endpoints, "
          f"veth created {conv['settle_s']} s before:")
    print(f"  p50 {conv['p50_ms']} ms   p95 {conv['p95_ms']} ms   max {conv['max_ms']} ms   "
          f"(POST itself p50 {conv['post_p50_ms']} ms)")
    print(f"bulk: {bulk['endpoints']} endpoints over {bulk['hosts']} hosts in {bulk['seconds']} s "
          f"({bulk['endpoints_per_s']}/s), sample pings {bulk['sample_reached']}")
    print(f"  flows per host: {bulk['flows_per_host']}")
    write_results("convergence", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
