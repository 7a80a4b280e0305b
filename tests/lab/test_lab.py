"""End-to-end checks of the namespace lab (root and Open vSwitch needed)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from lab import Lab
from lab.proc import alive, state
from tests.helpers import ROOT

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ovs-vswitchd") is None,
                       reason="needs root and Open vSwitch"),
]

PREFIX = "ovft"  # not the default "ovf": a manual lab stays untouched
# Its own management subnet too: two labs with the same controller address in the root
# namespace would steal each other's replies.
MGMT = "198.18.201.0/24"


def ip_out(*args) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def assert_all_gone(pids):
    assert not [n for n in ip_out("netns", "list").split() if n.startswith(PREFIX + "-")]
    assert f"{PREFIX}-" not in ip_out("-o", "link", "show")
    for pid in pids:
        assert not alive(pid), f"pid {pid} still running (state {state(pid)})"
    assert not os.path.exists(f"/tmp/{PREFIX}-lab")


@pytest.fixture(scope="module")
def lab():
    lab = Lab(n_hosts=2, prefix=PREFIX, mgmt_subnet=MGMT)
    lab.up()
    yield lab
    lab.down()


def test_ovsdbs_answer(lab):
    for h in lab.hosts:
        out = h.vsctl("show")
        assert "Bridge br-phy" in out and "Port ul0" in out
        assert "br-int" not in out  # the controller's job
        assert all(h.pids().values())


def test_underlay_and_management_ping(lab):
    h1, h2 = lab.host("h1"), lab.host("h2")
    assert h1.exec("ping", "-c1", "-W2", h2.tunnel_ip).returncode == 0
    assert h2.exec("ping", "-c1", "-W2", lab.controller_ip).returncode == 0


def test_container_port_in_host_namespace(lab):
    h1 = lab.host("h1")
    c = lab.add_container("h1", "c1")
    assert c.port in ip_out("-n", h1.netns, "-o", "link", "show", c.port)
    assert c.port not in ip_out("-o", "link", "show")
    c.configure(mac="02:00:00:00:01:01", ip="10.9.0.1", mtu=1450)
    eth0 = c.exec("ip", "-o", "link", "show", "eth0").stdout
    assert "02:00:00:00:01:01" in eth0 and "mtu 1450" in eth0
    assert "mtu 1450" in ip_out("-n", h1.netns, "-o", "link", "show", c.port)
    # Same name on another host is fine, twice on one host is not.
    lab.add_container("h2", "c1")
    with pytest.raises(ValueError):
        lab.add_container("h1", "c1")
    # Loopback through its own address: exercises ping and the summary parsing.
    assert c.ping("10.9.0.1")
    proc = c.start_ping("10.9.0.1", interval=0.01)
    time.sleep(0.3)
    sent, received = c.stop_ping(proc)
    assert sent > 0 and received == sent


def test_down_removes_everything(lab):
    c = lab.add_container("h2", "c2")
    ping = c.start_ping(lab.host("h2").tunnel_ip)
    pids = [p for h in lab.hosts for p in h.pids().values()] + [ping.pid]
    assert all(pids)
    lab.down()
    assert_all_gone(pids)
    lab.down()  # idempotent


def test_cli_down_removes_leftovers_of_a_killed_run():
    lab = Lab(n_hosts=2, prefix=PREFIX, mgmt_subnet=MGMT)
    lab.up()
    lab.add_container("h1", "c1")
    pids = [p for h in lab.hosts for p in h.pids().values()]
    os.kill(lab.host("h1").pids()["vswitchd"], signal.SIGKILL)  # a crash leaves its pidfile
    # A new process knows nothing of `lab`: only the prefix.
    subprocess.run([sys.executable, "-m", "lab", "down", "--prefix", PREFIX],
                   cwd=ROOT, check=True, capture_output=True)
    assert_all_gone(pids)
