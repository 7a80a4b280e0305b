"""Packet: a flat, mutable record of OXM header fields.

Values use os-ken's "user" notation (MACs and IPv4 addresses as strings,
everything else as ints). Matching and bit operations convert through the
codec's vocabulary (openflow.values), so the simulator agrees with the
controller's encoder on widths and notations (including CIDR and masks).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from os_ken.ofproto import ofproto_v1_3 as ofp

from openflow import values
from openflow.vocabulary import FIELDS

ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV4 = 0x0800
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
ARP_REQUEST, ARP_REPLY = 1, 2
# ICMP queries (echo, timestamp, information, address mask) and their replies: they carry an
# identifier; errors do not.
ICMP_QUERY_REPLY = {8: 0, 13: 14, 15: 16, 17: 18}
ICMP_QUERY_TYPES = frozenset(ICMP_QUERY_REPLY) | frozenset(ICMP_QUERY_REPLY.values())
BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"

REGS = tuple(f"reg{i}" for i in range(8))
CT_FIELDS = ("ct_state", "ct_zone", "ct_mark", "ct_label")
# Pipeline state rather than headers: reset for every packet entering a switch (a packet that
# has not been through ct is untracked: ct_state 0).
PIPELINE_FIELDS = ("metadata",) + REGS + CT_FIELDS + ("conj_id",)
# Headers no flow can match, so no OXM field types them: kept as given.
UNTYPED_FIELDS = ("icmp_id",)
DEFAULT_TTL = 64


class FlowSimError(Exception):
    """A message or action the simulator rejects (like a switch would) or does not model."""


def field_width(name: str) -> int:
    """Width in bits of an OXM/NXM field."""
    field = FIELDS.get(name)
    if field is None:  # outside the vocabulary: a flow someone else installed
        return ofp.oxm_get_field_info_by_name(name)[1].size * 8
    return field.bits


def to_int(name: str, user_value) -> tuple[int, int | None]:
    """User notation (value, (value, mask) or CIDR) -> (int value, int mask or None)."""
    field = FIELDS.get(name)
    if field is None:
        _, value, mask = ofp.oxm_from_user(name, user_value)
    else:
        value, mask = values.match_value(field, user_value)
    return (int.from_bytes(value, "big"),
            None if mask is None else int.from_bytes(mask, "big"))


def from_int(name: str, value: int):
    """Int -> user notation for the field."""
    field = FIELDS.get(name)
    if field is None:
        num, _ = ofp.oxm_get_field_info_by_name(name)
        return ofp.oxm_to_user(num, value.to_bytes(field_width(name) // 8, "big"), None)[1]
    return values.decode(field, value.to_bytes(field.size, "big"))


TCP_SYN = 0x002


@dataclass(slots=True, repr=False)
class Packet:
    """None means 'header not present': a match on it fails."""
    in_port: int | None = None
    eth_src: str | None = None
    eth_dst: str | None = None
    eth_type: int | None = None
    ipv4_src: str | None = None
    ipv4_dst: str | None = None
    ip_proto: int | None = None
    nw_ttl: int | None = None
    icmpv4_type: int | None = None
    icmpv4_code: int | None = None
    icmp_id: int | None = None  # echo and other queries: conntrack's port for ICMP
    tcp_src: int | None = None
    tcp_dst: int | None = None
    udp_src: int | None = None
    udp_dst: int | None = None
    tcp_flags_nxm: int | None = None
    arp_op: int | None = None
    arp_spa: str | None = None
    arp_tpa: str | None = None
    arp_sha: str | None = None
    arp_tha: str | None = None
    # OVS reports tun_id 0 for packets that did not arrive through a tunnel.
    tunnel_id: int = 0
    metadata: int = 0
    reg0: int = 0
    reg1: int = 0
    reg2: int = 0
    reg3: int = 0
    reg4: int = 0
    reg5: int = 0
    reg6: int = 0
    reg7: int = 0
    ct_state: int = 0
    ct_zone: int = 0
    ct_mark: int = 0
    ct_label: int = 0
    conj_id: int = 0  # set only while a table looks up the flow of a satisfied conjunction

    def __setattr__(self, name, value):
        # Canonical notation (e.g. lower-case MACs) so packets compare equal
        # however the value was written.
        if value is not None and name not in UNTYPED_FIELDS:
            value = from_int(name, to_int(name, value)[0])
        object.__setattr__(self, name, value)

    def __repr__(self):
        shown = (f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                 if getattr(self, f.name) not in (None, f.default))
        return f"Packet({', '.join(shown)})"

    def copy(self) -> Packet:
        return replace(self)

    def reset_pipeline(self) -> None:
        for name in PIPELINE_FIELDS:
            setattr(self, name, 0)

    # Integer views used by the flow table.

    def get_int(self, name: str) -> int | None:
        if name in UNTYPED_FIELDS:
            return getattr(self, name)
        value = getattr(self, name, None)  # fields we don't model are absent
        return None if value is None else to_int(name, value)[0]

    def set_int(self, name: str, value: int) -> None:
        if not hasattr(self, name) or name in UNTYPED_FIELDS:
            raise FlowSimError(f"Packet does not model field {name!r}")
        setattr(self, name, from_int(name, value))

    def write_bits(self, name: str, value: int, ofs: int, n_bits: int) -> None:
        """Overwrite n_bits of the field starting at bit ofs (NXM slice semantics)."""
        mask = ((1 << n_bits) - 1) << ofs
        old = self.get_int(name) or 0
        self.set_int(name, (old & ~mask) | ((value << ofs) & mask))

    # Builders.

    @classmethod
    def arp_request(cls, src_mac: str, src_ip: str, target_ip: str) -> Packet:
        return cls(eth_src=src_mac, eth_dst=BROADCAST, eth_type=ETH_TYPE_ARP,
                   arp_op=ARP_REQUEST, arp_sha=src_mac, arp_spa=src_ip,
                   arp_tha=ZERO_MAC, arp_tpa=target_ip)

    @classmethod
    def arp_reply(cls, src_mac: str, src_ip: str, dst_mac: str, dst_ip: str) -> Packet:
        return cls(eth_src=src_mac, eth_dst=dst_mac, eth_type=ETH_TYPE_ARP,
                   arp_op=ARP_REPLY, arp_sha=src_mac, arp_spa=src_ip,
                   arp_tha=dst_mac, arp_tpa=dst_ip)

    @classmethod
    def ipv4(cls, src_mac: str, dst_mac: str, src_ip: str, dst_ip: str,
             ip_proto: int, **l4) -> Packet:
        l4.setdefault("nw_ttl", DEFAULT_TTL)
        return cls(eth_src=src_mac, eth_dst=dst_mac, eth_type=ETH_TYPE_IPV4,
                   ipv4_src=src_ip, ipv4_dst=dst_ip, ip_proto=ip_proto, **l4)

    @classmethod
    def icmp(cls, src_mac: str, dst_mac: str, src_ip: str, dst_ip: str,
             icmp_type: int = 8, icmp_code: int = 0, icmp_id: int | None = None,
             **headers) -> Packet:
        if icmp_id is None and icmp_type in ICMP_QUERY_TYPES:
            icmp_id = 0
        return cls.ipv4(src_mac, dst_mac, src_ip, dst_ip, IPPROTO_ICMP, icmpv4_type=icmp_type,
                        icmpv4_code=icmp_code, icmp_id=icmp_id, **headers)

    @classmethod
    def tcp(cls, src_mac: str, dst_mac: str, src_ip: str, dst_ip: str,
            src_port: int, dst_port: int, **headers) -> Packet:
        headers.setdefault("tcp_flags_nxm", TCP_SYN)  # what opens a connection
        return cls.ipv4(src_mac, dst_mac, src_ip, dst_ip, IPPROTO_TCP,
                        tcp_src=src_port, tcp_dst=dst_port, **headers)

    @classmethod
    def udp(cls, src_mac: str, dst_mac: str, src_ip: str, dst_ip: str,
            src_port: int, dst_port: int, **headers) -> Packet:
        return cls.ipv4(src_mac, dst_mac, src_ip, dst_ip, IPPROTO_UDP,
                        udp_src=src_port, udp_dst=dst_port, **headers)
