"""Security policy on the lab, with real packets through real OVS across 3 hosts: who reaches
whom, replies and related ICMP errors, another network with the same addresses untouched,
connections cut when a policy forbids them, a new endpoint hammered while it is made, and
nothing forbidden let through a controller kill -9 or an ovs-vswitchd restart."""
from __future__ import annotations

import os
import signal
import time

import pytest

from lab.outside import Capture
from lab.proc import alive
from lab.traffic import Server, TcpStream, UdpStream, tcp_connects, udp_ask, udp_sender
from tests.helpers import eventually
from tests.lab.fabric_checks import report
from tests.slot import needs_lab

pytestmark = [pytest.mark.lab, needs_lab]

SUBNET = "10.50.0.0/24"
DB_POLICY = {
    "name": "db",
    "applies_to": {"selector": {"labels": {"role": "db"}}, "network": "app"},
    "ingress": [{"peers": [{"selector": {"labels": {"role": "web"}}}],
                 "ports": [{"protocol": "tcp", "port": 5432}, {"protocol": "udp", "port": 5432},
                           {"protocol": "udp", "port": 5433}]}],
}
NEW_IP, NEW_MAC = "10.50.0.77", "02:50:00:00:00:77"


@pytest.fixture(scope="module")
def policed(fabric):
    api = fabric.client
    api.create_network("app", SUBNET)
    api.create_network("twin", SUBNET)
    c = {}
    for name, host, role in [("web", "h1", "web"), ("db", "h2", "db"), ("other", "h3", "other")]:
        c[name] = fabric.attach(host, name, "app", labels={"role": role})
        # The same address and label in the other network, on the same host.
        c[f"twin-{name}"] = fabric.attach(host, f"tw-{name}", "twin", ip=c[name][1]["ip"],
                                          labels={"role": role})
    servers = {n: Server(c[n][0], tcp=(5432, 22), udp=(5433,)) for n in ("db", "twin-db")}
    yield c, servers
    for server in servers.values():
        server.close()
    for policy in api.policies():
        api.delete_policy(policy["id"])


def _ip(c, name):
    return c[name][1]["ip"]


def test_only_what_the_policy_allows_reaches_db(policed, fabric):
    c, servers = policed
    api = fabric.client
    web, db, other = (c[n][0] for n in ("web", "db", "other"))
    assert tcp_connects(other, _ip(c, "db"), 5432), "no policy yet: open"
    policy = api.create_policy(DB_POLICY)
    assert not tcp_connects(other, _ip(c, "db"), 5432), "other -> db:5432 refused"
    assert tcp_connects(web, _ip(c, "db"), 5432), "web -> db:5432 works (and db's replies)"
    assert not tcp_connects(web, _ip(c, "db"), 22), "web -> db:22 refused"
    assert udp_ask(web, _ip(c, "db"), 5433) == "echo"
    # Nothing listens on udp/5432: db's port unreachable is related to web's datagram.
    assert udp_ask(web, _ip(c, "db"), 5432) == "refused", "the related ICMP error passes"
    assert udp_ask(other, _ip(c, "db"), 5432) == "timeout"
    # The same addresses and labels in twin, which no policy names.
    assert tcp_connects(c["twin-other"][0], _ip(c, "twin-db"), 5432)
    assert tcp_connects(c["twin-other"][0], _ip(c, "twin-db"), 22)
    assert tcp_connects(db, _ip(c, "other"), 22) is False, "other serves nothing on 22"

    status = api.policy_status(policy["id"])
    assert [(h["host"], h["realized"]) for h in status["hosts"]] == [("h2", True)]
    assert status["hosts"][0]["flows"] > 0
    [rule] = status["rules"]
    before = rule["packets"]
    assert before > 0, "the allowed connections counted"
    for _ in range(5):
        assert udp_ask(web, _ip(c, "db"), 5433) == "echo"
    # OVS folds the datapath's counters into the flows' every half second or so.
    rule = eventually(lambda: next((r for r in api.policy_status(policy["id"])["rules"]
                                    if r["packets"] >= before + 5), None))
    assert rule is not None and rule["bytes"] > 0, "the rule's counters did not rise"

    ids = {n: c[n][1]["id"] for n in ("web", "db", "other")}
    verdict = api.trace(ids["other"], ids["db"], "tcp", 5432)["verdict"]
    assert verdict["result"] == "dropped" and verdict["table_name"] == "ingress_rules"
    assert f"selecting {c['db'][1]['name']} (db)" in verdict["reason"]
    verdict = api.trace(ids["web"], ids["db"], "tcp", 5432)["verdict"]
    assert verdict["result"] == "delivered"
    assert [(p["policy"], p["direction"], p["index"]) for p in verdict["policies"]] == \
        [("db", "ingress", 0)]
    owners = {f["owner"]["name"] for f in api.host_flows("h2")
              if f["owner"]["kind"] == "policy"}
    assert owners == {"db"}
    assert not [f for h in ("h1", "h3") for f in api.host_flows(h)
                if f["owner"]["kind"] == "policy"], "only db's host holds the policy"
    api.delete_policy(policy["id"])
    assert tcp_connects(other, _ip(c, "db"), 22), "deleted: open again"


