"""A fabric with security policies for the tests: 3 hosts, network `app` with web (h1), db
(h2), web2 (h2, beside db) and other (h3), and network `twin` with the same subnet and the same
addresses and labels. Policies and labels go into the snapshot directly, so that the flows are
tested apart from the store's rules for them."""
from __future__ import annotations

from model import Store
from model.policy import ALLOW, EGRESS, INGRESS, Peer, Policy, PortRange, Rule, Selector, \
    labels_of

PLACES = [("web", "h1", {"role": "web"}), ("db", "h2", {"role": "db"}),
          ("web2", "h2", {"role": "web"}), ("other", "h3", {"role": "other"})]


def policy_store() -> Store:
    store = Store(":memory:")
    for i in range(1, 4):
        store.create_host(f"h{i}", f"unix:/run/h{i}.sock", f"192.0.2.{i}")
    for network in ("app", "twin"):
        store.create_network(network, "10.0.0.0/24")
        for n, (name, host, _) in enumerate(PLACES):
            store.create_endpoint(network, host, ip=f"10.0.0.{10 + n}",
                                  name=name if network == "app" else f"twin-{name}")
    return store


def labelled(snap):
    """Every endpoint of both networks with its role label."""
    roles = {name: labels for name, _, labels in PLACES}
    for ep in list(snap.endpoints.values()):
        snap = snap.relabelled(ep, labels_of(roles[ep.name.removeprefix("twin-")]))
    return snap


def named(snap, name):
    return next(e for e in snap.endpoints.values() if e.name == name)


def network_id(snap, name):
    return next(n.id for n in snap.networks.values() if n.name == name)


def selector(snap, network: str | None = None, **labels) -> Selector:
    return Selector(labels_of(labels), network_id(snap, network) if network else None)


def db_policy(snap, first_rule_id: int = 1, ports=(PortRange("tcp", 5432),
                                                  PortRange("udp", 5432)),
              seq: int = 1, name: str = "db") -> Policy:
    """db in `app` accepts web on `ports`, and may send nothing of its own."""
    return Policy(seq, f"id-{name}", name, selector(snap, "app", role="db"),
                  ingress=(Rule(first_rule_id, INGRESS, 0,
                                (Peer(selector(snap, role="web")),), tuple(ports), ALLOW),),
                  egress=())


def with_policies(snap, *policies):
    return snap.with_policies({p.id: p for p in policies})


__all__ = ["EGRESS", "INGRESS", "Peer", "PortRange", "Rule", "Policy", "db_policy", "labelled",
           "named", "policy_store", "selector", "with_policies"]
