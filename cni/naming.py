"""Names that tie a CNI attachment (container id, interface name) to the controller's objects,
so the plugin keeps no state of its own.

- The attachment's endpoint is named from the container id and the interface name.
- Its veth's host end is named from the endpoint's name: an endpoint whose port is that name
  is one this plugin made (what GC may remove).
- The host end's alias says the network configuration (its ``name``) and the attachment, so
  that a veth whose ADD was killed before its endpoint existed is still known for what it is,
  and GC knows which runtime's configuration made it.
"""
from __future__ import annotations

import hashlib

VETH_PREFIX = "ofn"
ALIAS_PREFIX = "ovsfabric-cni"
_NAME_ROOM = 64 - 1 - 15  # the controller's name limit, less the separator and an ifname


def endpoint_name(container_id: str, ifname: str) -> str:
    """``<container id>-<ifname>``; a container id too long for that keeps 32 characters and
    a digest of the whole."""
    if len(container_id) > _NAME_ROOM:
        digest = hashlib.sha256(container_id.encode()).hexdigest()[:_NAME_ROOM - 33]
        container_id = f"{container_id[:32]}.{digest}"
    return f"{container_id}-{ifname}"


def host_veth(endpoint: str) -> str:
    return VETH_PREFIX + hashlib.sha256(endpoint.encode()).hexdigest()[:12]


def made_here(ep: dict) -> bool:
    """Whether this plugin made the endpoint (its port is the veth its name gives)."""
    return ep.get("port") == host_veth(ep["name"])


def alias(conf_name: str, container_id: str, ifname: str) -> str:
    return f"{ALIAS_PREFIX} {conf_name} {container_id} {ifname}"


def parse_alias(text: str) -> tuple[str, str, str] | None:
    """(configuration name, container id, ifname) of one of this plugin's aliases, else
    None."""
    parts = (text or "").split(" ")
    return (parts[1], parts[2], parts[3]) if len(parts) == 4 and parts[0] == ALIAS_PREFIX \
        else None