def test_a_policy_cuts_the_connection_it_forbids_within_a_second(policed, fabric):
    c, _ = policed
    api = fabric.client
    allowed = TcpStream(c["web"][0], _ip(c, "db"), 5432)
    forbidden = TcpStream(c["other"][0], _ip(c, "db"), 5432)
    try:
        assert eventually(lambda: len(allowed.echoes()) > 20 and len(forbidden.echoes()) > 20)
        t0 = time.time()
        policy = api.create_policy(DB_POLICY)
        answered = time.time() - t0
        time.sleep(2.5)
        last_forbidden = max(forbidden.echoes()) - t0
        allowed_after = [t for t in allowed.echoes() if t > t0 + 1.5]
        report("policy added under two connections", answered_s=f"{answered:.3f}",
               forbidden_last_echo_after_s=f"{last_forbidden:.3f}",
               allowed_echoes_after_1_5s=len(allowed_after), allowed_broke=allowed.broke())
        assert last_forbidden < 1.0, "the forbidden connection lived on"
        assert not allowed.broke() and len(allowed_after) > 30, "the allowed one was cut"
    finally:
        allowed.close()
        forbidden.close()
    api.delete_policy(policy["id"])


def test_a_new_endpoint_gets_nothing_from_a_forbidden_peer_while_it_is_made(policed, fabric):
    c, _ = policed
    api = fabric.client
    policy = api.create_policy(DB_POLICY)
    other = c["other"][0]
    other.neigh(NEW_IP, NEW_MAC)
    container = fabric.lab.add_container("h2", "db2")
    fabric.containers.append(container)
    container.exec("ip", "link", "set", "eth0", "up")
    capture = Capture(container.netns, f"ip and src host {_ip(c, 'other')}")
    hammer = udp_sender(other, NEW_IP, 5433, count=2500, interval=0.001)
    try:
        time.sleep(0.3)
        ep = api.create_endpoint("app", "h2", port=container.port, ip=NEW_IP, mac=NEW_MAC,
                                 labels={"role": "db"})
        container.configure(ep["mac"], ep["ip"], ep["prefix_len"], ep["mtu"])
        hammer.wait(timeout=30)
    finally:
        if hammer.poll() is None:
            hammer.kill()
            hammer.wait()
        seen = capture.stop()
    server = Server(container, udp=(5433,))
    try:
        report("forbidden peer hammering a new endpoint", delivered=len(seen))
        assert seen == [], "a forbidden packet reached the new endpoint"
        assert udp_ask(c["web"][0], NEW_IP, 5433) == "echo", "while web reaches it"
    finally:
        server.close()
        api.delete_endpoint(ep["id"])
        api.delete_policy(policy["id"])


def test_nothing_forbidden_passes_a_controller_kill_or_a_vswitchd_restart(policed, fabric):
    c, servers = policed
    api = fabric.client
    api.create_policy(DB_POLICY)
    db_ip, other_ip = _ip(c, "db"), _ip(c, "other")
    since = time.time()
    probe = udp_sender(c["other"][0], db_ip, 5433, count=1200, interval=0.01)
    allowed = UdpStream(c["web"][0], db_ip, 5433, count=500, interval=0.01)
    try:
        time.sleep(1.0)
        fabric.controller.kill()  # SIGKILL
        fabric.controller.start()
        fabric.controller.wait_connected([h.name for h in fabric.lab.hosts])
        assert eventually(allowed.done, 30)
        echoed = allowed.echoed()
        lost = 500 - len(echoed)
        report("controller kill -9 and restart under a policy", allowed_sent=500,
               allowed_lost=lost, forbidden_delivered=len(servers["db"].received_from(
                   other_ip, since)))
        assert lost == 0, "allowed datagrams lost through the controller restart"

        h2 = fabric.lab.host("h2")
        pid = h2.pids()["vswitchd"]
        os.kill(pid, signal.SIGKILL)
        assert eventually(lambda: not alive(pid), 10, 0.005)
        h2.start_vswitchd()
        back = eventually(lambda: udp_ask(c["web"][0], db_ip, 5433) == "echo", 20, 0.1)
        probe.wait(timeout=30)
        forbidden = servers["db"].received_from(other_ip, since)
        report("ovs-vswitchd kill -9 and start under a policy",
               forbidden_delivered=len(forbidden), allowed_back=bool(back))
        assert back, "the allowed traffic never came back"
        assert forbidden == [], "a forbidden datagram was delivered"
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
        allowed.close()
        for policy in api.policies():
            api.delete_policy(policy["id"])
