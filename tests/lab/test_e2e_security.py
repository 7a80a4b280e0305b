"""Anti-spoofing and isolation, proven with real traffic and packet captures on the lab.

A failed ping proves little (the reply may be what got lost), so every "reaches no one" is a
tcpdump on the would-be receivers, filtered on the sender, showing zero packets, beside a
positive control: the same capture does show that sender's legitimate packets.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time

import pytest

from tests.slot import needs_lab

pytestmark = [pytest.mark.lab, needs_lab]

SUBNET = "10.30.0.0/24"  # both networks: isolation must hold with the same addresses
BROADCAST = "10.30.0.255"
UNUSED_IP = "10.30.0.123"  # no endpoint in either network: ARPs for it reach no one
SPOOF_MAC = "02:66:66:66:66:66"
SPOOF_IP = "10.30.0.250"

# Sends ARP frames from eth0 through a raw socket: argv = eth_dst op sha spa tha tpa count.
ARP_SENDER = r"""
import socket, sys, time
def mac(text): return bytes.fromhex(text.replace(":", ""))
def ip(text): return socket.inet_aton(text)
eth_dst, op, sha, spa, tha, tpa, count = sys.argv[1:]
frame = (mac(eth_dst) + mac(sha) + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04"
         + int(op).to_bytes(2, "big") + mac(sha) + ip(spa) + mac(tha) + ip(tpa))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(int(count)):
    s.send(frame)
    time.sleep(0.05)
"""


def send_arp(container, eth_dst, op, sha, spa, tha, tpa, count=5) -> None:
    container.exec(sys.executable, "-c", ARP_SENDER, eth_dst, op, sha, spa, tha, tpa, count)


@contextlib.contextmanager
def capture(container, bpf: str):
    """tcpdump on the container's eth0 (promiscuous); yields the list its lines end up in."""
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    # `ip netns exec` execs tcpdump: proc.pid is tcpdump's own.
    proc = subprocess.Popen(["ip", "netns", "exec", container.netns, "tcpdump", "-i", "eth0",
                             "-n", "-e", "-l", "-U", bpf], stdout=out, stderr=err)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            err.seek(0)
            if "listening on" in err.read():
                break
            if proc.poll() is not None:
                err.seek(0)
                raise RuntimeError(f"tcpdump exited: {err.read()}")
            time.sleep(0.05)
        yield lines
        time.sleep(0.5)  # let the last packets arrive
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        out.seek(0)
        lines.extend(line for line in out.read().splitlines() if line.strip())
        out.close()
        err.close()


def quiet_ping(container, *args) -> bool:
    """ping with its own arguments; True if a reply came."""
    return container.exec("ping", "-n", "-q", *args, check=False).returncode == 0


@pytest.fixture(scope="module")
def pods(fabric):
    """red x, z on h1 and y on h2; blue b1 on h1 and b2 on h2; same subnet for both."""
    fabric.client.create_network("sred", SUBNET)
    fabric.client.create_network("sblue", SUBNET)
    pods = {}
    for name, host, network, fields in [
            ("x", "h1", "sred", {}), ("y", "h2", "sred", {}), ("z", "h1", "sred", {}),
            ("b1", "h1", "sblue", {"ip": "10.30.0.102"}),
            ("b2", "h2", "sblue", {"ip": "10.30.0.103"})]:
        container, ep = fabric.attach(host, name, network, **fields)
        pods[name] = container
    for a, b in [("x", "y"), ("x", "z"), ("z", "y"), ("b1", "b2")]:
        assert pods[a].ping(pods[b].ip, count=1, timeout=2), f"{a} -> {b} before any test"
    return pods


@pytest.fixture
def restore_x(pods):
    """x's own MAC and address back after a test that changes them."""
    x = pods["x"]
    mac, ip = x.mac, x.ip
    yield x
    x.exec("ip", "link", "set", "eth0", "down")
    x.configure(mac, ip, 24, x.mtu)
    x.exec("ip", "neigh", "flush", "all")
    assert x.ping(pods["y"].ip, count=1, timeout=2), "x works again with its own identity"


