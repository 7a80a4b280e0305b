"""Faults injected on the lab, outcomes measured: what survives, what is lost, how long it takes.

Every test runs twice, once on each store (test_x[sqlite], test_x[etcd]): the controller on its
SQLite file, and a single replica on the session's etcd (`serve --store`), which leads through
the election (cluster/election.py). Each test prints its figures, the store in brackets (run
with -s); docs/reliability.md cites them.
"""
from __future__ import annotations

import concurrent.futures
import os
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
import uuid

import pytest
import requests

from api.client import ApiError, FabricClient
from cluster.election import TTL_S
from cluster.etcd import refused
from lab.proc import alive
from ovsdb.config import tunnel_port_name
from tests.helpers import flow_table
from tests.lab.conftest import controller_fabric, forget_generations, wipe_etcd_state
from tests.lab.fabric_checks import (TimedPing, bridge_ports, controller_target, eventually,
                                     our_interfaces, wait_clean)
from tests.lab.fabric_checks import report as report_line
from tests.slot import needs_lab

pytestmark = [pytest.mark.lab, needs_lab]

NETWORK = "faults"
SUBNET = "10.30.0.0/16"  # room for the burst and the mixed load
STORES = ["sqlite", "etcd"]


@pytest.fixture(scope="module", params=STORES)
def fabric(request, lab, tmp_path_factory):
    """The module's controller, once per store: on its own SQLite file, as in every module;
    or on the session's etcd, wiped before it starts. ``fabric.store`` says which."""
    state = str(tmp_path_factory.mktemp(f"state-{request.param}") / "ovsfabric.db")
    store = None
    if request.param == "etcd":
        store = request.getfixturevalue("shared_etcd").url
        wipe_etcd_state(store)
    try:
        with controller_fabric(lab, state, store) as fab:
            fab.store = request.param
            yield fab
    finally:
        if store:
            forget_generations(lab)


def report(fabric, name: str, **figures) -> None:
    report_line(f"{name} [{fabric.store}]", **figures)


# ---- the module's network: one container per host -------------------------------------------

@pytest.fixture(scope="module")
def net(fabric):
    network = fabric.client.create_network(NETWORK, SUBNET)
    containers = {}
    for host in fabric.lab.hosts:
        containers[host.name] = fabric.attach(host.name, f"f{host.name}", NETWORK)
    # Static neighbours: the timings measure the fabric, not the kernel's ARP retries.
    for name, (c, _) in containers.items():
        for other, (_, ep) in containers.items():
            if other != name:
                c.neigh(ep["ip"], ep["mac"])
    for c, ep in containers.values():
        for other, oep in containers.values():
            if other is not c:
                assert eventually(lambda: c.ping(oep["ip"], count=1, timeout=1), 10)
    return network, containers


def test_fabric_is_clean_to_begin_with(fabric, net):
    # The checker itself must see a clean fabric before any fault, or its verdicts mean nothing.
    assert wait_clean(fabric) < 20


# ---- controller restarts ---------------------------------------------------------------------

def test_graceful_restart_loses_no_packet(fabric, net):
    """SIGTERM (what systemd or an upgrade does), then a restart, while a 10 ms ping runs."""
    _, containers = net
    (c1, _), (_, ep2) = containers["h1"], containers["h2"]
    before = {h.name: flow_table(h) for h in fabric.lab.hosts}
    ping = TimedPing(c1, ep2["ip"], interval=0.01, count=500)
    time.sleep(0.5)
    t0 = time.monotonic()
    fabric.controller.kill(signal.SIGTERM)
    stopped = time.monotonic() - t0
    fabric.controller.start()
    fabric.controller.wait_connected([h.name for h in fabric.lab.hosts])
    reconnected = time.monotonic() - t0
    assert eventually(lambda: all(h["flow_mods_sent"] is not None
                                  for h in fabric.client.hosts()))
    result = ping.result()
    report(fabric, "controller SIGTERM + restart", ping_sent=result.sent, lost=result.lost,
           stop_s=f"{stopped:.2f}", all_reconnected_s=f"{reconnected:.2f}",
           flow_mods=[h["flow_mods_sent"] for h in fabric.client.hosts()])
    assert result.sent == 500 and result.lost == 0
    assert {h.name: flow_table(h) for h in fabric.lab.hosts} == before
    # The flows survived the restart untouched: reconnection rewrote nothing.
    assert [h["flow_mods_sent"] for h in fabric.client.hosts()] == [0, 0, 0]


