"""The CNI plugin under churn: 1,000 ADD/DEL cycles on two nodes, a random share of the plugin
runs SIGKILLed at a random moment (as kubelet's runtime kills a plugin on its timeout), then
GC with the attachments that should remain; afterwards nothing may be left: no endpoint in
the controller, no address held, no OVS port and no veth of the plugin's, beyond those of the
pods that remain, and those still answer pings.

The seed is printed; OVSFABRIC_CNI_CHURN_SEED sets it, OVSFABRIC_CNI_CHURN_CYCLES the cycles.
"""
from __future__ import annotations

import concurrent.futures
import ipaddress
import os
import random
import threading
import time

import pytest

from api.client import ApiError
from cni.naming import endpoint_name, host_veth
from lab import netns
from lab.cni import CniRuntime, sandbox
from tests.lab.conftest import cni_runtimes, plugin_fabric
from tests.slot import API_PORT, LAB_PREFIX, OPENFLOW_PORT

NETWORK = "cni-churn"
SUBNET = "10.78.0.0/22"  # room for every endpoint a killed DEL leaves until GC
TOKEN = "cni-churn-token"
CYCLES = int(os.environ.get("OVSFABRIC_CNI_CHURN_CYCLES", "1000"))
WORKERS = 8           # cycles run at once (spread over the two churned nodes)
KILL_SHARE = 0.3      # of ADDs, and of DELs, SIGKILLed ...
KILL_WINDOW_S = 0.08  # ... after a random 0 to 80 ms
KEEP_SHARE = 0.02     # cycles whose pod stays (its ADD not killed): no DEL, kept through GC
STABLE = 3            # pods per churned node added before the churn, kept through GC
CHURNED = ("h1", "h2")
PROBER_HOST = "h3"


@pytest.fixture(scope="module")
def fabric(lab, tmp_path_factory):
    state = str(tmp_path_factory.mktemp("state") / "ovsfabric.db")
    with plugin_fabric(lab, state, TOKEN, API_PORT + 1, OPENFLOW_PORT + 1) as fab:
        yield fab


@pytest.fixture(scope="module")
def runtimes(fabric, tmp_path_factory):
    with cni_runtimes(fabric, tmp_path_factory, NETWORK, SUBNET, TOKEN, (*CHURNED, PROBER_HOST)) as made:
        yield made


class Churn:
    """Runs the plugin as a runtime does, and SIGKILLs the runs it is told to."""

    def __init__(self, runtimes: dict[str, CniRuntime]):
        self.runtimes = runtimes
        self.lock = threading.Lock()
        self.kills = {"ADD": 0, "DEL": 0}
        self.failures: list[str] = []  # runs not killed that failed
        self.sandboxes_kept: list[str] = []  # namespaces of killed DELs, kept until after GC

    def run(self, host: str, command: str, cid: str, ns_path: str,
            kill_after: float | None) -> dict | None:
        """The result (None if killed or without output)."""
        outcome = self.runtimes[host].exec(command, container_id=cid, netns_path=ns_path,
                                           kill_after=kill_after)
        if outcome.status is None:
            with self.lock:
                self.kills[command] += 1
            return None
        if outcome.status != 0:
            with self.lock:
                self.failures.append(f"{command} {cid} on {host}: exit {outcome.status}: "
                                     f"{outcome.output} {outcome.stderr.strip()}")
            return None
        return outcome.output or {}


def cycle(churn: Churn, rng: random.Random, i: int, kept: dict) -> None:
    host = CHURNED[i % len(CHURNED)]
    cid = f"churn{i:04d}"
    name = f"{LAB_PREFIX}-pod-{cid}"  # as lab.cni.sandbox names them, without its settings
    netns.ip("netns", "add", name)  # a runtime's fresh pod namespace
    ns_path = f"/run/netns/{name}"
    kill_add = rng.random() < KILL_SHARE
    kill_del = rng.random() < KILL_SHARE
    keep = not kill_add and rng.random() < KEEP_SHARE
    add_kill_at = rng.uniform(0, KILL_WINDOW_S) if kill_add else None
    del_kill_at = rng.uniform(0, KILL_WINDOW_S) if kill_del else None
    result = churn.run(host, "ADD", cid, ns_path, add_kill_at)
    if keep and result is not None:
        kept[cid] = (host, result, ns_path)
        return
    churn.run(host, "DEL", cid, ns_path, del_kill_at)
    if kill_del:
        # A runtime keeps the sandbox of a DEL that failed (and retries it, or GC cleans up).
        with churn.lock:
            churn.sandboxes_kept.append(name)
    else:
        netns.delete(name)


def ping(ns_path: str, ip: str) -> bool:
    name = ns_path.rsplit("/", 1)[1]
    return netns.run(["ping", "-n", "-c", "1", "-i", "0.2", "-w", "3", ip], netns=name,
                     check=False).returncode == 0