def test_changed_mac_reaches_no_one(pods, restore_x):
    x, y, z = pods["x"], pods["y"], pods["z"]
    # Positive control: x's genuine packets are seen by y's and z's captures.
    with capture(y, f"ether src {x.mac}") as on_y, capture(z, f"ether src {x.mac}") as on_z:
        assert quiet_ping(x, "-c", "2", "-i", "0.2", "-W", "1", y.ip)
        assert quiet_ping(x, "-c", "2", "-i", "0.2", "-W", "1", z.ip)
    assert on_y and on_z
    # Static neighbours: x sends IPv4 straight away, not only ARPs, with the forged MAC.
    x.neigh(y.ip, y.mac)
    x.neigh(z.ip, z.mac)
    x.exec("ip", "link", "set", "eth0", "down")
    x.exec("ip", "link", "set", "eth0", "address", SPOOF_MAC)
    x.exec("ip", "link", "set", "eth0", "up")
    with capture(y, f"ether src {SPOOF_MAC}") as on_y, \
            capture(z, f"ether src {SPOOF_MAC}") as on_z:
        assert not quiet_ping(x, "-c", "3", "-i", "0.2", "-W", "1", y.ip)
        assert not quiet_ping(x, "-c", "3", "-i", "0.2", "-W", "1", z.ip)
        x.exec("ip", "neigh", "flush", "all")  # and its ARPs with the forged MAC
        assert not quiet_ping(x, "-c", "2", "-i", "0.2", "-W", "1", y.ip)
    assert on_y == [] and on_z == [], (on_y, on_z)
    assert z.ping(y.ip, count=1, timeout=2), "the others are not disturbed"


def test_changed_ip_reaches_no_one(pods, restore_x):
    x, y, z = pods["x"], pods["y"], pods["z"]
    x.neigh(y.ip, y.mac)
    x.neigh(z.ip, z.mac)
    x.exec("ip", "addr", "flush", "dev", "eth0")
    x.exec("ip", "addr", "add", f"{SPOOF_IP}/24", "dev", "eth0")
    with capture(y, f"host {SPOOF_IP} or ether src {x.mac}") as on_y, \
            capture(z, f"host {SPOOF_IP} or ether src {x.mac}") as on_z:
        assert not quiet_ping(x, "-c", "3", "-i", "0.2", "-W", "1", y.ip)
        assert not quiet_ping(x, "-c", "3", "-i", "0.2", "-W", "1", z.ip)
        x.exec("ip", "neigh", "flush", "all")  # ARPs from the forged address too
        assert not quiet_ping(x, "-c", "2", "-i", "0.2", "-W", "1", y.ip)
    assert on_y == [] and on_z == [], (on_y, on_z)


def test_taking_another_endpoints_ip_reaches_no_one_and_spares_it(pods, restore_x):
    x, y, z = pods["x"], pods["y"], pods["z"]
    x.neigh(y.ip, y.mac)
    x.exec("ip", "addr", "flush", "dev", "eth0")
    x.exec("ip", "addr", "add", f"{z.ip}/24", "dev", "eth0")  # x poses as z
    with capture(y, f"ether src {x.mac}") as on_y:
        assert not quiet_ping(x, "-c", "3", "-i", "0.2", "-W", "1", y.ip)
    assert on_y == [], on_y
    assert z.ping(y.ip, count=2, timeout=2) and y.ping(z.ip, count=2, timeout=2)
    assert z.mac in y.exec("ip", "neigh", "show", z.ip).stdout


