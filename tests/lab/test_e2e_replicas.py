"""Three controller replicas on a 3-member etcd, three lab hosts: every replica serves the API,
one leads and programs the switches; the leader killed during traffic and a burst of writes,
the leader cut off from etcd, etcd's members lost one and two at a time.

Each test prints its figures (run with -s); docs/replicas.md cites them.
"""
from __future__ import annotations

import threading
import time

import pytest
import requests

from api.client import ApiError, FabricClient
from cluster.etcd import refused
from lab.replicas import Replicas
from tests.lab.conftest import forget_generations, wipe_etcd_state
from tests.lab.fabric_checks import TimedPing, eventually, fabric_problems, report
from tests.slot import API_PORT, OPENFLOW_PORT, needs_lab

pytestmark = [pytest.mark.lab, needs_lab]

NETWORK = "replicated"
SUBNET = "10.40.0.0/16"


class View:
    """What fabric_checks reads a fabric through: the lab, and one replica's API."""

    def __init__(self, lab, client):
        self.lab, self.client = lab, client


@pytest.fixture(scope="module")
def replicas(lab, shared_etcd, tmp_path_factory):
    wipe_etcd_state(shared_etcd.url)
    # Replica 0 reaches etcd through member 0 only: cut off when that member is.
    urls = [shared_etcd.member_url(0)] + [shared_etcd.url] * 2
    group = Replicas(str(tmp_path_factory.mktemp("replicas")), urls, lab.controller_ip,
                     API_PORT, OPENFLOW_PORT)
    group.start()
    try:
        group.leader().register(lab.hosts)
        yield group
    finally:
        group.stop()
        forget_generations(lab)


@pytest.fixture(scope="module")
def net(lab, replicas):
    """The network, and a container on each host attached through a different replica."""
    replicas[1].client.create_network(NETWORK, SUBNET)
    containers = {}
    for i, host in enumerate(lab.hosts):
        container = lab.add_container(host.name, f"r{host.name}")
        ep = replicas[i].client.create_endpoint(NETWORK, host.name, port=container.port)
        container.configure(ep["mac"], ep["ip"], ep["prefix_len"], ep["mtu"])
        containers[host.name] = (container, ep)
    for name, (c, _) in containers.items():
        for other, (_, ep) in containers.items():
            if other != name:
                c.neigh(ep["ip"], ep["mac"])
    yield containers
    for container, _ in containers.values():
        lab.remove_container(container)


def running_leader(replicas, other_than: str | None = None):
    return replicas.leader(timeout=15, other_than=other_than)


def wait_masters(replicas, lab, leader, timeout: float = 10) -> float:
    """Seconds until every host's switch confirmed ``leader`` as its MASTER."""
    hosts = [h.name for h in lab.hosts]
    t0 = time.monotonic()
    assert eventually(lambda: replicas.masters(leader, hosts), timeout, 0.02), \
        f"not MASTER everywhere: {[(h['name'], h['openflow_role']) for h in leader.client.hosts()]}"
    return time.monotonic() - t0


def name_of(replicas, process) -> str:
    return f"replica{replicas.processes.index(process)}"


def test_every_replica_serves_and_one_leads(lab, replicas, net):
    cluster = replicas.cluster()
    assert [m["name"] for m in cluster["members"]] == ["replica0", "replica1", "replica2"]
    assert sum(m["leader"] for m in cluster["members"]) == 1
    leader = running_leader(replicas)
    wait_masters(replicas, lab, leader)
    for process in replicas:
        if process is not leader:  # followers are SLAVE on every switch
            roles = {h["openflow_role"] for h in process.client.hosts()}
            assert all(r and r.startswith("slave") for r in roles), roles
    # Every switch is told every replica.
    targets = set(lab.hosts[0].vsctl("get-controller", "br-int").split())
    assert targets == {f"tcp:{lab.controller_ip}:{OPENFLOW_PORT + i}" for i in range(3)}
    (a, _), (_, b_ep), (_, c_ep) = net.values()
    assert a.ping(b_ep["ip"], count=2, timeout=2) and a.ping(c_ep["ip"], count=2, timeout=2)
    # Each replica's reads are its own copy, at the same revision once caught up.
    assert eventually(lambda: len({p.client.request("GET", "/v1/cluster")["revision"]
                                   for p in replicas}) == 1, 5)


