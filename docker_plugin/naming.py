"""Names that tie Docker's ids to the controller's objects, so no state is kept here.

- A Docker network on host H is the fabric network with alias ``docker:H:<NetworkID>``.
- An IPAM pool's PoolID names the fabric network it is in: ``pool:H:<subnet>:<NAME>`` when
  ``ovsfabric.network=NAME`` came as an IPAM option; ``pool:H:<subnet>`` otherwise, and then it
  is an alias that CreateNetwork gives the network (so one such pool per subnet and host).
- A Docker endpoint is the fabric endpoint named by its EndpointID, on host H.
- Its veth pair is named from the EndpointID; its MAC, when Docker gives none, too.
- ``--aux-address`` values are reserved for the owner ``aux.H``, not ``H``: the host's own
  containers cannot take them either.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

from model.addressing import normalize_mac
from model.errors import InvalidRequest

from .errors import BadRequest

OPTION = "ovsfabric.network"
GENERIC = "com.docker.network.generic"
MTU_OPTION = "com.docker.network.driver.mtu"
GATEWAY_REQUEST = "com.docker.network.gateway"
IPV6_OPTION = "com.docker.network.enable_ipv6"
INTERNAL_OPTION = "com.docker.network.internal"  # docker network create --internal
# Every option a user may give; anything else is refused, so a typo is not a silent default.
NETWORK_OPTIONS = (OPTION, MTU_OPTION)  # -o
IPAM_OPTIONS = (OPTION,)  # --ipam-opt
LOCAL_SPACE, GLOBAL_SPACE = "ovsfabric-local", "ovsfabric-global"
# The controller's network name rules (api/schemas.py NAME_PATTERN, at most 64).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
GATEWAY_MAC_PREFIX = "02:0f:5f"  # the fabric keeps these for gateways


def network_name(value) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise BadRequest(f"{OPTION} must be 1 to 64 letters, digits, '_', '.' or '-' "
                         f"(starting with a letter or digit), not {value!r}")
    return value


def subnet(text) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except (ValueError, TypeError):
        raise BadRequest(f"pool {text!r} is not an IPv4 subnet (CIDR, no host bits)") from None
    if net.prefixlen > 30:
        raise BadRequest(f"pool {net} is too small: a /30 or larger is needed")
    if net.prefixlen == 0:  # what --ipam-driver null gives: the fabric needs real addresses
        raise BadRequest("a subnet is needed (the null IPAM driver is not supported)")
    return net


def docker_alias(host: str, network_id: str) -> str:
    return f"docker:{host}:{network_id}"


def docker_network_of(net: dict, host: str) -> str | None:
    """The id of the Docker network of ``host`` that this fabric network is, if any."""
    prefix = f"docker:{host}:"
    return next((a[len(prefix):] for a in net["aliases"] if a.startswith(prefix)), None)


def unknown_options(given: dict, known: tuple[str, ...], flag: str) -> None:
    """Refuses options this driver does not know, naming the ones it does."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise BadRequest(f"unknown {flag} option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}: ovsfabric takes {', '.join(known)}")


@dataclass(frozen=True)
class Pool:
    host: str
    subnet: ipaddress.IPv4Network
    name: str | None = None  # the fabric network, when the IPAM options named it

    @property
    def id(self) -> str:
        token = f"pool:{self.host}:{self.subnet.network_address}-{self.subnet.prefixlen}"
        return f"{token}:{self.name}" if self.name else token

    @classmethod
    def parse(cls, pool_id) -> "Pool":
        parts = pool_id.split(":") if isinstance(pool_id, str) else []
        if len(parts) not in (3, 4) or parts[0] != "pool" or "-" not in parts[2]:
            raise BadRequest(f"PoolID {pool_id!r} is not one of this driver's")
        address, _, length = parts[2].rpartition("-")
        return cls(parts[1], subnet(f"{address}/{length}"),
                   network_name(parts[3]) if len(parts) == 4 else None)


def is_docker_endpoint(ep: dict) -> bool:
    """Whether the plugin made this fabric endpoint (its port is the veth its name gives)."""
    try:
        return ep["port"] == veth_names(ep["name"])[0]
    except BadRequest:
        return False


def veth_names(endpoint_id: str) -> tuple[str, str]:
    """(host end, container end): 15 characters at most, 12 of them from the EndpointID
    (5 collided in other plugins)."""
    token = re.sub(r"[^A-Za-z0-9]", "", endpoint_id)[:12]
    if len(token) < 8:
        raise BadRequest(f"EndpointID {endpoint_id!r} is too short")
    return f"ofh{token}", f"ofc{token}"


def endpoint_mac(endpoint_id: str) -> str:
    """A locally administered unicast MAC derived from the EndpointID, never a gateway's."""
    digest = hashlib.sha256(endpoint_id.encode()).digest()
    mac = ":".join(f"{b:02x}" for b in b"\x02" + digest[:5])
    if mac.startswith(GATEWAY_MAC_PREFIX):
        mac = "02:1f" + mac[5:]
    return mac


def strip_prefix(cidr) -> str | None:
    """'10.1.0.3/24' -> '10.1.0.3'; '' or None -> None."""
    if not cidr:
        return None
    if not isinstance(cidr, str):
        raise BadRequest(f"address {cidr!r} is not a string")
    try:
        return str(ipaddress.IPv4Interface(cidr).ip)
    except ValueError:
        raise BadRequest(f"address {cidr!r} is not an IPv4 address") from None


def mac_address(value) -> str | None:
    """Docker's MacAddress ('' or None: none given), checked before anything is made."""
    if not value:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"MacAddress {value!r} is not a string")
    try:
        return normalize_mac(value)
    except InvalidRequest as exc:
        raise BadRequest(str(exc)) from None
