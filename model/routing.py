"""The rules of routers: which networks one may join, which static routes it may hold, and
what a router write touches. Pure functions over a snapshot; the store applies them under its
lock."""
from __future__ import annotations

import ipaddress

from .entities import Change, Network, Route, Router, Snapshot
from .errors import Conflict, InvalidRequest

ROUTER_NUMBER_MIN = 1
ROUTER_NUMBER_MAX = 0xFFFF  # the router's 16 bits in the packet metadata
MAX_ROUTES = 1000


def check_attach(snap: Snapshot, router: Router, net: Network) -> bool:
    """Whether attaching ``net`` changes anything (False: it is on this router already);
    Conflict if it may not join."""
    holder = snap.network_router.get(net.id)
    if holder == router.id:
        return False
    if holder is not None:
        raise Conflict(f"network {net.name!r} is attached to router "
                       f"{snap.routers[holder].name!r}; detach it there first")
    subnet = ipaddress.IPv4Network(net.subnet)
    for other in attached_networks(snap, router):
        if subnet.overlaps(ipaddress.IPv4Network(other.subnet)):
            raise Conflict(f"network {net.name!r} ({net.subnet}) overlaps network "
                           f"{other.name!r} ({other.subnet}) on router {router.name!r}")
    return True


def check_detach(snap: Snapshot, router: Router, net: Network) -> None:
    """Conflict while a route's next hop lies in ``net``: the route would lead nowhere."""
    subnet = ipaddress.IPv4Network(net.subnet)
    through = [r for r in router.routes if ipaddress.IPv4Address(r.nexthop) in subnet]
    if through:
        raise Conflict(f"router {router.name!r} has routes through network {net.name!r} "
                       f"({', '.join(f'{r.destination} via {r.nexthop}' for r in through)}); "
                       f"replace its routes first")


def attached_networks(snap: Snapshot, router: Router) -> list[Network]:
    return [snap.networks[network_id] for network_id in router.networks]


def parse_destination(text: str, field: str = "destination") -> str:
    """An IPv4 CIDR as the router writes it; host bits set are refused, not cleared, since
    they usually mean a mistyped prefix. ``field`` names it in the refusal."""
    if not isinstance(text, str):
        raise InvalidRequest(f"{field} {text!r} is not an IPv4 CIDR in a string")
    try:
        loose = ipaddress.IPv4Network(text, strict=False)
    except ValueError as exc:
        raise InvalidRequest(f"{field} {text!r} is not an IPv4 CIDR: {exc}") from None
    if "/" not in text:
        raise InvalidRequest(f"{field} {text!r} has no prefix length: write {loose}")
    if ipaddress.IPv4Address(text.split("/")[0]) != loose.network_address:
        raise InvalidRequest(f"{field} {text} has host bits set: write {loose}")
    return str(loose)


def parse_routes(snap: Snapshot, router: Router,
                 routes: list[tuple[str, str]]) -> tuple[Route, ...]:
    """Routes as given (destination, nexthop), checked and normalized; InvalidRequest says
    which one is wrong."""
    if len(routes) > MAX_ROUTES:
        raise InvalidRequest(f"{len(routes)} routes: a router holds at most {MAX_ROUTES}")
    nexthops = {ep.ip: ep for net in attached_networks(snap, router)
                for ep in snap.network_endpoints(net.id)}
    parsed, seen = [], set()
    for index, (destination, nexthop) in enumerate(routes):
        where = f"route {index}"
        destination = parse_destination(destination)
        if destination in seen:
            raise InvalidRequest(f"{where}: destination {destination} is given twice")
        seen.add(destination)
        try:
            nexthop = str(ipaddress.IPv4Address(nexthop))
        except ValueError:
            raise InvalidRequest(f"{where}: nexthop {nexthop!r} is not an IPv4 address") from None
        if nexthop not in nexthops:
            raise InvalidRequest(f"{where}: nexthop {nexthop} is not the address of an endpoint "
                                 f"in a network attached to router {router.name!r}")
        parsed.append(Route(destination, nexthop))
    return tuple(parsed)


def router_change(before: Router | None, after: Router | None) -> Change:
    """A router write touches the router and every network it had or has: their hosts'
    tables are computed again."""
    routers = [r for r in (before, after) if r is not None]
    return Change(networks=frozenset(n for r in routers for n in r.networks),
                  routers=frozenset(r.id for r in routers))
