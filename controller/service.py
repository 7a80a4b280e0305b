"""The fabric's use cases: hosts, networks, aliases, address reservations, endpoints and their
labels, routers, published ports and security policies created and deleted with their rules,
whoever asks.

Every call takes the caller's scope (security/tokens.Scope) and refuses, with a model error,
what that scope may not change; a refused call changes nothing. The REST API calls this with
its token's scope, and so can any other caller in the controller's process; the Docker plugin
is a process of its own and speaks REST.
"""
from __future__ import annotations

import logging
import time

from model import Endpoint, Host, InvalidRequest, Network, NotFound, Snapshot
from model.entities import PublishedPort, Reservation, Router
from model.policy import Policy
from model.policy_hosts import policy_hosts, relabel_hosts
from security.tokens import Scope

from . import permissions
from .fabric import Fabric

LOG = logging.getLogger(__name__)
PROGRAMMING_WAIT_S = 5.0  # the most a write waits for its flows


class FabricService:
    def __init__(self, fabric: Fabric, programming_wait_s: float = PROGRAMMING_WAIT_S):
        self.fabric = fabric
        self.store = fabric.store
        self.programming_wait_s = programming_wait_s

    # ---- hosts ---------------------------------------------------------------------------

    def create_host(self, scope: Scope, name: str, ovsdb: str, tunnel_ip: str,
                    datapath_type: str = "system", bridge: str = "br-int",
                    egress_ip: str | None = None) -> Host:
        permissions.require_admin(scope, f"registering host {name!r}")
        if ovsdb.startswith("ssl:") and not self.fabric.advertise.startswith("ssl:"):
            raise InvalidRequest(f"ovsdb {ovsdb}: ssl: targets need the controller's TLS "
                                 f"identity (serve --tls-cert, --tls-key and --tls-ca)")
        return self.store.create_host(name, ovsdb, tunnel_ip, datapath_type, bridge, egress_ip)

    def delete_host(self, scope: Scope, name: str) -> None:
        permissions.require_admin(scope, f"removing host {name!r}")
        self.store.delete_host(name)

    # ---- networks and their aliases --------------------------------------------------------

    def create_network(self, scope: Scope, name: str, subnet: str, gateway: str | None = None,
                       vni: int | None = None, mtu: int | None = None,
                       owner: str | None = None, egress: bool = True) -> Network:
        """``owner`` defaults to the scope's host (None for the admin: an admin's network)."""
        owner = owner or scope.host
        permissions.require_owner(scope, owner, f"a network for {owner!r}")
        return self.store.create_network(name, subnet, gateway, vni, mtu, owner, egress)

    def delete_network(self, scope: Scope, ref: str) -> None:
        net = self._owned_network(scope, ref)
        self.store.delete_network(net.id)

    def set_network_egress(self, scope: Scope, ref: str, egress: bool) -> Network:
        """Answers once the network's connected hosts have confirmed (or the wait is over)."""
        net = self.store.set_network_egress(self._owned_network(scope, ref).id, egress)
        self._wait_for({net.id}, set(), f"network {net.name}")
        return net

    def _owned_network(self, scope: Scope, ref: str) -> Network:
        net = self.store.get_network(ref)
        permissions.require_owner(scope, net.owner, f"network {net.name!r}, which "
                                  f"{repr(net.owner) if net.owner else 'an admin'} made")
        return net

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
                        name: str | None = None,
                        labels: dict[str, str] | None = None) -> tuple[Endpoint, Network]:
        """Answers once the flows are confirmed on every connected host of the network (or
        the wait is over); a port OVS cannot attach is refused and the endpoint deleted again.
        Returns the endpoint with its network as they were when it was made."""
        permissions.require_host(scope, host, f"an endpoint on host {host!r}")
        if port is not None and (holder := self.fabric.port_holder(host, port)):
            raise InvalidRequest(f"port {port!r} on host {host!r} is {holder}, "
                                 f"not an endpoint's")
        ep = self.store.create_endpoint(network, host, port, ip, mac, name,
                                        bounded=not scope.is_admin, labels=labels)
        net = self.store.snapshot().networks[ep.network_id]
        self._wait_programmed(ep, bind=ep.port is not None)
        error = self.fabric.port_error(ep.host, ep.id) if ep.port is not None else None
        if error is not None:
            # A port OVS cannot attach (no such device, say): the request changes nothing.
            self.store.delete_endpoint(ep.id)
            raise InvalidRequest(f"port {ep.port!r} on host {ep.host!r} cannot be attached: "
                                 f"{error}")
        return ep, net

    def set_endpoint_labels(self, scope: Scope, endpoint_id: str,
                            labels: dict[str, str]) -> tuple[Endpoint, Network]:
        """Replaces the endpoint's labels (a host scope: on its own host's endpoints); answers
        once its network's hosts, and those of the endpoints selected by every policy that
        selects it or has it as a peer, with its old labels or its new, have confirmed (or the
        wait is over)."""
        before = self._endpoint_of_host(scope, endpoint_id)
        after = self.store.set_endpoint_labels(before.id, labels)
        snap = self.store.snapshot()
        self._wait_for({after.network_id}, relabel_hosts(snap, before, after),
                       f"endpoint {after.id}")
        return after, snap.networks[after.network_id]

    def delete_endpoint(self, scope: Scope, endpoint_id: str) -> None:
        """Answers once its flows are gone on every connected host of the network (or the
        wait is over)."""
        self._endpoint_of_host(scope, endpoint_id)
        ep = self.store.delete_endpoint(endpoint_id)
        self._wait_programmed(ep, bind=False)

    # ---- routers -------------------------------------------------------------------------

    def create_router(self, scope: Scope, name: str) -> Router:
        permissions.require_admin(scope, f"creating router {name!r}")
        return self.store.create_router(name)

    def delete_router(self, scope: Scope, ref: str) -> None:
        permissions.require_admin(scope, f"deleting router {ref!r}")
        self.store.delete_router(ref)

    def attach_network(self, scope: Scope, ref: str, network: str) -> Router:
        """Answers once the connected hosts of the router's networks have confirmed (or the
        wait is over), as do the other router writes that change flows."""
        permissions.require_admin(scope, f"attaching a network to router {ref!r}")
        return self._router_written(self.store.attach_network(ref, network))

    def detach_network(self, scope: Scope, ref: str, network: str) -> None:
        permissions.require_admin(scope, f"detaching a network from router {ref!r}")
        # The detached network's hosts lose the router's flows too.
        detached = self.store.get_network(network).id
        router = self.store.detach_network(ref, network)
        self._wait_for(set(router.networks) | {detached}, set(), f"router {router.name}")

    def set_routes(self, scope: Scope, ref: str, routes: list[tuple[str, str]]) -> Router:
        permissions.require_admin(scope, f"changing the routes of router {ref!r}")
        return self._router_written(self.store.set_routes(ref, routes))

    def _router_written(self, router: Router) -> Router:
        self._wait_for(set(router.networks), set(), f"router {router.name}")
        return router

    # ---- security policies ---------------------------------------------------------------

    def policies(self) -> list[Policy]:
        return self.store.policies()

    def policy(self, ref: str) -> Policy:
        return self.store.get_policy(ref)

    def create_policy(self, scope: Scope, body: dict) -> Policy:
        """Answers once the hosts of the endpoints it selects have confirmed (or the wait is
        over), as do the other policy writes for the endpoints selected before and after."""
        permissions.require_admin(scope, "creating security policies")
        return self._policy_written(None, self.store.create_policy(body))

    def replace_policy(self, scope: Scope, ref: str, body: dict) -> Policy:
        permissions.require_admin(scope, f"replacing policy {ref!r}")
        before = self.store.get_policy(ref)
        return self._policy_written(before, self.store.replace_policy(before.id, body))

    def delete_policy(self, scope: Scope, ref: str) -> None:
        permissions.require_admin(scope, f"deleting policy {ref!r}")
        self._policy_written(self.store.delete_policy(ref), None)

    def _policy_written(self, before: Policy | None, after: Policy | None) -> Policy | None:
        written = [p for p in (before, after) if p is not None]
        hosts = policy_hosts(self.store.snapshot(), written)
        self._wait_for(set(), hosts, f"policy {written[-1].name}")
        return after

    # ---- published ports -----------------------------------------------------------------

    def published(self, endpoint_id: str) -> tuple[Endpoint, Host, list[PublishedPort]]:
        """The endpoint's published ports, with the endpoint and its host they are on."""
        snap = self.store.snapshot()
        ep = snap.endpoints.get(endpoint_id)
        if ep is None:
            raise NotFound(f"endpoint {endpoint_id!r} does not exist")
        return ep, snap.hosts[ep.host], list(snap.published.get(ep.id, ()))

    def publish_port(self, scope: Scope, endpoint_id: str, protocol: str, port: int,
                     host_port: int | None = None) -> tuple[PublishedPort, Host]:
        """Answers once the endpoint's network's hosts have confirmed (or the wait is
        over)."""
        ep = self._endpoint_of_host(scope, endpoint_id)
        published = self.store.publish_port(ep.id, protocol, port, host_port)
        self._wait_for({ep.network_id}, {ep.host}, f"endpoint {ep.id}")
        return published, self.store.get_host(ep.host)

    def unpublish_port(self, scope: Scope, endpoint_id: str, protocol: str,
                       host_port: int) -> None:
        ep = self._endpoint_of_host(scope, endpoint_id)
        self.store.unpublish_port(ep.id, protocol, host_port)
        self._wait_for({ep.network_id}, {ep.host}, f"endpoint {ep.id}")

    def _endpoint_of_host(self, scope: Scope, endpoint_id: str) -> Endpoint:
        ep = self.store.get_endpoint(endpoint_id)
        permissions.require_host(scope, ep.host, f"endpoint {endpoint_id} on host {ep.host!r}")
        return ep

    # ---- waiting -------------------------------------------------------------------------

    def _wait_programmed(self, ep: Endpoint, bind: bool) -> None:
        """Until the flows are in on every connected host of the network and the endpoint's
        own, its port attached too with ``bind`` (bounded)."""
        bound = {ep.id: ep.host} if bind else None
        self._wait_for({ep.network_id}, {ep.host}, f"endpoint {ep.id}", bound)

    def _wait_for(self, networks: set[str], hosts: set[str], what: str,
                  bound: dict[str, str] | None = None) -> None:
        """Until every connected host of ``networks`` (and of the networks routed with them:
        their hosts route to these), and ``hosts``, has applied the current revision
        (bounded)."""
        LOG.debug("%s committed", what)
        started = time.monotonic()
        snap = self.store.snapshot()
        routed = [snap.router_of(n) for n in networks]
        networks = networks.union(*(r.networks for r in routed if r is not None))
        hosts = hosts.union(*(snap.hosts_of_network(n) for n in networks))
        if self.fabric.wait_programmed(hosts, snap.revision, bound, self.programming_wait_s):
            self.fabric.metrics.convergence_seconds.observe(time.monotonic() - started)
        else:
            LOG.warning("%s: flows not confirmed within %.0f s", what,
                        self.programming_wait_s)
