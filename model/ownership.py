"""Which owners and aliases belong to a host, and how much of a network a host may hold.

A host's plugin holds addresses as ``H`` (its containers) and ``aux.H`` (``--aux-address``
values, which its containers cannot take), and gives networks aliases ``KIND:H:...`` (a Docker
network id, an IPAM pool): a host token may manage exactly these.
"""
from __future__ import annotations


def aux_owner(host: str) -> str:
    return f"aux.{host}"


def belongs_to_host(owner: str | None, host: str) -> bool:
    return owner in (host, aux_owner(host))


def alias_host(alias: str) -> str | None:
    """The host of an alias ``KIND:HOST:...`` (host names have no colon), if it is one."""
    parts = alias.split(":")
    return parts[1] if len(parts) >= 3 and parts[1] else None


def host_share(capacity: int) -> int:
    """The most addresses of a network (of ``capacity`` assignable ones) one host token may
    hold: half, so that one host can never leave the others without."""
    return (capacity + 1) // 2
