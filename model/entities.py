"""The fabric's domain objects: what orchestrators ask for, as stored."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

# Datapath ids are derived from the host's row number so that a switch's id is known before it
# connects and stays the same across controller restarts. The prefix keeps them apart from ids
# that OVS derives from MAC addresses.
DPID_PREFIX = 0x0F5F << 48


def dpid_for_host_seq(seq: int) -> int:
    return DPID_PREFIX | seq


@dataclass(frozen=True)
class Host:
    seq: int
    name: str
    ovsdb: str
    tunnel_ip: str
    datapath_type: str = "system"
    bridge: str = "br-int"

    @property
    def dpid(self) -> int:
        return dpid_for_host_seq(self.seq)


@dataclass(frozen=True)
class Network:
    seq: int
    id: str
    name: str
    subnet: str
    gateway: str
    vni: int
    mtu: int

    @property
    def prefix_len(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    @property
    def gateway_mac(self) -> str:
        """The MAC the fabric answers for the gateway address: derived from the VNI."""
        return gateway_mac(self.vni)


GATEWAY_MAC_PREFIX = "02:0f:5f"


def gateway_mac(vni: int) -> str:
    return GATEWAY_MAC_PREFIX + "".join(f":{b:02x}" for b in vni.to_bytes(3, "big"))


@dataclass(frozen=True)
class Reservation:
    """An address held for an owner (e.g. a Docker host's IPAM) before an endpoint uses it."""

    network_id: str
    ip: str
    owner: str


@dataclass(frozen=True)
class Endpoint:
    seq: int
    id: str
    name: str
    network_id: str
    host: str
    port: str | None
    ip: str
    mac: str
    # The OpenFlow port number the controller asks OVS to give `port` (ofport_request), so
    # that its flows can be installed while OVS is still adding the port.
    ofport: int | None = None


@dataclass(frozen=True)
class Change:
    """What one write touched, so that only the hosts concerned are looked at again."""

    networks: frozenset = frozenset()  # ids of networks whose endpoints or existence changed
    hosts: bool = False  # hosts came or went: every host's tunnels change


EVERYTHING = Change(hosts=True)


@dataclass(frozen=True)
class Snapshot:
    """An immutable view of the whole desired state at one store revision."""

    revision: int = 0
    hosts: dict[str, Host] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    # Derived indexes, kept beside the maps so that the compiler's work per host stays
    # proportional to the networks present on that host, not to the fabric.
    endpoints_by_network: dict[str, tuple[str, ...]] = field(default_factory=dict)
    endpoints_by_host: dict[str, tuple[str, ...]] = field(default_factory=dict)
    reservations: dict[tuple[str, str], Reservation] = field(default_factory=dict)

    def network_endpoints(self, network_id: str) -> list[Endpoint]:
        return [self.endpoints[e] for e in self.endpoints_by_network.get(network_id, ())]

    def host_endpoints(self, host: str) -> list[Endpoint]:
        return [self.endpoints[e] for e in self.endpoints_by_host.get(host, ())]

    def hosts_of_network(self, network_id: str) -> set[str]:
        return {ep.host for ep in self.network_endpoints(network_id)}

    def networks_on_host(self, host: str) -> set[str]:
        return {ep.network_id for ep in self.host_endpoints(host)}
