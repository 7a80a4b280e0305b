"""The Docker plugin's protocol, against the real REST API in-process (hosts disconnected) and
veths kept in memory: dockerd's call sequences, every edge the digest lists, no root."""
from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from api.client import ApiError

from api.app import create_app as create_api
from tests.helpers import running, serving
from api.client import FabricClient
from controller.fabric import Fabric
from docker_plugin.app import create_app
from docker_plugin.controller import Controller
from docker_plugin.naming import endpoint_mac, veth_names
from docker_plugin.orphans import OrphanSweep
from model import Store
from security import tokens
from tests.dockerd import Dockerd, PluginCallError, flask_transport

TOKEN = "plugin-test-token"
OPT = "ovsfabric.network"


class FakeVeths:
    """The veths of one Docker host: name -> {mtu, mac, peer}."""

    def __init__(self):
        self.links: dict[str, dict] = {}
        self.lock = threading.Lock()

    def ensure(self, host_end, container_end, mtu, mac):
        with self.lock:
            self.links[host_end] = {"mtu": mtu, "mac": None, "peer": container_end}
            self.links[container_end] = {"mtu": mtu, "mac": mac, "peer": host_end}

    def exists(self, name):
        return name in self.links

    def names(self):
        return set(self.links)

    def delete(self, name):
        with self.lock:
            link = self.links.pop(name, None)
            if link:
                self.links.pop(link["peer"], None)