def test_churn_with_killed_plugins_then_gc_leaves_nothing(fabric, runtimes):
    seed = int(os.environ.get("OVSFABRIC_CNI_CHURN_SEED", random.randrange(2 ** 32)))
    print(f"\nCNI churn: seed {seed} (OVSFABRIC_CNI_CHURN_SEED={seed} to repeat), "
          f"{CYCLES} cycles")
    rng = random.Random(seed)
    client = fabric.client
    started = time.monotonic()

    # Pods that stay: a prober on h3, a few on each churned node (none of these killed).
    remain: dict[str, tuple[str, dict, str]] = {}  # cid -> (host, ADD result, netns path)
    for host in (PROBER_HOST, *[h for h in CHURNED for _ in range(STABLE)]):
        cid = f"stable{len(remain)}"
        ns_path = sandbox(LAB_PREFIX, cid)
        added = runtimes[host].add(cid, ns_path)
        assert added.status == 0, added.output
        remain[cid] = (host, added.output, ns_path)
    prober_ns = remain["stable0"][2]

    churn = Churn(runtimes)
    kept: dict = {}
    # Each cycle's choices come from its own generator, seeded from the test's: the same
    # seed gives the same cycles whatever order the workers take them in.
    seeds = [rng.randrange(2 ** 32) for _ in range(CYCLES)]
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda i: cycle(churn, random.Random(seeds[i]), i, kept), range(CYCLES)))
    churned = time.monotonic()
    remain.update(kept)
    assert churn.failures == [], f"seed {seed}: runs that were not killed failed: " \
                                 f"{churn.failures[:5]}"

    # The commands of killed plugins may still be finishing (they are orphans, not killed).
    time.sleep(2)
    leaked_before = len(client.endpoints(network=NETWORK)) - len(remain)
    strays_before = {h: (len(runtimes[h].ovs_ports()), len(runtimes[h].host_veths()))
                     for h in CHURNED}
    for host in CHURNED:
        valid = [{"containerID": cid, "ifname": "eth0"}
                 for cid, (h, _, _) in remain.items() if h == host]
        gc = runtimes[host].exec("GC", config=runtimes[host].config(
            "1.1.0", **{"cni.dev/valid-attachments": valid}))
        assert gc.status == 0, f"seed {seed}: GC on {host}: {gc.output} {gc.stderr}"
    for name in churn.sandboxes_kept:
        netns.delete(name)

    where = (f"seed {seed}, {churn.kills['ADD']} ADDs and {churn.kills['DEL']} DELs killed, "
             f"{leaked_before} endpoints left before GC, (OVS ports, veths) then "
             f"{strays_before} with {len(remain)} pods remaining")
    print(f"CNI churn: {where}; churn {churned - started:.1f} s")
    assert churn.kills["ADD"] > 0 and churn.kills["DEL"] > 0

    # No endpoint but those of the remaining pods.
    names = sorted(ep["name"] for ep in client.endpoints(network=NETWORK))
    assert names == sorted(endpoint_name(cid, "eth0") for cid in remain), where
    # No address held: no reservation, and every address no remaining pod has is free.
    assert client.addresses(NETWORK) == [], where
    in_use = {result["ips"][0]["address"].split("/")[0] for _, result, _ in remain.values()}
    net = ipaddress.ip_network(SUBNET)
    gateway = client.network(NETWORK)["gateway"]
    candidates = [str(ip) for ip in net.hosts() if str(ip) not in in_use | {gateway}]

    def held(ip: str) -> str | None:
        try:
            client.reserve_address(NETWORK, "churn-check", ip)
        except ApiError as exc:
            return f"{ip}: {exc}"
        client.release_address(NETWORK, ip, "churn-check")
        return None

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        not_free = [r for r in pool.map(held, candidates) if r]
    assert not_free == [], f"{where}: {len(not_free)} addresses not free: {not_free[:5]}"
    # No OVS port and no veth of the plugin's but the remaining pods'.
    for host in CHURNED:
        mine = sorted(host_veth(endpoint_name(cid, "eth0"))
                      for cid, (h, _, _) in remain.items() if h == host)
        assert sorted(runtimes[host].ovs_ports()) == mine, f"{where}: OVS ports on {host}"
        assert sorted(runtimes[host].host_veths()) == mine, f"{where}: veths on {host}"
    # The remaining pods still work.
    silent = [cid for cid, (_, result, _) in remain.items() if cid != "stable0"
              and not ping(prober_ns, result["ips"][0]["address"].split("/")[0])]
    assert silent == [], f"{where}: pods that do not answer: {silent}"
    print(f"CNI churn: checked in {time.monotonic() - churned:.1f} s")
    # And they go as a runtime removes them, leaving the nodes as they were.
    for cid, (host, _, ns_path) in remain.items():
        assert runtimes[host].delete(cid, ns_path).status == 0, cid
    assert client.endpoints(network=NETWORK) == []
    for host in (*CHURNED, PROBER_HOST):
        assert runtimes[host].ovs_ports() == [] and runtimes[host].host_veths() == [], host