# ---- Open vSwitch daemons restarted ----------------------------------------------------------

@pytest.mark.parametrize("signal_", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "crash"])
def test_vswitchd_restart_is_reprogrammed_within_2s(fabric, net, signal_):
    """ovs-vswitchd restarted on h2 (stopped, or killed as in a crash) comes back with an
    empty flow table: the controller must notice and reprogram it; a 10 ms ping from h1 to
    h2 measures how long traffic stops."""
    _, containers = net
    (c1, _), (_, ep2) = containers["h1"], containers["h2"]
    h2 = fabric.lab.host("h2")
    connects_before = _switch_connects(fabric, "h2")
    ping = TimedPing(c1, ep2["ip"], interval=0.01, count=500)
    time.sleep(0.5)
    t0 = time.time()
    pid = h2.pids()["vswitchd"]
    os.kill(pid, signal_)
    assert eventually(lambda: not alive(pid), 10, 0.005)
    h2.start_vswitchd()
    started = time.time() - t0
    result = ping.result()
    back = result.back_after(t0)
    report(fabric, f"ovs-vswitchd {signal_.name} and start on h2", ping_sent=result.sent,
           lost=result.lost,
           restart_cmd_s=f"{started:.2f}",
           traffic_back_after_s=f"{back:.3f}" if back is not None else None,
           longest_gap_s=f"{result.longest_gap():.3f}")
    assert back is not None and back < 2.0, "traffic not back within 2 s of the restart"
    assert result.received > 0 and result.replies[-1][0] > 400, "ping never recovered"
    assert _switch_connects(fabric, "h2") > connects_before, "controller did not notice"
    wait_clean(fabric)


def _switch_connects(fabric, host: str) -> float:
    text = requests.get(fabric.controller.url + "/metrics", timeout=5).text
    m = re.search(r'^ovsfabric_switch_connects_total\{host="%s"\} (\S+)' % host, text, re.M)
    return float(m.group(1)) if m else 0.0


