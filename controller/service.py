"""The fabric's use cases: hosts, networks, aliases, address reservations and endpoints
created and deleted with their rules, whoever asks.

Every call takes the caller's scope (security/tokens.Scope) and refuses, with a model error,
what that scope may not change; a refused call changes nothing. The REST API calls this with
its token's scope, and so can any other caller in the controller's process; the Docker plugin
is a process of its own and speaks REST.
"""
from __future__ import annotations

import logging
import time

from model import Endpoint, Host, InvalidRequest, Network, Snapshot
from model.entities import Reservation
from security.tokens import Scope

from . import permissions
from .fabric import Fabric

LOG = logging.getLogger(__name__)
PROGRAMMING_WAIT_S = 5.0  # the most an endpoint's create or delete waits for its flows


class FabricService:
    def __init__(self, fabric: Fabric, programming_wait_s: float = PROGRAMMING_WAIT_S):
        self.fabric = fabric
        self.store = fabric.store
        self.programming_wait_s = programming_wait_s

    # ---- hosts ---------------------------------------------------------------------------

    def create_host(self, scope: Scope, name: str, ovsdb: str, tunnel_ip: str,
                    datapath_type: str = "system", bridge: str = "br-int") -> Host:
        permissions.require_admin(scope, f"registering host {name!r}")
        if ovsdb.startswith("ssl:") and not self.fabric.advertise.startswith("ssl:"):
            raise InvalidRequest(f"ovsdb {ovsdb}: ssl: targets need the controller's TLS "
                                 f"identity (serve --tls-cert, --tls-key and --tls-ca)")
        return self.store.create_host(name, ovsdb, tunnel_ip, datapath_type, bridge)

    def delete_host(self, scope: Scope, name: str) -> None:
        permissions.require_admin(scope, f"removing host {name!r}")
        self.store.delete_host(name)

    # ---- networks and their aliases --------------------------------------------------------

    def create_network(self, scope: Scope, name: str, subnet: str, gateway: str | None = None,
                       vni: int | None = None, mtu: int | None = None,
                       owner: str | None = None) -> Network:
        """``owner`` defaults to the scope's host (None for the admin: an admin's network)."""
        owner = owner or scope.host
        permissions.require_owner(scope, owner, f"a network for {owner!r}")
        return self.store.create_network(name, subnet, gateway, vni, mtu, owner)

    def delete_network(self, scope: Scope, ref: str) -> None:
        net = self.store.get_network(ref)
        permissions.require_owner(scope, net.owner, f"network {net.name!r}, which "
                                  f"{repr(net.owner) if net.owner else 'an admin'} made")
        self.store.delete_network(net.id)

    def add_alias(self, scope: Scope, ref: str, alias: str) -> Network:
        permissions.require_alias(scope, alias)
        return self.store.add_alias(ref, alias)

    def remove_alias(self, scope: Scope, ref: str, alias: str) -> None:
        permissions.require_alias(scope, alias)
        self.store.remove_alias(ref, alias)

    # ---- address reservations ------------------------------------------------------------

    def reserve_address(self, scope: Scope, ref: str, owner: str,
                        ip: str | None = None) -> tuple[Network, Reservation]:
        """A host scope gets a new address only while its host holds less than its share."""
        net = self.store.get_network(ref)
        permissions.require_owner(scope, owner, f"addresses for {owner!r}")
        held = self.store.reserve_address(net.id, owner, ip, share_of=scope.host)
        return net, held

    def reservations(self, ref: str) -> tuple[Network, list[Reservation]]:
        """The network's reserved addresses that no endpoint uses yet."""
        net = self.store.get_network(ref)
        return net, [r for (network_id, _), r in self.store.snapshot().reservations.items()
                     if network_id == net.id]

    def release_address(self, scope: Scope, ref: str, ip: str,
                        owner: str | None = None) -> None:
        """With ``owner``, only if that owner holds it; a host scope without one releases only
        what its own owners hold."""
        net = self.store.get_network(ref)
        if scope.host is not None and owner is None:
            # Asked of the store as the holder's own release, so that a reservation another
            # owner makes meanwhile is left.
            held = self.store.snapshot().reservations.get((net.id, ip))
            owner = held.owner if held else scope.host
        permissions.require_owner(scope, owner, f"address {ip}, which {owner!r} holds")
        self.store.release_address(net.id, ip, owner)

    # ---- endpoints -----------------------------------------------------------------------

    def endpoints(self, network: str | None = None,
                  host: str | None = None) -> tuple[Snapshot, list[Endpoint]]:
        """The endpoints (of a network, on a host) in the order they were made, with the one
        snapshot they were read from: their networks are read from it too, which a
        concurrent delete cannot change."""
        snap = self.store.snapshot()
        if network is not None:
            eps = snap.network_endpoints(self.store.get_network(network).id)
        else:
            eps = snap.endpoints.values()
        if host is not None:
            eps = [e for e in eps if e.host == host]
        return snap, sorted(eps, key=lambda e: e.seq)

    def create_endpoint(self, scope: Scope, network: str, host: str, port: str | None = None,
                        ip: str | None = None, mac: str | None = None,
                        name: str | None = None) -> tuple[Endpoint, Network]:
        """Answers once the flows are confirmed on every connected host of the network (or
        the wait is over); a port OVS cannot attach is refused and the endpoint deleted again.
        Returns the endpoint with its network as they were when it was made."""
        permissions.require_host(scope, host, f"an endpoint on host {host!r}")
        if port is not None and (holder := self.fabric.port_holder(host, port)):
            raise InvalidRequest(f"port {port!r} on host {host!r} is {holder}, "
                                 f"not an endpoint's")
        ep = self.store.create_endpoint(network, host, port, ip, mac, name,
                                        bounded=not scope.is_admin)
        net = self.store.snapshot().networks[ep.network_id]
        self._wait_programmed(ep, bind=ep.port is not None)
        error = self.fabric.port_error(ep.host, ep.id) if ep.port is not None else None
        if error is not None:
            # A port OVS cannot attach (no such device, say): the request changes nothing.
            self.store.delete_endpoint(ep.id)
            raise InvalidRequest(f"port {ep.port!r} on host {ep.host!r} cannot be attached: "
                                 f"{error}")
        return ep, net

    def delete_endpoint(self, scope: Scope, endpoint_id: str) -> None:
        """Answers once its flows are gone on every connected host of the network (or the
        wait is over)."""
        ep = self.store.get_endpoint(endpoint_id)
        permissions.require_host(scope, ep.host, f"endpoint {endpoint_id} on host {ep.host!r}")
        ep = self.store.delete_endpoint(endpoint_id)
        self._wait_programmed(ep, bind=False)

    def _wait_programmed(self, ep: Endpoint, bind: bool) -> None:
        """Until the flows are in on every connected host of the network and the endpoint's
        own, its port attached too with ``bind`` (bounded)."""
        LOG.debug("endpoint %s committed", ep.id)
        started = time.monotonic()
        snap = self.store.snapshot()
        hosts = snap.hosts_of_network(ep.network_id) | {ep.host}
        bound = {ep.id: ep.host} if bind else None
        if self.fabric.wait_programmed(hosts, snap.revision, bound, self.programming_wait_s):
            self.fabric.metrics.convergence_seconds.observe(time.monotonic() - started)
        else:
            LOG.warning("endpoint %s: flows not confirmed within %.0f s", ep.id,
                        self.programming_wait_s)
