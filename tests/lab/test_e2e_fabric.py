"""End to end on the namespace lab: real OVS hosts, real packets, the controller as a process."""
from __future__ import annotations

import concurrent.futures
import time

import pytest

from api.client import ApiError
from ovsdb.config import tunnel_port_name
from tests.helpers import eventually, flow_table
from tests.slot import needs_lab

pytestmark = [pytest.mark.lab, needs_lab]


@pytest.fixture(scope="module")
def nets(fabric):
    """Two networks with the same subnet: isolation must hold even where addresses overlap."""
    red = fabric.client.create_network("red", "10.10.0.0/24")
    blue = fabric.client.create_network("blue", "10.10.0.0/24")
    return red, blue


def test_networks_get_distinct_vnis_and_vxlan_mtu(nets):
    red, blue = nets
    assert red["vni"] != blue["vni"]
    assert red["mtu"] == blue["mtu"] == 1450
    assert red["gateway"] == "10.10.0.1"


def test_same_host_and_cross_host_ping(fabric, nets):
    a, ep_a = fabric.attach("h1", "ra", "red")
    b, ep_b = fabric.attach("h1", "rb", "red")
    c, ep_c = fabric.attach("h2", "rc", "red")
    assert a.ping(ep_b["ip"], count=2, timeout=2), "same host"
    assert a.ping(ep_c["ip"], count=2, timeout=2), "across hosts"
    assert c.ping(ep_b["ip"], count=2, timeout=2), "across hosts, the other way"
    # Large packets fit: the advertised MTU leaves room for VXLAN's 50 bytes.
    assert a.exec("ping", "-c1", "-W2", "-M", "do", "-s", "1422", ep_c["ip"],
                  check=False).returncode == 0


def test_gateway_answers_ping_on_every_host(fabric, nets):
    red, _ = nets
    for name in ("ra", "rc"):
        container = next(c for c in fabric.containers if c.name == name)
        assert container.ping(red["gateway"], count=2, timeout=2), name
        assert red["gateway_mac"] in container.exec("ip", "neigh", "show",
                                                    red["gateway"]).stdout


def test_arp_is_answered_by_the_fabric(fabric, nets):
    a = next(c for c in fabric.containers if c.name == "ra")
    c = next(c for c in fabric.containers if c.name == "rc")
    c_ip = c.ip
    a.exec("ip", "neigh", "flush", "all")
    assert a.ping(c_ip, count=1, timeout=2)
    assert c.mac in a.exec("ip", "neigh", "show", c_ip).stdout
    # The reply came from the ARP responder flow on c's own host, where the request went
    # through the tunnel, not from the container, which never saw the request.
    assert c.host.name != a.host.name
    arp_flows = [f for f in c.host.ofctl("dump-flows", "table=10").splitlines()
                 if f"arp_tpa={c_ip}" in f and "arp_op=1" in f]
    assert arp_flows and "n_packets=0" not in arp_flows[0]


def test_overlapping_subnets_stay_isolated(fabric, nets):
    red_ep = {e["name"]: e for e in fabric.client.endpoints(network="red")}
    # The blue container takes the same address as a red one on another host.
    blue_c, blue_ep = fabric.attach("h3", "bx", "blue", ip=red_ep[_name_of(fabric, "rc")]["ip"])
    blue_d, blue_ep2 = fabric.attach("h1", "by", "blue", ip="10.10.0.200")  # not in red
    assert blue_c.ping(blue_ep2["ip"], count=2, timeout=2), "blue works within itself"
    a = next(c for c in fabric.containers if c.name == "ra")
    # Red cannot reach blue's addresses, not even with the right MAC in its neighbour table.
    a.neigh(blue_ep2["ip"], blue_ep2["mac"])
    assert not a.ping(blue_ep2["ip"], count=2, timeout=1)
    assert not blue_c.ping(red_ep[_name_of(fabric, "ra")]["ip"], count=2, timeout=1)


def _name_of(fabric, container_name: str) -> str:
    """The endpoint name of a container (endpoints are named by the controller)."""
    container = next(c for c in fabric.containers if c.name == container_name)
    return next(e["name"] for e in fabric.client.endpoints() if e["port"] == container.port
                and e["host"] == container.host.name)