def test_ovsdb_server_restart(fabric, net):
    """ovsdb-server of h3 stopped for 2 s, an endpoint of h3 deleted meanwhile: the request
    must not wait for h3, the other hosts drop the endpoint's flows at once, and once the
    database is back the session returns by itself, the port goes and h3 gets exactly the
    deletions of that endpoint's flows, its table otherwise untouched.

    Traffic is measured, not asserted: with the userspace datapath, ovs-vswitchd stops
    forwarding from the moment its database goes until it has reconnected to it (about 1 s
    after the restart, its own backoff), and loses what overflows the sockets meanwhile. The
    same happens with no controller at all (see docs/reliability.md); a kernel datapath forwards on.
    """
    _, containers = net
    (c1, _), (_, ep3) = containers["h1"], containers["h3"]
    h3 = fabric.lab.host("h3")
    extra, extra_ep = fabric.attach("h3", "fx3", NETWORK)
    assert eventually(lambda: c1.ping(extra_ep["ip"], count=1, timeout=1), 10)
    table_before = flow_table(h3)
    mods_before = _flow_mods(fabric, "h3")
    ping = TimedPing(c1, ep3["ip"], interval=0.01, count=600)
    time.sleep(0.5)
    t0, wall0 = time.monotonic(), time.time()
    h3.stop_ovsdb()
    noticed = eventually(lambda: not fabric.client.host("h3")["ovsdb_connected"], 10)
    noticed_s = time.monotonic() - t0
    t_del = time.monotonic()
    fabric.client.delete_endpoint(extra_ep["id"])  # h3 cannot be told now
    delete_s = time.monotonic() - t_del
    # Its flows go at once from the other hosts. (h3's own switch cannot change: without its
    # database, ovs-vswitchd runs no OpenFlow at all.)
    others = [h for h in fabric.lab.hosts if h is not h3]
    flows_gone = eventually(lambda: not any(extra_ep["mac"] in h.ofctl("dump-flows")
                                            for h in others), 2)
    time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))
    h3.start_ovsdb()
    t1 = time.monotonic()
    started_at = t1 - t0
    assert eventually(lambda: fabric.client.host("h3")["connected"], 20), "h3 never came back"
    back_s = time.monotonic() - t1
    clean_s = wait_clean(fabric) + back_s
    result = ping.result()
    mods = _flow_mods(fabric, "h3") - mods_before
    # What h3 had to be sent: the difference between its table before and after.
    needed = _changes(table_before, flow_table(h3))
    report(fabric, "ovsdb-server stopped 2 s on h3", ping_sent=result.sent, lost=result.lost,
           noticed_down_s=f"{noticed_s:.2f}", delete_answered_s=f"{delete_s:.2f}",
           restarted_at_s=f"{started_at:.2f}", session_back_s=f"{back_s:.2f}",
           clean_after_s=f"{clean_s:.2f}", ping_pauses=result.gaps(wall0),
           flow_mods_to_h3=f"{mods:.0f}", flows_changed_on_h3=needed)
    assert noticed, "the controller did not notice the database going away"
    assert flows_gone, "other hosts kept a deleted endpoint's flows"
    assert delete_s < 2.0, "the request waited for a host whose database is down"
    assert extra.port not in bridge_ports(h3), "the deleted endpoint's port is still attached"
    assert not any(extra_ep["mac"] in h.ofctl("dump-flows") for h in fabric.lab.hosts)
    assert needed > 0 and mods == needed, "h3's table was rewritten, not just corrected"
    assert result.replies and result.replies[-1][0] == result.sent, "traffic did not resume"


def _changes(before: list[str], after: list[str]) -> int:
    """Flow mods that turn one dump (flow_table) into the other: an add per new or changed
    flow, a delete per flow whose table, priority and match are gone."""
    def key(line: str) -> str:
        return re.sub(r"cookie=\S+\s*|\s*actions=.*", "", line)
    return len(set(after) - set(before)) + len({key(f) for f in before} - {key(f) for f in after})


def _flow_mods(fabric, host: str) -> float:
    """Flow mods sent to a host's switch since the controller started (all its sessions)."""
    text = requests.get(fabric.controller.url + "/metrics", timeout=5).text
    m = re.search(r'^ovsfabric_flow_mods_sent_total\{host="%s"\} (\S+)' % host, text, re.M)
    return float(m.group(1)) if m else 0.0


