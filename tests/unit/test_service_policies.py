"""Security policies and endpoint labels through the service: who may write them, and which
hosts each write waits for."""
from __future__ import annotations

import pytest

from controller.fabric import Fabric
from controller.service import FabricService
from model import Forbidden, Store
from security.tokens import ADMIN, Scope

H1 = Scope("h1")


@pytest.fixture
def service(tmp_path):
    """h1, h2, h3 (never connected); networks red and blue; web (red, h1, app=web), db (red,
    h2, app=db), other (blue, h3); every wait's hosts in service.waited."""
    store = Store(str(tmp_path / "state.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    service = FabricService(fabric, programming_wait_s=0)
    for i in (1, 2, 3):
        service.create_host(ADMIN, f"h{i}", f"unix:/nonexistent/h{i}", f"192.0.2.{i}")
    service.create_network(ADMIN, "red", "10.0.0.0/24")
    service.create_network(ADMIN, "blue", "10.1.0.0/24")
    service.web, _ = service.create_endpoint(ADMIN, "red", "h1", name="web",
                                             labels={"app": "web"})
    service.db, _ = service.create_endpoint(ADMIN, "red", "h2", name="db",
                                            labels={"app": "db"})
    service.other, _ = service.create_endpoint(ADMIN, "blue", "h3", name="other")
    service.waited = []
    fabric.wait_programmed = lambda hosts, *_: service.waited.append(hosts)
    yield service
    store.close()


def selecting(app: str, name: str = "p", **directions) -> dict:
    return {"name": name, "applies_to": {"selector": {"labels": {"app": app}}}, **directions}


def test_only_the_admin_writes_policies(service):
    service.create_policy(ADMIN, selecting("web"))
    before = service.store.snapshot()
    for refused in (lambda: service.create_policy(H1, selecting("web", "q")),
                    lambda: service.replace_policy(H1, "p", selecting("db")),
                    lambda: service.delete_policy(H1, "p")):
        with pytest.raises(Forbidden, match="policies|policy 'p'"):
            refused()
    assert service.store.snapshot() is before
    assert [p.name for p in service.policies()] == ["p"] and service.policy("p").name == "p"


def test_a_policy_write_waits_for_the_hosts_of_what_it_selects_before_and_after(service):
    service.create_policy(ADMIN, selecting("web", ingress=[]))
    service.replace_policy(ADMIN, "p", selecting("db", ingress=[]))
    service.delete_policy(ADMIN, "p")
    assert service.waited == [{"h1"}, {"h1", "h2"}, {"h2"}]


def test_a_host_scope_labels_its_own_endpoints_only(service):
    ep, net = service.set_endpoint_labels(H1, service.web.id, {"app": "api"})
    assert ep.labels == (("app", "api"),) and net.name == "red"
    before = service.store.snapshot()
    with pytest.raises(Forbidden, match="manage host h1's"):
        service.set_endpoint_labels(H1, service.db.id, {"app": "api"})
    with pytest.raises(Forbidden, match="manage host h1's"):
        service.create_endpoint(H1, "red", "h2", labels={"app": "api"})
    assert service.store.snapshot() is before


def test_a_relabel_waits_for_the_hosts_of_the_policies_it_meets(service):
    # db is a peer of the policy on web; other is selected by nothing, before or after.
    service.create_policy(ADMIN, selecting("web", ingress=[
        {"peers": [{"selector": {"labels": {"app": "db"}}}]}]))
    service.create_policy(ADMIN, selecting("api", "q", egress=[]))
    service.waited.clear()
    service.set_endpoint_labels(ADMIN, service.other.id, {"role": "x"})
    service.set_endpoint_labels(ADMIN, service.db.id, {"app": "dba"})  # leaves p's peers
    service.set_endpoint_labels(ADMIN, service.other.id, {"app": "api"})  # joins q
    # Each wait is for the endpoint's network's hosts besides those named.
    assert service.waited == [{"h3"}, {"h1", "h2"}, {"h3"}]
    service.waited.clear()
    service.set_endpoint_labels(ADMIN, service.other.id, {"app": "web"})  # q to p
    assert service.waited == [{"h1", "h3"}]