def test_broadcast_only_reaches_hosts_of_the_network(fabric, nets):
    red, blue = nets
    h1_flows = fabric.lab.host("h1").ofctl("dump-flows", "table=20")
    h3_flows = fabric.lab.host("h3").ofctl("dump-flows")
    # h3 has a blue endpoint only: it holds nothing of red.
    assert f"metadata={hex(red['vni'])}" not in h3_flows
    assert f"tun_id={hex(red['vni'])}" not in h3_flows
    # Red's flood on h1 goes to h2's tunnel (red lives there) but not to h3's.
    h1 = fabric.lab.host("h1")
    ports = {line.split("(")[1].split(")")[0]: line.split("(")[0].strip()
             for line in h1.ofctl("show").splitlines() if "(vx" in line}
    flood = next(line for line in h1_flows.splitlines()
                 if f"metadata={hex(red['vni'])}" in line and "priority=10" in line
                 and "reg0=0," in line)
    to_h2 = ports[_tunnel_name(fabric.lab.host("h2").tunnel_ip)]
    to_h3 = ports[_tunnel_name(fabric.lab.host("h3").tunnel_ip)]
    assert f"output:{to_h2}" in flood and f"output:{to_h3}" not in flood


def _tunnel_name(ip: str) -> str:
    from ovsdb.config import tunnel_port_name
    return tunnel_port_name(ip)


def test_spoofed_source_address_reaches_no_one(fabric, nets):
    b = next(c for c in fabric.containers if c.name == "rb")
    a = next(c for c in fabric.containers if c.name == "ra")
    assert b.ping(a.ip, count=1, timeout=2)
    b.exec("ip", "addr", "add", "10.10.0.250/24", "dev", "eth0")
    try:
        assert not b.exec("ping", "-c2", "-W1", "-I", "10.10.0.250", a.ip,
                          check=False).returncode == 0
    finally:
        b.exec("ip", "addr", "del", "10.10.0.250/24", "dev", "eth0")


def test_endpoint_bound_by_iface_id(fabric, nets):
    """Without `port`, the endpoint binds when an interface carrying its id shows up."""
    ep = fabric.client.create_endpoint("red", "h2", name="late")
    c = fabric.lab.add_container("h2", "late")
    fabric.containers.append(c)
    c.configure(ep["mac"], ep["ip"], ep["prefix_len"], ep["mtu"])
    a = next(x for x in fabric.containers if x.name == "ra")
    assert not a.ping(ep["ip"], count=1, timeout=1)
    fabric.lab.host("h2").vsctl("add-port", "br-int", c.port, "--", "set", "Interface", c.port,
                                f"external_ids:iface-id={ep['id']}")
    assert eventually(lambda: a.ping(ep["ip"], count=1, timeout=1))


def test_endpoint_removal(fabric, nets):
    red, _ = nets
    c, ep = fabric.attach("h2", "gone", "red")
    a = next(x for x in fabric.containers if x.name == "ra")
    assert a.ping(ep["ip"], count=1, timeout=2)
    fabric.client.delete_endpoint(ep["id"])
    assert not a.ping(ep["ip"], count=2, timeout=1)
    for host in fabric.lab.hosts:
        assert ep["mac"] not in host.ofctl("dump-flows"), f"stale flow on {host.name}"
    assert c.port not in fabric.lab.host("h2").vsctl("list-ports", "br-int").split()
    with pytest.raises(ApiError) as err:
        fabric.client.endpoint(ep["id"])
    assert err.value.status == 404
    again = fabric.client.create_endpoint("red", "h1", ip=ep["ip"])
    assert again["ip"] == ep["ip"], "the address is free again"
    fabric.client.delete_endpoint(again["id"])


def test_a_port_ovs_cannot_attach_is_refused_and_changes_nothing(fabric, nets):
    before = fabric.client.endpoints(network="red")
    started = time.monotonic()
    with pytest.raises(ApiError) as err:
        fabric.client.create_endpoint("red", "h2", port="nosuchdev0", ip="10.10.0.250")
    took = time.monotonic() - started
    assert err.value.status == 400 and "nosuchdev0" in str(err.value), err.value
    assert "No such device" in str(err.value), "OVS's own reason is passed on"
    assert took < 2, f"answered in {took:.2f} s, not after the 5 s programming wait"
    assert fabric.client.endpoints(network="red") == before
    eventually(lambda: "nosuchdev0" not in
               fabric.lab.host("h2").vsctl("list-ports", "br-int").split())
    again = fabric.client.create_endpoint("red", "h1", ip="10.10.0.250")  # address free again
    fabric.client.delete_endpoint(again["id"])