@pytest.fixture
def api(tmp_path):
    """The controller's REST API with hosts h1..h3 registered (not connected)."""
    store = Store(str(tmp_path / "state.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    fabric.start()
    with serving(create_api(fabric, token=TOKEN)) as url:
        client = FabricClient(url, token=TOKEN)
        for i in (1, 2, 3):
            client.create_host(f"h{i}", f"unix:/nonexistent/h{i}", f"192.0.2.{i}")
        yield client
    fabric.stop()
    store.close()


class Host:
    """A Docker host: its plugin (restartable: a new process knows nothing) and its dockerd."""

    def __init__(self, api: FabricClient, name: str):
        self.api, self.name = api, name
        self.veths = FakeVeths()
        self.restart_plugin()
        self.docker = Dockerd(lambda method, body, **kw: self.transport(method, body, **kw))

    def restart_plugin(self, controller_url: str | None = None, token: str | None = None):
        # Each host's plugin holds its host token, as deployed.
        app = create_app(Controller(controller_url or self.api.url, self.name,
                                    token=token or tokens.host_token(TOKEN, self.name)),
                         self.veths)
        self.transport = flask_transport(app.test_client())

    @contextmanager
    def controller_unreachable(self):
        self.restart_plugin("http://127.0.0.1:9")
        try:
            yield
        finally:
            self.restart_plugin()


@pytest.fixture
def hosts(api):
    return [Host(api, f"h{i}") for i in (1, 2, 3)]


def network_named(api, name):
    return next(n for n in api.networks() if n["name"] == name)


# ---- the HTTP contract ---------------------------------------------------------------------

def test_activation_as_dockerd_does_it(hosts):
    found = hosts[0].docker.activate()
    assert found["implements"] == ["NetworkDriver", "IpamDriver"]
    assert found["network"] == {"Scope": "local", "ConnectivityScope": "global"}
    assert found["ipam"] == {"RequiresMACAddress": False, "RequiresRequestReplay": True}
    assert set(found["spaces"]) == {"LocalDefaultAddressSpace", "GlobalDefaultAddressSpace"}


def test_no_content_type_empty_and_null_bodies(hosts):
    call = hosts[0].transport
    for raw in (b"", b"null", b"  \n", b"{}"):
        status, payload = call("NetworkDriver.GetCapabilities", None, raw=raw)
        assert (status, payload["Scope"]) == (200, "local"), raw
    status, payload = call("NetworkDriver.Leave", {"NetworkID": "x", "EndpointID": "y"})
    assert (status, payload) == (200, {})


@pytest.mark.parametrize("method, raw, status, words", [
    ("NetworkDriver.Nonsense", b"{}", 404, []),
    ("Plugin.Deactivate", b"", 404, []),
    ("NetworkDriver.CreateNetwork", b"{not json", 400, ["JSON"]),
    ("NetworkDriver.CreateNetwork", b"[1, 2]", 400, ["object"]),
    ("NetworkDriver.CreateNetwork", b'{"NetworkID": 7}', 400, ["NetworkID"]),
    ("NetworkDriver.CreateNetwork", b'{"NetworkID": "n1", "IPv4Data": []}', 400, ["IPv4 pool"]),
    ("NetworkDriver.CreateEndpoint", b'{"NetworkID": "nope", "EndpointID": "e1"}', 500,
     ["not an ovsfabric network"]),
    ("NetworkDriver.Join", b'{"NetworkID": "nope", "EndpointID": "e1"}', 500, []),
    ("IpamDriver.RequestPool", b'{"Pool": "10.0.0.0/33"}', 400, ["IPv4 subnet"]),
    ("IpamDriver.RequestPool", b'{"Pool": "10.0.0.1/24"}', 400, ["host bits"]),
    ("IpamDriver.RequestPool", b'{"Pool": ""}', 400, ["--subnet"]),
    ("IpamDriver.RequestPool", b'{"Pool": "fd00::/64", "V6": true}', 400, ["IPv6"]),
    ("IpamDriver.RequestPool", b'{"Pool": "10.0.0.0/24", "SubPool": "10.0.0.0/25"}', 400,
     ["--ip-range"]),
    ("IpamDriver.RequestPool", b'{"Pool": "10.0.0.0/24", "Options": {"ovsfabric.network": '
     b'"a/b"}}', 400, [OPT]),
    ("IpamDriver.RequestAddress", b'{"PoolID": "somebody-elses"}', 400, ["PoolID"]),
    ("IpamDriver.RequestAddress", b'{"PoolID": "pool:h1:10.0.0.0-24"}', 500, ["no Docker"]),
    ("IpamDriver.RequestAddress", b'{"PoolID": "pool:h1:10.0.0.0-24", "Address": "10.9.0.1"}',
     400, ["outside"]),
])
def test_bad_and_unknown_requests_are_never_200(hosts, method, raw, status, words):
    got, payload = hosts[0].transport(method, None, raw=raw)
    assert got == status, payload
    assert set(payload) == {"Err"}
    for word in words:
        assert word in payload["Err"]


def test_only_post(hosts):
    status, payload = hosts[0].transport("Plugin.Activate", None, verb="GET")
    assert status == 405 and "Err" in payload


def test_unreachable_controller_is_503_with_err(hosts, caplog):
    app = create_app(Controller("http://127.0.0.1:9", "h1", token=TOKEN), FakeVeths())
    status, payload = flask_transport(app.test_client())(
        "IpamDriver.RequestAddress", {"PoolID": "pool:h1:10.0.0.0-24", "Address": ""})
    assert status == 503 and "cannot reach" in payload["Err"]
    logged = [r for r in caplog.records if r.name == "docker_plugin.app"]
    assert [r.getMessage() for r in logged] == [
        "IpamDriver.RequestAddress: 503 cannot reach the ovsfabric controller at "
        "http://127.0.0.1:9"]
    assert not logged[0].exc_info, "one line, no traceback"


# ---- networks across hosts -------------------------------------------------------------------

@pytest.mark.parametrize("forms", [
    ({"driver_opts": {OPT: "blue"}, "ipam_opts": {OPT: "blue"}},) * 2,
    ({"driver_opts": {OPT: "blue"}}, {"driver_opts": {OPT: "blue"}}),
    ({"ipam_opts": {OPT: "blue"}}, {"ipam_opts": {OPT: "blue"}}),
    ({"driver_opts": {OPT: "blue"}}, {"ipam_opts": {OPT: "blue"}}),
], ids=["both", "driver-option", "ipam-option", "mixed"])
def test_one_name_one_fabric_network_on_every_host(api, hosts, forms):
    nets = [h.docker.network_create("blue", "10.30.0.0/24", **form)
            for h, form in zip(hosts, forms)]
    assert len({n.gateway for n in nets}) == 1 and nets[0].gateway == "10.30.0.1/24"
    blue = network_named(api, "blue")
    assert [n["name"] for n in api.networks()] == ["blue"]
    assert {f"docker:h1:{nets[0].id}", f"docker:h2:{nets[1].id}"} <= set(blue["aliases"])
    # Addresses are handed out cluster-wide: never twice, whichever host asks.
    containers = [h.docker.run(f"c{i}{h.name}", "blue") for i in range(3) for h in hosts[:2]]
    addresses = [c.address for c in containers]
    assert len(set(addresses)) == 6 and all(a.endswith("/24") for a in addresses)
    eps = api.endpoints(network="blue")
    assert sorted(f"{e['ip']}/24" for e in eps) == sorted(addresses)
    assert {e["host"] for e in eps} == {"h1", "h2"}


def test_later_hosts_may_leave_the_subnet_out(api, hosts):
    hosts[0].docker.network_create("blue", "10.30.0.0/24", gateway="10.30.0.254",
                                   ipam_opts={OPT: "blue"})
    net = hosts[1].docker.network_create("blue", ipam_opts={OPT: "blue"})
    assert (net.pool, net.gateway) == ("10.30.0.0/24", "10.30.0.254/24")


def test_without_the_option_a_network_of_its_own(api, hosts):
    one = hosts[0].docker.network_create("n", "10.40.0.0/24")
    two = hosts[1].docker.network_create("n", "10.40.0.0/24")
    own = {n["name"]: n for n in api.networks()}
    assert set(own) == {one.id, two.id}
    assert own[one.id]["vni"] != own[two.id]["vni"]
    # The same address may be used in both: they are different networks.
    a = hosts[0].docker.run("a", "n")
    b = hosts[1].docker.run("b", "n")
    assert a.address == b.address == "10.40.0.2/24"


def test_its_own_network_is_the_hosts_and_goes_with_it(api, hosts):
    one = hosts[0].docker.network_create("n", "10.40.0.0/24")
    assert api.network(one.id)["owner"] == "h1"
    hosts[0].docker.network_rm("n")
    assert [n["name"] for n in api.networks()] == []


@pytest.mark.parametrize("plugin_token", ["host", "admin"])
def test_a_network_made_over_rest_outlives_a_docker_network_named_by_its_id(
        api, hosts, plugin_token):
    """Even a plugin given the admin token deletes only what it made: it reads the owner."""
    network_id = secrets.token_hex(32)
    api.create_network(network_id, "10.40.0.0/24")
    h1 = hosts[0]
    if plugin_token == "admin":
        h1.restart_plugin(token=TOKEN)
    h1.docker.network_create("n", "10.40.0.0/24", network_id=network_id, aux={"x": "10.40.0.7"})
    assert f"docker:h1:{network_id}" in api.network(network_id)["aliases"]
    h1.docker.network_rm("n")
    net = api.network(network_id)
    assert (net["owner"], net["aliases"], api.addresses(network_id)) == (None, [], [])


def test_mismatches_across_hosts_fail_before_anything_is_created(api, hosts):
    hosts[0].docker.network_create("blue", "10.30.0.0/24", ipam_opts={OPT: "blue"},
                                   driver_opts={OPT: "blue"})
    with pytest.raises(PluginCallError) as err:
        hosts[1].docker.network_create("blue", "10.31.0.0/24", ipam_opts={OPT: "blue"})
    assert err.value.method == "IpamDriver.RequestPool" and "10.30.0.0/24" in err.value.err
    with pytest.raises(PluginCallError) as err:
        hosts[1].docker.network_create("blue", "10.30.0.0/24", gateway="10.30.0.9",
                                       ipam_opts={OPT: "blue"})
    assert err.value.status == 500 and "gateway" in err.value.err
    with pytest.raises(PluginCallError) as err:
        hosts[1].docker.network_create("blue", "10.30.0.0/24", gateway="10.30.0.9",
                                       driver_opts={OPT: "blue"})
    assert err.value.method == "NetworkDriver.CreateNetwork" and "gateway" in err.value.err
    assert [n["aliases"] for n in api.networks()] == [
        sorted(network_named(api, "blue")["aliases"])]
    assert not any(a.startswith(("docker:h2", "pool:h2")) for a in
                   network_named(api, "blue")["aliases"]), "rolled back"


def test_same_subnet_twice_on_one_host(api, hosts):
    docker = hosts[0].docker
    # Named on the IPAM side (or on both): as many as wanted, each its own fabric network.
    docker.network_create("red", "10.50.0.0/24", ipam_opts={OPT: "red"})
    docker.network_create("green", "10.50.0.0/24", ipam_opts={OPT: "green"})
    docker.network_create("blue", "10.50.0.0/24", ipam_opts={OPT: "blue"},
                          driver_opts={OPT: "blue"})
    docker.network_create("plain", "10.50.0.0/24")  # unnamed pool: one per subnet and host
    with pytest.raises(PluginCallError) as err:
        docker.network_create("plain2", "10.50.0.0/24")
    assert "--ipam-opt" in err.value.err
    with pytest.raises(PluginCallError) as err:
        docker.network_create("red2", "10.50.0.0/24", driver_opts={OPT: "red"})
    assert "is already Docker network" in err.value.err
    a, b, c = (docker.run(f"c-{n}", n) for n in ("red", "green", "plain"))
    assert a.address == b.address == c.address == "10.50.0.2/24"
    by_name = {n["name"]: n for n in api.networks()}
    assert {e["network"] for e in api.endpoints()} == {
        by_name["red"]["id"], by_name["green"]["id"], by_name[docker.networks["plain"].id]["id"]}
    # The failed creates released what they held: the first plain network still works.
    assert docker.run("c-plain-2", "plain").address == "10.50.0.3/24"


def fabric_state(api) -> list:
    """Everything a failed create could have left: networks, aliases, reservations."""
    return [(n["name"], sorted(n["aliases"]), api.addresses(n["id"])) for n in api.networks()]


def test_a_second_docker_network_for_a_named_fabric_network_is_refused(api, hosts):
    docker = hosts[0].docker
    red = docker.network_create("red", "10.50.0.0/24", ipam_opts={OPT: "red"},
                                driver_opts={OPT: "red"}, aux={"r": "10.50.0.9"})
    before = fabric_state(api)
    for form in ({"ipam_opts": {OPT: "red"}}, {"driver_opts": {OPT: "red"}},
                 {"ipam_opts": {OPT: "red"}, "driver_opts": {OPT: "red"}}):
        with pytest.raises(PluginCallError) as err:
            docker.network_create("red2", "10.50.0.0/24", **form)
        assert f"is already Docker network {red.id[:12]}" in err.value.err, form
        assert fabric_state(api) == before, "the live network keeps its aliases and addresses"
    assert docker.run("c", "red").address == "10.50.0.2/24"


@pytest.mark.parametrize("form", [{"driver_opts": {OPT: "jumbo"}},
                                  {"driver_opts": {OPT: "jumbo"}, "ipam_opts": {OPT: "jumbo"}},
                                  {"ipam_opts": {OPT: "jumbo"}}, {}],
                         ids=["driver-option", "both", "ipam-option", "unnamed"])
def test_the_mtu_option_makes_the_fabric_network(api, hosts, form):
    h1, h2 = hosts[:2]
    opts = {**form.get("driver_opts", {}), "com.docker.network.driver.mtu": "1400"}
    net = h1.docker.network_create("n", "10.70.0.0/24", ipam_opts=form.get("ipam_opts"),
                                   driver_opts=opts)
    fabric = api.network(f"docker:h1:{net.id}")
    assert fabric["mtu"] == 1400
    c = h1.docker.run("c", "n")
    assert h1.veths.links[c.src_name]["mtu"] == 1400
    if form:  # another host may not disagree
        with pytest.raises(PluginCallError) as err:
            h2.docker.network_create("n", "10.70.0.0/24", ipam_opts=form.get("ipam_opts"),
                                     driver_opts={**opts, "com.docker.network.driver.mtu":
                                                  "1450"})
        assert "has MTU 1400, not 1450" in err.value.err


def test_failed_creates_leave_nothing_behind(api, hosts):
    docker = hosts[0].docker
    docker.activate()
    # --ipv6: Docker asks for the v4 pool, its gateway and aux, then the v6 pool.
    v4 = docker.post("IpamDriver.RequestPool", {"AddressSpace": docker.space,
                                                "Pool": "10.80.0.0/24", "SubPool": "",
                                                "Options": {OPT: "six"}, "V6": False})
    docker.post("IpamDriver.RequestAddress", {"PoolID": v4["PoolID"], "Address": "",
                                              "Options": {"RequestAddressType":
                                                          "com.docker.network.gateway"}})
    status, payload = docker.transport("IpamDriver.RequestPool", {
        "AddressSpace": docker.space, "Pool": "", "SubPool": "", "Options": {OPT: "six"},
        "V6": True})
    assert status == 400 and "--ipv6" in payload["Err"]
    docker.post("IpamDriver.ReleaseAddress", {"PoolID": v4["PoolID"], "Address": "10.80.0.1"})
    docker.post("IpamDriver.ReleasePool", {"PoolID": v4["PoolID"]})
    assert api.networks() == []
    for refused, words in (
            ({"ipam_opts": {OPT: "one"}, "driver_opts": {OPT: "two"}}, "same name"),
            ({"driver_opts": {"ovsfabric.netwrok": "blue"}}, "unknown -o option"),
            ({"ipam_opts": {"ovsfabric.netwrok": "blue"}}, "unknown --ipam-opt option"),
            ({"driver_opts": {OPT: "m", "com.docker.network.driver.mtu": "9"}}, "576..9000"),
            ({"driver_opts": {OPT: "bad name!"}}, OPT)):
        with pytest.raises(PluginCallError) as err:
            docker.network_create("x", "10.60.0.0/24", aux={"r": "10.60.0.5"}, **refused)
        assert words in err.value.err, refused
        assert api.networks() == [], refused


def test_unknown_options_are_refused_with_what_is_known(hosts):
    with pytest.raises(PluginCallError) as err:
        hosts[0].docker.network_create("x", "10.60.0.0/24", driver_opts={
            "ovsfabric.netwrok": "blue", "color": "red"})
    assert err.value.err == ("unknown -o options color, ovsfabric.netwrok: ovsfabric takes "
                             "ovsfabric.network, com.docker.network.driver.mtu")


def test_docker_default_ipam_is_refused(api, hosts):
    docker = hosts[0].docker
    docker.activate()
    status, payload = docker.transport("NetworkDriver.CreateNetwork", {
        "NetworkID": "a" * 64, "Options": {"com.docker.network.generic": {OPT: "blue"}},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.8.0.0/24",
                      "Gateway": "10.8.0.1/24"}], "IPv6Data": []})
    assert status == 400 and "--ipam-driver ovsfabric" in payload["Err"]
    assert api.networks() == []


