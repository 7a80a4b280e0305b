"""The Docker plugin driven by real dockerds (Debian's docker.io), one per lab host, with the
README's commands: networks on two hosts, containers across them exchanging TCP and UDP, every
option honoured or refused with its message, and restarts and crashes of dockerd, the plugin
and the controller leaving Docker and the controller in agreement.

Run with a slot of your own: OVSFABRIC_TEST_SLOT=3 pytest tests/lab/test_e2e_dockerd.py
"""
from __future__ import annotations

import os
import shutil
import time

import pytest

from lab import netns
from lab.dockerhost import DockerHost
from lab.messages import tcp_message, udp_message
from security import tokens
from tests.slot import API_PORT, OPENFLOW_PORT, needs_lab

pytestmark = [pytest.mark.lab, needs_lab,
              pytest.mark.skipif(shutil.which("/usr/sbin/dockerd") is None,
                                 reason="needs Debian's docker.io")]

TOKEN = "dockerd-e2e-token"
BLUE = ["-d", "ovsfabric", "--ipam-driver", "ovsfabric", "--subnet", "10.88.0.0/24",
        "-o", "ovsfabric.network=blue", "--ipam-opt", "ovsfabric.network=blue"]
GREEN = ["-d", "ovsfabric", "--ipam-driver", "ovsfabric", "--subnet", "10.89.0.0/24",
         "--internal", "-o", "com.docker.network.driver.mtu=1400",
         "-o", "ovsfabric.network=green", "--ipam-opt", "ovsfabric.network=green"]
SWEEP = ("--orphan-sweep", "1", "--orphan-grace", "3")


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    from lab.controller import ControllerProcess
    workdir = str(tmp_path_factory.mktemp("dockerd"))
    controller = ControllerProcess(os.path.join(workdir, "ovsfabric.db"), lab.controller_ip,
                                   API_PORT, OPENFLOW_PORT, token=TOKEN,
                                   api_ip=lab.controller_ip)
    controller.start()
    hosts = []
    try:
        controller.register(lab.hosts)
        for host in lab.hosts[:2]:
            hosts.append(DockerHost(host, controller.url, lab.workdir,
                                    token=tokens.host_token(TOKEN, host.name),
                                    plugin_args=SWEEP))
            hosts[-1].start()
        yield controller, hosts[0], hosts[1]
    finally:
        for dh in hosts:
            dh.stop()
        controller.stop()


def endpoints(controller, host: str) -> list[dict]:
    return controller.client.endpoints(host=host)


def of_links(dh: DockerHost) -> list[str]:
    """The plugin's veth ends in the host's namespace (not those inside containers)."""
    out = netns.ip("-o", "link", "show", netns=dh.host.netns).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line]
    return [n for n in names if n.startswith(("ofh", "ofc"))]


def of_ports(dh: DockerHost) -> list[str]:
    return [p for p in dh.host.vsctl("list-ports", "br-int").split() if p.startswith("ofh")]


def fabric_state(controller) -> list:
    api = controller.client
    return [(n["name"], n["mtu"], sorted(n["aliases"]), api.addresses(n["id"]),
             sorted(e["ip"] for e in api.endpoints(network=n["id"]))) for n in api.networks()]


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s")


# ---- the scenario, in order ------------------------------------------------------------------

def test_one_network_on_two_hosts_as_the_readme_says(env):
    controller, h1, h2 = env
    ids = [dh.docker("network", "create", *BLUE, "blue") for dh in (h1, h2)]
    blue = controller.client.network("blue")
    assert {f"docker:h1:{ids[0]}", f"docker:h2:{ids[1]}"} <= set(blue["aliases"])
    assert [n["name"] for n in controller.client.networks()] == ["blue"]


def test_tcp_udp_and_ping_between_containers(env):
    controller, h1, h2 = env
    a, a2, b = h1.run("web1", "blue"), h1.run("web2", "blue"), h2.run("db1", "blue")
    assert len({a, a2, b}) == 3
    assert sorted(e["ip"] for e in controller.client.endpoints()) == sorted([a, a2, b])
    assert h1.ping("web1", b) and h2.ping("db1", a)
    assert h1.ping("web1", "10.88.0.1"), "the gateway answers in the fabric"
    # Across hosts, both ways, and on one host.
    assert tcp_message(h1, "web1", h2, "db1", b, "across-tcp") == "across-tcp"
    assert tcp_message(h2, "db1", h1, "web1", a, "back-tcp") == "back-tcp"
    assert tcp_message(h1, "web2", h1, "web1", a, "local-tcp") == "local-tcp"
    assert udp_message(h1, "web1", h2, "db1", b, "across-udp") == "across-udp"
    assert udp_message(h1, "web1", h1, "web2", a2, "local-udp") == "local-udp"


