"""Every match field the controller speaks, declared once. Pure.

The wire encoder (wire), the flow-stats reader (stats), the ovs-ofctl notation (notation), the
os-ken translation (os_ken) and the flow simulator (flowsim) take a field's numbers, size,
value form and names from here, so a new field is one entry below (plus tests): a field known
to the encoder but not to the reader would make a flow look changed after every reconnection.

A field is named as os-ken names it (the keyword OFPMatch and OFPActionSetField take, which
Flow.match and set_field use). Values are an int, a MAC address ("xx:xx:xx:xx:xx:xx") or an
IPv4 address (dotted quad, or "a.b.c.d/n" in a match), as in os-ken.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

OFPXMC_NXM_0 = 0x0000  # NXM_OF_* fields
OFPXMC_NXM_1 = 0x0001  # NXM_NX_* fields (registers, tunnel and conntrack metadata)
OFPXMC_OPENFLOW_BASIC = 0x8000


@dataclass(frozen=True)
class Field:
    name: str  # os-ken's name
    oxm_class: int
    oxm_field: int
    kind: str  # "int", "mac" or "ipv4"
    size: int  # bytes
    ofctl: str | None = None  # ovs-ofctl's name in a match, when it differs
    # The NXM header Open vSwitch may answer with instead (in a move: NXM_OF_ETH_SRC for
    # eth_src), as (class, field, ovs-ofctl's name for it).
    nxm: tuple[int, int, str] | None = None
    hex: bool = False  # ovs-ofctl prints the value in hex
    flags: tuple[str, ...] = ()  # ovs-ofctl prints the value as +flag-flag, from bit 0 up
    header: int = field(init=False)  # OXM header of the plain value
    masked_header: int = field(init=False)  # OXM header with the mask bit, value and mask
    oxm: bytes = field(init=False)  # header, packed
    oxm_masked: bytes = field(init=False)  # masked_header, packed

    def __post_init__(self):
        # OXM header: class (16 bits), field (7), hasmask (1), payload length (8).
        oxm_type = (self.oxm_class << 7) | self.oxm_field
        object.__setattr__(self, "header", (oxm_type << 9) | self.size)
        object.__setattr__(self, "masked_header", (oxm_type << 9) | 0x100 | 2 * self.size)
        object.__setattr__(self, "oxm", struct.pack("!I", self.header))
        object.__setattr__(self, "oxm_masked", struct.pack("!I", self.masked_header))

    @property
    def bits(self) -> int:
        return 8 * self.size

    @property
    def nxm_header(self) -> int | None:
        if self.nxm is None:
            return None
        return (((self.nxm[0] << 7) | self.nxm[1]) << 9) | self.size

    @property
    def nxm_name(self) -> str:
        """How ovs-ofctl names the field in a move."""
        if self.nxm is not None:
            return self.nxm[2]
        return self.name


_B, _N0, _N1 = OFPXMC_OPENFLOW_BASIC, OFPXMC_NXM_0, OFPXMC_NXM_1

_FIELDS = [
    Field("in_port", _B, 0, "int", 4),
    Field("metadata", _B, 2, "int", 8, hex=True),
    Field("eth_dst", _B, 3, "mac", 6, "dl_dst", (_N0, 1, "NXM_OF_ETH_DST")),
    Field("eth_src", _B, 4, "mac", 6, "dl_src", (_N0, 2, "NXM_OF_ETH_SRC")),
    Field("eth_type", _B, 5, "int", 2, "dl_type"),
    Field("ip_proto", _B, 10, "int", 1),
    Field("ipv4_src", _B, 11, "ipv4", 4, "nw_src", (_N0, 7, "NXM_OF_IP_SRC")),
    Field("ipv4_dst", _B, 12, "ipv4", 4, "nw_dst", (_N0, 8, "NXM_OF_IP_DST")),
    Field("tcp_src", _B, 13, "int", 2, "tp_src"),
    Field("tcp_dst", _B, 14, "int", 2, "tp_dst"),
    Field("udp_src", _B, 15, "int", 2, "tp_src"),
    Field("udp_dst", _B, 16, "int", 2, "tp_dst"),
    Field("icmpv4_type", _B, 19, "int", 1, "icmp_type"),
    Field("icmpv4_code", _B, 20, "int", 1, "icmp_code"),
    Field("arp_op", _B, 21, "int", 2),
    Field("arp_spa", _B, 22, "ipv4", 4, None, (_N0, 16, "NXM_OF_ARP_SPA")),
    Field("arp_tpa", _B, 23, "ipv4", 4, None, (_N0, 17, "NXM_OF_ARP_TPA")),
    Field("arp_sha", _B, 24, "mac", 6, None, (_N1, 17, "NXM_NX_ARP_SHA")),
    Field("arp_tha", _B, 25, "mac", 6, None, (_N1, 18, "NXM_NX_ARP_THA")),
    Field("tunnel_id", _B, 38, "int", 8, "tun_id", (_N1, 16, "NXM_NX_TUN_ID"), hex=True),
    *(Field(f"reg{i}", _N1, i, "int", 4, hex=True) for i in range(8)),
    Field("tun_ipv4_src", _N1, 31, "ipv4", 4, "tun_src"),
    Field("tun_ipv4_dst", _N1, 32, "ipv4", 4, "tun_dst"),
    # Open vSwitch's own TCP flags field (OpenFlow 1.3 has none); ovs-ofctl spells it
    # tcp_flags=+syn-ack.
    Field("tcp_flags_nxm", _N1, 34, "int", 2, "tcp_flags",
          flags=("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns")),
    Field("conj_id", _N1, 37, "int", 4),
    Field("ct_state", _N1, 105, "int", 4,
          flags=("new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat")),
    Field("ct_zone", _N1, 106, "int", 2),
    Field("ct_mark", _N1, 107, "int", 4, hex=True),
    Field("ct_label", _N1, 108, "int", 16, hex=True),
]

FIELDS: dict[str, Field] = {f.name: f for f in _FIELDS}


def move_names() -> dict[int, str]:
    """OXM type (class and field, the header without mask bit and length) -> field name, for
    the fields of a move: Open vSwitch answers a move with the NXM spelling of a field where
    there is one (NXM_OF_ETH_SRC for eth_src)."""
    names = {f.header >> 9: f.name for f in _FIELDS}
    names.update({f.nxm_header >> 9: f.name for f in _FIELDS if f.nxm is not None})
    return names


def canonical_name(name: str) -> str:
    """os-ken names the NXM spelling of a field with a ``_nxm`` suffix (eth_src_nxm); a
    move's field by its own name (eth_src). A field that has only its NXM spelling
    (tcp_flags_nxm) keeps it."""
    return name[:-4] if name.endswith("_nxm") and name not in FIELDS else name