def test_plugin_restarted_inside_a_create_refuses_it_and_the_next_attempt_works(api, hosts):
    h1 = hosts[0]
    docker = h1.docker
    docker.activate()
    pool = docker.post("IpamDriver.RequestPool", {"AddressSpace": docker.space,
                                                  "Pool": "10.81.0.0/24", "SubPool": "",
                                                  "Options": {OPT: "late"}, "V6": False})
    gateway = docker.post("IpamDriver.RequestAddress", {
        "PoolID": pool["PoolID"], "Address": "",
        "Options": {"RequestAddressType": "com.docker.network.gateway"}})["Address"]
    h1.restart_plugin()
    status, payload = h1.transport("NetworkDriver.CreateNetwork", {
        "NetworkID": "b" * 64, "Options": {"com.docker.network.generic": {}},
        "IPv4Data": [{"AddressSpace": docker.space, "Pool": "10.81.0.0/24",
                      "Gateway": gateway}], "IPv6Data": []})
    assert status == 500 and "create the network again" in payload["Err"]
    assert api.networks() == []
    docker.network_create("late", "10.81.0.0/24", ipam_opts={OPT: "late"})
    assert [n["name"] for n in api.networks()] == ["late"]


def test_aux_addresses_are_reserved_from_every_container(api, hosts):
    h1, h2 = hosts[:2]
    for form in ({"ipam_opts": {OPT: "blue"}}, {"driver_opts": {OPT: "blue"}}):
        h1.docker.network_create("blue", "10.30.0.0/24", aux={"r": "10.30.0.2"}, **form)
        assert [(a["ip"], a["owner"]) for a in api.addresses("blue")] == [
            ("10.30.0.2", "aux.h1")]
        h2.docker.network_create("blue", "10.30.0.0/24", **form)
        for h in (h1, h2):  # its own host's containers too
            with pytest.raises(PluginCallError) as err:
                h.docker.run("c", "blue", ip="10.30.0.2")
            assert "reserved by 'aux.h1'" in err.value.err
        with pytest.raises(ApiError) as refused:  # nor through the REST API
            api.create_endpoint("blue", "h1", ip="10.30.0.2")
        assert refused.value.status == 409
        assert h1.docker.run("c", "blue").address != "10.30.0.2/24"
        h1.docker.stop("c")
        assert [a["ip"] for a in api.addresses("blue")] == ["10.30.0.2"], "still reserved"
        for h in (h1, h2):
            h.docker.network_rm("blue")
        assert api.addresses("blue") == [], form


