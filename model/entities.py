"""The fabric's domain objects: what orchestrators ask for, as stored."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Mapping

from immutables import Map

from .ownership import belongs_to_host

# Datapath ids are derived from the host's row number so that a switch's id is known before it
# connects and stays the same across controller restarts. The prefix keeps them apart from ids
# that OVS derives from MAC addresses.
DPID_PREFIX = 0x0F5F << 48


def dpid_for_host_seq(seq: int) -> int:
    return DPID_PREFIX | seq


# The host's physical bridge (the one holding its underlay address) is a switch of its own:
# its id is derived the same way, with another prefix, so the controller knows whose it is.
PHYSICAL_DPID_PREFIX = 0x0F5E << 48


def physical_dpid_for_host_seq(seq: int) -> int:
    return PHYSICAL_DPID_PREFIX | seq


@dataclass(frozen=True)
class Host:
    seq: int
    name: str
    ovsdb: str
    tunnel_ip: str
    datapath_type: str = "system"
    bridge: str = "br-int"
    # The address the host's containers leave the fabric from (source NAT) and its published
    # ports answer on; None: the tunnel address.
    egress_ip: str | None = None

    @property
    def dpid(self) -> int:
        return dpid_for_host_seq(self.seq)

    @property
    def physical_dpid(self) -> int:
        return physical_dpid_for_host_seq(self.seq)

    @property
    def outside_ip(self) -> str:
        return self.egress_ip or self.tunnel_ip


@dataclass(frozen=True)
class Network:
    seq: int
    id: str
    name: str
    subnet: str
    gateway: str
    vni: int
    mtu: int
    # Who made it besides an admin (e.g. a host's plugin), and so may delete it; None: an admin.
    owner: str | None = None
    # Its containers reach addresses outside the fabric through their own host.
    egress: bool = True

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


ROUTER_MAC_PREFIX = "02:0f:5e:00"


def router_mac(number: int) -> str:
    return f"{ROUTER_MAC_PREFIX}:{number >> 8:02x}:{number & 0xFF:02x}"


@dataclass(frozen=True)
class Route:
    """A static route: packets to ``destination`` (a CIDR) go to ``nexthop``, the address of
    an endpoint (an appliance) in one of the router's networks."""

    destination: str
    nexthop: str


@dataclass(frozen=True)
class Router:
    """Routes between the networks attached to it, on the sending host. Each attached network's
    gateway address is the router's interface there, answered with the router's MAC."""

    seq: int
    id: str
    name: str
    number: int  # 1..65535, unique: the router's bits in the packet metadata
    networks: tuple[str, ...] = ()  # ids of the attached networks, in the order attached
    routes: tuple[Route, ...] = ()

    @property
    def mac(self) -> str:
        return router_mac(self.number)


@dataclass(frozen=True)
class PublishedPort:
    """Connections to the endpoint's host address at ``host_port`` reach the endpoint's
    ``port``."""

    endpoint_id: str
    protocol: str  # "tcp" or "udp"
    port: int
    host_port: int


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
    # ((key, value), ...) sorted by key: what security policies select it by
    labels: tuple = ()

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True)
class Change:
    """What one write touched, so that only the hosts concerned are looked at again."""

    networks: frozenset = frozenset()  # ids of networks whose endpoints or existence changed
    hosts: bool = False  # hosts came or went: every host's tunnels change
    endpoints: frozenset = frozenset()  # ids of endpoints created or deleted
    routers: frozenset = frozenset()  # ids of routers created, deleted, attached or re-routed
    published: frozenset = frozenset()  # ids of endpoints whose published ports changed
    policies: frozenset = frozenset()  # ids of policies created, replaced or deleted


EVERYTHING = Change(hosts=True)