def test_management_link_cut_for_10s(fabric, net):
    """h2's management link down for 10 s: the switch cannot reach the controller. Traffic
    must keep flowing on the flows already in the switch; the controller must notice (its
    probe goes unanswered) rather than report h2 connected and make every request wait for
    it; an endpoint created and another deleted meanwhile must reach h2 by itself once the
    link is back, and nothing stale may remain."""
    _, containers = net
    (c1, _), (c2, ep2) = containers["h1"], containers["h2"]
    h2 = fabric.lab.host("h2")
    link = f"{fabric.lab.prefix}-m2"  # h2's management veth, root-namespace end
    doomed, doomed_ep = fabric.attach("h1", "fz1", NETWORK)
    assert eventually(lambda: c2.ping(doomed_ep["ip"], count=1, timeout=1), 10)
    ping = TimedPing(c1, ep2["ip"], interval=0.01, count=1400)  # 14 s: across the whole cut
    time.sleep(0.5)
    t0, wall0 = time.monotonic(), time.time()
    subprocess.run(["ip", "link", "set", link, "down"], check=True)
    try:
        noticed = eventually(lambda: not fabric.client.host("h2")["connected"], 9.5)
        noticed_s = time.monotonic() - t0
        t_req = time.monotonic()
        newcomer, new_ep = fabric.attach("h1", "fy1", NETWORK)
        fabric.client.delete_endpoint(doomed_ep["id"])
        requests_s = time.monotonic() - t_req
        time.sleep(max(0.0, 10.0 - (time.monotonic() - t0)))
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
    t1, wall1 = time.monotonic(), time.time()
    clean_s = wait_clean(fabric, timeout=30)
    c2.neigh(new_ep["ip"], new_ep["mac"])
    reach_s = time.monotonic() - t1 if eventually(
        lambda: c2.ping(new_ep["ip"], count=1, timeout=0.5), 10) else None
    result = ping.result()
    report(fabric, "management link of h2 cut 10 s", ping_sent=result.sent, lost=result.lost,
           noticed_after_s=f"{noticed_s:.2f}" if noticed else None,
           two_requests_during_cut_s=f"{requests_s:.2f}",
           clean_after_restore_s=f"{clean_s:.2f}",
           new_endpoint_reachable_from_h2_s=f"{reach_s:.2f}" if reach_s else None,
           link_up_at_s=f"{wall1 - wall0:.2f}", lost_after_cut_s=_lost_at(result, wall0))
    assert result.lost == 0, "traffic stopped while only the controller was unreachable"
    assert noticed, "h2 still reported connected while unreachable"
    assert requests_s < 2.0, "requests waited for a switch known to be unreachable"
    assert reach_s is not None, "h2 never learnt the endpoint created during the cut"
    assert doomed_ep["mac"] not in h2.ofctl("dump-flows"), "stale flow of a deleted endpoint"


def _lost_at(result, t0: float) -> list[str]:
    """When each lost ping was sent, in seconds from ``t0``: after the reply before it."""
    times = dict(result.replies)
    return [f"{times[seq - 1] - t0:+.2f}" if seq - 1 in times else f"#{seq}"
            for seq in range(1, result.sent + 1) if seq not in times]


def test_host_deleted_and_registered_again(fabric, net):
    """h3 deleted (after its endpoint) and registered again, twice: once after the deletion
    has settled, once straight away. No tunnel port or flow of the deleted host may remain
    anywhere, and the re-registered host must come back by itself."""
    _, containers = net
    c1, _ = containers["h1"]
    c3, ep3 = containers["h3"]
    h3 = fabric.lab.host("h3")
    try:
        for settle in (True, False):
            fabric.client.delete_endpoint(ep3["id"])
            t0 = time.monotonic()
            fabric.client.delete_host("h3")
            if settle:
                gone_s = wait_clean(fabric)
                assert not any(tunnel_port_name(h3.tunnel_ip) in bridge_ports(h)
                               for h in fabric.lab.hosts if h is not h3)
                assert not our_interfaces(h3) and not controller_target(h3)
                assert h3.ofctl("dump-flows").count("actions=") == 0
            t1 = time.monotonic()
            fabric.client.create_host("h3", h3.ovsdb, h3.tunnel_ip, datapath_type="netdev")
            fabric.controller.wait_connected(["h3"], timeout=20)
            ep3 = fabric.client.create_endpoint(NETWORK, "h3", port=c3.port, ip=ep3["ip"],
                                                mac=ep3["mac"])
            back_s = time.monotonic() - t1
            clean_s = wait_clean(fabric)
            reach = eventually(lambda: c1.ping(ep3["ip"], count=1, timeout=0.5), 10)
            report(fabric, "host h3 deleted and registered again" + ("" if settle else " at once"),
                   deletion_clean_s=f"{gone_s:.2f}" if settle else "-",
                   reconnected_s=f"{back_s:.2f}", clean_s=f"{clean_s:.2f}",
                   total_s=f"{time.monotonic() - t0:.2f}")
            assert reach, "h3's endpoint unreachable after re-registration"
    finally:
        # Whatever failed, the tests after this one get h3 back.
        if "h3" not in {h["name"] for h in fabric.client.hosts()}:
            fabric.client.create_host("h3", h3.ovsdb, h3.tunnel_ip, datapath_type="netdev")
        if not fabric.client.endpoints(host="h3"):
            ep3 = fabric.client.create_endpoint(NETWORK, "h3", port=c3.port, ip=ep3["ip"],
                                                mac=ep3["mac"])
        containers["h3"] = (c3, ep3)