# ---- endpoints ------------------------------------------------------------------------------

def test_endpoint_veth_mtu_mac_and_join_answer(api, hosts):
    host = hosts[0]
    host.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    c = host.docker.run("c", "blue")
    host_end, container_end = veth_names(c.endpoint_id)
    assert len(host_end) <= 15 and len(container_end) <= 15
    # Docker left the MAC empty: the plugin chose one and said so, and nothing else.
    assert c.created == {"Interface": {"MacAddress": endpoint_mac(c.endpoint_id)}}
    assert host.veths.links[container_end] == {"mtu": 1450, "mac": c.mac, "peer": host_end}
    assert host.veths.links[host_end]["mtu"] == 1450
    [ep] = api.endpoints(host="h1")
    assert (ep["name"], ep["port"], ep["mac"], f"{ep['ip']}/24") == (
        c.endpoint_id, host_end, c.mac, c.address)
    assert c.joined == {"InterfaceName": {"SrcName": container_end, "DstPrefix": "eth"},
                        "Gateway": "10.30.0.1", "DisableGatewayService": False}


def test_a_mac_docker_set_is_used_not_echoed(api, hosts):
    host = hosts[0]
    host.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    c = host.docker.run("c", "blue", mac="02:42:0a:1e:00:63")
    assert c.created == {}, "an echo of Address or MacAddress makes Docker fail"
    assert api.endpoints()[0]["mac"] == "02:42:0a:1e:00:63"
    assert host.veths.links[c.src_name]["mac"] == "02:42:0a:1e:00:63"


