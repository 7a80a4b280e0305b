"""The fixed OpenFlow pipeline: tables declared once, cookies that name a flow's owner.

Table 0 (ingress) admits a local port's packets only with the endpoint's own MAC and IP
(anti-spoofing) and classifies them into their network by writing the network's VNI into the
metadata; tunnel packets are classified by their VNI and marked in reg0. Table 10 answers ARP
requests for the host's own addresses and the gateway, sends other requests from local ports
through the tunnels to the network's hosts (the address's host answers) and drops requests
that came through a tunnel unanswered. Table 20 forwards by destination MAC within the network, to a
local port or into the tunnel to the endpoint's host, and floods broadcast and multicast only
to the network's ports and to the hosts where the network has endpoints; unicast to a MAC no
endpoint of the network has is dropped.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    id: int
    name: str
    purpose: str


INGRESS = Table(0, "ingress", "port security and network classification")
ARP = Table(10, "arp", "ARP responder for known addresses")
L2 = Table(20, "l2", "forwarding by destination MAC within a network, and flooding")
TABLES = (INGRESS, ARP, L2)
TABLE_BY_ID = {t.id: t for t in TABLES}

# reg0 says where a packet entered this host: 0 from a local port, 1 from a tunnel. Packets
# from a tunnel are never sent into a tunnel again (split horizon), so floods cannot loop.
FROM_TUNNEL_REG = "reg0"
FROM_TUNNEL = 1

# Priorities, highest first.
PRIO_PORT_ALLOW = 200
PRIO_TUNNEL_IN = 50
PRIO_ARP_REPLY = 100
PRIO_ARP_TO_OWNER = 10
PRIO_L2_UNICAST = 100
PRIO_GATEWAY = 150
PRIO_FLOOD = 10
PRIO_DEFAULT = 0

# Cookies: the top byte is the owner's kind, the rest the owner's row number in the store.
COOKIE_KIND_SHIFT = 56
COOKIE_ID_MASK = (1 << COOKIE_KIND_SHIFT) - 1
KINDS = {1: "fabric", 2: "host", 3: "network", 4: "endpoint"}
KIND_CODES = {v: k for k, v in KINDS.items()}


def cookie(kind: str, seq: int = 0) -> int:
    return (KIND_CODES[kind] << COOKIE_KIND_SHIFT) | (seq & COOKIE_ID_MASK)


def decode_cookie(value: int) -> tuple[str, int] | None:
    kind = KINDS.get(value >> COOKIE_KIND_SHIFT)
    return (kind, value & COOKIE_ID_MASK) if kind else None


FABRIC_COOKIE = cookie("fabric")