def test_a_port_held_by_a_bridge_a_tunnel_or_someone_else_is_refused(fabric, nets):
    h2 = fabric.lab.host("h2")
    h2.vsctl("add-port", "br-int", "foreign0", "--", "set", "Interface", "foreign0",
             "type=internal")
    tunnel = tunnel_port_name(fabric.client.host("h1")["tunnel_ip"])
    before = fabric.client.endpoints(network="red")
    try:
        for port, holder in (("br-int", "the own interface of bridge br-int"),
                             ("br-phy", "a port of bridge br-phy"),
                             (tunnel, "the tunnel port to h1"),
                             ("foreign0", "a port of bridge br-int that ovsfabric did not make")):
            with pytest.raises(ApiError) as err:
                fabric.client.create_endpoint("red", "h2", port=port, ip="10.10.0.251")
            assert err.value.status == 400 and holder in err.value.message, err.value
        assert fabric.client.endpoints(network="red") == before
        ports = h2.vsctl("list-ports", "br-int").split()
        assert "foreign0" in ports and tunnel in ports, "nothing of theirs was touched"
        assert "br-phy" in h2.vsctl("list-br").split()
    finally:
        h2.vsctl("--if-exists", "del-port", "br-int", "foreign0")


def test_network_with_endpoints_cannot_be_deleted(fabric, nets):
    with pytest.raises(ApiError) as err:
        fabric.client.delete_network("red")
    assert err.value.status == 409


def test_parallel_requests_never_share_an_address(fabric, nets):
    def create(i):
        return fabric.client.create_endpoint("blue", f"h{i % 3 + 1}")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        eps = list(pool.map(create, range(48)))
    try:
        assert len({e["ip"] for e in eps}) == 48
        assert len({e["mac"] for e in eps}) == 48
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            networks = list(pool.map(
                lambda i: fabric.client.create_network(f"par{i}", "10.99.0.0/24"), range(16)))
        assert len({n["vni"] for n in networks}) == 16
        for n in networks:
            fabric.client.delete_network(n["id"])
    finally:
        for e in eps:
            fabric.client.delete_endpoint(e["id"])


def test_kill9_restart_keeps_traffic_and_tables(fabric, nets):
    a = next(x for x in fabric.containers if x.name == "ra")
    c = next(x for x in fabric.containers if x.name == "rc")
    before = {h.name: flow_table(h) for h in fabric.lab.hosts}
    endpoints_before = sorted(e["id"] for e in fabric.client.endpoints())
    ping = a.start_ping(c.ip, interval=0.01, count=600)  # 6 s, through the whole restart
    time.sleep(0.5)
    fabric.controller.kill()  # SIGKILL
    time.sleep(1.0)
    fabric.controller.start()
    fabric.controller.wait_connected([h.name for h in fabric.lab.hosts])
    assert eventually(lambda: all(
        h["flow_mods_sent"] is not None for h in fabric.client.hosts()))
    ping.wait(timeout=30)
    sent, received = a.stop_ping(ping)
    assert sent == 600 and received == sent, f"lost {sent - received} of {sent}"
    after = {h.name: flow_table(h) for h in fabric.lab.hosts}
    assert after == before
    assert sorted(e["id"] for e in fabric.client.endpoints()) == endpoints_before
    # An unchanged table costs no flow mod on reconnection.
    assert [h["flow_mods_sent"] for h in fabric.client.hosts()] == [0, 0, 0]


def test_stale_flow_is_removed_on_reconnect(fabric, nets):
    h2 = fabric.lab.host("h2")
    h2.ofctl("add-flow", "table=20,priority=300,cookie=0x77,actions=drop")
    fabric.controller.kill()
    fabric.controller.start()
    fabric.controller.wait_connected(["h2"])
    assert eventually(lambda: "cookie=0x77" not in h2.ofctl("dump-flows"))


def test_host_deletion_removes_its_tunnels(fabric, nets):
    h1 = fabric.lab.host("h1")
    extra = fabric.lab.hosts[2]
    name = _tunnel_name(extra.tunnel_ip)
    assert name in h1.vsctl("list-ports", "br-int").split()
    for ep in fabric.client.endpoints(host=extra.name):
        fabric.client.delete_endpoint(ep["id"])
    fabric.client.delete_host(extra.name)
    assert eventually(lambda: name not in h1.vsctl("list-ports", "br-int").split())
    assert eventually(lambda: extra.ofctl("dump-flows").count("actions=") == 0)
    fabric.client.create_host(extra.name, extra.ovsdb, extra.tunnel_ip, datapath_type="netdev")
    fabric.controller.wait_connected([extra.name])
    assert eventually(lambda: name in h1.vsctl("list-ports", "br-int").split())