# ---- requests under faults and under load ----------------------------------------------------

def _check_unique(endpoints: list[dict]) -> None:
    ips = [(e["network"], e["ip"]) for e in endpoints]
    macs = [e["mac"] for e in endpoints]
    assert len(set(ips)) == len(ips), "an address was given twice"
    assert len(set(macs)) == len(macs), "a MAC was given twice"


def test_kill9_during_a_burst_of_creations(fabric, net):
    """8 clients create 500 endpoints; the controller is killed with SIGKILL after 1 s and
    started again. Every 201 must exist with the address it announced, nothing may exist that
    was refused or never asked for, no address twice, and every host's table must equal the
    desired one."""
    total, clients = 500, 8
    names = [f"burst-{i:03d}" for i in range(total)]
    next_index = iter(range(total))
    lock = threading.Lock()
    outcomes: dict[str, tuple[str, object]] = {}

    def client_loop():
        client = FabricClient(fabric.controller.url, timeout=30)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            try:
                result = ("created", client.create_endpoint(NETWORK, f"h{i % 3 + 1}",
                                                            name=names[i]))
            except ApiError as exc:
                result = ("rejected", exc.status)
            except requests.RequestException as exc:
                result = ("never sent" if refused(exc) else "unknown", repr(exc))
            outcomes[names[i]] = result

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    fabric.controller.kill()  # SIGKILL, in the middle of the burst
    killed = time.monotonic()
    for t in threads:
        t.join(timeout=60)
    t0 = time.monotonic()
    fabric.controller.start()
    fabric.controller.wait_connected([h.name for h in fabric.lab.hosts])
    restart_s = time.monotonic() - t0
    # A write at once is answered only once its flows are in: on etcd also while the
    # restarted replica, a new one, follows the killed one's lease until etcd expires it, and
    # only then leads and programs.
    t_early = time.monotonic()
    early = fabric.client.create_endpoint(NETWORK, "h1", name="early-0")
    early_s = time.monotonic() - t_early
    # It has no port: its flows are the other hosts' (into the tunnel to h1).
    early_in = all(early["mac"] in fabric.lab.host(h).ofctl("dump-flows") for h in ("h2", "h3"))
    masters_s = None
    if fabric.store == "etcd":
        assert eventually(lambda: all((h["openflow_role"] or "").startswith("master")
                                      for h in fabric.client.hosts()), 10)
        masters_s = time.monotonic() - killed
    clean_s = wait_clean(fabric, timeout=30)

    by_kind: dict[str, list[str]] = {}
    for name, (kind, _) in outcomes.items():
        by_kind.setdefault(kind, []).append(name)
    stored = {e["name"]: e for e in fabric.client.endpoints() if e["name"].startswith("burst-")}
    unknown = by_kind.get("unknown", [])
    report(fabric, "controller SIGKILL during 500 creations by 8 clients",
           created_201=len(by_kind.get("created", [])), outcome_unknown=len(unknown),
           of_which_stored=len(set(unknown) & stored.keys()),
           never_sent=len(by_kind.get("never sent", [])),
           rejected=len(by_kind.get("rejected", [])), restart_s=f"{restart_s:.2f}",
           write_at_once_answered_s=f"{early_s:.2f}",
           leader_master_everywhere_after_kill_s=f"{masters_s:.2f}" if masters_s else "-",
           tables_in_sync_s=f"{clean_s:.2f}")
    assert early_in, "a write was answered before its flows were in"
    # SQLite: the restarted controller programs at once. etcd: it leads only once the killed
    # replica's lease has expired, up to the TTL (2 s) after its last keepalive, which etcd
    # notices within 0.5 s; then a campaign, the role requests and the reconciliation. Below
    # the 5 s a write waits at most, so a wait that ran out fails here.
    assert early_s < (TTL_S + 2.0 if fabric.store == "etcd" else 2.0), early_s
    assert len(outcomes) == total
    assert by_kind.get("created"), "the kill came before any creation: nothing was tested"
    assert not by_kind.get("rejected"), [outcomes[n] for n in by_kind["rejected"]]
    lost = [n for n in by_kind["created"]
            if n not in stored or any(stored[n][k] != outcomes[n][1][k]
                                      for k in ("id", "ip", "mac", "host", "network"))]
    assert not lost, f"acknowledged but lost or changed: {lost}"
    phantoms = [n for n in stored if outcomes.get(n, ("never asked",))[0] not in
                ("created", "unknown")]
    assert not phantoms, f"exist without having been accepted: {phantoms}"
    everything = fabric.client.endpoints()
    _check_unique(everything)
    # The restarted controller allocates around what survived.
    fresh = [early, *(fabric.client.create_endpoint(NETWORK, "h1", name=f"after-{i}")
                      for i in range(20))]
    _check_unique(fabric.client.endpoints())
    for ep in [*fresh, *stored.values()]:
        fabric.client.delete_endpoint(ep["id"])
    wait_clean(fabric)


