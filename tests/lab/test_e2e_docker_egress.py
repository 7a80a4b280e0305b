"""Docker's own way in and out on the fabric, with a real dockerd on a lab host: `docker run -p`
publishes a container's port on the host's address, reachable from an outside namespace on the
underlay until the container goes; a container reaches the outside from the host's address;
an `--internal` network's container does not.

Run with a slot of your own: OVSFABRIC_TEST_SLOT=3 pytest tests/lab/test_e2e_docker_egress.py
"""
from __future__ import annotations

import ipaddress
import os
import shutil

import pytest

from lab.dockerhost import DockerHost
from lab.outside import WHO_PORT, next_hop_outside
from security import tokens
from tests.helpers import eventually
from tests.slot import API_PORT, OPENFLOW_PORT, UNDERLAY, needs_lab

pytestmark = [pytest.mark.lab, needs_lab,
              pytest.mark.skipif(shutil.which("/usr/sbin/dockerd") is None,
                                 reason="needs Debian's docker.io")]

TOKEN = "docker-egress-e2e-token"
OUTSIDE_IP = str(ipaddress.ip_network(UNDERLAY)[200])
WEB = ["-d", "ovsfabric", "--ipam-driver", "ovsfabric", "--subnet", "10.86.0.0/24",
       "-o", "ovsfabric.network=web", "--ipam-opt", "ovsfabric.network=web"]
CLOSED = ["-d", "ovsfabric", "--ipam-driver", "ovsfabric", "--subnet", "10.85.0.0/24",
          "--internal", "-o", "ovsfabric.network=closed", "--ipam-opt",
          "ovsfabric.network=closed"]
# busybox httpd in the container answers on its port 80 with the file it is given.
SERVE = ["sh", "-c", 'trap "exit 0" TERM; mkdir -p /www; echo inside > /www/index.html; '
         'httpd -f -p 80 -h /www']


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    from lab.controller import ControllerProcess
    workdir = str(tmp_path_factory.mktemp("docker-egress"))
    controller = ControllerProcess(os.path.join(workdir, "ovsfabric.db"), lab.controller_ip,
                                   API_PORT, OPENFLOW_PORT, token=TOKEN,
                                   api_ip=lab.controller_ip)
    controller.start()
    docker_host = None
    h1 = lab.host("h1")
    try:
        controller.register(lab.hosts)
        with next_hop_outside(lab, [h1]) as outside:
            try:
                docker_host = DockerHost(h1, controller.url, lab.workdir,
                                         token=tokens.host_token(TOKEN, h1.name))
                docker_host.start()
                yield controller, docker_host, outside
            finally:
                if docker_host is not None:
                    docker_host.stop()
    finally:
        controller.stop()


def test_docker_run_p_publishes_on_the_hosts_address_until_the_container_goes(env, lab):
    controller, dh, outside = env
    dh.docker("network", "create", *WEB, "web")
    dh.docker("run", "-d", "--name", "site", "--network", "web", "-p", "8081:80",
              "ovsfabric-busybox", *SERVE)
    [ep] = controller.client.endpoints(host="h1")
    assert [(p["protocol"], p["port"], p["host_port"])
            for p in controller.client.published(ep["id"])] == [("tcp", 80, 8081)]
    address = lab.host("h1").tunnel_ip
    assert eventually(lambda: outside.http_get(address, 8081) == "inside", 15)
    dh.docker("rm", "-f", "site")
    assert eventually(lambda: outside.http_get(address, 8081) is None, 10)


def test_a_container_reaches_the_outside_from_the_hosts_address(env, lab):
    _, dh, _ = env
    dh.run("client", "web")
    code = ("import socket,sys;s=socket.create_connection((sys.argv[1],int(sys.argv[2])),"
            "timeout=2);print(s.recv(100).decode().split()[0])")

    def seen():
        proc = dh.in_netns("client", "python3", "-c", code, OUTSIDE_IP, str(WHO_PORT))
        out, _ = proc.communicate(timeout=10)
        return out.strip() if proc.returncode == 0 else None
    assert eventually(seen, 15) == lab.host("h1").tunnel_ip
    dh.docker("rm", "-f", "client")


def test_an_internal_networks_container_does_not(env, lab):
    controller, dh, outside = env
    dh.docker("network", "create", *CLOSED, "closed")
    assert controller.client.network("closed")["egress"] is False
    dh.run("shut", "closed")
    capture = outside.capture(f"tcp port {WHO_PORT}")
    proc = dh.in_netns("shut", "python3", "-c",
                       "import socket,sys;socket.create_connection((sys.argv[1],8080),"
                       "timeout=3)", OUTSIDE_IP)
    proc.communicate(timeout=10)
    lines = capture.stop()
    assert proc.returncode != 0 and lines == [], lines
    dh.docker("rm", "-f", "shut")
    for network in ("closed", "web"):
        dh.docker("network", "rm", network)
