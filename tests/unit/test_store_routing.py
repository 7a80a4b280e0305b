"""The store's routers, published ports and egress: allocation, every refusal, what each write
says it touched, and what a reopen finds."""
from __future__ import annotations

import pathlib
import shutil
import sqlite3

import pytest

from model import Conflict, InvalidRequest, NotFound, Store, migrations
from model.entities import Change, PublishedPort, Route
from model.errors import StoreDamaged

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture
def store(tmp_path):
    """h1 and h2; networks a (10.0.0.0/24) and b (10.1.0.0/24) on router r1, c (10.0.0.0/16,
    overlapping a) on none; endpoint fw in a on h1; every later Change in store.changes."""
    store = Store(str(tmp_path / "s.db"))
    store.create_host("h1", "unix:/x1", "192.0.2.1")
    store.create_host("h2", "unix:/x2", "192.0.2.2")
    for name, subnet in (("a", "10.0.0.0/24"), ("b", "10.1.0.0/24"), ("c", "10.0.0.0/16")):
        store.create_network(name, subnet)
    store.create_router("r1")
    store.attach_network("r1", "a")
    store.attach_network("r1", "b")
    store.fw = store.create_endpoint("a", "h1", name="fw")
    store.changes = []
    store.subscribe(lambda snap, change: store.changes.append(change))
    yield store
    store.close()


def ids(store: Store, *names: str) -> frozenset:
    return frozenset(store.get_network(n).id for n in names)


def unchanged(store: Store, call, error, *words):
    """``call`` is refused with ``error`` naming ``words``, and the store is as it was."""
    before = store.snapshot()
    with pytest.raises(error) as raised:
        call()
    for word in words:
        assert word in str(raised.value)
    assert store.snapshot() is before and store.changes == []


def test_router_numbers_are_the_lowest_free_from_1(store):
    r2, r3 = store.create_router("r2"), store.create_router("r3")
    assert (r2.number, r3.number, r3.mac) == (2, 3, "02:0f:5e:00:00:03")
    store.delete_router("r2")
    assert store.create_router("r4").number == 2


def test_router_writes_name_the_router_and_its_networks(store):
    r1 = store.get_router("r1")
    store.changes.clear()
    r2 = store.create_router("r2")
    assert store.changes[-1] == Change(routers=frozenset({r2.id}))
    store.set_routes("r1", [("192.168.0.0/16", store.fw.ip)])
    assert store.changes[-1] == Change(networks=ids(store, "a", "b"),
                                       routers=frozenset({r1.id}))
    store.set_routes("r1", [])
    store.detach_network("r1", "b")
    assert store.changes[-1] == Change(networks=ids(store, "a", "b"),
                                       routers=frozenset({r1.id}))
    store.attach_network("r2", "b")
    assert store.changes[-1] == Change(networks=ids(store, "b"), routers=frozenset({r2.id}))
    snap = store.snapshot()
    assert snap.router_of(store.get_network("b").id).name == "r2"
    assert snap.router_of(store.get_network("c").id) is None


def test_attach_refusals(store):
    unchanged(store, lambda: store.attach_network("nope", "c"), NotFound, "nope")
    unchanged(store, lambda: store.attach_network("r1", "nope"), NotFound, "nope")
    unchanged(store, lambda: store.attach_network("r1", "c"), Conflict, "overlaps", "'a'")
    store.create_router("r2")
    store.changes.clear()
    unchanged(store, lambda: store.attach_network("r2", "a"), Conflict, "router 'r1'")


def test_attaching_again_changes_nothing(store):
    before = store.snapshot()
    assert store.attach_network("r1", "a") == before.routers[store.get_router("r1").id]
    assert store.snapshot() is before and store.changes == []


def test_a_router_with_networks_and_a_routed_network_are_not_deleted(store):
    unchanged(store, lambda: store.delete_router("r1"), Conflict, "networks attached")
    unchanged(store, lambda: store.delete_network("b"), Conflict, "router 'r1'")


def test_detach_refusals(store):
    unchanged(store, lambda: store.detach_network("r1", "c"), NotFound, "not attached")
    store.set_routes("r1", [("192.168.0.0/16", store.fw.ip)])
    store.changes.clear()
    unchanged(store, lambda: store.detach_network("r1", "a"), Conflict,
              "192.168.0.0/16 via 10.0.0.2")
    store.detach_network("r1", "b")  # no route through b


@pytest.mark.parametrize("routes, words", [
    ([("192.168.0.1/16", "10.0.0.2")], ["host bits set", "write 192.168.0.0/16"]),
    ([("192.168.0.0/33", "10.0.0.2")], ["not an IPv4 CIDR"]),
    ([("192.168.0.0", "10.0.0.2")], ["no prefix length"]),
    ([("fe80::/64", "10.0.0.2")], ["not an IPv4 CIDR"]),
    ([("192.168.0.0/16", "10.0.0.9")], ["route 0", "10.0.0.9", "not the address"]),
    ([("192.168.0.0/16", "10.0.0.1")], ["not the address"]),  # the gateway: the router itself
    ([("192.168.0.0/16", "nope")], ["not an IPv4 address"]),
    ([("192.168.0.0/16", "10.0.0.2"), ("192.168.0.0/16", "10.0.0.2")], ["route 1", "twice"]),
    ([(f"10.{i // 256}.{i % 256}.0/24", "10.0.0.2") for i in range(1001)], ["at most 1000"]),
])
def test_bad_routes_are_refused(store, routes, words):
    unchanged(store, lambda: store.set_routes("r1", routes), InvalidRequest, *words)