MIX_NETWORKS = ("mix-a", "mix-b")


def test_32_clients_2000_mixed_requests(fabric, net):
    """32 clients send 2,000 requests between them: endpoints and networks created and
    deleted (also the same one by several clients at once), addresses reserved and released,
    conflicting addresses and VNIs asked for, reads. No 5xx, no request lost (every 201 not
    followed by a 204 exists, every 204 is gone), no address, MAC or VNI twice, the file on
    disk equal to what the API serves, and the same after a kill -9 and restart."""
    total, clients = 2000, 32
    for name in MIX_NETWORKS:
        fabric.client.create_network(name, "10.40.0.0/22")
    statuses: dict[int, int] = {}
    failures: list[str] = []
    ledger = {"endpoints": set(), "endpoints_gone": set(), "networks": set(),
              "networks_gone": set()}
    shared_endpoints: list[str] = []
    shared_networks: list[str] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def one_request(client: FabricClient, rnd: random.Random) -> None:
        op = rnd.random()
        networks = [NETWORK, *MIX_NETWORKS]
        if op < 0.30:
            with lock:
                pool = networks + shared_networks[-3:]
            fields = {}
            if rnd.random() < 0.1:  # a small range: several clients want the same address
                fields["ip"] = f"10.40.0.{rnd.randint(2, 20)}"
                network = rnd.choice(MIX_NETWORKS)
            else:
                network = rnd.choice(pool)
            ep = client.create_endpoint(network, f"h{rnd.randint(1, 3)}",
                                        name=f"mix-{uuid.uuid4().hex[:8]}", **fields)
            with lock:
                ledger["endpoints"].add(ep["id"])
                shared_endpoints.append(ep["id"])
        elif op < 0.45:
            with lock:
                victim = rnd.choice(shared_endpoints[-40:]) if shared_endpoints else None
            if victim is None:
                client.endpoints()  # nothing to delete yet: a read instead
                return
            client.delete_endpoint(victim)
            with lock:
                ledger["endpoints_gone"].add(victim)
                if victim in shared_endpoints:
                    shared_endpoints.remove(victim)
        elif op < 0.53:
            vni = rnd.randint(5000, 5010) if rnd.random() < 0.3 else None  # VNIs collide
            net_ = client.create_network(f"mix-n{uuid.uuid4().hex[:8]}", "10.50.0.0/24",
                                         **({"vni": vni} if vni else {}))
            with lock:
                ledger["networks"].add(net_["id"])
                shared_networks.append(net_["id"])
        elif op < 0.58:
            with lock:
                victim = rnd.choice(shared_networks) if shared_networks else None
            if victim is None:
                client.networks()
                return
            client.delete_network(victim)  # 409 while it has endpoints, 404 if gone
            with lock:
                ledger["networks_gone"].add(victim)
                if victim in shared_networks:
                    shared_networks.remove(victim)
        elif op < 0.63:
            ip = f"10.40.1.{rnd.randint(1, 30)}"
            client.request("POST", f"/v1/networks/{MIX_NETWORKS[0]}/addresses",
                           {"owner": f"o{rnd.randint(1, 4)}", "ip": ip})
        elif op < 0.66:
            client.request("DELETE",
                           f"/v1/networks/{MIX_NETWORKS[0]}/addresses/10.40.1.{rnd.randint(1, 30)}")
        else:
            read = rnd.randrange(5)
            if read == 0:
                client.endpoints()
            elif read == 1:
                client.networks()
            elif read == 2:
                client.hosts()
            elif read == 3:
                client.network(rnd.choice(networks))
            else:
                with lock:
                    ids = shared_endpoints[-20:]
                client.endpoint(rnd.choice(ids)) if ids else client.endpoints()

    def count(response, *args, **kwargs):
        with lock:
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    def client_loop(seed: int) -> None:
        client = FabricClient(fabric.controller.url, timeout=60)
        client.http.hooks["response"].append(count)  # every answer's real status
        rnd = random.Random(seed)
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            try:
                one_request(client, rnd)
            except ApiError:
                pass  # 4xx are expected (conflicts, gone); 5xx are counted and fail below
            except Exception as exc:  # a broken connection is a lost request
                failures.append(repr(exc))

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, range(clients)))
    elapsed = time.monotonic() - started

    endpoints = fabric.client.endpoints()
    networks = fabric.client.networks()
    report(fabric, "32 clients, 2000 mixed requests", seconds=f"{elapsed:.1f}",
           per_s=f"{total / elapsed:.0f}", statuses=dict(sorted(statuses.items())),
           endpoints_now=len(endpoints), networks_now=len(networks))
    assert not failures, failures[:5]
    assert not [s for s in statuses if s >= 500], statuses
    assert sum(statuses.values()) == total, "not every request got an answer"
    # Nothing lost: the API's answers and the store agree request by request.
    mix_eps = {e["id"] for e in endpoints if e["name"].startswith("mix-")}
    assert mix_eps == ledger["endpoints"] - ledger["endpoints_gone"]
    mix_nets = {n["id"] for n in networks if n["name"].startswith("mix-n")}
    assert mix_nets == ledger["networks"] - ledger["networks_gone"]
    _check_unique(endpoints)
    vnis = [n["vni"] for n in networks]
    assert len(set(vnis)) == len(vnis), "a VNI was given twice"
    reserved = fabric.client.request("GET", f"/v1/networks/{MIX_NETWORKS[0]}/addresses")
    mix_a = fabric.client.network(MIX_NETWORKS[0])["id"]
    assert not {r["ip"] for r in reserved} & {e["ip"] for e in endpoints
                                              if e["network"] == mix_a}
    # The store itself (the file on disk, or etcd) holds exactly what the API serves.
    assert _stored(fabric) == _served(fabric)
    served = _served(fabric)
    fabric.controller.kill()
    fabric.controller.start()
    fabric.controller.wait_connected([h.name for h in fabric.lab.hosts])
    assert _served(fabric) == served, "a restart changed the state"
    wait_clean(fabric, timeout=30)


