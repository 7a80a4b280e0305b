"""The rules of published ports: which host ports an endpoint may take on its host. Pure
functions over a snapshot; the store applies them under its lock."""
from __future__ import annotations

from .addressing import lowest_free
from .entities import Endpoint, PublishedPort, Snapshot
from .errors import Conflict, InvalidRequest, NotFound

PROTOCOLS = ("tcp", "udp")
PORT_MIN, PORT_MAX = 1, 65535
# Where a host port is found when none is asked for: the dynamic range, as Docker does.
HOST_PORT_FIRST = 49152


def check_port(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or \
            not PORT_MIN <= value <= PORT_MAX:
        raise InvalidRequest(f"{what} {value!r} is not a port number ({PORT_MIN} to {PORT_MAX})")
    return value


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise InvalidRequest(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    return protocol


def new_published(snap: Snapshot, ep: Endpoint, protocol: str, port: int,
                  host_port: int | None) -> PublishedPort:
    """The port to publish, its host port the one asked for or the lowest free one; Conflict
    if the host port is taken on the endpoint's host."""
    check_protocol(protocol)
    check_port(port, "port")
    taken = {p.host_port for p in snap.published_on_host(ep.host) if p.protocol == protocol}
    if host_port is None:
        host_port = lowest_free(taken, HOST_PORT_FIRST, PORT_MAX,
                                f"{protocol} host port on host {ep.host!r}")
    elif check_port(host_port, "host_port") in taken:
        raise Conflict(f"{protocol} port {host_port} on host {ep.host!r} is already published")
    return PublishedPort(ep.id, protocol, port, host_port)


def find_published(snap: Snapshot, ep: Endpoint, protocol: str,
                   host_port: int) -> PublishedPort:
    check_protocol(protocol)
    found = next((p for p in snap.published.get(ep.id, ())
                  if (p.protocol, p.host_port) == (protocol, host_port)), None)
    if found is None:
        raise NotFound(f"endpoint {ep.id} publishes no {protocol} host port {host_port}")
    return found
