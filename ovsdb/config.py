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


def tunnel_port_name(remote_ip: str) -> str:
    """A stable, 15-character-safe name for the VXLAN port towards one peer."""
    return "vx" + ipaddress.IPv4Address(remote_ip).packed.hex()


@dataclass(frozen=True)
class TunnelPort:
    name: str
    peer: str
    remote_ip: str


@dataclass(frozen=True)
class HostConfig:
    bridge: str
    datapath_type: str
    dpid: int
    controller: str  # the advertised OpenFlow target, e.g. tcp:198.18.1.1:6653
    tunnels: tuple[TunnelPort, ...] = ()
    # port name -> (endpoint id, requested OpenFlow port number)
    endpoint_ports: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def datapath_id(self) -> str:
        return f"{self.dpid:016x}"


def host_config(snap: Snapshot, host: Host, controller: str) -> HostConfig:
    tunnels = tuple(
        TunnelPort(tunnel_port_name(peer.tunnel_ip), peer.name, peer.tunnel_ip)
        for peer in sorted(snap.hosts.values(), key=lambda h: h.name) if peer.name != host.name)
    ports = {ep.port: (ep.id, ep.ofport) for ep in snap.host_endpoints(host.name) if ep.port}
    return HostConfig(host.bridge, host.datapath_type, host.dpid, controller, tunnels, ports)
