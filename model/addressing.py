"""Address arithmetic: subnets, gateways, MACs, VNIs. Pure functions."""
from __future__ import annotations

import ipaddress
import random
import os

from .entities import GATEWAY_MAC_PREFIX, ROUTER_MAC_PREFIX
from .errors import Conflict, InvalidRequest

VNI_MIN = 100  # low VNIs are left to hand-made tunnels
VNI_MAX = (1 << 24) - 1
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
DEFAULT_UNDERLAY_MTU = 1500
DEFAULT_MTU = DEFAULT_UNDERLAY_MTU - VXLAN_OVERHEAD


THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def not_unicast(value) -> str | None:
    """Why an address or subnet cannot carry hosts' unicast traffic, or None."""
    for kind, test in (("multicast", "is_multicast"), ("loopback", "is_loopback"),
                       ("link-local", "is_link_local"), ("reserved", "is_reserved")):
        if getattr(value, test):
            return kind
    inside = value.subnet_of(THIS_NETWORK) if isinstance(value, ipaddress.IPv4Network) \
        else value in THIS_NETWORK
    return "\"this network\" (0.0.0.0/8)" if inside else None


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise InvalidRequest(f"subnet {text!r} is not an IPv4 CIDR with no host bits: {exc}") from None
    if str(net) != text:
        raise InvalidRequest(f"subnet {text!r} is not in canonical notation: write {net}")
    if not 8 <= net.prefixlen <= 30:
        raise InvalidRequest(f"subnet {text} must be a /8 to a /30")
    if (kind := not_unicast(net)) is not None:
        raise InvalidRequest(f"subnet {text} is {kind}: a unicast subnet is needed")
    return net


def parse_ip_in(subnet: ipaddress.IPv4Network, text: str, what: str) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidRequest(f"{what} {text!r} is not an IPv4 address") from None
    if addr not in subnet:
        raise InvalidRequest(f"{what} {addr} is outside the subnet {subnet}")
    if addr in (subnet.network_address, subnet.broadcast_address):
        raise InvalidRequest(f"{what} {addr} is the network or broadcast address of {subnet}")
    return addr


def normalize_mac(text: str) -> str:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise InvalidRequest(f"mac {text!r} is not six colon-separated octets")
    try:
        octets = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise InvalidRequest(f"mac {text!r} is not hexadecimal") from None
    if octets[0] & 1:
        raise InvalidRequest(f"mac {text} is a multicast address")
    if octets == bytes(6):
        raise InvalidRequest("mac 00:00:00:00:00:00 is not a usable address")
    return ":".join(f"{b:02x}" for b in octets)


def random_mac() -> str:
    """A locally administered unicast MAC (first octet 0x02), never a gateway's or a
    router's."""
    while True:
        mac = ":".join(f"{b:02x}" for b in b"\x02" + os.urandom(5))
        if not mac.startswith((GATEWAY_MAC_PREFIX, ROUTER_MAC_PREFIX)):
            return mac


# Endpoint ports ask for OpenFlow numbers from here up, away from the low numbers OVS gives
# ports it numbers itself (tunnels, ports added by others).
OFPORT_MIN = 1000
OFPORT_MAX = 0xFEFF


def lowest_free(used: set, first: int, last: int, what: str) -> int:
    value = first
    while value in used:
        value += 1
    if value > last:
        raise Conflict(f"no {what} left")
    return value


def lowest_free_vni(used: set[int]) -> int:
    return lowest_free(used, VNI_MIN, VNI_MAX, "VNI")


def lowest_free_ofport(used: set, spread: int = 1) -> int:
    """The lowest free port number, or with ``spread`` one of the ``spread`` lowest at random
    (replicas allocating at once then seldom pick the same one)."""
    first = lowest_free(used, OFPORT_MIN, OFPORT_MAX, "OpenFlow port number on the host")
    if spread == 1:
        return first
    free = [n for n in range(first, min(first + spread + len(used), OFPORT_MAX + 1))
            if n not in used][:spread]
    return random.choice(free)


def check_vni(vni: int) -> int:
    if not 1 <= vni <= VNI_MAX:
        raise InvalidRequest(f"vni {vni} is outside 1..{VNI_MAX}")
    return vni


class AddressPool:
    """Free host addresses of one subnet; the gateway is reserved.

    Allocation walks from a cursor so that filling a large subnet costs O(1) per address
    on average, and freed addresses are found again after a wrap-around.
    """

    def __init__(self, subnet: str, gateway: str):
        net = ipaddress.IPv4Network(subnet)
        self.first = int(net.network_address) + 1
        self.last = int(net.broadcast_address) - 1
        self.gateway = int(ipaddress.IPv4Address(gateway))
        self.used: set[int] = set()
        self.cursor = self.first

    @property
    def capacity(self) -> int:
        """Assignable addresses: the subnet's host addresses but the gateway."""
        return self.last - self.first + 1 - (self.first <= self.gateway <= self.last)

    def take(self, ip: str) -> None:
        self.used.add(int(ipaddress.IPv4Address(ip)))

    def release(self, ip: str) -> None:
        self.used.discard(int(ipaddress.IPv4Address(ip)))

    def is_free(self, ip: str) -> bool:
        value = int(ipaddress.IPv4Address(ip))
        return value != self.gateway and value not in self.used

    def allocate(self, spread: int = 1) -> str:
        """The next free address from the cursor, or with ``spread`` one of the next
        ``spread`` free ones at random (replicas allocating at once then seldom pick the same
        one; the others are found again next time)."""
        size = self.last - self.first + 1
        found: list[int] = []
        for step in range(size):
            candidate = self.first + (self.cursor - self.first + step) % size
            if candidate != self.gateway and candidate not in self.used:
                found.append(candidate)
                if len(found) == spread:
                    break
        if not found:
            raise Conflict("no address left in the subnet")
        chosen = found[0] if spread == 1 else random.choice(found)
        if spread == 1:
            self.cursor = chosen + 1 if chosen < self.last else self.first
        else:
            self.cursor = found[0]
        return str(ipaddress.IPv4Address(chosen))