def test_kill9_of_the_leader_during_ping_and_a_burst_of_500_creations(lab, replicas, net):
    """8 clients spread over the three replicas create 500 endpoints while a container pings
    another host's every 10 ms; the leader is killed with SIGKILL in the middle."""
    leader = running_leader(replicas)
    wait_masters(replicas, lab, leader)
    (source, _), (_, target_ep), _ = net.values()
    ping = TimedPing(source, target_ep["ip"], interval=0.01, count=800)
    total, clients = 500, 8
    next_index = iter(range(total))
    lock = threading.Lock()
    outcomes: dict[str, tuple[str, object]] = {}

    def client_loop(n: int):
        """Through replica n % 3, and the next one when a replica does not take the
        connection (as an orchestrator given every replica's address does)."""
        at = n % 3
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            name = f"burst-{i:03d}"
            for _ in range(3):
                client = FabricClient(replicas[at].url, timeout=30)
                try:
                    outcomes[name] = ("created", client.create_endpoint(
                        NETWORK, lab.hosts[i % 3].name, name=name))
                except ApiError as exc:
                    outcomes[name] = ("rejected", exc.status)
                except requests.RequestException as exc:
                    if refused(exc):
                        at = (at + 1) % 3
                        continue
                    outcomes[name] = ("unknown", repr(exc))  # cut by the kill
                break

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    killed = name_of(replicas, leader)
    leader.kill()
    killed_at = time.monotonic()
    successor = running_leader(replicas, other_than=killed)
    masters_s = time.monotonic() - killed_at + wait_masters(replicas, lab, successor)
    for t in threads:
        t.join(timeout=90)
    result = ping.result()
    leader.start()  # back as a follower
    view = View(lab, successor.client)
    assert eventually(lambda: not fabric_problems(view), 30), fabric_problems(view)

    by_kind: dict[str, list[str]] = {}
    for name, (kind, _) in outcomes.items():
        by_kind.setdefault(kind, []).append(name)
    stored = {e["name"]: e for e in successor.client.endpoints()
              if e["name"].startswith("burst-")}
    report("leader SIGKILL during 500 creations over 3 replicas and a 10 ms ping",
           masters_again_s=f"{masters_s:.2f}", ping_sent=result.sent, ping_lost=result.lost,
           created_201=len(by_kind.get("created", [])),
           outcome_unknown=len(by_kind.get("unknown", [])),
           rejected=len(by_kind.get("rejected", [])))
    assert masters_s <= 3.0, f"the new leader had every switch after {masters_s:.2f} s"
    assert result.lost == 0, result.gaps(killed_at)
    assert len(outcomes) == total and not by_kind.get("rejected")
    lost = [n for n in by_kind["created"]
            if n not in stored or any(stored[n][k] != outcomes[n][1][k]
                                      for k in ("id", "ip", "mac", "host", "network"))]
    assert not lost, f"acknowledged but lost or changed: {lost}"
    everything = successor.client.endpoints()
    for field in ("ip", "mac"):
        values = [(e["network"], e[field]) for e in everything]
        assert len(values) == len(set(values)), f"a {field} was given twice"
    for ep in stored.values():
        successor.client.delete_endpoint(ep["id"])