def test_ip_and_mac_address_are_honoured(env):
    controller, h1, h2 = env
    ip = h2.run("fixed", "blue", "--ip", "10.88.0.50", "--mac-address", "02:aa:bb:cc:dd:ee")
    assert ip == "10.88.0.50"
    assert h2.exec("fixed", "cat", "/sys/class/net/eth0/address") == "02:aa:bb:cc:dd:ee"
    ep = next(e for e in endpoints(controller, "h2") if e["ip"] == ip)
    assert ep["mac"] == "02:aa:bb:cc:dd:ee"
    assert tcp_message(h1, "web1", h2, "fixed", ip, "to-fixed") == "to-fixed"
    assert "already used" in h1.refused("run", "-d", "--name", "dup", "--network", "blue",
                                        "--ip", "10.88.0.50", "ovsfabric-busybox", "true")
    h1.docker("rm", "-f", "dup")


def test_mtu_and_internal_networks(env):
    controller, h1, h2 = env
    for dh in (h1, h2):
        dh.docker("network", "create", *GREEN, "green")
    assert controller.client.network("green")["mtu"] == 1400
    assert controller.client.network("green")["egress"] is False, "--internal: no way out"
    g1, g2 = h1.run("g1", "green"), h2.run("g2", "green")
    for dh, name in ((h1, "g1"), (h2, "g2")):
        assert dh.exec(name, "cat", "/sys/class/net/eth0/mtu") == "1400"
    assert tcp_message(h1, "g1", h2, "g2", g2, "internal-tcp") == "internal-tcp"
    assert g1 != g2


def test_network_connect_and_disconnect(env):
    controller, h1, h2 = env
    before = len(of_links(h1))
    h1.docker("network", "connect", "green", "web1")
    a_green = h1.address("web1", "green")
    assert a_green.startswith("10.89.0.")
    assert tcp_message(h1, "web1", h2, "g2", h2.address("g2", "green"), "connected") == "connected"
    assert len(of_links(h1)) == before + 1, "the container end is in the container"
    h1.docker("network", "disconnect", "green", "web1")
    assert a_green not in [e["ip"] for e in endpoints(controller, "h1")]
    assert len(of_links(h1)) == before
    assert h1.ping("web1", h2.address("db1", "blue")), "the other network is untouched"


def test_stop_and_start(env):
    controller, h1, h2 = env
    b = h2.address("db1", "blue")
    h2.docker("stop", "db1")
    assert b not in [e["ip"] for e in endpoints(controller, "h2")]
    h2.docker("start", "db1")
    b = h2.address("db1", "blue")
    assert tcp_message(h1, "web1", h2, "db1", b, "after-start") == "after-start"


def test_rm_f_removes_endpoint_port_veth_and_address(env):
    controller, h1, _ = env
    ip = h1.address("web2", "blue")
    ports = of_ports(h1)
    h1.docker("rm", "-f", "web2")
    assert ip not in [e["ip"] for e in controller.client.endpoints()]
    assert ip not in [r["ip"] for r in controller.client.addresses("blue")]
    assert len(of_ports(h1)) == len(ports) - 1
    assert sorted(of_ports(h1)) == sorted(e["port"] for e in endpoints(controller, "h1"))


def test_aux_addresses_are_kept_from_containers(env):
    controller, h1, h2 = env
    h1.docker("network", "create", "-d", "ovsfabric", "--ipam-driver", "ovsfabric",
              "--subnet", "10.90.0.0/24", "--aux-address", "router=10.90.0.2",
              "-o", "ovsfabric.network=red", "red")
    # Docker takes --ip only on a network created with --subnet.
    h2.docker("network", "create", "-d", "ovsfabric", "--ipam-driver", "ovsfabric",
              "--subnet", "10.90.0.0/24", "--ipam-opt", "ovsfabric.network=red", "red")
    for dh in (h1, h2):  # its own host's containers too
        said = dh.refused("run", "-d", "--name", "taker", "--network", "red",
                          "--ip", "10.90.0.2", "ovsfabric-busybox", "true")
        assert "reserved by 'aux.h1'" in said
        dh.docker("rm", "-f", "taker")
    assert h1.run("r1", "red") != "10.90.0.2"
    h1.docker("rm", "-f", "r1")
    assert [(r["ip"], r["owner"]) for r in controller.client.addresses("red")] == [
        ("10.90.0.2", "aux.h1")]


@pytest.mark.parametrize("args, says", [
    (["-d", "ovsfabric", "--ipam-driver", "ovsfabric", "--subnet", "10.88.0.0/24",
      "--ipam-opt", "ovsfabric.network=blue"], "fabric network blue is already Docker network"),
    (["-d", "ovsfabric", "--ipam-driver", "ovsfabric", "--subnet", "10.91.0.0/24", "--ipv6",
      "--subnet", "fd00:91::/64", "-o", "ovsfabric.network=six"], "IPv6 is not supported"),
    (["-d", "ovsfabric", "--subnet", "10.92.0.0/24", "-o", "ovsfabric.network=plain"],
     "add --ipam-driver ovsfabric"),
    (["-d", "ovsfabric", "--ipam-driver", "ovsfabric", "--subnet", "10.93.0.0/24",
      "-o", "ovsfabric.netwrok=blue"], "unknown -o option ovsfabric.netwrok"),
    (["-d", "ovsfabric", "--ipam-driver", "ovsfabric", "--subnet", "10.93.0.0/24",
      "--ipam-opt", "colour=blue"], "unknown --ipam-opt option colour"),
    (["-d", "ovsfabric", "--ipam-driver", "ovsfabric", "--subnet", "10.94.0.0/24",
      "-o", "ovsfabric.network=one", "--ipam-opt", "ovsfabric.network=two"], "same name"),
    (["-d", "ovsfabric", "--ipam-driver", "ovsfabric", "--subnet", "10.89.0.0/24",
      "-o", "com.docker.network.driver.mtu=1300", "-o", "ovsfabric.network=green",
      "--ipam-opt", "ovsfabric.network=green"], "has MTU 1400, not 1300"),
], ids=["second-for-one-fabric-network", "ipv6", "docker-ipam", "typo", "ipam-typo",
        "two-names", "mtu-mismatch"])
