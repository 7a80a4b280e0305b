"""Flow programming rate and resync cost, on one lab host with a large table.

The state is made directly in the store before the controller starts (a network with one
endpoint on h1 and N on h2: h1 then needs 1 flow per remote endpoint), so that the figures
measure the switch session, not thousands of REST calls:
- first programming: the controller starts, h1's table is empty: time from the switch's
  connection to the barrier after all flows (compiled, serialized and sent as plain flow mods,
  since an empty table has no traffic to protect), and flows per second;
- resync: the controller is stopped and started again, the table unchanged: time to read,
  compare and (not) correct it, and the flow mods sent (must be 0);
- raw OVS: `ovs-ofctl --bundle add-flows` of the same number of flows into a spare bridge;
- OVS's own ceiling for the controller's messages: h1's very table, serialized beforehand by
  openflow.wire into one bundle and written to the spare bridge from first byte to barrier (what
  the controller would take if serializing cost nothing).
The first programming counts only when it sent the whole table at once: a session that
converges before the tunnel's port number is known sends the rest later, one flow mod at a
time; the run is then repeated on an emptied table (and says so).
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

from flows import HostPorts, compile_host  # noqa: E402
from harness.ofclient import OpenFlowClient  # noqa: E402
from lab import Lab  # noqa: E402
from lab.controller import ControllerProcess  # noqa: E402
from model import Store  # noqa: E402
from openflow import stats as wire_stats  # noqa: E402
from openflow import wire  # noqa: E402
from common import progress, write_results  # noqa: E402

FIRST_ATTEMPTS = 3



def prepare_state(path: str, lab: Lab, remote_endpoints: int) -> None:
    store = Store(path)
    for host in lab.hosts:
        store.create_host(host.name, host.ovsdb, host.tunnel_ip, "netdev")
    store.create_network("bench", "10.64.0.0/16")
    store.create_endpoint("bench", "h1", port="bench0")  # the network lives on h1
    for _ in range(remote_endpoints):
        store.create_endpoint("bench", "h2")
    store.close()


def expected_flows(path: str) -> int:
    """How many flows h1's full table holds: its compiled table with every port known."""
    store = Store(path)
    try:
        snap = store.snapshot()
    finally:
        store.close()
    local = {ep.id: 1000 + i for i, ep in enumerate(snap.host_endpoints("h1"))}
    return len(compile_host(snap, "h1", HostPorts(local, {"h2": 1})))


def wait_reconciled(controller: ControllerProcess, host: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = controller.client.host(host)
        if status["last_reconcile"] is not None:
            return status
        time.sleep(0.05)
    raise RuntimeError(f"{host} not reconciled within {timeout} s")


def count_flows(host) -> int:
    return sum("actions=" in line for line in host.ofctl("dump-flows").splitlines())


def table_of(host) -> list:
    """The host's br-int flows, read straight from the bridge."""
    with OpenFlowClient(host.bridge_mgmt()) as client:
        return [flow for part in client.flow_stats_replies() for flow in wire_stats.flows(part)]


def raw_ovs_rates(host, flows: int, table: list) -> tuple[float, float]:
    """(ovs-ofctl --bundle add-flows, pre-serialized bundle of ``table``), flows/s."""
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
        ofctl = flows / (time.perf_counter() - started)
        host.ofctl("del-flows", bridge="br-raw")
        bundle = wire.Bundle(1)
        data = b"".join([bundle.open(1)]
                        + [bundle.flow_mod_add(f, 2 + i) for i, f in enumerate(table)]
                        + [bundle.commit(2 + len(table))])
        with OpenFlowClient(host.bridge_mgmt("br-raw")) as client:
            started = time.perf_counter()
            client.sock.sendall(data)
            client.barrier()
            serialized = len(table) / (time.perf_counter() - started)
        loaded = host.ofctl("dump-aggregate", bridge="br-raw")
        if f"flow_count={len(table)}" not in loaded:
            raise RuntimeError(f"the pre-serialized bundle did not load: {loaded}")
    finally:
        os.unlink(out.name)
        host.vsctl("del-br", "br-raw")
    return ofctl, serialized


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--remote-endpoints", type=int, default=10000,
                        help="endpoints on h2 (h1 gets 1 flow for each)")
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
        expected = expected_flows(state)
        h1 = lab.host("h1")
        for attempt in range(1, FIRST_ATTEMPTS + 1):
            controller.start()
            first = wait_reconciled(controller, "h1")["last_reconcile"]
            progress(f"first programming: {first}")
            if first["added"] == expected or attempt == FIRST_ATTEMPTS:
                break
            progress(f"the first pass sent {first['added']} of {expected} flows (the rest come "
                     f"later): again on an emptied table")
            controller.stop()
            h1.ofctl("del-flows")
        deadline = time.monotonic() + 30
        while (installed := count_flows(h1)) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        table = table_of(h1)
        controller.stop()
        controller.start()
        again = wait_reconciled(controller, "h1")
        progress(f"resync: {again['last_reconcile']}")
        ofctl_rate, serialized_rate = raw_ovs_rates(h1, first["added"], table)
    finally:
        controller.stop()
        lab.down()
    results = {
        "flows": first["added"], "installed_per_ovs_ofctl": installed,
        "expected_flows": expected,
        "first_programming_attempts": attempt,
        "first_programming_s": first["seconds"],
        "controller_flows_per_s": round(first["added"] / first["seconds"]),
        "first_programming_compile_s": first["compile_seconds"],
        "first_programming_send_s": first["send_seconds"],
        "sending_flows_per_s": round(first["added"] / first["send_seconds"]),
        "raw_ovs_ofctl_bundle_flows_per_s": round(ofctl_rate),
        "pre_serialized_bundle_flows_per_s": round(serialized_rate),
        "resync_s": again["last_reconcile"]["seconds"],
        "resync_read_s": again["last_reconcile"]["read_seconds"],
        "resync_flow_mods": again["flow_mods_sent"]}
    print(f"\nflows on h1: {results['flows']} (ovs-ofctl counts {installed}, expected "
          f"{expected})" + (f", first programming attempt {attempt}" if attempt > 1 else ""))
    print(f"first programming (barrier included): {results['first_programming_s']} s"
          f" = {results['controller_flows_per_s']} flows/s; of which compiling "
          f"{results['first_programming_compile_s']} s and sending "
          f"{results['first_programming_send_s']} s = {results['sending_flows_per_s']} flows/s;"
          f"\n  raw `ovs-ofctl --bundle add-flows`:"
          f" {results['raw_ovs_ofctl_bundle_flows_per_s']} flows/s; the same table"
          f" pre-serialized: {results['pre_serialized_bundle_flows_per_s']} flows/s")
    print(f"resync of the unchanged table: {results['resync_s']} s (reading it "
          f"{results['resync_read_s']} s), flow mods sent: {results['resync_flow_mods']}")
    write_results("resync", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
