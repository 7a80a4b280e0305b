"""Flow programming rate and resync cost, on one lab host with a large table.

The state is made directly in the store before the controller starts (a network with one
endpoint on h1 and N on h2: h1 then needs 2 flows per remote endpoint), so that the figures
measure the switch session, not thousands of REST calls:
- first programming: the controller starts, h1's table is empty: time from the switch's
  connection to the barrier after all flows (one atomic bundle), and flows per second;
- resync: the controller is stopped and started again, the table unchanged: time to read,
  compare and (not) correct it, and the flow mods sent (must be 0);
- raw OVS: `ovs-ofctl --bundle add-flows` of the same number of flows into a spare bridge.
Prints a table and writes bench/results/resync.json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lab import Lab  # noqa: E402
from lab.controller import ControllerProcess  # noqa: E402
from model import Store  # noqa: E402
from common import progress, write_results  # noqa: E402



def prepare_state(path: str, lab: Lab, remote_endpoints: int) -> None:
    store = Store(path)
    for host in lab.hosts:
        store.create_host(host.name, host.ovsdb, host.tunnel_ip, "netdev")
    store.create_network("bench", "10.64.0.0/16")
    store.create_endpoint("bench", "h1", port="bench0")  # the network lives on h1
    for _ in range(remote_endpoints):
        store.create_endpoint("bench", "h2")
    store.close()


def wait_reconciled(controller: ControllerProcess, host: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = controller.client.host(host)
        if status["last_reconcile"] is not None:
            return status
        time.sleep(0.05)
    raise RuntimeError(f"{host} not reconciled within {timeout} s")


def raw_ovs_rate(host, flows: int) -> float:
    host.vsctl("--may-exist", "add-br", "br-raw", "--", "set", "bridge", "br-raw",
               "datapath_type=netdev", "protocols=OpenFlow13", "fail_mode=secure")
    with tempfile.NamedTemporaryFile("w", suffix=".flows", delete=False) as out:
        for i in range(flows):
            out.write(f"table=20,priority=100,metadata=0x64,dl_dst=02:be:00:{i >> 16 & 255:02x}:"
                      f"{i >> 8 & 255:02x}:{i & 255:02x},actions=output:1\n")
    try:
        started = time.perf_counter()
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows",
                        host.bridge_mgmt("br-raw"), out.name], check=True)
        elapsed = time.perf_counter() - started
    finally:
        os.unlink(out.name)
        host.vsctl("del-br", "br-raw")
    return flows / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--remote-endpoints", type=int, default=5000,
                        help="endpoints on h2 (h1 gets 2 flows for each)")
    args = parser.parse_args()
    lab = Lab(2, prefix="ovfrs", underlay_subnet="198.18.52.0/24",
              mgmt_subnet="198.18.53.0/24")
    workdir = tempfile.mkdtemp(prefix="ovsfabric-resync-")
    state = os.path.join(workdir, "state.db")
    progress(f"lab of 2 hosts; state with {args.remote_endpoints} remote endpoints")
    lab.up()
    controller = ControllerProcess(state, lab.controller_ip, api_port=18695,
                                   openflow_port=16695)
    try:
        prepare_state(state, lab, args.remote_endpoints)
        controller.start()
        first = wait_reconciled(controller, "h1")["last_reconcile"]
        progress(f"first programming: {first}")
        installed = sum("actions=" in line for line in lab.host("h1").ofctl("dump-flows")
                        .splitlines())
        controller.stop()
        controller.start()
        again = wait_reconciled(controller, "h1")
        progress(f"resync: {again['last_reconcile']}")
        raw = raw_ovs_rate(lab.host("h1"), first["added"])
    finally:
        controller.stop()
        lab.down()
    results = {
        "flows": first["added"], "installed_per_ovs_ofctl": installed,
        "first_programming_s": first["seconds"],
        "controller_flows_per_s": round(first["added"] / first["seconds"]),
        "raw_ovs_ofctl_bundle_flows_per_s": round(raw),
        "resync_s": again["last_reconcile"]["seconds"],
        "resync_read_s": again["last_reconcile"]["read_seconds"],
        "resync_flow_mods": again["flow_mods_sent"]}
    print(f"\nflows on h1: {results['flows']} (ovs-ofctl counts {installed})")
    print(f"first programming (one bundle, barrier included): {results['first_programming_s']} s"
          f" = {results['controller_flows_per_s']} flows/s; raw `ovs-ofctl --bundle add-flows`:"
          f" {results['raw_ovs_ofctl_bundle_flows_per_s']} flows/s")
    print(f"resync of the unchanged table: {results['resync_s']} s (reading it "
          f"{results['resync_read_s']} s), flow mods sent: {results['resync_flow_mods']}")
    write_results("resync", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
