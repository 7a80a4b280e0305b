"""What a host's OVSDB must hold, computed from the store. Pure."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from model.entities import Host, Snapshot

# external_ids keys that mark what the controller created, so that it never removes
# ports somebody else made.
PEER_KEY = "ovsfabric-peer"
OWNED_KEY = "ovsfabric-owned"
IFACE_ID_KEY = "iface-id"
PATCH_KEY = "ovsfabric-patch"  # on both ends of the patch between the two bridges

# The host's physical bridge: it holds the underlay address and is the host's own (its setup
# makes it); the controller patches it to the integration bridge and manages a few of its
# flows. The host names the next hop of what leaves (its gateway, or the outside itself when
# that is on the underlay) in the bridge's external_ids; the controller resolves its MAC and
# keeps the binding there too ("address=MAC"), so that a restarted controller finds it.
PHYSICAL_BRIDGE = "br-phy"
PATCH_TO_PHYSICAL = "patch-br-phy"  # on the integration bridge
PATCH_TO_INTEGRATION = "patch-br-int"  # on the physical bridge
NEXT_HOP_KEY = "ovsfabric-next-hop"
NEXT_HOP_BINDING_KEY = "ovsfabric-next-hop-binding"


def next_hop_binding(value: str | None) -> tuple[str, str] | None:
    """(address, MAC) from the binding's text; None if there is none or it is not one."""
    address, _, mac = (value or "").partition("=")
    return (address, mac) if address and mac else None


def tunnel_port_name(remote_ip: str) -> str:
    """A stable, 15-character-safe name for the VXLAN port towards one peer."""
    return "vx" + ipaddress.IPv4Address(remote_ip).packed.hex()


@dataclass(frozen=True)
class TunnelPort:
    name: str
    peer: str
    remote_ip: str


@dataclass(frozen=True)
class PhysicalConfig:
    """What the controller sets on the host's physical bridge, if the host has one."""

    bridge: str
    dpid: int
    # fail_mode secure, once the controller's flows (their NORMAL among them) are in: set then,
    # never taken back but by the cleanup, so tunnels never stop and a controller restart
    # changes nothing.
    secure: bool = False
    # (address, MAC) of the next hop as the controller resolved it: written, never removed
    # but by the cleanup (a restarted controller has not resolved it yet and keeps it).
    next_hop: tuple[str, str] | None = None

    @property
    def datapath_id(self) -> str:
        return f"{self.dpid:016x}"


@dataclass(frozen=True)
class HostConfig:
    bridge: str
    datapath_type: str
    dpid: int
    # Every replica's advertised OpenFlow target, sorted (e.g. ("tcp:198.18.1.1:6653",)); the
    # same on both bridges. Empty: no controller (a host's cleanup).
    controllers: tuple[str, ...]
    tunnels: tuple[TunnelPort, ...] = ()
    # port name -> (endpoint id, requested OpenFlow port number)
    endpoint_ports: dict[str, tuple[str, int]] = field(default_factory=dict)
    physical: PhysicalConfig | None = None

    @property
    def datapath_id(self) -> str:
        return f"{self.dpid:016x}"


def host_config(snap: Snapshot, host: Host, controllers, physical_secure: bool = False,
                next_hop: tuple[str, str] | None = None) -> HostConfig:
    """``controllers``: every replica's OpenFlow target, as leadership.controllers() says."""
    if isinstance(controllers, str):  # one target's characters are no list of targets
        raise TypeError("controllers is a list of OpenFlow targets, not one string")
    tunnels = tuple(
        TunnelPort(tunnel_port_name(peer.tunnel_ip), peer.name, peer.tunnel_ip)
        for peer in sorted(snap.hosts.values(), key=lambda h: h.name) if peer.name != host.name)
    ports = {ep.port: (ep.id, ep.ofport) for ep in snap.host_endpoints(host.name) if ep.port}
    physical = PhysicalConfig(PHYSICAL_BRIDGE, host.physical_dpid, physical_secure, next_hop)
    return HostConfig(host.bridge, host.datapath_type, host.dpid,
                      tuple(sorted(set(controllers))), tunnels, ports, physical)


def cleanup_config(desired: HostConfig) -> HostConfig:
    """What removes the controller's own from the host: its ports, tunnels and controller,
    and on the physical bridge the patch, the controller and the settings it made."""
    return HostConfig(desired.bridge, desired.datapath_type, desired.dpid, controllers=(),
                      physical=desired.physical)
