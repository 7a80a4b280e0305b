"""OpenFlow and OVSDB over mutual TLS on the lab: hosts and controller with certificates
from `ovsfabric certs`; a switch with a certificate from another CA is not let in."""
from __future__ import annotations

import socket
import ssl

import pytest

from lab.controller import ControllerProcess
from security import certs
from tests.slot import API_PORT, OPENFLOW_PORT, needs_lab

pytestmark = [pytest.mark.lab, needs_lab]


@pytest.fixture(scope="module")
def tls_fabric(lab, tmp_path_factory):
    pki = str(tmp_path_factory.mktemp("pki"))
    certs.make_ca(pki)
    certs.make_cert(pki, "controller", [lab.controller_ip])
    for host in lab.hosts[:2]:
        certs.make_cert(pki, host.name, [host.mgmt_ip])
    targets = {h.name: h.enable_tls(f"{pki}/{h.name}.pem", f"{pki}/{h.name}-key.pem",
                                    f"{pki}/ca.pem") for h in lab.hosts[:2]}
    state = str(tmp_path_factory.mktemp("tls-state") / "ovsfabric.db")
    controller = ControllerProcess(
        state, lab.controller_ip, API_PORT + 1, OPENFLOW_PORT + 1,
        extra_args=("--tls-cert", f"{pki}/controller.pem", "--tls-key",
                    f"{pki}/controller-key.pem", "--tls-ca", f"{pki}/ca.pem"))
    controller.start()
    containers = []
    try:
        for host in lab.hosts[:2]:
            controller.client.create_host(host.name, targets[host.name], host.tunnel_ip,
                                          datapath_type="netdev")
        controller.wait_connected([h.name for h in lab.hosts[:2]])
        yield controller, pki, targets, containers
        for ep in controller.client.endpoints():
            controller.client.delete_endpoint(ep["id"])
        for name in [h.name for h in lab.hosts[:2]]:
            controller.client.delete_host(name)
    finally:
        for container in containers:
            lab.remove_container(container)
        controller.stop()


def test_sessions_use_tls_and_traffic_flows(lab, tls_fabric):
    controller, _, targets, containers = tls_fabric
    h1, h2 = lab.hosts[:2]
    assert h1.vsctl("get-controller", "br-int").strip() == \
        f"ssl:{lab.controller_ip}:{OPENFLOW_PORT + 1}"
    assert [h["ovsdb"] for h in controller.client.hosts()] == [targets["h1"], targets["h2"]]
    assert all(h["connected"] for h in controller.client.hosts())
    controller.client.create_network("tls", "10.60.0.0/24")
    pair = []
    for host, name in ((h1, "ta"), (h2, "tb")):
        container = lab.add_container(host.name, name)
        containers.append(container)
        ep = controller.client.create_endpoint("tls", host.name, port=container.port)
        container.configure(ep["mac"], ep["ip"], ep["prefix_len"], ep["mtu"])
        pair.append((container, ep))
    assert pair[0][0].ping(pair[1][1]["ip"], count=2, timeout=2)


def _handshake(lab, cert: str | None, key: str | None, ca: str) -> bytes:
    """Opens TLS to the controller's OpenFlow port as a switch would; returns its first
    bytes (an OpenFlow HELLO when it is let in)."""
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = False
    if cert:
        context.load_cert_chain(cert, key)
    with socket.create_connection((lab.controller_ip, OPENFLOW_PORT + 1), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            tls.sendall(bytes([4, 0, 0, 8, 0, 0, 0, 1]))  # OpenFlow 1.3 HELLO
            return tls.recv(8)


def test_only_switches_with_a_certificate_of_the_ca_get_in(lab, tls_fabric, tmp_path):
    _, pki, _, _ = tls_fabric
    hello = _handshake(lab, f"{pki}/h1.pem", f"{pki}/h1-key.pem", f"{pki}/ca.pem")
    assert hello[:2] == bytes([4, 0]), "a certificate of the fabric's CA gets an OpenFlow HELLO"
    rogue = str(tmp_path)
    certs.make_ca(rogue)
    certs.make_cert(rogue, "h9")
    for cert, key in ((f"{rogue}/h9.pem", f"{rogue}/h9-key.pem"), (None, None)):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            if _handshake(lab, cert, key, f"{pki}/ca.pem") == b"":
                raise ConnectionError("closed")  # TLS 1.3 reports the refusal on read
