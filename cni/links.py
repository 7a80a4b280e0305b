"""The attachment's veth pair and the container's side of it, through iproute2 and ethtool
(each command a few milliseconds; a netlink library would cost more to import)."""
from __future__ import annotations

import fcntl
import json
import socket
import struct
import subprocess

from .errors import EXISTS, INTERFACE_PROBLEM, IO_FAILURE, CniError

SIOCGIFHWADDR = 0x8927


def _run(argv: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CniError(IO_FAILURE, f"{argv[0]}: {exc}") from None
    if done.returncode != 0:
        raise CniError(IO_FAILURE, f"{' '.join(argv[:3])}: {done.stderr.strip()}",
                       (stdin or "").strip())
    return done.stdout


def _in_netns(netns: str, argv: list[str], stdin: str | None = None) -> str:
    return _run(["nsenter", f"--net={netns}", *argv], stdin)


# These two ask the kernel of this process's network namespace (sysfs may be another's).
def host_link_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def host_mac(name: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        answer = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", name.encode()))
    return ":".join(f"{b:02x}" for b in answer[18:24])


def create_pair(host_end: str, netns: str, ifname: str, mtu: int, alias: str) -> None:
    """The host end up (ready for the bridge) with ``alias``; the other end in ``netns`` as
    ``ifname``, down, its transmit checksums computed by the stack."""
    # The peer is made in the container's namespace: moving it there afterwards costs the
    # kernel some 20 ms (measured by bench/cni.py), creating it there 3. An interface name
    # taken in the pod is told by the creation that fails.
    try:
        _run(["ip", "-batch", "-"],
             f"link add {host_end} mtu {mtu} type veth peer name {ifname} mtu {mtu} "
             f"netns {netns}\n"
             f"link set {host_end} alias \"{alias}\"\n")
    except CniError as exc:
        if "File exists" in exc.msg:
            raise CniError(EXISTS, f"{ifname} exists in {netns} already") from None
        raise
    _no_ipv6(host_end)
    # The userspace datapath fills in no checksum a veth left to the receiver: without this
    # every TCP and UDP segment would arrive corrupt.
    _in_netns(netns, ["ethtool", "-K", ifname, "tx", "off"])
    _run(["ip", "link", "set", host_end, "up"])


def _no_ipv6(host_end: str) -> None:
    """The host's stack would send its IPv6 chatter (DAD, router and multicast listener
    solicitations) out of the host end, straight to the pod and past the fabric."""
    try:
        with open(f"/proc/sys/net/ipv6/conf/{host_end}/disable_ipv6", "w") as f:
            f.write("1")
    except FileNotFoundError:
        pass  # no IPv6 in this kernel


def configure(netns: str, ifname: str, mac: str, address: str, gateway: str) -> None:
    """``address`` (CIDR) on ``ifname`` with ``mac``, up, the default route through
    ``gateway``."""
    _in_netns(netns, ["ip", "-batch", "-"],
              f"link set {ifname} address {mac}\n"
              f"addr add {address} dev {ifname}\n"
              f"link set {ifname} up\n"
              f"route add default via {gateway} dev {ifname}\n")


def delete_host_link(name: str) -> None:
    """Deletes the pair by its host end; a pair already gone is fine."""
    finish_deleting(start_deleting(name))


def start_deleting(name: str) -> tuple[str, subprocess.Popen | None]:
    """Starts deleting the pair by its host end (the kernel takes some 20 ms): meanwhile the
    caller can talk to the controller. ``finish_deleting`` waits for it."""
    if not host_link_exists(name):
        return name, None
    try:
        return name, subprocess.Popen(["ip", "link", "del", name], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise CniError(IO_FAILURE, f"ip: {exc}") from None


def finish_deleting(deleting: tuple[str, subprocess.Popen | None]) -> None:
    """A pair already gone (another deleted it meanwhile) is fine."""
    name, process = deleting
    if process is None:
        return
    _, stderr = process.communicate()
    if process.returncode != 0 and host_link_exists(name):
        raise CniError(IO_FAILURE, f"ip link del {name}: {stderr.strip()}")


def host_veths() -> list[dict]:
    """This namespace's veths: [{ifname, ifalias, ...}] as ``ip -j`` gives them."""
    return json.loads(_run(["ip", "-j", "link", "show", "type", "veth"]) or "[]")


def netns_links(netns: str) -> list[str]:
    return [link["ifname"] for link in json.loads(
        _in_netns(netns, ["ip", "-j", "link", "show"]) or "[]")]


def inspect(netns: str, ifname: str) -> dict:
    """What ``ifname`` in ``netns`` has: {mac, mtu, up, addresses (CIDR), default_gateways}."""
    links = json.loads(_in_netns(netns, ["ip", "-j", "addr", "show", "dev", ifname])
                       if ifname in netns_links(netns) else "[]")
    if not links:
        raise CniError(INTERFACE_PROBLEM, f"{ifname} does not exist in {netns}")
    link = links[0]
    routes = json.loads(_in_netns(netns, ["ip", "-j", "route", "show", "default"]) or "[]")
    return {
        "mac": link.get("address"), "mtu": link.get("mtu"),
        "up": "UP" in link.get("flags", []),
        "addresses": [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                      if a.get("family") == "inet"],
        "default_gateways": [r.get("gateway") for r in routes if r.get("dev") == ifname],
    }
