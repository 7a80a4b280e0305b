"""Request schemas: one per request body, validated before anything is touched."""
from __future__ import annotations

from ipaddress import IPv4Address
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import Strict as StrictType

from model.addressing import not_unicast

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# Linux interface names: at most 15 bytes, no slash, colon or whitespace.
IFNAME_PATTERN = r"^[A-Za-z0-9_.-]{1,15}$"
OVSDB_PATTERN = r"^(unix:/.+|(tcp|ssl):[0-9.]+:[0-9]{1,5})$"
MAC_PATTERN = r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$"


def _text(value):
    if not isinstance(value, str):
        raise ValueError("an IPv4 address in a string is expected")
    return value


# Lax pydantic would take false or 3232235777 for an address (and true for a number): a body
# is held to its documented JSON types. Addresses come as text only, then are parsed.
IPv4 = Annotated[IPv4Address, StrictType(False), BeforeValidator(_text)]


def _unicast(address: IPv4Address) -> IPv4Address:
    kind = "broadcast" if address == IPv4Address("255.255.255.255") else not_unicast(address)
    if kind is not None:
        raise ValueError(f"{address} is {kind}: a unicast address is needed")
    return address


def _ovsdb_target(target: str) -> str:
    if target.startswith(("tcp:", "ssl:")):
        _, ip, port = target.split(":")
        try:
            IPv4Address(ip)
        except ValueError:
            raise ValueError(f"{ip} in {target} is not an IPv4 address") from None
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"port {port} in {target} is not 1 to 65535")
    return target


def _not_a_path(name: str) -> str:
    if name in (".", ".."):
        raise ValueError(f"{name!r} is not an interface name")
    return name


