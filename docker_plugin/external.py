"""Docker's external connectivity: `docker run -p` as published ports of the endpoint.

Docker sends ProgramExternalConnectivity after Join when the endpoint is its container's way
out (a network that is not --internal), with the container's port map, and
RevokeExternalConnectivity before Leave. Publishing is the controller's: connections to the
host's outside address at the host port reach the container's port.
"""
from __future__ import annotations

import logging

from api.client import ApiError

from .body import text
from .controller import Controller
from .errors import BadRequest, PluginError

LOG = logging.getLogger(__name__)
PORTMAP = "com.docker.network.portmap"
PROTOCOLS = {6: "tcp", 17: "udp"}
ANY_ADDRESS = ("", "0.0.0.0")  # Docker's way of saying every address of the host
CONFLICT = 409


class ExternalConnectivity:
    def __init__(self, controller: Controller):
        self.controller = controller

    def program(self, body: dict) -> dict:
        ep = self._endpoint(body)
        options = body.get("Options") or {}
        if not isinstance(options, dict):
            raise BadRequest("Options must be an object")
        wanted = [_mapping(m) for m in options.get(PORTMAP) or []]
        already = {(p["protocol"], p["port"]) for p in self.controller.client.published(ep["id"])}
        done = []
        try:
            for protocol, port, first, last in wanted:
                if (protocol, port) not in already:
                    done.append(self._publish(ep["id"], protocol, port, first, last))
        except BaseException:
            for published in done:  # all or nothing: Docker fails the container's start
                self.controller.client.unpublish(ep["id"], published["protocol"],
                                                 published["host_port"])
            raise
        for published in done:
            LOG.info("endpoint %s: %s/%d published on %s:%d", ep["name"][:12],
                     published["protocol"], published["port"], published["host_ip"],
                     published["host_port"])
        return {}

    def revoke(self, body: dict) -> dict:
        ep = self.controller.endpoint_named(text(body, "EndpointID"))
        if ep is None:
            return {}  # gone already
        for published in self.controller.client.published(ep["id"]):
            try:
                self.controller.client.unpublish(ep["id"], published["protocol"],
                                                 published["host_port"])
            except ApiError as exc:
                if exc.status != 404:
                    raise
        return {}

    def _endpoint(self, body: dict) -> dict:
        endpoint_id = text(body, "EndpointID")
        ep = self.controller.endpoint_named(endpoint_id)
        if ep is None:
            raise PluginError(f"endpoint {endpoint_id[:12]} does not exist on this host")
        return ep

    def _publish(self, endpoint_id: str, protocol: str, port: int, first: int | None,
                 last: int | None) -> dict:
        """The first free host port of Docker's range (any, when Docker gave none)."""
        publish = self.controller.client.publish
        if first is None:
            return publish(endpoint_id, protocol, port)
        for host_port in range(first, last):
            try:
                return publish(endpoint_id, protocol, port, host_port)
            except ApiError as exc:
                if exc.status != CONFLICT:
                    raise
        return publish(endpoint_id, protocol, port, last)  # free, or its 409 says why


def _mapping(entry) -> tuple[str, int, int | None, int | None]:
    """(protocol, container port, first host port, last host port) of one portmap entry."""
    if not isinstance(entry, dict):
        raise BadRequest(f"{PORTMAP} entries must be objects")
    protocol = PROTOCOLS.get(entry.get("Proto"))
    if protocol is None:
        raise BadRequest(f"protocol {entry.get('Proto')!r} cannot be published: tcp and udp can")
    if entry.get("HostIP") not in ANY_ADDRESS + (None,):
        raise BadRequest(f"a port is published on the host's outside address only, not on "
                         f"{entry['HostIP']}: leave the address out of -p")
    port, first, last = entry.get("Port"), entry.get("HostPort") or 0, entry.get("HostPortEnd")
    for name, value in (("Port", port), ("HostPort", first), ("HostPortEnd", last or 0)):
        if not isinstance(value, int) or not 0 <= value <= 65535:
            raise BadRequest(f"{PORTMAP} {name} must be a port number, not {value!r}")
    if not port:
        raise BadRequest(f"{PORTMAP} needs the container's Port")
    if not first:
        return protocol, port, None, None
    last = last or first
    if last < first:
        raise BadRequest(f"{PORTMAP} HostPortEnd {last} is below HostPort {first}")
    return protocol, port, first, last
