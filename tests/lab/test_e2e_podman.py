"""Real Podman (Debian's 4.3, CNI backend) as the CNI plugin's client, one per lab host: its
containers on an ovsfabric network reach each other across hosts, `podman rm -f` removes what
the plugin made, `podman run -p` publishes a port reachable from outside, and the plugin works
chained before Debian's `bandwidth` plugin.

Run with a slot of your own: OVSFABRIC_TEST_SLOT=4 pytest tests/lab/test_e2e_podman.py
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from api.client import ApiError
from lab import netns, podman
from lab.cgroups import remove_cgroups
from lab.messages import tcp_message, udp_message
from lab.outside import next_hop_outside
from lab.podman import CNI_PLUGINS, PODMAN, LabPodman
from lab.proc import alive
from tests.helpers import eventually
from tests.lab.conftest import plugin_fabric
from tests.slot import LAB_PREFIX, needs_lab

pytestmark = [pytest.mark.lab, needs_lab,
              pytest.mark.skipif(not os.access(PODMAN, os.X_OK) or
                                 not os.access(f"{CNI_PLUGINS}/bandwidth", os.X_OK),
                                 reason="needs Debian's podman and containernetworking-plugins")]

TOKEN = "podman-e2e-token"
NETWORK = "pod-red"  # the fabric's network, and the Podman network `cni install` makes
SUBNET = "10.79.0.0/24"
SLOW = "pod-slow"  # a Podman network of the same fabric network, through `bandwidth`
RATE = 8_000_000  # bits/s, each way
# busybox httpd answers on the container's port 80 with the file it is given.
SERVE = ["sh", "-c", 'trap "exit 0" TERM; mkdir -p /www; echo inside > /www/index.html; '
         'httpd -f -p 80 -h /www']


@pytest.fixture(scope="module")
def env(lab):
    """A controller the hosts' namespaces reach (with a token), an outside namespace on the
    underlay (h1's next hop), and a Podman on h1 and h2 with `ovsfabric cni install` done."""
    workdir = os.path.join(lab.workdir, "podman-e2e")
    os.makedirs(workdir, exist_ok=True)
    podmans = {}
    with plugin_fabric(lab, os.path.join(workdir, "ovsfabric.db"), TOKEN) as fab, \
            next_hop_outside(lab, [lab.host("h1")]) as outside:
        fab.client.create_network(NETWORK, SUBNET)
        try:
            for name in ("h1", "h2"):
                podmans[name] = pm = LabPodman(lab.host(name), lab.workdir)
                pm.start()
                pm.install_plugin(fab.controller.url, NETWORK, TOKEN)
            yield fab.controller, podmans, outside
        finally:
            for pm in podmans.values():  # their CNI DELs need the controller
                pm.stop()


class Containers:
    """Runs containers on the module's Podmans, and removes them when the test ends."""

    def __init__(self, podmans: dict[str, LabPodman]):
        self.podmans = podmans
        self.made: list[tuple[str, str]] = []

    def run(self, host: str, name: str, network: str = NETWORK, *options, **kw) -> str:
        """The container's address in ``network``."""
        self.made.append((host, name))
        self.podmans[host].run(name, network, *options, **kw)
        return self.podmans[host].address(name, network)

    def remove_all(self) -> None:
        for host, name in self.made:
            self.podmans[host].podman("rm", "--force", "--time", "2", name, check=False)


@pytest.fixture
def containers(env):
    made = Containers(env[1])
    yield made
    made.remove_all()


def endpoint_of(controller, host: str, name: str) -> dict | None:
    """The endpoint of a Podman container (Podman passes its name as K8S_POD_NAME)."""
    found = [ep for ep in controller.client.endpoints(host=host)
             if ep["labels"].get("K8S_POD_NAME") == name]
    assert len(found) <= 1, found
    return found[0] if found else None


def host_veths(pm: LabPodman) -> list[str]:
    out = netns.ip("-o", "link", "show", "type", "veth", netns=pm.host.netns).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
            if line.split(":")[1].strip().startswith("ofn")]


def ovs_ports(pm: LabPodman) -> list[str]:
    return [p for p in pm.host.vsctl("list-ports", "br-int").split() if p.startswith("ofn")]


def pings(pm: LabPodman, name: str, ip: str) -> bool:
    return pm.podman("exec", name, "ping", "-c", "2", "-i", "0.2", "-W", "2", ip,
                     check=False).returncode == 0


def test_containers_on_two_hosts_reach_each_other_and_rm_removes_what_the_plugin_made(
        env, containers):
    controller, podmans, _ = env
    h1, h2 = podmans["h1"], podmans["h2"]
    assert NETWORK in h1.podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    a_ip = containers.run("h1", "a")
    b_ip = containers.run("h2", "b")
    a, b = endpoint_of(controller, "h1", "a"), endpoint_of(controller, "h2", "b")
    assert a is not None and b is not None
    assert (a["ip"], b["ip"]) == (a_ip, b_ip)
    assert a["labels"] == {"K8S_POD_NAME": "a"}
    assert h1.inspect("a", f'{{{{(index .NetworkSettings.Networks "{NETWORK}").MacAddress}}}}'
                      ) == a["mac"]
    assert host_veths(h1) == ovs_ports(h1) == [a["port"]]
    assert pings(h1, "a", b_ip) and pings(h2, "b", a_ip)
    assert tcp_message(h1, "a", h2, "b", b_ip, "across-tcp") == "across-tcp"
    assert udp_message(h2, "b", h1, "a", a_ip, "across-udp") == "across-udp"

    h1.podman("rm", "--force", "a")
    assert endpoint_of(controller, "h1", "a") is None
    assert ovs_ports(h1) == [] and host_veths(h1) == []
    assert endpoint_of(controller, "h2", "b") is not None  # the other host's is left alone
    assert not pings(h2, "b", a_ip)
    h2.podman("rm", "--force", "b")
    assert controller.client.endpoints(network=NETWORK) == []
    assert ovs_ports(h2) == [] and host_veths(h2) == []