@pytest.mark.parametrize("mac, says", [("zz", "six colon-separated octets"),
                                       (5, "not a string"),
                                       ("01:00:5e:00:00:01", "multicast")])
def test_a_bad_mac_from_docker_is_400_and_nothing_is_made(api, hosts, mac, says):
    h1 = hosts[0]
    net = h1.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    status, payload = h1.transport("NetworkDriver.CreateEndpoint", {
        "NetworkID": net.id, "EndpointID": "e" * 64,
        "Interface": {"Address": "10.30.0.7/24", "AddressIPv6": "", "MacAddress": mac}})
    assert status == 400 and says in payload["Err"]
    assert api.endpoints() == [] and h1.veths.links == {}


def test_no_address_from_docker_the_fabric_picks_one(api, hosts):
    host = hosts[0]
    net = host.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    answer = host.transport("NetworkDriver.CreateEndpoint", {
        "NetworkID": net.id, "EndpointID": "ab" * 32,
        "Interface": {"Address": "", "AddressIPv6": "", "MacAddress": ""}})
    assert answer[0] == 200 and answer[1]["Interface"]["Address"] == "10.30.0.2/24"


def test_leave_keeps_the_veth_delete_endpoint_removes_it(api, hosts):
    host = hosts[0]
    host.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    c = host.docker.run("c", "blue")
    seen = {}
    host.docker.stop("c", after_leave=lambda c: seen.update(
        veth=host.veths.exists(c.src_name), endpoints=len(api.endpoints())))
    assert seen == {"veth": True, "endpoints": 1}
    assert host.veths.links == {} and api.endpoints() == []
    assert api.addresses("blue") == []
    ids = {"NetworkID": c.network.id, "EndpointID": c.endpoint_id}
    for method in ("NetworkDriver.Leave", "NetworkDriver.DeleteEndpoint"):
        assert host.transport(method, ids) == (200, {}), "idempotent"
    assert host.transport("IpamDriver.ReleaseAddress", {
        "PoolID": c.network.pool_id, "Address": c.address.split("/")[0]}) == (200, {})


def test_a_failed_endpoint_leaves_no_veth(api, hosts):
    host = hosts[0]
    host.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    taken = hosts[0].docker.run("a", "blue")
    net = host.docker.networks["blue"]
    status, payload = host.transport("NetworkDriver.CreateEndpoint", {
        "NetworkID": net.id, "EndpointID": "cd" * 32,
        "Interface": {"Address": taken.address, "MacAddress": ""}})
    assert status == 500 and "already used" in payload["Err"]
    assert set(host.veths.links) == set(veth_names(taken.endpoint_id))