def _served(fabric) -> dict:
    return {
        "endpoints": sorted((e["id"], e["network"], e["host"], e["ip"], e["mac"])
                            for e in fabric.client.endpoints()),
        "networks": sorted((n["id"], n["name"], n["vni"]) for n in fabric.client.networks()),
        "reservations": sorted(
            (r["network"], r["ip"], r["owner"]) for n in fabric.client.networks()
            for r in fabric.client.request("GET", f"/v1/networks/{n['id']}/addresses")),
    }


def _stored(fabric) -> dict:
    """What the store holds, read past the controller: its SQLite file, or etcd."""
    return _in_etcd(fabric.controller.store) if fabric.store == "etcd" else \
        _on_disk(fabric.controller.state)


def _in_etcd(url: str) -> dict:
    from cluster.etcd_store import open_store
    from model.entities import Endpoint, Network, Reservation
    store = open_store(url)
    try:
        records = store.records()
    finally:
        store.close()

    def of(kind):
        return [r for r in records if isinstance(r, kind)]
    return {
        "endpoints": sorted((e.id, e.network_id, e.host, e.ip, e.mac) for e in of(Endpoint)),
        "networks": sorted((n.id, n.name, n.vni) for n in of(Network)),
        "reservations": sorted((r.network_id, r.ip, r.owner) for r in of(Reservation)),
    }


