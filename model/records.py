"""What the store keeps: the fabric as records, one per thing, and a write as the records it
puts and deletes.

Every backend persists exactly these operations (SQLite as rows of its tables, etcd as one
key per record), and every replica applies them the same way (model/state.py), so a write
means the same whichever backend holds it and whichever replica reads it. The JSON form here
is the one etcd holds and `store copy` carries.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Union

from .entities import Endpoint, Host, Network, PublishedPort, Reservation, Route, Router
from .policy import Policy, labels_of
from .policy_records import policy_from_record, record_of

HOST, NETWORK, ALIAS, RESERVATION, ENDPOINT, ROUTER, PUBLISHED, POLICY, COUNTER = (
    "host", "network", "alias", "reservation", "endpoint", "router", "published", "policy",
    "counter")
# The order a whole state is loaded in: a record's references come before it.
KINDS = (HOST, NETWORK, ALIAS, RESERVATION, ENDPOINT, ROUTER, PUBLISHED, POLICY, COUNTER)

# The counters: the last rule id given (rule ids mark connections: never given twice), and per
# kind the last seq given (a host's seq is its datapath id: never given twice either).
LAST_RULE_ID = "last_rule_id"
SEQUENCED = {HOST: "hosts", NETWORK: "networks", ENDPOINT: "endpoints", ROUTER: "routers",
             POLICY: "policies"}


def seq_counter(kind: str) -> str:
    return f"seq.{SEQUENCED[kind]}"


@dataclass(frozen=True)
class Alias:
    """Another name a network answers to (e.g. a Docker network id on a host)."""

    alias: str
    network_id: str


@dataclass(frozen=True)
class Published:
    """Every port published to one endpoint, on its host."""

    endpoint_id: str
    host: str
    ports: tuple[PublishedPort, ...]


@dataclass(frozen=True)
class Counter:
    name: str
    value: int


Record = Union[Host, Network, Alias, Reservation, Endpoint, Router, Published, Policy, Counter]
_KIND_OF = {Host: HOST, Network: NETWORK, Alias: ALIAS, Reservation: RESERVATION,
            Endpoint: ENDPOINT, Router: ROUTER, Published: PUBLISHED, Policy: POLICY,
            Counter: COUNTER}


def kind_of(record: Record) -> str:
    return _KIND_OF[type(record)]


def key_of(record: Record) -> tuple[str, ...]:
    if isinstance(record, Host):
        return (record.name,)
    if isinstance(record, Alias):
        return (record.alias,)
    if isinstance(record, Reservation):
        return (record.network_id, record.ip)
    if isinstance(record, Published):
        return (record.endpoint_id,)
    if isinstance(record, Counter):
        return (record.name,)
    return (record.id,)


@dataclass(frozen=True)
class Put:
    record: Record

    @property
    def kind(self) -> str:
        return kind_of(self.record)

    @property
    def key(self) -> tuple[str, ...]:
        return key_of(self.record)


@dataclass(frozen=True)
class Delete:
    kind: str
    key: tuple[str, ...]


Op = Union[Put, Delete]


def delete(record: Record) -> Delete:
    return Delete(kind_of(record), key_of(record))


# ---- JSON --------------------------------------------------------------------------------

def to_json(record: Record) -> str:
    if isinstance(record, Endpoint):
        row = {**asdict(record), "labels": dict(record.labels)}
    elif isinstance(record, Router):
        row = {**asdict(record), "routes": [[r.destination, r.nexthop] for r in record.routes]}
    elif isinstance(record, Published):
        row = {"endpoint_id": record.endpoint_id, "host": record.host,
               "ports": [[p.protocol, p.port, p.host_port] for p in record.ports]}
    elif isinstance(record, Policy):
        row = {"seq": record.seq, "id": record.id, "name": record.name,
               "body": record_of(record)}
    else:
        row = asdict(record)
    return json.dumps(row, separators=(",", ":"), sort_keys=True)


def from_json(kind: str, text: str | bytes) -> Record:
    row = json.loads(text)
    if kind == HOST:
        return Host(**row)
    if kind == NETWORK:
        return Network(**row)
    if kind == ALIAS:
        return Alias(**row)
    if kind == RESERVATION:
        return Reservation(**row)
    if kind == ENDPOINT:
        return Endpoint(**{**row, "labels": labels_of(row["labels"])})
    if kind == ROUTER:
        return Router(**{**row, "networks": tuple(row["networks"]),
                         "routes": tuple(Route(*r) for r in row["routes"])})
    if kind == PUBLISHED:
        return Published(row["endpoint_id"], row["host"], tuple(
            PublishedPort(row["endpoint_id"], *p) for p in row["ports"]))
    if kind == POLICY:
        return policy_from_record(row["seq"], row["id"], row["name"], row["body"])
    if kind == COUNTER:
        return Counter(**row)
    raise ValueError(f"no record kind {kind!r}")