def test_a_nexthop_in_a_network_of_no_router_is_refused(store):
    outsider = store.create_endpoint("c", "h2", ip="10.0.5.5")
    store.changes.clear()
    unchanged(store, lambda: store.set_routes("r1", [("0.0.0.0/0", outsider.ip)]),
              InvalidRequest, "not the address")


def test_routes_are_replaced_whole_and_kept_in_order(store):
    routes = [("192.168.0.0/16", "10.0.0.2"), ("0.0.0.0/0", "10.0.0.2")]
    assert store.set_routes("r1", routes).routes == tuple(Route(*r) for r in routes)
    assert store.set_routes("r1", routes[1:]).routes == (Route("0.0.0.0/0", "10.0.0.2"),)
    assert len(store.set_routes("r1", [(f"10.9.{i}.0/24", "10.0.0.2")
                                       for i in range(250)]).routes) == 250


def test_routers_survive_reopen(store):
    store.create_router("empty")
    store.set_routes("r1", [("192.168.0.0/16", "10.0.0.2"), ("0.0.0.0/0", "10.0.0.2")])
    before = store.snapshot()
    again = Store(store.path)
    assert again.snapshot().routers == before.routers
    assert again.snapshot().network_router == before.network_router
    assert again.get_router("r1").networks == tuple(ids(store, "a")) + tuple(ids(store, "b"))
    assert again.create_router("next").number == 3


def test_published_host_ports_are_the_lowest_free_on_the_host(store):
    fw, other = store.fw, store.create_endpoint("b", "h1")
    remote = store.create_endpoint("b", "h2")
    assert store.publish_port(fw.id, "tcp", 80).host_port == 49152
    assert store.publish_port(other.id, "tcp", 80).host_port == 49153
    assert store.publish_port(other.id, "udp", 53).host_port == 49152  # another protocol
    assert store.publish_port(remote.id, "tcp", 80).host_port == 49152  # another host
    assert store.publish_port(fw.id, "tcp", 443, 8443) == PublishedPort(fw.id, "tcp", 443, 8443)
    assert [p.host_port for p in store.snapshot().published[fw.id]] == [8443, 49152]


def test_published_port_writes_name_the_endpoint_and_its_network(store):
    store.changes.clear()
    store.publish_port(store.fw.id, "tcp", 80, 8080)
    store.unpublish_port(store.fw.id, "tcp", 8080)
    expected = Change(networks=ids(store, "a"), published=frozenset({store.fw.id}))
    assert store.changes == [expected, expected]
    assert store.fw.id not in store.snapshot().published


def test_published_port_refusals(store):
    store.publish_port(store.fw.id, "tcp", 80, 8080)
    neighbour = store.create_endpoint("b", "h1")
    store.changes.clear()
    unchanged(store, lambda: store.publish_port(neighbour.id, "tcp", 81, 8080), Conflict,
              "8080", "h1")
    unchanged(store, lambda: store.publish_port("nope", "tcp", 80), NotFound, "nope")
    unchanged(store, lambda: store.publish_port(neighbour.id, "sctp", 80), InvalidRequest,
              "sctp")
    for port, host_port in ((0, None), (65536, None), (80, 0), (80, 70000)):
        unchanged(store, lambda: store.publish_port(neighbour.id, "tcp", port, host_port),
                  InvalidRequest, "port number")
    unchanged(store, lambda: store.unpublish_port(store.fw.id, "udp", 8080), NotFound, "udp")
    unchanged(store, lambda: store.unpublish_port("nope", "tcp", 8080), NotFound, "nope")


def test_deleting_an_endpoint_deletes_its_published_ports(store):
    store.publish_port(store.fw.id, "tcp", 80, 8080)
    store.changes.clear()
    store.delete_endpoint(store.fw.id)
    assert store.changes[-1].published == frozenset({store.fw.id})
    assert store.fw.id not in store.snapshot().published
    again = Store(store.path)
    assert again.snapshot().published == {}
    # The host port is free again.
    ep = again.create_endpoint("a", "h1")
    assert again.publish_port(ep.id, "tcp", 80, 8080).host_port == 8080


def test_published_ports_survive_reopen(store):
    store.publish_port(store.fw.id, "udp", 53, 5353)
    store.publish_port(store.fw.id, "tcp", 80)
    assert Store(store.path).snapshot().published == store.snapshot().published