def test_refused_creates_say_why_and_change_nothing(env, args, says):
    controller, h1, _ = env
    before = fabric_state(controller)
    assert says in h1.refused("network", "create", *args, "refused")
    assert fabric_state(controller) == before
    assert "refused" not in h1.docker("network", "ls", "--format", "{{.Name}}").split()


def test_plugin_killed_between_calls(env):
    controller, h1, h2 = env
    h2.plugin.kill()  # SIGKILL: its socket file stays behind
    h2.plugin.start()
    ip = h2.run("after-kill", "blue")
    assert tcp_message(h1, "web1", h2, "after-kill", ip, "new-plugin") == "new-plugin"
    h2.docker("rm", "-f", "after-kill")
    assert ip not in [e["ip"] for e in controller.client.endpoints()]


def test_controller_down_during_rm_f_orphan_swept_after(env):
    controller, h1, _ = env
    ip = h1.run("doomed", "blue")
    controller.stop()
    try:
        h1.docker("rm", "-f", "doomed")  # Docker only logs the plugin's errors
    finally:
        controller.start()
    wait_for(lambda: ip not in [e["ip"] for e in controller.client.endpoints()], 30,
             "the orphan swept")
    assert "no container holds it" in h1.plugin.log()
    assert sorted(of_ports(h1)) == sorted(e["port"] for e in endpoints(controller, "h1"))
    assert ip not in [r["ip"] for r in controller.client.addresses("blue")]
    assert h1.run("reuse", "blue", "--ip", ip) == ip, "its address is free again"
    h1.docker("rm", "-f", "reuse")


def test_plugin_down_during_stop_orphan_swept_after(env):
    controller, _, h2 = env
    ip = h2.address("fixed", "blue")
    h2.plugin.kill()
    try:
        h2.docker("stop", "fixed", timeout=180)  # dockerd retries each call, then logs it
    finally:
        h2.plugin.start()
    wait_for(lambda: ip not in [e["ip"] for e in controller.client.endpoints()], 30,
             "the orphan swept")
    assert sorted(of_ports(h2)) == sorted(e["port"] for e in endpoints(controller, "h2"))
    assert not [n for n in of_links(h2) if n.startswith("ofc")], "no container end left"
    h2.docker("start", "fixed")
    assert h2.address("fixed", "blue") == ip


def test_dockerd_graceful_restart(env):
    controller, h1, h2 = env
    h2.dockerd.stop()
    # Live-restore is off: a graceful stop takes every container's endpoint down.
    assert endpoints(controller, "h2") == [] and of_ports(h2) == []
    h2.dockerd.start()
    for name in ("db1", "g2"):
        h2.docker("start", name)
    b = h2.address("db1", "blue")
    assert tcp_message(h1, "web1", h2, "db1", b, "after-restart") == "after-restart"
    assert len(endpoints(controller, "h2")) == 2


def test_dockerd_kill_9_and_restart(env):
    controller, h1, h2 = env
    h1.dockerd.kill()
    h1.dockerd.start()
    # Docker replays its containers' addresses and then tears their endpoints down.
    wait_for(lambda: endpoints(controller, "h1") == [], 30, "h1's endpoints torn down")
    assert of_ports(h1) == []
    h1.docker("start", "web1")
    a = h1.address("web1", "blue")
    assert tcp_message(h2, "db1", h1, "web1", a, "after-crash") == "after-crash"


def test_everything_removed_leaves_nothing(env):
    controller, h1, h2 = env
    for dh in (h1, h2):
        names = dh.docker("ps", "-aq").split()
        if names:
            dh.docker("rm", "-f", *names)
        for net in ("blue", "green", "red"):
            if net in dh.docker("network", "ls", "--format", "{{.Name}}").split():
                dh.docker("network", "rm", net)
        assert of_links(dh) == [] and of_ports(dh) == []
    assert controller.client.endpoints() == []
    # Named fabric networks stay, bare.
    assert [(n["name"], n["aliases"]) for n in controller.client.networks()] == [
        ("blue", []), ("green", []), ("red", [])]
    assert all(controller.client.addresses(n) == [] for n in ("blue", "green", "red"))
