"""The replicas' records in etcd: who they are, where their API is, what switches connect to.

Each replica keeps ``<prefix>/members/<name>`` = ``{"name", "api", "advertise"}`` attached to
its lease, so that a replica that dies leaves the list when its lease expires; the leader key
``<prefix>/leader`` holds the same record.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from .etcd import decode, encode

PREFIX = "/ovsfabric"


@dataclass(frozen=True)
class Member:
    name: str
    api: str
    advertise: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_value(cls, value: str | bytes) -> Member | None:
        """The record in a key's value; None for one that is not a member record."""
        try:
            data = json.loads(value)
            return cls(str(data["name"]), str(data["api"]), str(data["advertise"]))
        except (ValueError, KeyError, TypeError):
            return None

    @classmethod
    def from_kv(cls, kv: dict) -> Member | None:
        return cls.from_value(decode(kv.get("value", "")))


def leader_key(prefix: str = PREFIX) -> str:
    return f"{prefix}/leader"


def members_prefix(prefix: str = PREFIX) -> str:
    return f"{prefix}/members/"


def member_key(name: str, prefix: str = PREFIX) -> str:
    return members_prefix(prefix) + name


def put(key: str, member: Member, lease: int) -> dict:
    """The txn operation writing ``member`` at ``key`` attached to ``lease``."""
    return {"request_put": {"key": encode(key), "value": encode(member.to_json()),
                            "lease": lease}}


def listing(members: dict[str, Member], leader: str | None) -> list[dict]:
    """[{name, api, advertise, leader}] sorted by name."""
    return [{**asdict(m), "leader": m.name == leader}
            for m in sorted(members.values(), key=lambda m: m.name)]
