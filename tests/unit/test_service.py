"""The fabric's service called in-process, as a caller other than the REST API would: the
same rules by the scope it is given, with no Flask request around it."""
from __future__ import annotations

import pytest

from controller.fabric import Fabric
from controller.service import FabricService
from model import Forbidden, InvalidRequest, NotFound, Store
from security.tokens import ADMIN, Scope

H1 = Scope("h1")


@pytest.fixture
def service(tmp_path):
    """h1 and h2 registered (never connected), network red made by the admin."""
    store = Store(str(tmp_path / "state.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    fabric.start()
    service = FabricService(fabric, programming_wait_s=0.1)
    for i in (1, 2):
        service.create_host(ADMIN, f"h{i}", f"unix:/nonexistent/h{i}", f"192.0.2.{i}")
    service.create_network(ADMIN, "red", "10.0.0.0/28")
    yield service
    fabric.stop()
    store.close()


def test_a_host_scope_is_refused_what_is_not_its_hosts(service):
    before = service.store.snapshot()
    refusals = [
        lambda: service.create_host(H1, "h3", "unix:/nonexistent/h3", "192.0.2.3"),
        lambda: service.delete_host(H1, "h2"),
        lambda: service.create_endpoint(H1, "red", "h2"),
        lambda: service.delete_network(H1, "red"),
        lambda: service.create_network(H1, "blue", "10.1.0.0/24", owner="h2"),
        lambda: service.reserve_address(H1, "red", "h2"),
        lambda: service.add_alias(H1, "red", "docker:h2:abc"),
    ]
    for refused in refusals:
        with pytest.raises(Forbidden, match="manage host h1's"):
            refused()
    assert service.store.snapshot() is before


def test_a_host_scope_manages_its_own_share(service):
    net = service.create_network(H1, "blue", "10.1.0.0/24")
    assert net.owner == "h1"
    ep, of = service.create_endpoint(H1, "blue", "h1")
    assert of == net and ep.ip == "10.1.0.2"
    _, held = service.reserve_address(H1, "blue", "aux.h1")
    assert service.add_alias(H1, "blue", "docker:h1:abc") == net
    service.release_address(H1, "blue", held.ip)
    service.delete_endpoint(H1, ep.id)
    service.delete_network(H1, "docker:h1:abc")
    with pytest.raises(NotFound):
        service.store.get_network("blue")


def test_a_host_scope_releases_only_what_its_owners_hold(service):
    service.reserve_address(ADMIN, "red", "h2", "10.0.0.9")
    with pytest.raises(Forbidden, match="address 10.0.0.9, which 'h2' holds"):
        service.release_address(H1, "red", "10.0.0.9")
    service.release_address(H1, "red", "10.0.0.9", owner="h1")  # not h1's: left alone
    assert [r.ip for r in service.reservations("red")[1]] == ["10.0.0.9"]


def test_a_host_scope_holds_at_most_half_of_a_network(service):
    for _ in range(7):
        service.create_endpoint(H1, "red", "h1")
    with pytest.raises(Forbidden, match="at most half"):
        service.create_endpoint(H1, "red", "h1")
    service.create_endpoint(ADMIN, "red", "h1")  # the admin is not bounded


def test_ssl_hosts_need_the_controllers_tls_identity(service):
    with pytest.raises(InvalidRequest, match="ssl: targets need"):
        service.create_host(ADMIN, "h3", "ssl:192.0.2.3:6640", "192.0.2.3")
    assert "h3" not in service.store.snapshot().hosts


def test_an_endpoint_waits_for_its_networks_hosts_and_its_own(service, monkeypatch):
    waits = []
    monkeypatch.setattr(service.fabric, "wait_programmed",
                        lambda hosts, revision, bound, timeout: waits.append(
                            (hosts, revision, bound, timeout)) or True)
    first, _ = service.create_endpoint(ADMIN, "red", "h1")
    second, _ = service.create_endpoint(ADMIN, "red", "h2", port="veth2")
    service.delete_endpoint(ADMIN, first.id)
    revision = service.store.snapshot().revision
    assert waits == [({"h1"}, revision - 2, None, 0.1),
                     ({"h1", "h2"}, revision - 1, {second.id: "h2"}, 0.1),
                     ({"h1", "h2"}, revision, None, 0.1)]  # h1: where it was


def test_a_port_ovs_cannot_attach_is_refused_and_the_endpoint_deleted(service, monkeypatch):
    monkeypatch.setattr(service.fabric, "port_error",
                        lambda host, endpoint_id: "could not open network device veth1")
    with pytest.raises(InvalidRequest, match="'veth1' on host 'h1' cannot be attached: "
                                             "could not open"):
        service.create_endpoint(ADMIN, "red", "h1", port="veth1", ip="10.0.0.5")
    snap = service.store.snapshot()
    assert not snap.endpoints and not snap.reservations
    ep, _ = service.create_endpoint(ADMIN, "red", "h1", ip="10.0.0.5")  # the address is free
    assert ep.ip == "10.0.0.5"


def test_a_port_something_else_holds_is_refused_before_anything_is_written(service,
                                                                             monkeypatch):
    monkeypatch.setattr(service.fabric, "port_holder",
                        lambda host, port: "the tunnel to h2" if port == "vx-h2" else None)
    before = service.store.snapshot()
    with pytest.raises(InvalidRequest, match="port 'vx-h2' on host 'h1' is the tunnel to h2"):
        service.create_endpoint(ADMIN, "red", "h1", port="vx-h2")
    assert service.store.snapshot() is before


def test_endpoints_are_listed_in_the_order_they_were_made(service):
    service.create_network(ADMIN, "blue", "10.1.0.0/24")
    made = [service.create_endpoint(ADMIN, net, host)[0]
            for net, host in (("red", "h2"), ("blue", "h1"), ("red", "h1"))]
    snap, eps = service.endpoints()
    assert eps == made and snap is service.store.snapshot()
    assert service.endpoints(network="red")[1] == [made[0], made[2]]
    assert service.endpoints(network="red", host="h1")[1] == [made[2]]
    with pytest.raises(NotFound):
        service.endpoints(network="green")


def test_routers_are_the_admins_and_published_ports_their_hosts(service):
    theirs, _ = service.create_endpoint(ADMIN, "red", "h2")
    mine, _ = service.create_endpoint(H1, "red", "h1")
    before = service.store.snapshot()
    refusals = [
        lambda: service.create_router(H1, "r1"),
        lambda: service.publish_port(H1, theirs.id, "tcp", 80),
        lambda: service.set_network_egress(H1, "red", False),  # the admin's network
    ]
    for refused in refusals:
        with pytest.raises(Forbidden, match="manage host h1's"):
            refused()
    assert service.store.snapshot() is before
    published, host = service.publish_port(H1, mine.id, "tcp", 80)
    assert (published.host_port, host.name) == (49152, "h1")
    with pytest.raises(Forbidden):
        service.unpublish_port(Scope("h2"), mine.id, "tcp", 49152)
    service.unpublish_port(H1, mine.id, "tcp", 49152)
    assert service.published(mine.id)[2] == []


def test_router_use_cases_return_after_the_store_write(service):
    ep, _ = service.create_endpoint(ADMIN, "red", "h1")
    service.create_router(ADMIN, "r1")
    router = service.attach_network(ADMIN, "r1", "red")
    assert service.set_routes(ADMIN, "r1", [("0.0.0.0/0", ep.ip)]).routes[0].nexthop == ep.ip
    service.set_routes(ADMIN, "r1", [])
    service.detach_network(ADMIN, "r1", "red")
    service.delete_router(ADMIN, "r1")
    with pytest.raises(NotFound):
        service.store.get_router(router.id)
    assert service.set_network_egress(ADMIN, "red", False).egress is False


def test_router_and_published_port_writes_wait_for_the_hosts_they_concern(service,
                                                                          monkeypatch):
    waited = []
    monkeypatch.setattr(service.fabric, "wait_programmed",
                        lambda hosts, revision, bound=None, timeout=None:
                        waited.append((hosts, revision)) or True)
    ep, _ = service.create_endpoint(ADMIN, "red", "h1")
    service.create_network(ADMIN, "blue", "10.1.0.0/24")
    service.create_endpoint(ADMIN, "blue", "h2")
    service.create_router(ADMIN, "r1")
    waited.clear()
    service.attach_network(ADMIN, "r1", "red")
    service.attach_network(ADMIN, "r1", "blue")
    service.set_routes(ADMIN, "r1", [("0.0.0.0/0", ep.ip)])
    service.set_routes(ADMIN, "r1", [])
    service.detach_network(ADMIN, "r1", "blue")
    service.publish_port(ADMIN, ep.id, "tcp", 80)
    service.set_network_egress(ADMIN, "blue", False)
    assert [hosts for hosts, _ in waited] == [
        {"h1"}, {"h1", "h2"}, {"h1", "h2"}, {"h1", "h2"}, {"h1", "h2"}, {"h1"}, {"h2"}]
    # Each waits for the revision its own write made.
    assert [revision for _, revision in waited] == list(range(waited[0][1],
                                                              waited[0][1] + 7))


def test_an_endpoint_in_a_routed_network_waits_for_the_routers_hosts(service, monkeypatch):
    """Hosts of the router's other networks route to the new endpoint: they must have its
    flows before the answer."""
    service.create_endpoint(ADMIN, "red", "h1")
    service.create_network(ADMIN, "blue", "10.1.0.0/24")
    service.create_router(ADMIN, "r1")
    service.attach_network(ADMIN, "r1", "red")
    service.attach_network(ADMIN, "r1", "blue")
    waited = []
    monkeypatch.setattr(service.fabric, "wait_programmed",
                        lambda hosts, revision, bound=None, timeout=None:
                        waited.append(hosts) or True)
    service.create_endpoint(ADMIN, "blue", "h2")
    service.detach_network(ADMIN, "r1", "blue")
    service.create_endpoint(ADMIN, "blue", "h2")
    assert waited == [{"h1", "h2"}, {"h1", "h2"}, {"h2"}]