def test_stop_detaches_and_start_attaches_again(env, containers):
    controller, podmans, _ = env
    h1 = podmans["h1"]
    peer_ip = containers.run("h2", "peer")
    containers.run("h1", "again")
    first = endpoint_of(controller, "h1", "again")
    h1.podman("stop", "--time", "2", "again")
    assert endpoint_of(controller, "h1", "again") is None
    assert host_veths(h1) == [] and ovs_ports(h1) == []
    h1.podman("start", "again")
    second = endpoint_of(controller, "h1", "again")
    assert second is not None and second["id"] != first["id"]
    assert second["port"] == first["port"]  # the same attachment: the same veth name
    assert h1.address("again", NETWORK) == second["ip"]
    assert host_veths(h1) == ovs_ports(h1) == [second["port"]]
    assert pings(h1, "again", peer_ip)


def test_run_p_publishes_a_port_reachable_from_outside_until_rm(env, lab, containers):
    controller, podmans, outside = env
    h1 = podmans["h1"]
    containers.run("h1", "site", NETWORK, "-p", "8081:80", command=SERVE)
    ep = endpoint_of(controller, "h1", "site")
    assert [(p["protocol"], p["port"], p["host_port"])
            for p in controller.client.published(ep["id"])] == [("tcp", 80, 8081)]
    address = lab.host("h1").tunnel_ip
    assert eventually(lambda: outside.http_get(address, 8081) == "inside", 15)
    assert outside.http_get(lab.host("h2").tunnel_ip, 8081) is None  # h1's only

    h1.podman("rm", "--force", "site")
    with pytest.raises(ApiError) as gone:
        controller.client.published(ep["id"])
    assert gone.value.status == 404
    assert eventually(lambda: outside.http_get(address, 8081) is None, 10)


def test_chained_before_bandwidth_the_plugins_result_lets_it_shape_the_host_veth(
        env, containers):
    controller, podmans, _ = env
    h1 = podmans["h1"]
    installed = os.path.join(h1.conf_dir, f"10-ovsfabric-{NETWORK}.conflist")
    with open(installed) as f:
        conf = json.load(f)
    conf["name"] = SLOW
    conf["plugins"].append({"type": "bandwidth", "ingressRate": RATE, "ingressBurst": RATE // 8,
                            "egressRate": RATE, "egressBurst": RATE // 8})
    chained = os.path.join(h1.conf_dir, f"20-{SLOW}.conflist")
    with open(chained, "w") as f:
        json.dump(conf, f)
    try:
        peer_ip = containers.run("h2", "peer")
        containers.run("h1", "slow", SLOW)
        ep = endpoint_of(controller, "h1", "slow")
        assert ep is not None and ep["network"] == controller.client.network(NETWORK)["id"]
        assert pings(h1, "slow", peer_ip)
        # bandwidth: a tbf on the host veth (towards the container) and, for what the
        # container sends, an ingress qdisc there redirecting to an ifb of its own.
        qdiscs = h1.host.exec("tc", "qdisc", "show", "dev", ep["port"]).stdout
        assert "tbf" in qdiscs and "rate 8Mbit" in qdiscs and "ingress" in qdiscs, qdiscs
        ifbs = h1.host.exec("ip", "-o", "link", "show", "type", "ifb").stdout
        assert ifbs.strip(), "no ifb device"
        ifb = ifbs.split(":")[1].strip()
        assert "rate 8Mbit" in h1.host.exec("tc", "qdisc", "show", "dev", ifb).stdout

        h1.podman("rm", "--force", "slow")
        assert endpoint_of(controller, "h1", "slow") is None
        assert host_veths(h1) == [] and ovs_ports(h1) == []
        assert h1.host.exec("ip", "-o", "link", "show", "type", "ifb").stdout.strip() == ""
    finally:
        os.remove(chained)


def test_what_a_killed_run_left_of_a_podman_goes_with_the_labs_cleanup(lab):
    """No stop(): what lab.cleanup does after a killed run (for its own workdir) stops the
    conmon in the Podman's mount namespace and the container in its cgroup, by PID, and
    unmounts the namespace."""
    workdir = tempfile.mkdtemp(prefix=f"{LAB_PREFIX}-podman-")  # short: Podman's runroot
    pm = LabPodman(lab.host("h3"), workdir)
    pm.start()
    try:
        pm.run("left", "none")
        container = int(pm.inspect("left", "{{.State.Pid}}"))
        conmon = int(pm.inspect("left", "{{.State.ConmonPid}}"))
        assert alive(container) and alive(conmon)
        podman.stop_leftovers(workdir)
        remove_cgroups(pm.cgroup_parent.lstrip("/"))
        assert not alive(conmon) and not alive(container)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        assert [m for m in mounts if m.startswith(pm.dir)] == []
    finally:
        pm.stop()
        shutil.rmtree(workdir)