def _on_disk(path: str) -> dict:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            "endpoints": sorted(db.execute(
                "SELECT id, network_id, host, ip, mac FROM endpoints").fetchall()),
            "networks": sorted(db.execute("SELECT id, name, vni FROM networks").fetchall()),
            "reservations": sorted(db.execute(
                "SELECT network_id, ip, owner FROM reservations").fetchall()),
        }
    finally:
        db.close()


def test_switches_that_connect_before_their_hosts_are_registered(fabric, net, tmp_path):
    """The controller's state lost (its file, or what etcd held): a controller started on an
    empty state while the switches still point at it. They connect at once and belong to no
    host; registering the hosts again (in the same order, hence with the same datapath ids)
    changes nothing OVS sees, so no new connection comes: the controller must take over the
    ones it has.
    (Last in this module: it leaves the fabric empty.)"""
    fabric.controller.kill()
    if fabric.store == "etcd":
        wipe_etcd_state(fabric.controller.store)  # while no replica runs
    else:
        fabric.controller.state = str(tmp_path / "empty.db")
    log = fabric.controller.log_path
    offset = os.path.getsize(log)
    fabric.controller.start()

    def orphans() -> set[str]:  # the controller logs each switch it cannot place
        with open(log) as f:
            f.seek(offset)
            return set(re.findall(r"switch (\w+) connected but belongs to no registered host",
                                  f.read()))
    # Each host's two switches: its integration and its physical bridge.
    assert eventually(lambda: len(orphans()) == 2 * len(fabric.lab.hosts), 10), \
        "the switches did not connect to the new controller before registration"
    t0 = time.monotonic()
    for host in fabric.lab.hosts:
        fabric.client.create_host(host.name, host.ovsdb, host.tunnel_ip, datapath_type="netdev")
    fabric.controller.wait_connected([h.name for h in fabric.lab.hosts], timeout=10)
    report(fabric, "hosts registered after their switches connected",
           all_connected_s=f"{time.monotonic() - t0:.2f}")
    wait_clean(fabric)

    def physical_managed() -> bool:  # the flows gauge names each managed switch
        text = requests.get(fabric.controller.url + "/metrics", timeout=5).text
        return all(f'ovsfabric_flows{{host="{h.name}/br-phy"}}' in text
                   for h in fabric.lab.hosts)
    assert eventually(physical_managed, 10), "the physical bridges were taken over too"