def test_create_endpoint_again_is_answered_the_same(api, hosts):
    host = hosts[0]
    net = host.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    body = {"NetworkID": net.id, "EndpointID": "ef" * 32,
            "Interface": {"Address": "10.30.0.7/24", "AddressIPv6": "", "MacAddress": ""}}
    first = host.transport("NetworkDriver.CreateEndpoint", body)
    assert first[0] == 200 and host.transport("NetworkDriver.CreateEndpoint", body) == first
    assert len(api.endpoints()) == 1


def test_parallel_runs_on_two_hosts(api, hosts):
    for h in hosts[:2]:
        h.docker.network_create("blue", "10.30.0.0/28", driver_opts={OPT: "blue"},
                                ipam_opts={OPT: "blue"})
    with ThreadPoolExecutor(8) as pool:
        runs = [pool.submit(h.docker.run, f"c{i}", "blue") for i in range(6) for h in hosts[:2]]
        containers = [r.result() for r in runs]
    assert len({c.address for c in containers}) == 12
    assert len(api.endpoints()) == 12
    # The /28 has 13 addresses besides the gateway... and one was never handed out twice.
    with pytest.raises(PluginCallError) as err:
        [hosts[0].docker.run(f"x{i}", "blue") for i in range(2)]
    assert err.value.method == "IpamDriver.RequestAddress" and err.value.status != 200


# ---- restarts -------------------------------------------------------------------------------

def test_plugin_restart_between_any_two_calls(api, hosts):
    h1, h2 = hosts[:2]
    h1.docker.network_create("blue", "10.30.0.0/24", ipam_opts={OPT: "blue"})
    h1.restart_plugin()
    h2.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    h2.restart_plugin()
    a = h1.docker.run("a", "blue")
    h1.restart_plugin()
    b = h2.docker.run("b", "blue")
    h2.restart_plugin()
    h1.docker.stop("a")
    h1.restart_plugin()
    h2.docker.stop("b")
    assert api.endpoints() == [] and h1.veths.links == {} and h2.veths.links == {}
    assert a.address != b.address
    for h in (h1, h2):
        h.restart_plugin()
        h.docker.network_rm("blue")
    assert network_named(api, "blue")["aliases"] == []


def test_daemon_restarts_replays_are_already_yours(api, hosts):
    h1, h2 = hosts[:2]
    h1.docker.network_create("blue", "10.30.0.0/24", ipam_opts={OPT: "blue"},
                             aux={"r": "10.30.0.3"})
    h1.docker.network_create("own", "10.31.0.0/24", gateway="10.31.0.9")
    h2.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    c1 = h1.docker.run("c1", "blue")
    c2 = h1.docker.run("c2", "own")
    h2.docker.run("c3", "blue")
    h1.restart_plugin()  # the daemon restarts with the plugin, as on a reboot
    answers = h1.docker.crash_restart()  # after kill -9: the dead containers' addresses too
    assert [a["Address"] for a in answers if "Address" in a] == [
        "10.30.0.1/24", "10.30.0.3/24", c1.address, "10.31.0.9/24", c2.address]
    assert [a["PoolID"] for a in answers if "PoolID" in a] == [
        n.pool_id for n in h1.docker.networks.values()]
    assert [e["name"] for e in api.endpoints()] == [h2.docker.containers["c3"].endpoint_id]
    assert [(a["ip"], a["owner"]) for a in api.addresses("blue")] == [("10.30.0.3", "aux.h1")]
    c1 = h1.docker.run("c1", "blue")
    answers = h1.docker.restart()  # graceful: endpoints go first, pools and gateways replayed
    assert [a["Address"] for a in answers if "Address" in a] == [
        "10.30.0.1/24", "10.30.0.3/24", "10.31.0.9/24"]
    assert [e["name"] for e in api.endpoints()] == [h2.docker.containers["c3"].endpoint_id]
    # What another host holds is not answered as yours.
    other = h2.docker.containers["c3"].address.split("/")[0]
    status, payload = h1.transport("IpamDriver.RequestAddress", {
        "PoolID": h1.docker.networks["blue"].pool_id, "Address": other, "Options": None})
    assert status == 500 and "already used" in payload["Err"]
    # The replays' notes do not stand in the way of a create right after.
    h1.docker.network_create("next", "10.30.0.0/24", ipam_opts={OPT: "next"})
    assert network_named(api, "next")["subnet"] == "10.30.0.0/24"


