"""Network namespaces and links, through the `ip` command."""

from __future__ import annotations

import time

from .proc import run, stop_pid

IFNAMSIZ = 15  # longest interface name the kernel accepts


def check_ifname(name: str) -> str:
    if not 0 < len(name) <= IFNAMSIZ:
        raise ValueError(f"interface name {name!r} is longer than {IFNAMSIZ} characters")
    return name


def ip(*args, netns: str | None = None, check: bool = True):
    """`ip [-n NETNS] ARGS...`"""
    return run(["ip", *(["-n", netns] if netns else []), *args], check=check)


def sysctl(netns: str | None, **values) -> None:
    """sysctl(ns, **{"net.ipv4.conf.ul0.arp_ignore": 1})"""
    run(["sysctl", "-qw", *(f"{k}={v}" for k, v in values.items())], netns=netns)


def add(name: str) -> None:
    """A fresh namespace: IPv6 off (DAD/MLD/RS chatter spoils isolation checks), lo up."""
    ip("netns", "add", name)
    sysctl(name, **{"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1})
    ip("link", "set", "lo", "up", netns=name)


def delete(name: str) -> None:
    """Stop every process inside the namespace, then delete it.

    `ip netns del` only unmounts the name: a namespace lives on, with its devices, while
    any process is still inside it.
    """
    for pid in pids(name):
        stop_pid(pid)
    ip("netns", "del", name, check=False)


def pids(name: str) -> list[int]:
    out = run(["ip", "netns", "pids", name], check=False).stdout
    return [int(p) for p in out.split()]


def names(prefix: str) -> list[str]:
    """Namespaces called `prefix` or `prefix-*`."""
    out = ip("netns", "list").stdout
    found = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in found if n == prefix or n.startswith(prefix + "-")]


def links(prefix: str, netns: str | None = None) -> list[str]:
    """Links called `prefix-*` (in the root namespace unless netns is given)."""
    out = ip("-o", "link", "show", netns=netns).stdout
    # "7: ovf-u1@if2: <BROADCAST,..." -> "ovf-u1"
    found = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line]
    return [n for n in found if n.startswith(prefix + "-")]


def no_ipv6(dev: str) -> None:
    """IPv6 off on one root-namespace device (the root namespace is not ours to reconfigure)."""
    sysctl(None, **{f"net.ipv6.conf.{dev}.disable_ipv6": 1})


def add_bridge(name: str) -> None:
    ip("link", "add", check_ifname(name), "type", "bridge")
    no_ipv6(name)


def add_veth(name: str, peer: str, peer_netns: str, netns: str | None = None,
             mtu: int | None = None) -> None:
    """A veth pair: `name` in `netns` (root if None), `peer` created directly in `peer_netns`."""
    ip("link", "add", check_ifname(name), *(["mtu", mtu] if mtu else []), "type", "veth",
       "peer", "name", check_ifname(peer), *(["mtu", mtu] if mtu else []), "netns", peer_netns,
       netns=netns)


def wait_links_gone(prefix: str, timeout: float = 5.0) -> list[str]:
    """The kernel tears down a deleted namespace's veths asynchronously: wait for it."""
    deadline = time.monotonic() + timeout
    while (left := links(prefix)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
