"""What a write depends on and what it holds, so that replicas writing at once conflict only
where their writes could: endpoints created side by side on several replicas commit side by
side, and no two of them ever get one address, MAC, port name or port number.

A backend shared by replicas (etcd) commits a write only if its conditions hold:

- guards: coarse parts of the state that change seldom, each compared with the revision this
  replica last saw it written at, and written by what changes them: ``hosts`` (which hosts
  there are, their addresses), ``host/<name>`` (one host itself), ``networks`` (which networks
  there are, their names, VNIs and aliases), ``network/<id>`` (one network itself),
  ``routers``, ``policies`` (with the rule ids given), ``seq.<table>`` (the seqs given), and
  ``holdings/<network>/<host>`` (what a host token's writes count against its share);
- claims: one key per value that must be unique (as a SQL UNIQUE constraint), taken (it must
  not exist), kept (it must exist) or released (deleted) by the write: an address or MAC in a
  network, a port name or number on a host, a published host port, an endpoint on its host;
- empty: no claim under a prefix (no endpoint in a network, or on a host, that is deleted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from .entities import Endpoint, Snapshot
from .records import (ALIAS, COUNTER, ENDPOINT, HOST, LAST_RULE_ID, NETWORK, POLICY, PUBLISHED,
                      RESERVATION, ROUTER, Op, Put)

HOSTS, NETWORKS, ROUTERS, POLICIES = "hosts", "networks", "routers", "policies"


def host(name: str) -> str:
    return f"host/{_part(name)}"


def network(network_id: str) -> str:
    return f"network/{network_id}"


def holdings(network_id: str, host_name: str) -> str:
    return f"holdings/{network_id}/{_part(host_name)}"


def _part(text: str) -> str:
    return quote(text, safe="")


def endpoint_claim(ep: Endpoint) -> str:
    return f"endpoint/{_part(ep.host)}/{ep.id}"


def endpoint_claims(ep: Endpoint) -> set[str]:
    claims = {endpoint_claim(ep), f"address/{ep.network_id}/{ep.ip}",
              f"mac/{ep.network_id}/{ep.mac}"}
    if ep.port is not None:
        claims |= {f"port/{_part(ep.host)}/{_part(ep.port)}",
                   f"ofport/{_part(ep.host)}/{ep.ofport}"}
    return claims


def network_endpoints(network_id: str) -> str:
    """The prefix of the claims of every endpoint in the network (their MACs)."""
    return f"mac/{network_id}/"


def host_endpoints(name: str) -> str:
    return f"endpoint/{_part(name)}/"


@dataclass
class Conditions:
    reads: set[str] = field(default_factory=set)  # guards compared, not written
    writes: set[str] = field(default_factory=set)  # guards compared and written
    take: set[str] = field(default_factory=set)
    keep: set[str] = field(default_factory=set)
    release: set[str] = field(default_factory=set)
    empty: set[str] = field(default_factory=set)

    @property
    def guards(self) -> set[str]:
        return self.reads | self.writes


def conditions(ops: list[Op], snap: Snapshot, reads: set[str] = frozenset(),
               writes: set[str] = frozenset()) -> Conditions:
    """The conditions of ``ops``, planned on ``snap``, having read the guards ``reads`` and
    changed the guards ``writes`` besides those of the records."""
    found = Conditions(reads=set(reads), writes=set(writes))
    made = {op.record.id: op.record for op in ops if isinstance(op, Put) and op.kind == ENDPOINT}
    for op in ops:
        _add(found, op, snap, made)
    # A claim released and taken again in one write (an address reserved, then taken over by
    # the endpoint its holder makes) is kept.
    moved = found.take & found.release
    found.keep |= moved
    found.take -= moved
    found.release -= moved
    found.keep -= found.release | found.take
    found.reads -= found.writes
    return found


def _add(found: Conditions, op: Op, snap: Snapshot, made: dict[str, Endpoint]) -> None:
    kind = op.kind
    record = op.record if isinstance(op, Put) else None
    if kind == HOST:
        found.writes |= {HOSTS, host(op.key[0])}
        if record is None:
            found.empty.add(host_endpoints(op.key[0]))
    elif kind == NETWORK:
        found.writes |= {NETWORKS, network(op.key[0])}
        if record is None:
            found.empty.add(network_endpoints(op.key[0]))
    elif kind == ALIAS:
        found.writes.add(NETWORKS)
    elif kind == RESERVATION:
        network_id, ip = op.key
        (found.take if record else found.release).add(f"address/{network_id}/{ip}")
        found.reads.add(network(network_id))
    elif kind == ENDPOINT:
        old = snap.endpoints.get(op.key[0])
        if record is None:
            found.release |= endpoint_claims(old)
        elif old is None:
            found.take |= endpoint_claims(record)
            found.reads |= {network(record.network_id), host(record.host)}
        else:  # its labels: it must still be there
            found.keep.add(endpoint_claim(old))
    elif kind == PUBLISHED:
        ep = made.get(op.key[0]) or snap.endpoints[op.key[0]]
        before = {_published(ep, p) for p in snap.published.get(ep.id, ())}
        after = {_published(ep, p) for p in record.ports} if record else set()
        found.take |= after - before
        found.release |= before - after
        found.keep.add(endpoint_claim(ep))
    elif kind == ROUTER:
        found.writes.add(ROUTERS)
    elif kind == POLICY:
        found.writes.add(POLICIES)
    else:
        assert kind == COUNTER
        found.writes.add(POLICIES if op.key[0] == LAST_RULE_ID else op.key[0])


def _published(ep: Endpoint, port) -> str:
    return f"published/{_part(ep.host)}/{port.protocol}/{port.host_port}"