def test_arp_claiming_another_endpoints_ip_reaches_no_one(fabric, pods):
    x, y, z = pods["x"], pods["y"], pods["z"]
    gateway = fabric.client.network("sred")
    assert z.ping(y.ip, count=1, timeout=2)
    assert z.ping(gateway["gateway"], count=1, timeout=2)
    assert y.mac in z.exec("ip", "neigh", "show", y.ip).stdout
    time.sleep(1.2)  # past the kernel's ARP locktime (1 s): a forged answer would now count
    bcast, zero = "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"
    forged = [
        (bcast, 1, x.mac, y.ip, zero, y.ip),  # gratuitous request: "y's address is at x"
        (bcast, 2, x.mac, y.ip, zero, y.ip),  # gratuitous reply
        (z.mac, 2, x.mac, y.ip, z.mac, z.ip),  # reply straight to z
        (z.mac, 2, x.mac, gateway["gateway"], z.mac, z.ip),  # "the gateway is at x"
        (bcast, 1, x.mac, y.ip, zero, UNUSED_IP),  # a request asked from y's address
    ]
    with capture(z, f"arp and ether src {x.mac}") as on_z, \
            capture(y, f"arp and ether src {x.mac}") as on_y:
        for frame in forged:
            send_arp(x, *frame)
    assert on_z == [] and on_y == [], (on_z, on_y)
    # Positive control: x's honest broadcast reaches both captures. (No endpoint ever sees
    # an ARP request, honest or not: the fabric answers them.)
    with capture(z, f"ether src {x.mac}") as on_z, capture(y, f"ether src {x.mac}") as on_y:
        quiet_ping(x, "-b", "-c", "2", "-i", "0.2", "-W", "1", BROADCAST)
    assert on_z and on_y
    # z still knows y and the gateway by their own MACs, and still reaches y.
    assert y.mac in z.exec("ip", "neigh", "show", y.ip).stdout
    for entry in z.exec("ip", "neigh", "show").stdout.splitlines():
        assert x.mac not in entry or entry.startswith(f"{x.ip} "), entry  # x's MAC: x's IP only
    assert gateway["gateway_mac"] in z.exec("ip", "neigh", "show", gateway["gateway"]).stdout
    assert z.ping(y.ip, count=2, timeout=2) and y.ping(z.ip, count=2, timeout=2)


def test_nothing_of_red_is_captured_on_blue(pods):
    x, y, b1, b2 = pods["x"], pods["y"], pods["b1"], pods["b2"]
    red_senders = {"x (same host as b1)": x, "y (another host)": y}
    bpf = " or ".join(f"ether src {c.mac}" for c in red_senders.values())
    with capture(b1, bpf) as on_b1:
        for red in red_senders.values():
            red.exec("ip", "neigh", "flush", "all")
            quiet_ping(red, "-c", "2", "-i", "0.2", "-W", "1", UNUSED_IP)  # ARP broadcasts
            quiet_ping(red, "-b", "-c", "2", "-i", "0.2", "-W", "1", BROADCAST)
            send_arp(red, "ff:ff:ff:ff:ff:ff", 1, red.mac, red.ip, "00:00:00:00:00:00",
                     b1.ip, count=3)  # b1's address, asked in red
            red.neigh(b1.ip, b1.mac)  # unicast to b1's very MAC
            quiet_ping(red, "-c", "2", "-i", "0.2", "-W", "1", b1.ip)
    assert on_b1 == [], on_b1
    # Positive control: a blue sender on another host, same kinds of traffic, is captured
    # (its ARP requests are not: the fabric answers them, in blue as in red).
    with capture(b1, f"ether src {b2.mac}") as on_b1:
        b2.exec("ip", "neigh", "flush", "all")
        quiet_ping(b2, "-c", "2", "-i", "0.2", "-W", "1", UNUSED_IP)
        quiet_ping(b2, "-b", "-c", "2", "-i", "0.2", "-W", "1", BROADCAST)
        quiet_ping(b2, "-c", "2", "-i", "0.2", "-W", "1", b1.ip)
    assert any(BROADCAST in line and "ICMP echo request" in line for line in on_b1), on_b1
    assert any(f"> {b1.ip}: ICMP echo request" in line for line in on_b1), on_b1
    assert not any("ARP" in line for line in on_b1), on_b1
