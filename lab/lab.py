"""The lab topology: N hosts on an underlay bridge and a management bridge.

Root namespace                      host namespace <prefix>-hI
  <prefix>-ul   (bridge, no IP)  --  <prefix>-uI == ul0    -> br-phy (OVS netdev, standalone)
                                                              carries the tunnel address
  <prefix>-mgmt (bridge, .1.1)   --  <prefix>-mI == mgmt0  (management address, to the controller)
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil

from . import cgroups, dockerd, hostsetup, netns, podman
from .container import Container
from .host import LabHost
from .proc import stop_pidfile

log = logging.getLogger("lab")

UNDERLAY_MTU = 1500
MARKER = ".ovsfabric-lab"  # only a workdir holding this file is ever deleted


def default_workdir(prefix: str) -> str:
    return f"/tmp/{prefix}-lab"


def cleanup(prefix: str, workdir: str | None = None) -> None:
    """Remove everything a lab with this prefix may have left, even from a killed run."""
    workdir = os.path.abspath(workdir or default_workdir(prefix))
    # Daemons first, by the PIDs in their pidfiles; dockerds and Podmans' mount namespaces
    # before the OVS their containers are plugged into.
    podman.stop_leftovers(workdir)
    dockerd.stop_leftovers(workdir)
    if os.path.isdir(workdir):
        for entry in sorted(os.scandir(workdir), key=lambda e: e.name):
            if entry.is_dir():
                for name in ("vswitchd.pid", "ovsdb.pid"):
                    if (pid := stop_pidfile(os.path.join(entry.path, name))) is not None:
                        log.info("stopped %s/%s (pid %d)", entry.name, name[:-4], pid)
    # Containers' namespaces before their hosts': longest names first.
    for name in sorted(netns.names(prefix), key=len, reverse=True):
        log.info("deleting netns %s", name)
        netns.delete(name)
    for name in netns.links(prefix):
        netns.ip("link", "del", name, check=False)  # veths may already be going with their netns
    if left := netns.wait_links_gone(prefix):
        raise RuntimeError(f"links left behind: {left}")
    # Named by --cgroup-parent; the kernel's, so they outlive the daemons and namespaces.
    cgroups.remove_cgroups(prefix)
    if os.path.isfile(os.path.join(workdir, MARKER)):
        shutil.rmtree(workdir)
    elif os.path.isdir(workdir) and not os.listdir(workdir):
        os.rmdir(workdir)


class Lab:
    def __init__(self, n_hosts: int = 3, prefix: str = "ovf", workdir: str | None = None, *,
                 underlay_subnet: str = "198.18.0.0/24", mgmt_subnet: str = "198.18.1.0/24"):
        if not re.fullmatch(r"[a-z][a-z0-9]*", prefix):
            raise ValueError(f"prefix {prefix!r}: lowercase letters and digits only")
        if not 1 <= n_hosts <= 99:
            raise ValueError("n_hosts must be 1..99")
        self.n_hosts = n_hosts
        self.prefix = prefix
        # Absolute: the daemons chdir to / when they detach.
        self.workdir = os.path.abspath(workdir or default_workdir(prefix))
        self.ul_bridge = netns.check_ifname(f"{prefix}-ul")
        self.mgmt_bridge = netns.check_ifname(f"{prefix}-mgmt")
        netns.check_ifname(f"{prefix}-u{n_hosts}")
        ul = ipaddress.ip_network(underlay_subnet)
        self.underlay_subnet = str(ul)
        mgmt = ipaddress.ip_network(mgmt_subnet)
        self.mgmt_prefix_len = mgmt.prefixlen
        self.controller_ip = str(mgmt[1])
        self.hosts = [
            LabHost(name=f"h{i}", netns=f"{prefix}-h{i}",
                    rundir=os.path.join(self.workdir, f"h{i}"),
                    tunnel_ip=str(ul[10 + i]), mgmt_ip=str(mgmt[10 + i]),
                    prefix_len=ul.prefixlen, mgmt_prefix_len=mgmt.prefixlen)
            for i in range(1, n_hosts + 1)]
        self.containers: list[Container] = []

    def __enter__(self) -> "Lab":
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    # --- build / tear down ----------------------------------------------------------------

    def up(self) -> None:
        cleanup(self.prefix, self.workdir)
        try:
            self._build()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Idempotent; also removes what a killed run with this prefix left."""
        for c in list(self.containers):
            self.remove_container(c)
        cleanup(self.prefix, self.workdir)

    def _build(self) -> None:
        os.makedirs(self.workdir)
        open(os.path.join(self.workdir, MARKER), "w").close()
        self._check_mgmt_address_free()
        netns.add_bridge(self.ul_bridge)
        netns.add_bridge(self.mgmt_bridge)
        netns.ip("addr", "add", f"{self.controller_ip}/{self.mgmt_prefix_len}",
                 "dev", self.mgmt_bridge)
        for br in (self.ul_bridge, self.mgmt_bridge):
            netns.ip("link", "set", br, "up")
        for i, h in enumerate(self.hosts, 1):
            log.info("building %s (netns %s, tunnel %s)", h.name, h.netns, h.tunnel_ip)
            self._build_host(i, h)
        self.seed_tunnel_neighbours()

    def seed_tunnel_neighbours(self) -> None:
        """Static underlay neighbours in each userspace datapath's tunnel cache.

        A userspace tunnel drops the packets it has to send to a peer whose MAC it has not
        learnt yet (it sends an ARP instead): the first pings across hosts vanished. A real
        host's NIC has its neighbours resolved long before; static entries give the lab that
        (again after an ovs-vswitchd restart: the cache is its memory).
        """
        macs = {h.name: netns.ip("-br", "link", "show", "br-phy", netns=h.netns).stdout.split()[2]
                for h in self.hosts}
        for h in self.hosts:
            for peer in self.hosts:
                if peer is not h:
                    h.appctl("tnl/neigh/set", "br-phy", peer.tunnel_ip, macs[peer.name])

    def _check_mgmt_address_free(self) -> None:
        # Another lab (other prefix) may hold the same management address on its own bridge:
        # the root namespace would then route replies to the wrong bridge.
        out = netns.ip("-o", "-4", "addr", "show").stdout
        for line in out.splitlines():
            dev, addr = line.split()[1], line.split()[3].split("/")[0]
            if addr == self.controller_ip:
                raise RuntimeError(
                    f"{addr} is already on {dev} (another lab?): take it down or pass another "
                    f"mgmt_subnet")

    def _build_host(self, i: int, h: LabHost) -> None:
        os.makedirs(h.rundir)
        netns.add(h.netns)
        ul_root, mgmt_root = f"{self.prefix}-u{i}", f"{self.prefix}-m{i}"
        # Underlay: root end on the underlay bridge, ul0 will be a port of br-phy.
        netns.add_veth(ul_root, "ul0", h.netns, mtu=UNDERLAY_MTU)
        netns.no_ipv6(ul_root)
        netns.ip("link", "set", ul_root, "master", self.ul_bridge, "up")
        hostsetup.prepare_underlay_nic(h.netns, "ul0")
        # Management: the switch reaches the controller on the root bridge's address.
        netns.add_veth(mgmt_root, "mgmt0", h.netns)
        netns.no_ipv6(mgmt_root)
        netns.ip("link", "set", mgmt_root, "master", self.mgmt_bridge, "up")
        netns.ip("addr", "add", f"{h.mgmt_ip}/{h.mgmt_prefix_len}", "dev", "mgmt0", netns=h.netns)
        netns.ip("link", "set", "mgmt0", "up", netns=h.netns)
        # Open vSwitch, and br-phy: the host's own NIC setup, not the controller's.
        hostsetup.start_open_vswitch(h.daemons, h.name, h.netns)
        hostsetup.add_tunnel_bridge(h.daemons, "ul0", h.tunnel_ip, h.prefix_len,
                                    h.datapath_type, UNDERLAY_MTU)

    # --- containers -----------------------------------------------------------------------

    def add_container(self, host: str | LabHost, name: str, mtu: int = 1450) -> Container:
        h = host if isinstance(host, LabHost) else self.host(host)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"container name {name!r}")
        if any(c.host is h and c.name == name for c in self.containers):
            raise ValueError(f"container {name!r} already exists on {h.name}")
        c = Container(h, name, f"{h.netns}-{name}", mtu)
        self.containers.append(c)
        try:
            c.create()
        except BaseException:
            self.remove_container(c)
            raise
        return c

    def remove_container(self, c: Container) -> None:
        c.destroy()
        if c in self.containers:
            self.containers.remove(c)
