"""The plugin's access to the controller: every lookup a REST request, nothing cached."""
from __future__ import annotations

import threading

from api.client import ApiError, FabricClient


class Controller:
    def __init__(self, url: str, host: str, token: str | None = None,
                 ca_cert: str | None = None, timeout: float = 30.0):
        self.url = url
        self.host = host  # this Docker host's name in the fabric; owner of its reservations
        self._credentials = {"token": token, "ca_cert": ca_cert}
        self.timeout = timeout
        self._local = threading.local()

    @property
    def client(self) -> FabricClient:
        # Docker calls in parallel: one HTTP session per thread.
        if not hasattr(self._local, "client"):
            self._local.client = FabricClient(self.url, timeout=self.timeout,
                                              **self._credentials)
        return self._local.client

    # ---- networks ------------------------------------------------------------------------

    def network(self, ref: str) -> dict | None:
        """A network by id, name or alias; None when there is none."""
        try:
            return self.client.network(ref)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def networks(self) -> list[dict]:
        return self.client.networks()

    def create_network(self, name: str, subnet: str, gateway: str | None = None,
                       mtu: int | None = None, egress: bool = True) -> tuple[dict, bool]:
        """A new fabric network ``name`` owned by this host, or the one another host created
        meanwhile; (network, created here)."""
        fields = {k: v for k, v in (("gateway", gateway), ("mtu", mtu)) if v is not None}
        fields["owner"] = self.host
        fields["egress"] = egress
        try:
            return self.client.create_network(name, subnet, **fields), True
        except ApiError as exc:
            if exc.status != 409:
                raise
        net = self.network(name)
        if net is None:
            raise ApiError(409, f"network {name!r} could not be created nor found")
        return net, False

    def delete_network(self, ref: str) -> None:
        try:
            self.client.delete_network(ref)
        except ApiError as exc:
            if exc.status != 404:
                raise

    def add_alias(self, ref: str, alias: str) -> dict:
        return self.client.add_alias(ref, alias)

    def remove_alias(self, alias: str) -> None:
        """Idempotent: an alias already gone is fine."""
        try:
            self.client.remove_alias(alias, alias)
        except ApiError as exc:
            if exc.status != 404:
                raise

    # ---- addresses -----------------------------------------------------------------------

    def reserve(self, network_id: str, ip: str | None = None, owner: str | None = None) -> dict:
        return self.client.reserve_address(network_id, owner or self.host, ip)

    def release(self, network_id: str, ip: str, owner: str | None = None) -> None:
        """Idempotent; with ``owner``, only a reservation that owner holds goes."""
        try:
            self.client.release_address(network_id, ip, owner)
        except ApiError as exc:
            if exc.status != 404:
                raise

    def reservations(self, network_id: str, owner: str) -> list[str]:
        """The addresses ``owner`` holds in the network."""
        return [r["ip"] for r in self.client.addresses(network_id) if r["owner"] == owner]
    # ---- endpoints -----------------------------------------------------------------------

    def host_endpoints(self) -> list[dict]:
        return self.client.endpoints(host=self.host)

    def endpoint_named(self, name: str) -> dict | None:
        """This host's endpoint called ``name`` (a Docker EndpointID), if any."""
        return next((ep for ep in self.host_endpoints() if ep["name"] == name), None)

    def endpoints_of(self, network_id: str) -> list[dict]:
        """This host's endpoints in a network."""
        return self.client.endpoints(network=network_id, host=self.host)

    def create_endpoint(self, **fields) -> dict:
        """Answers once the port is attached and its flows are confirmed (at most 5 s)."""
        return self.client.create_endpoint(host=self.host, **fields)

    def delete_endpoint(self, endpoint_id: str) -> None:
        try:
            self.client.delete_endpoint(endpoint_id)
        except ApiError as exc:
            if exc.status != 404:
                raise
