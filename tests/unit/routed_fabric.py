"""A routed fabric for the tests: 3 hosts; networks on two routers whose subnets overlap, and
one on none. Routers are put into the snapshot directly, so that the flows are tested apart
from the store's rules for them."""
from __future__ import annotations

from dataclasses import replace

from model import Store
from model.entities import Route, Router

NETWORKS = {  # name: (subnet, router); "other" and "dmz" overlap "front" and "back"
    "front": ("10.1.0.0/24", "r1"), "back": ("10.2.0.0/24", "r1"),
    "other": ("10.1.0.0/24", "r2"), "dmz": ("10.2.0.0/24", "r2"),
    "island": ("10.3.0.0/24", None),
}
PLACES = [("front", "h1"), ("front", "h1"), ("back", "h2"), ("back", "h3"),
          ("other", "h1"), ("dmz", "h2"), ("island", "h3"), ("back", "h2")]


def with_routers(snap, routes=()):
    """``snap`` with routers r1 and r2 over the networks NETWORKS gives them; ``routes``
    (destination, nexthop) on r1."""
    routers, network_router = {}, {}
    for number, name in enumerate(["r1", "r2"], start=1):
        attached = tuple(n.id for n in sorted(snap.networks.values(), key=lambda n: n.seq)
                         if NETWORKS[n.name][1] == name)
        router = Router(number, f"id-{name}", name, number, attached,
                        tuple(Route(d, h) for d, h in routes) if name == "r1" else ())
        routers[router.id] = router
        network_router.update(dict.fromkeys(attached, router.id))
    return replace(snap, routers=routers, network_router=network_router)


def routed_store() -> Store:
    store = Store(":memory:")
    for i in range(1, 4):
        store.create_host(f"h{i}", f"unix:/run/h{i}.sock", f"192.0.2.{i}")
    for name, (subnet, _) in NETWORKS.items():
        store.create_network(name, subnet)
    for network, host in PLACES:
        store.create_endpoint(network, host)
    return store


def eps(snap, network):
    return sorted((e for e in snap.endpoints.values()
                   if snap.networks[e.network_id].name == network), key=lambda e: e.seq)


def net(snap, name):
    return next(n for n in snap.networks.values() if n.name == name)