# ---- orphans -----------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_endpoints_orphaned_by_an_unreachable_controller_are_swept(api, hosts):
    h1 = hosts[0]
    h1.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    kept, gone = h1.docker.run("kept", "blue"), h1.docker.run("gone", "blue")
    api.create_endpoint("blue", "h1", name="not-dockers")  # the sweep leaves it alone
    with h1.controller_unreachable():
        h1.docker.stop("gone")
    # Its published ports, if any, go with the endpoint when the sweep deletes it.
    assert [(w.method, w.status) for w in h1.docker.warnings] == [
        ("NetworkDriver.RevokeExternalConnectivity", 503),
        ("NetworkDriver.DeleteEndpoint", 503), ("IpamDriver.ReleaseAddress", 503)]
    assert gone.src_name not in h1.veths.links, "the veth went at once"
    assert any(e["name"] == gone.endpoint_id for e in api.endpoints())
    # A container being created: its container end is still on the host, as after a stop.
    starting = h1.docker.run("starting", "blue", before_join=lambda c: None)
    h1.veths.links[starting.src_name] = {"mtu": 1450, "mac": None,
                                         "peer": veth_names(starting.endpoint_id)[0]}
    clock = Clock()
    sweep = OrphanSweep(Controller(api.url, "h1", token=TOKEN), h1.veths, grace=60, clock=clock)
    # In a container's namespace, kept's container end is not among the host's links.
    for link in (kept.src_name, gone.src_name):
        h1.veths.links.pop(link, None)
    assert sweep.sweep() == []
    clock.now += 30
    h1.veths.links.pop(starting.src_name)  # joined meanwhile
    assert sweep.sweep() == []
    clock.now += 31
    gone_id = next(e["id"] for e in api.endpoints() if e["name"] == gone.endpoint_id)
    assert sweep.sweep() == [gone_id]
    names = sorted(e["name"] for e in api.endpoints())
    assert names == sorted([kept.endpoint_id, starting.endpoint_id, "not-dockers"])
    assert gone.address.split("/")[0] not in [e["ip"] for e in api.endpoints()]


def test_network_rm_removes_endpoints_docker_could_not_delete(api, hosts):
    h1 = hosts[0]
    h1.docker.network_create("n", "10.40.0.0/24")
    c = h1.docker.run("c", "n")
    with h1.controller_unreachable():
        h1.docker.stop("c")
    assert len(api.endpoints()) == 1
    h1.docker.network_rm("n")  # no 409: the orphan goes first
    assert api.endpoints() == [] and api.networks() == []
    assert c.src_name not in h1.veths.links


# ---- teardown ----------------------------------------------------------------------------------

def test_network_rm_on_every_host(api, hosts):
    h1, h2 = hosts[:2]
    h1.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    h2.docker.network_create("blue", "10.30.0.0/24", ipam_opts={OPT: "blue"})
    own = h1.docker.network_create("own", "10.31.0.0/24")
    h1.docker.run("a", "blue")
    h1.docker.stop("a")
    for h in (h1, h2):
        h.docker.network_rm("blue")
    h1.docker.network_rm("own")
    # The named network stays (other hosts may come), with nothing of Docker's left; a
    # network of its own goes.
    assert [(n["name"], n["aliases"]) for n in api.networks()] == [("blue", [])]
    assert api.addresses("blue") == []
    assert h1.transport("NetworkDriver.DeleteNetwork", {"NetworkID": own.id}) == (200, {})
    assert h1.transport("IpamDriver.ReleasePool", {"PoolID": own.pool_id}) == (200, {})


def test_old_engines_delete_the_network_first(api, hosts):
    docker = hosts[0].docker
    net = docker.network_create("own", "10.31.0.0/24")
    docker.post("NetworkDriver.DeleteNetwork", {"NetworkID": net.id})
    del docker.networks["own"]
    docker._release_network_addresses(net)
    assert api.networks() == []


# ---- the unix socket ---------------------------------------------------------------------------

@contextmanager
def plugin_socket(api, path):
    from docker_plugin.server import create_server
    server = create_server(create_app(Controller(api.url, "h1", token=TOKEN), FakeVeths()),
                           str(path))
    with running(server):
        yield server