def test_network_egress(store):
    assert store.get_network("a").egress is True
    closed = store.create_network("closed", "10.2.0.0/24", egress=False)
    assert closed.egress is False
    store.changes.clear()
    assert store.set_network_egress("closed", True).egress is True
    assert store.changes == [Change(networks=frozenset({closed.id}))]
    store.set_network_egress("closed", True)  # the same again: nothing to write
    assert len(store.changes) == 1
    store.set_network_egress("a", False)
    again = Store(store.path)
    assert (again.get_network("closed").egress, again.get_network("a").egress) == (True, False)


def test_host_egress_ip(store):
    host = store.create_host("h3", "unix:/x3", "192.0.2.3", egress_ip="198.51.100.3")
    assert (host.egress_ip, host.outside_ip) == ("198.51.100.3", "198.51.100.3")
    assert store.get_host("h1").outside_ip == "192.0.2.1"
    assert store.changes[-1].hosts is True
    store.changes.clear()
    for tunnel_ip, egress_ip in (("192.0.2.9", "192.0.2.1"), ("192.0.2.9", "198.51.100.3"),
                                 ("198.51.100.3", None)):
        unchanged(store, lambda: store.create_host("h9", "unix:/x9", tunnel_ip, egress_ip=egress_ip),
                  Conflict, "already used by host")
    assert Store(store.path).get_host("h3") == host


def test_endpoint_macs_in_the_router_range_are_refused(store):
    unchanged(store, lambda: store.create_endpoint("a", "h1", mac="02:0f:5e:00:00:01"),
              InvalidRequest, "routers")


def test_a_file_of_schema_version_1_is_upgraded_and_read_whole(tmp_path):
    path = str(tmp_path / "v1.db")
    shutil.copyfile(DATA / "state-v1.db", path)
    assert migrations.file_version(path) == 1
    store = Store(path)
    snap = store.snapshot()
    assert [(h.name, h.tunnel_ip, h.egress_ip, h.outside_ip) for h in snap.hosts.values()] == [
        ("h1", "198.51.100.11", None, "198.51.100.11"),
        ("h2", "198.51.100.12", None, "198.51.100.12")]
    assert [(n.name, n.vni, n.owner, n.egress) for n in snap.networks.values()] == [
        ("red", 100, None, True), ("blue", 5000, "h1", True)]
    assert sorted(e.name for e in snap.endpoints.values()) == ["db", "no-port", "web"]
    assert len(snap.reservations) == 3 and snap.revision == 10
    assert store.aliases_of(store.get_network("red").id) == ["docker:h1:1f2e3d", "pool:h1:red"]
    assert (snap.routers, snap.network_router, snap.published) == ({}, {}, {})
    assert migrations.file_version(path) == migrations.SCHEMA_VERSION == 3
    # The new tables work on the upgraded file.
    router = store.create_router("r1")
    store.attach_network("r1", "red")
    web = next(e for e in snap.endpoints.values() if e.name == "web")
    store.publish_port(web.id, "tcp", 80)
    store.close()
    again = Store(path).snapshot()
    assert again.routers[router.id].networks == (store.get_network("red").id,)
    assert again.published[web.id] == (PublishedPort(web.id, "tcp", 80, 49152),)


@pytest.mark.parametrize("damage, words", [
    ("INSERT INTO published_ports VALUES ('gone', 'h1', 'tcp', 80, 9090)",
     ["published tcp port 9090", "gone, which does not exist"]),
    ("UPDATE published_ports SET host = 'h2'", ["which is on host 'h1'"]),
    ("INSERT INTO router_networks VALUES ('gone', (SELECT id FROM networks WHERE name = 'c'), 9)",
     ["router gone, which does not exist"]),
    ("INSERT INTO router_networks SELECT router_id, (SELECT id FROM networks WHERE name = 'c'), "
     "9 FROM router_networks LIMIT 1", ["overlapping networks 10.0.0.0/16 and 10.0.0.0/24"]),
    ("INSERT INTO routes VALUES ('gone', 0, '10.9.0.0/16', '10.0.0.2')",
     ["route to 10.9.0.0/16", "router gone"]),
])
def test_damaged_routing_tables_are_refused(store, damage, words):
    store.publish_port(store.fw.id, "tcp", 80, 8080)
    store.close()
    db = sqlite3.connect(store.path)
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute(damage)
    db.commit()
    db.close()
    with pytest.raises(StoreDamaged) as raised:
        Store(store.path)
    for word in words:
        assert word in str(raised.value)


def test_an_upgrade_of_a_version_1_file_that_fails_midway_changes_nothing(tmp_path,
                                                                         monkeypatch):
    path = str(tmp_path / "v1.db")
    shutil.copyfile(DATA / "state-v1.db", path)
    before = open(path, "rb").read()
    # A column SQLite cannot add to a table with rows: the upgrade fails after the new tables.
    monkeypatch.setattr(migrations, "ADDED_COLUMNS", migrations.ADDED_COLUMNS +
                        (("hosts", "required", "TEXT NOT NULL"),))
    with pytest.raises(StoreDamaged, match="cannot be read"):
        Store(path)
    assert open(path, "rb").read() == before and migrations.file_version(path) == 1
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert "routers" not in tables and "published_ports" not in tables
