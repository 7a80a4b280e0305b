"""A host's own Open vSwitch set-up, as on a real host (its NIC set-up, not the controller's):
shared by the lab's namespaces and the docker-compose hosts (compose/host-entrypoint.py)."""

from __future__ import annotations

from . import netns
from .ovs import OvsDaemons
from .proc import run


def vsctl(daemons: OvsDaemons, *args, timeout: int = 30) -> str:
    return run(["ovs-vsctl", f"--db=unix:{daemons.db_sock}", f"--timeout={timeout}",
                *args]).stdout


def prepare_underlay_nic(ns: str | None, nic: str) -> None:
    """The NIC that becomes br-phy's port: it keeps no address, yet the kernel would answer
    ARP for br-phy's address on it too."""
    netns.sysctl(ns, **{f"net.ipv4.conf.{nic}.arp_ignore": 1})
    netns.ip("link", "set", nic, "up", netns=ns)


def start_open_vswitch(daemons: OvsDaemons, hostname: str, system_id: str) -> None:
    daemons.start_ovsdb()
    vsctl(daemons, "--no-wait", "set", "Open_vSwitch", ".", f"external_ids:hostname={hostname}",
          f"external_ids:system-id={system_id}")  # what ovs-ctl sets on a real host
    daemons.start_vswitchd()


def add_tunnel_bridge(daemons: OvsDaemons, nic: str, tunnel_ip: str, prefix_len: int,
                      datapath_type: str, mtu: int = 1500) -> None:
    """br-phy with the NIC as its port and the tunnel address on it: userspace tunnels need
    the address on an OVS bridge."""
    vsctl(daemons, "add-br", "br-phy",
          "--", "set", "Bridge", "br-phy", f"datapath_type={datapath_type}",
          "fail_mode=standalone",
          "--", "add-port", "br-phy", nic)
    # br-phy keeps its own MAC: copying the NIC's made every ping come back 3 times.
    netns.ip("link", "set", "br-phy", "mtu", mtu, netns=daemons.netns)
    netns.ip("addr", "add", f"{tunnel_ip}/{prefix_len}", "dev", "br-phy", netns=daemons.netns)
    netns.ip("link", "set", "br-phy", "up", netns=daemons.netns)