@dataclass(frozen=True)
class Snapshot:
    """An immutable view of the whole desired state at one store revision.

    Endpoints and their indexes are persistent maps (HAMT): a write makes a new snapshot that
    shares all but a few nodes with the old one, so its cost does not grow with the fabric.
    """

    revision: int = 0
    hosts: Mapping[str, Host] = field(default_factory=dict)
    networks: Mapping[str, Network] = field(default_factory=dict)
    endpoints: Map = field(default_factory=Map)  # id -> Endpoint
    endpoints_by_network: Map = field(default_factory=Map)  # network id -> Map(id -> Endpoint)
    endpoints_by_host: Map = field(default_factory=Map)  # host -> Map(id -> Endpoint)
    # network id -> Map(host -> number of the network's endpoints there)
    network_hosts: Map = field(default_factory=Map)
    reservations: Mapping[tuple[str, str], Reservation] = field(default_factory=dict)
    routers: Mapping[str, Router] = field(default_factory=dict)  # id -> Router
    network_router: Mapping[str, str] = field(default_factory=dict)  # network id -> router id
    # endpoint id -> its published ports, sorted by (protocol, host_port)
    published: Mapping[str, tuple[PublishedPort, ...]] = field(default_factory=dict)
    policies: Mapping = field(default_factory=dict)  # id -> model.policy.Policy
    # model.policy.PolicyIndex over ``policies``; None: not built yet (no policies)
    policy_index: object = None
    # (key, value) -> Map(id -> Endpoint): the endpoints carrying each label
    endpoints_by_label: Map = field(default_factory=Map)

    def router_of(self, network_id: str) -> Router | None:
        router_id = self.network_router.get(network_id)
        return self.routers[router_id] if router_id is not None else None

    def with_router(self, router: Router) -> "Snapshot":
        return self._with_routers({**self.routers, router.id: router})

    def without_router(self, router_id: str) -> "Snapshot":
        return self._with_routers({i: r for i, r in self.routers.items() if i != router_id})

    def _with_routers(self, routers: dict[str, Router]) -> "Snapshot":
        # Routers are few: the network index is rebuilt whole.
        return replace(self, routers=routers, network_router={
            network_id: r.id for r in routers.values() for network_id in r.networks})

    def with_policies(self, policies: Mapping) -> "Snapshot":
        """The policies replaced by ``policies`` (id -> Policy), with their index rebuilt:
        policies are few next to endpoints, and change seldom."""
        from .policy import PolicyIndex  # policy builds on the entities
        return replace(self, policies=policies, policy_index=PolicyIndex(policies))

    def policies_selecting(self, ep: Endpoint) -> list:
        return self.policy_index.selecting(ep) if self.policy_index is not None else []

    def guard_of(self, ep: Endpoint):
        """The model.policy.Guard the policies make of ``ep``; None: it is unrestricted."""
        return self.policy_index.guard(ep) if self.policy_index is not None else None

    def with_published(self, endpoint_id: str,
                       ports: tuple[PublishedPort, ...]) -> "Snapshot":
        """The endpoint's published ports replaced by ``ports`` (none: forgotten)."""
        published = {k: v for k, v in self.published.items() if k != endpoint_id}
        if ports:
            published[endpoint_id] = tuple(sorted(ports, key=lambda p: (p.protocol,
                                                                        p.host_port)))
        return replace(self, published=published)

    def published_on_host(self, host: str) -> list[PublishedPort]:
        """Every port published on ``host``, whichever endpoint there it reaches."""
        return [p for endpoint_id, ports in self.published.items()
                if self.endpoints[endpoint_id].host == host for p in ports]

    def network_endpoints(self, network_id: str) -> list[Endpoint]:
        """The network's endpoints, in no particular order."""
        return list(self.endpoints_by_network.get(network_id, EMPTY).values())

    def host_endpoints(self, host: str) -> list[Endpoint]:
        """The host's endpoints, in no particular order."""
        return list(self.endpoints_by_host.get(host, EMPTY).values())

    def hosts_of_network(self, network_id: str) -> set[str]:
        return set(self.network_hosts.get(network_id, EMPTY))

    def held_by_host(self, network_id: str, host: str) -> int:
        """Addresses of the network the host holds: its endpoints' and its reservations."""
        endpoints = self.network_hosts.get(network_id, EMPTY).get(host, 0)
        return endpoints + sum(1 for (net, _), r in self.reservations.items()
                               if net == network_id and belongs_to_host(r.owner, host))

    def with_endpoint(self, ep: Endpoint) -> "Snapshot":
        by_net = self.endpoints_by_network.get(ep.network_id, EMPTY)
        by_host = self.endpoints_by_host.get(ep.host, EMPTY)
        counts = self.network_hosts.get(ep.network_id, EMPTY)
        return replace(
            self, endpoints=self.endpoints.set(ep.id, ep),
            endpoints_by_network=self.endpoints_by_network.set(ep.network_id,
                                                               by_net.set(ep.id, ep)),
            endpoints_by_host=self.endpoints_by_host.set(ep.host, by_host.set(ep.id, ep)),
            network_hosts=self.network_hosts.set(ep.network_id,
                                                 counts.set(ep.host, counts.get(ep.host, 0) + 1)),
            endpoints_by_label=self._labels_with(ep))

    def without_endpoint(self, ep: Endpoint) -> "Snapshot":
        counts = self.network_hosts[ep.network_id]
        left = counts[ep.host] - 1
        return replace(
            self, endpoints=self.endpoints.delete(ep.id),
            endpoints_by_network=self.endpoints_by_network.set(
                ep.network_id, self.endpoints_by_network[ep.network_id].delete(ep.id)),
            endpoints_by_host=self.endpoints_by_host.set(
                ep.host, self.endpoints_by_host[ep.host].delete(ep.id)),
            network_hosts=self.network_hosts.set(
                ep.network_id, counts.set(ep.host, left) if left else counts.delete(ep.host)),
            endpoints_by_label=self._labels_without(ep))

    def relabelled(self, ep: Endpoint, labels: tuple) -> "Snapshot":
        """``ep`` with ``labels`` instead of its own."""
        return self.without_endpoint(ep).with_endpoint(replace(ep, labels=labels))

    def _labels_with(self, ep: Endpoint) -> Map:
        index = self.endpoints_by_label
        if not ep.labels:
            return index
        with index.mutate() as m:
            for pair in ep.labels:
                m[pair] = m.get(pair, EMPTY).set(ep.id, ep)
            return m.finish()

    def _labels_without(self, ep: Endpoint) -> Map:
        index = self.endpoints_by_label
        if not ep.labels:
            return index
        with index.mutate() as m:
            for pair in ep.labels:
                left = m[pair].delete(ep.id)
                if left:
                    m[pair] = left
                else:
                    del m[pair]
            return m.finish()


EMPTY = Map()