UnicastIPv4 = Annotated[IPv4, AfterValidator(_unicast)]
IfName = Annotated[str, Field(pattern=IFNAME_PATTERN), AfterValidator(_not_a_path)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


class HostCreate(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    ovsdb: Annotated[str, AfterValidator(_ovsdb_target)] = Field(
        max_length=256, pattern=OVSDB_PATTERN,
        description='"unix:PATH", "tcp:IP:PORT" or (with TLS configured) "ssl:IP:PORT" of the '
                    'host\'s ovsdb-server')
    tunnel_ip: UnicastIPv4
    datapath_type: Literal["system", "netdev"] = "system"
    bridge: IfName = "br-int"
    egress_ip: Optional[UnicastIPv4] = Field(
        None, description="the address the host's containers leave the fabric from and its "
                          "published ports answer on; none: tunnel_ip")


class NetworkCreate(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    subnet: str = Field(max_length=18, description="IPv4 CIDR, e.g. 10.0.0.0/24")
    gateway: Optional[IPv4] = None
    vni: Optional[int] = Field(None, ge=1, le=(1 << 24) - 1)
    mtu: Optional[int] = Field(None, ge=576, le=9000)
    owner: Optional[str] = Field(None, min_length=1, max_length=128, pattern=NAME_PATTERN,
                                 description="who made it and may delete it besides an admin, "
                                             "e.g. a host (a host token's default)")
    egress: bool = Field(True, description="its containers reach addresses outside the fabric "
                                           "through their own host")


class NetworkUpdate(Strict):
    egress: bool = Field(description="its containers reach addresses outside the fabric "
                                     "through their own host")


# Keys and values are checked by the model (model/labels.py), which names the one at fault.
LABELS_TEXT = ("{key: value}, strings: a key 1 to 63 of A-Z a-z 0-9 . _ / - starting with a "
               "letter or digit, a value 0 to 63 of A-Z a-z 0-9 . _ -; at most 64")


class EndpointCreate(Strict):
    network: str = Field(min_length=1, max_length=64, description="network id or name")
    host: str = Field(min_length=1, max_length=64)
    port: Optional[IfName] = Field(None, description="existing interface on the host to attach")
    ip: Optional[IPv4] = None
    mac: Optional[str] = Field(None, pattern=MAC_PATTERN)
    name: Optional[str] = Field(None, min_length=1, max_length=64, pattern=NAME_PATTERN)
    labels: dict[str, str] = Field(None, description="what security policies select it by: "
                                   + LABELS_TEXT)


class EndpointUpdate(Strict):
    labels: dict[str, str] = Field(description="the endpoint's labels, replacing all it had: "
                                   + LABELS_TEXT)


# ---- responses (documented in the OpenAPI document, checked by the tests) -------------------

class AliveView(BaseModel):
    alive: bool


class ReadyView(BaseModel):
    ready: bool
    revision: int = Field(description="the store's revision the served state is at")


class ClusterMemberView(BaseModel):
    name: str = Field(description="the replica's name (its host name and API port by default)")
    api: str = Field(description="the URL of its REST API")
    advertise: str = Field(description="the controller target the switches are told to "
                           "connect to, tcp:IP:PORT or ssl:IP:PORT")
    leader: bool = Field(description="it is the leader: it programs the switches and hosts")


class ClusterView(BaseModel):
    members: list[ClusterMemberView] = Field(description="the live replicas, sorted by name")
    leader: Optional[str] = Field(description="the leader's name; null while none is known "
                                  "(an election under way, or etcd out of reach)")
    revision: int = Field(description="the store's revision as this replica last saw it (etcd's "
                          "revision with replicas, the state file's without)")


class ProgrammedWait(Strict):
    hosts: list[str] = Field(max_length=4096, description="the hosts whose switches must have it")
    revision: int = Field(ge=0, description="the store revision their tables must be at")
    bound: dict[str, str] = Field(default_factory=dict, max_length=64,
                                  description="endpoint id -> host: ports that must be attached")
    timeout: float = Field(ge=0.001, le=30, description="how long to wait, in seconds")


class ProgrammedView(BaseModel):
    programmed: bool = Field(description="every connected one of the hosts has it (false: "
                             "not within the timeout)")


class ReconcileView(BaseModel):
    flows_read: int = Field(description="flows read from the switch")
    added: int = Field(description="flows added or rewritten")
    deleted: int
    read_seconds: float = Field(description="reading the switch's table")
    compile_seconds: float = Field(description="compiling the desired table and comparing")
    send_seconds: float = Field(description="sending the difference, barrier included")
    seconds: float = Field(description="reading, comparing and correcting, barrier included")


class PhysicalView(BaseModel):
    dpid: str = Field(description="the datapath id the controller gives it, hex")
    flows: Optional[int] = Field(description="flows the controller keeps on it")
    flow_mods_sent: Optional[int] = Field(description="since this controller process started")
    last_reconcile: Optional[ReconcileView] = None
    fail_secure: bool = Field(description="its flows are in: fail_mode secure")


class HostView(BaseModel):
    name: str
    ovsdb: str
    tunnel_ip: str
    datapath_type: str
    bridge: str
    connected: bool = Field(description="both the OVSDB and the OpenFlow sessions are up")
    ovsdb_connected: bool
    openflow_connected: bool
    dpid: str = Field(description="the datapath id the controller gives the bridge, hex")
    flows: Optional[int] = Field(description="flows the controller keeps on the switch")
    flow_mods_sent: Optional[int] = Field(description="since this controller process started")
    last_reconcile: Optional[ReconcileView] = Field(
        None, description="the last full reconciliation of the switch's table (on connect)")
    error: Optional[str] = Field(description="the last OVSDB error, if any")
    openflow_role: Optional[str] = Field(
        None, description="the role the switch confirmed to this replica, with the term's "
        "generation (master@7, slave@7); none: a single controller (OpenFlow's equal)")
    physical: Optional[PhysicalView] = Field(
        None, description="the host's physical bridge (br-phy) as a switch of the "
        "controller's; none: not connected")
    egress_ip: Optional[str] = Field(
        None, description="the address its containers leave from; none: tunnel_ip")


class NetworkView(BaseModel):
    id: str
    name: str
    subnet: str
    gateway: str
    gateway_mac: str = Field(description="the MAC the fabric answers ARP with for the gateway")
    vni: int
    mtu: int
    aliases: list[str] = Field(default_factory=list,
                               description="other names the network answers to")
    owner: Optional[str] = Field(None, description="who made it besides an admin; none: an "
                                                   "admin")
    egress: bool = Field(description="its containers reach the outside through their host")


ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


class AliasCreate(Strict):
    alias: str = Field(min_length=1, max_length=200, pattern=ALIAS_PATTERN,
                       description="another name for the network, e.g. a Docker network id")


class AddressReserve(Strict):
    owner: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN,
                       description="who holds it, e.g. a host name (Docker IPAM)")
    ip: Optional[IPv4] = Field(None, description="this address, or any free one")


class AddressView(BaseModel):
    network: str
    ip: str
    prefix_len: int
    gateway: str
    owner: str


class EndpointView(BaseModel):
    id: str
    name: str
    network: str = Field(description="network id")
    host: str
    port: Optional[str]
    ip: str
    prefix_len: int
    mac: str
    gateway: str
    mtu: int
    labels: dict[str, str] = Field(description="what security policies select it by")


# ---- routers and published ports ----------------------------------------------------------------

class RouterCreate(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)


class RouterAttach(Strict):
    network: str = Field(min_length=1, max_length=200, description="network id, name or alias")


class RouteSpec(Strict):
    destination: str = Field(min_length=1, max_length=18,
                             description="IPv4 CIDR with no host bits, e.g. 192.168.0.0/16")
    nexthop: str = Field(min_length=1, max_length=15,
                         description="the address of an endpoint in a network attached to "
                                     "the router")


class RouteView(BaseModel):
    destination: str
    nexthop: str


class RouterView(BaseModel):
    id: str
    name: str
    number: int = Field(description="1 to 65535, unique: the router in the packet metadata")
    mac: str = Field(description="the MAC of its interfaces (each attached network's gateway)")
    networks: list[str] = Field(description="ids of the attached networks, in the order "
                                            "attached")
    routes: list[RouteView]


class PublishCreate(Strict):
    protocol: Literal["tcp", "udp"]
    port: int = Field(ge=1, le=65535, description="the endpoint's port")
    host_port: Optional[int] = Field(
        None, ge=1, le=65535, description="the port on the host's outside address; none: the "
                                          "lowest free from 49152")


class PublishedView(BaseModel):
    protocol: Literal["tcp", "udp"]
    port: int
    host_port: int
    host: str = Field(description="the endpoint's host")
    host_ip: str = Field(description="the host's outside address: egress_ip, else tunnel_ip")


# ---- security policies -----------------------------------------------------------------------
# Only the shape is checked here; ranges, patterns and references are the model's
# (model/policy_requests.py), whose refusals name the field at fault.

class SelectorSpec(Strict):
    labels: dict[str, str] = Field(None, description="the endpoints carrying all of these; "
                                   "none or {}: every endpoint. " + LABELS_TEXT)


class AppliesTo(Strict):
    selector: SelectorSpec
    network: str = Field(None, description="network id, name or alias; none: every network")


class PeerSpec(Strict):
    """Either a selector (with a network, optionally) or a cidr."""

    selector: SelectorSpec = None
    network: str = Field(None, description="with selector: network id, name or alias")
    cidr: str = Field(None, description="IPv4 CIDR with no host bits, e.g. 10.0.0.0/8; "
                                        "0.0.0.0/0: anyone")


class PortRangeSpec(Strict):
    protocol: Literal["tcp", "udp", "icmp"]
    port: int = Field(None, description="1 to 65535; none: every port (icmp: always none)")
    end_port: int = Field(None, description="the last port of a range from port (>= port)")


class RuleSpec(Strict):
    peers: list[PeerSpec] = Field(description="at least one")
    ports: list[PortRangeSpec] = Field(None, description="none or []: every protocol and port")
    action: Literal["allow", "deny"] = "allow"


class PolicyCreate(Strict):
    name: str = Field(description="1 to 64 of A-Z a-z 0-9 _ . - starting with a letter or "
                                  "digit; unique")
    applies_to: AppliesTo
    ingress: list[RuleSpec] = Field(None, description="given (even []: nothing is allowed "
                                    "in): the policy governs what its endpoints receive")
    egress: list[RuleSpec] = Field(None, description="given (even []: nothing is allowed "
                                   "out): the policy governs what its endpoints send")


class SelectorView(BaseModel):
    labels: dict[str, str]


class AppliesToView(BaseModel):
    selector: SelectorView
    network: Optional[str] = Field(None, description="network name; absent: every network")


class PeerView(BaseModel):
    selector: Optional[SelectorView] = None
    network: Optional[str] = Field(None, description="network name, with selector")
    cidr: Optional[str] = None


class PortRangeView(BaseModel):
    protocol: Literal["tcp", "udp", "icmp"]
    port: Optional[int] = None
    end_port: Optional[int] = None


class RuleView(BaseModel):
    id: int = Field(description="unique in the fabric and never given again")
    action: Literal["allow", "deny"]
    peers: list[PeerView]
    ports: list[PortRangeView] = Field(description="[]: every protocol and port")


class PolicyView(BaseModel):
    id: str
    name: str
    applies_to: AppliesToView
    ingress: Optional[list[RuleView]] = Field(None, description="absent: not governed")
    egress: Optional[list[RuleView]] = Field(None, description="absent: not governed")


# ---- inspection --------------------------------------------------------------------------------

class OwnerRule(BaseModel):
    id: int
    direction: Literal["ingress", "egress"]
    index: int = Field(description="its place in the policy's list for the direction, from 0")
    action: Literal["allow", "deny"]


class Owner(BaseModel):
    kind: Literal["fabric", "host", "network", "endpoint", "router", "policy", "unknown"]
    id: Optional[str] = Field(None, description="network, endpoint, router or policy id")
    name: Optional[str] = None
    rule: Optional[OwnerRule] = Field(None, description="a policy's flow: the rule it is of")


class FlowView(BaseModel):
    host: str
    table: int
    table_name: str
    priority: int
    match: str = Field(description="as ovs-ofctl prints it, e.g. in_port=2,dl_src=...,ip")
    actions: str = Field(description="as ovs-ofctl prints them, e.g. output:2 or drop")
    cookie: str = Field(description="hex")
    owner: Owner
    packets: Optional[int] = Field(None, description="absent for a flow that is not installed")
    bytes: Optional[int] = None
    duration_s: Optional[float] = None
    idle_timeout: int = 0
    hard_timeout: int = 0


class AuditPart(BaseModel):
    in_sync: bool
    installed: int
    desired: int
    missing: list[FlowView] = Field(description="desired but not on the switch")
    extra: list[FlowView] = Field(description="on the switch but not desired")
    different: list[FlowView] = Field(description="on the switch with other actions or owner")


class AuditView(AuditPart):
    host: str
    physical: Optional[AuditPart] = Field(
        None, description="the host's physical bridge, when the controller keeps its flows; "
        "in_sync above holds for both")


class PortEndpoint(BaseModel):
    id: str
    name: str
    network: str


class PortView(BaseModel):
    port_no: int
    name: str
    endpoint: Optional[PortEndpoint] = None
    tunnel_to: Optional[str] = Field(None, description="the peer host of a VXLAN port")
    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int
    rx_dropped: int
    tx_dropped: int
    rx_errors: int
    tx_errors: int


class TableView(BaseModel):
    table_id: int
    name: str
    active_count: int
    lookup_count: int
    matched_count: int


class TraceRequest(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: str = Field(alias="from", min_length=1, max_length=64,
                       description="endpoint id or name")
    to: str = Field(min_length=1, max_length=64,
                    description="endpoint id or name, or an IPv4 address")
    protocol: Literal["icmp", "tcp", "udp", "arp"] = "icmp"
    dst_port: Optional[int] = Field(None, ge=1, le=65535)


class TraceTtl(BaseModel):
    before: int
    after: Optional[int] = Field(description="none: it expired, and the packet was dropped")


class TraceRoute(BaseModel):
    router: Optional[str]
    destination: str = Field(description="the prefix of the route taken")
    nexthop: Optional[str] = Field(description="a static route's next hop; none: the "
                                   "destination is in the attached network")
    network: Optional[str] = Field(description="the network the packet was routed into")
    ttl: Optional[TraceTtl]


class TracePolicy(BaseModel):
    policy: Optional[str] = Field(description="the policy's name")
    policy_id: Optional[str]
    rule: Optional[int] = Field(description="the rule's id")
    direction: Optional[Literal["ingress", "egress"]]
    index: Optional[int] = Field(description="the rule's place in the policy's list, from 0")
    action: Optional[Literal["allow", "deny"]]
    verdict: Literal["allowed", "denied"]
    established: bool = Field(description="true: a connection the rule admitted before; "
                              "false: judged as a new connection")
    host: Optional[str] = None


class TraceHop(BaseModel):
    host: str
    step: Literal["table", "tunnel", "deliver", "leave"]
    table: Optional[int] = None
    table_name: Optional[str] = None
    flow: Optional[FlowView] = Field(None, description="the flow hit; none: table miss")
    vni: Optional[int] = None
    remote_host: Optional[str] = None
    port: Optional[int] = None
    endpoint: Optional[str] = None
    route: Optional[TraceRoute] = Field(None, description="in l3_lookup: the route taken")
    policy: Optional[TracePolicy] = Field(None, description="in a rules table: the policy "
                                          "and rule met")


class TraceOutside(BaseModel):
    host: str = Field(description="the host the packet leaves the fabric from")
    address: str = Field(description="the source address it leaves with (source NAT)")
    port: Optional[int] = Field(None, description="its source port after the NAT")
    next_hop_mac: str


class TraceVerdict(BaseModel):
    result: Literal["delivered", "dropped", "leaves"]
    endpoints: list[str] = Field(description="endpoint ids the packet reached")
    host: Optional[str] = Field(None, description="where it was dropped, or left the fabric")
    outside: Optional[TraceOutside] = Field(None, description="how it left the fabric")
    table: Optional[int] = None
    table_name: Optional[str] = None
    flow: Optional[FlowView] = None
    reason: str
    routes: Optional[list[TraceRoute]] = Field(None, description="the routes taken, in order")
    policies: Optional[list[TracePolicy]] = Field(
        None, description="the policies and rules that allowed the packet, or the one that "
        "denied it, in the order met")


class TraceView(BaseModel):
    packet: dict = Field(description="the headers traced")
    hops: list[TraceHop]
    verdict: TraceVerdict


class PolicyRef(BaseModel):
    id: str
    name: str


class PolicyHostStatus(BaseModel):
    host: str
    realized: bool = Field(description="every flow of the policy's rules the host should hold "
                           "is installed, as the switch confirmed")
    flows: int = Field(description="the flows the policy's rules cost on the host")


class PolicyRuleStatus(BaseModel):
    id: int
    direction: Literal["ingress", "egress"]
    index: int
    action: Literal["allow", "deny"]
    packets: int = Field(description="what the rule allowed (new and established) or denied, "
                         "summed over the connected hosts")
    bytes: int


class PolicyStatusView(BaseModel):
    policy: PolicyRef
    hosts: list[PolicyHostStatus] = Field(description="the hosts where endpoints the policy "
                                          "selects live")
    rules: list[PolicyRuleStatus]