def test_served_on_a_unix_socket_as_dockerd_calls_it(api, tmp_path):
    import socket
    import stat

    from tests.dockerd import unix_transport
    path = tmp_path / "plugins" / "ovsfabric.sock"
    path.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as stale:  # a dead plugin's socket
        stale.bind(str(path))
    with plugin_socket(api, path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        docker = Dockerd(unix_transport(str(path)))
        assert docker.activate()["implements"] == ["NetworkDriver", "IpamDriver"]
        net = docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
        assert net.gateway == "10.30.0.1/24"
        call = unix_transport(str(path))
        assert call("NetworkDriver.Nope", {})[0] == 404
        assert call("IpamDriver.RequestPool", None, raw=b"{")[0] == 400
        with pytest.raises(SystemExit, match="another process"):
            with plugin_socket(api, path):
                pass


def test_a_file_that_is_not_a_socket_is_left_alone(api, tmp_path):
    path = tmp_path / "ovsfabric.sock"
    path.write_text("not a socket")
    with pytest.raises(SystemExit, match="not a socket"):
        with plugin_socket(api, path):
            pass
    assert path.read_text() == "not a socket"


def test_create_network_again_changes_nothing(api, hosts):
    docker = hosts[0].docker
    net = docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    before = api.networks()
    body = {"NetworkID": net.id, "Options": {"com.docker.network.generic": {OPT: "blue"}},
            "IPv4Data": [{"AddressSpace": docker.space, "Pool": net.pool,
                          "Gateway": net.gateway}], "IPv6Data": []}
    assert hosts[0].transport("NetworkDriver.CreateNetwork", body) == (200, {})
    assert api.networks() == before


def test_plugin_command_line_from_the_environment(monkeypatch):
    from cli import main, plugin
    seen = []
    monkeypatch.setattr(plugin, "run", lambda args: seen.append(args) or 0)
    monkeypatch.setenv("OVSFABRIC_CONTROLLER", "http://192.0.2.1:8686")
    monkeypatch.setenv("OVSFABRIC_HOST", "h7")
    monkeypatch.setenv("OVSFABRIC_PLUGIN_SOCKET", "/tmp/x.sock")
    assert main.main(["plugin"]) == 0
    assert (seen[0].controller, seen[0].host, seen[0].socket) == (
        "http://192.0.2.1:8686", "h7", "/tmp/x.sock")
    monkeypatch.delenv("OVSFABRIC_HOST")
    with pytest.raises(SystemExit):
        main.main(["plugin"])


# ---- external connectivity: -p and --internal -----------------------------------------------

def test_run_p_publishes_the_ports_and_stop_unpublishes_them(api, hosts):
    host = hosts[0]
    host.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    host.docker.run("web", "blue", ports=((80, 8080), (443, 8443)))
    [ep] = api.endpoints(host="h1")
    assert api.published(ep["id"]) == [
        {"protocol": "tcp", "port": 80, "host_port": 8080, "host": "h1", "host_ip": "192.0.2.1"},
        {"protocol": "tcp", "port": 443, "host_port": 8443, "host": "h1",
         "host_ip": "192.0.2.1"}]
    host.docker.stop("web")
    assert api.endpoints(host="h1") == []
    assert api.request("GET", "/v1/hosts/h1")["name"] == "h1"


def test_a_host_port_taken_fails_the_start_and_publishes_nothing(api, hosts):
    host = hosts[0]
    host.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    web = host.docker.run("web", "blue", ports=((80, 8080),))
    with pytest.raises(PluginCallError) as err:
        host.docker.run("other", "blue", ports=((81, 8081), (80, 8080)))
    assert err.value.method == "NetworkDriver.ProgramExternalConnectivity"
    assert "8080" in err.value.err
    [ep] = api.endpoints(host="h1")
    assert ep["name"] == web.endpoint_id, "the failed container's endpoint is gone"
    assert [p["host_port"] for p in api.published(ep["id"])] == [8080]


def test_a_host_port_range_takes_the_first_free_one(api, hosts):
    host = hosts[0]
    host.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    host.docker.run("a", "blue", ports=((80, 9000),))
    c = host.docker.run("b", "blue")
    ep = api.endpoints(host="h1")
    [b] = [e for e in ep if e["name"] == c.endpoint_id]
    program = {"NetworkID": host.docker.networks["blue"].id, "EndpointID": c.endpoint_id,
               "Options": {"com.docker.network.portmap": [
                   {"Proto": 17, "IP": "", "Port": 53, "HostIP": "", "HostPort": 0},
                   {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 9000,
                    "HostPortEnd": 9002}]}}
    assert host.docker.post("NetworkDriver.ProgramExternalConnectivity", program) == {}
    assert [(p["protocol"], p["port"], p["host_port"]) for p in api.published(b["id"])] == [
        ("tcp", 80, 9001), ("udp", 53, 49152)]
    # Sent again (a daemon replaying it): nothing more.
    assert host.docker.post("NetworkDriver.ProgramExternalConnectivity", program) == {}
    assert len(api.published(b["id"])) == 2


@pytest.mark.parametrize("entry, says", [
    ({"Proto": 132, "Port": 80, "HostPort": 8080}, "tcp and udp"),
    ({"Proto": 6, "Port": 80, "HostIP": "127.0.0.1", "HostPort": 8080}, "outside address"),
    ({"Proto": 6, "Port": 80, "HostPort": 8080, "HostPortEnd": 8000}, "below"),
    ({"Proto": 6, "Port": 0, "HostPort": 8080}, "container's Port"),
])
def test_port_maps_the_fabric_cannot_publish_are_refused(api, hosts, entry, says):
    host = hosts[0]
    host.docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"})
    c = host.docker.run("c", "blue")
    with pytest.raises(PluginCallError) as err:
        host.docker.post("NetworkDriver.ProgramExternalConnectivity", {
            "NetworkID": host.docker.networks["blue"].id, "EndpointID": c.endpoint_id,
            "Options": {"com.docker.network.portmap": [entry]}})
    assert err.value.status == 400 and says in err.value.err
    [ep] = api.endpoints(host="h1")
    assert api.published(ep["id"]) == []


def test_internal_networks_have_no_egress_and_must_agree_across_hosts(api, hosts):
    hosts[0].docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"},
                                   ipam_opts={OPT: "blue"}, internal=True)
    assert network_named(api, "blue")["egress"] is False
    hosts[0].docker.run("c", "blue", ports=((80, 8080),))  # no ProgramExternalConnectivity
    [ep] = api.endpoints(host="h1")
    assert api.published(ep["id"]) == []
    with pytest.raises(PluginCallError) as err:
        hosts[1].docker.network_create("blue", "10.30.0.0/24", driver_opts={OPT: "blue"},
                                       ipam_opts={OPT: "blue"})
    assert "has no egress: create this Docker network with --internal" in err.value.err
    assert network_named(api, "blue")["egress"] is False