def test_a_new_leader_with_nothing_changed_sends_no_flow_mod(lab, replicas, net):
    leader = running_leader(replicas)
    wait_masters(replicas, lab, leader)
    view = View(lab, leader.client)
    assert eventually(lambda: not fabric_problems(view), 20), fabric_problems(view)
    killed = name_of(replicas, leader)
    leader.kill()
    successor = running_leader(replicas, other_than=killed)
    wait_masters(replicas, lab, successor)
    leader.start()
    hosts = successor.client.hosts()
    report("takeover with nothing changed",
           flow_mods={h["name"]: h["flow_mods_sent"] for h in hosts})
    assert all(h["flow_mods_sent"] == 0 for h in hosts), hosts
    assert not fabric_problems(View(lab, successor.client))


def test_the_leader_cut_off_from_etcd_steps_down(lab, replicas, shared_etcd, net):
    """Replica 0 reaches etcd through member 0 alone: with that member frozen (its traffic
    dropped), replica 0 must stop leading within the lease's TTL, and another takes over."""
    first = replicas[0]
    if running_leader(replicas) is not first:  # make replica 0 the leader
        while (current := running_leader(replicas)) is not first:
            current.stop()
            current.start()
    wait_masters(replicas, lab, first)
    shared_etcd.pause(0)
    cut_at = time.monotonic()
    try:
        assert eventually(lambda: first.client.request("GET", "/v1/cluster")["leader"]
                          != "replica0", 5, 0.02)
        stepped_down_s = time.monotonic() - cut_at
        successor = replicas.leader(timeout=15, other_than="replica0",
                                    among=[replicas[1], replicas[2]])
        masters_s = time.monotonic() - cut_at + wait_masters(replicas, lab, successor)
        (a, _), (_, b_ep), _ = net.values()
        assert a.ping(b_ep["ip"], count=2, timeout=2)
        # The deposed leader is no switch's MASTER now: OVS refuses what it would send (it
        # asked again in its old term and was told that term is stale).
        roles = [h["openflow_role"] for h in first.client.hosts()]
        report("leader cut off from etcd", stepped_down_s=f"{stepped_down_s:.2f}",
               masters_again_s=f"{masters_s:.2f}", deposed_roles=roles)
        assert stepped_down_s <= 2.0
        assert not any((role or "").startswith("master") for role in roles), roles
    finally:
        shared_etcd.resume(0)
        shared_etcd.wait_healthy(range(3))


def test_etcd_members_lost_one_then_two(lab, replicas, shared_etcd, net):
    running_leader(replicas)
    before = replicas.cluster()["leader"]
    (a, _), (_, b_ep), _ = net.values()
    # One member gone: nothing visible changes.
    shared_etcd.kill(2)
    try:
        made = replicas[1].client.create_endpoint(NETWORK, lab.hosts[0].name, name="one-down")
        assert replicas.cluster()["leader"] == before
        # Two gone: writes refused with a clear 503, reads and the dataplane go on.
        shared_etcd.kill(1)
        ping = TimedPing(a, b_ep["ip"], interval=0.01, count=300)
        started = time.monotonic()
        with pytest.raises(ApiError) as refused:
            replicas[2].client.create_endpoint(NETWORK, lab.hosts[1].name, name="refused")
        refused_s = time.monotonic() - started
        assert refused.value.status == 503 and "takes no writes now" in str(refused.value)
        for process in replicas.running():
            assert made["id"] in {e["id"] for e in process.client.endpoints()}
        assert ping.result().lost == 0
        report("etcd quorum lost", write_refused_after_s=f"{refused_s:.1f}")
    finally:
        shared_etcd.restart(1)
        shared_etcd.restart(2)
        shared_etcd.wait_healthy(range(3))
    # Back: writes resume, nothing lost, a leader programs the switches again.
    leader = running_leader(replicas)
    wait_masters(replicas, lab, leader, timeout=15)
    again = replicas[0].client.create_endpoint(NETWORK, lab.hosts[2].name, name="after")
    names = {e["name"] for e in leader.client.endpoints()}
    assert {"one-down", "after"} <= names
    for ep in leader.client.endpoints():
        if ep["name"] in ("one-down", "after", "refused"):
            leader.client.delete_endpoint(ep["id"])
    assert again["ip"] != made["ip"]
