"""Hosts, networks and endpoints: what orchestrators create and delete."""
from __future__ import annotations

import logging
import time

from flask import request

from controller.fabric import Fabric
from model import Endpoint, InvalidRequest, Network, NotFound, Snapshot

from . import scopes
from .schemas import (AddressReserve, AddressView, AliasCreate, EndpointCreate, EndpointView,
                      HostCreate, HostView, NetworkCreate, NetworkView)
from .spec import Api

LOG = logging.getLogger(__name__)
PROGRAMMING_WAIT_S = 5.0


def host_view(fabric: Fabric, host) -> dict:
    return {"name": host.name, "ovsdb": host.ovsdb, "tunnel_ip": host.tunnel_ip,
            "datapath_type": host.datapath_type, "bridge": host.bridge,
            **fabric.host_status(host.name)}


def network_view(net: Network, aliases=()) -> dict:
    return {"id": net.id, "name": net.name, "subnet": net.subnet, "gateway": net.gateway,
            "gateway_mac": net.gateway_mac, "vni": net.vni, "mtu": net.mtu,
            "aliases": list(aliases), "owner": net.owner}


def address_view(net: Network, ip: str, owner: str) -> dict:
    return {"network": net.id, "ip": ip, "prefix_len": net.prefix_len, "gateway": net.gateway,
            "owner": owner}


def endpoint_view(snap: Snapshot, ep: Endpoint) -> dict:
    """``snap`` holds ``ep``: its network is read from the same snapshot, which a concurrent
    delete of both cannot change under the view."""
    net = snap.networks[ep.network_id]
    return {"id": ep.id, "name": ep.name, "network": net.id, "host": ep.host, "port": ep.port,
            "ip": ep.ip, "prefix_len": net.prefix_len, "mac": ep.mac, "gateway": net.gateway,
            "mtu": net.mtu}


def register(api: Api, fabric: Fabric) -> None:
    store = fabric.store

    @api.route("POST", "/v1/hosts", summary="Register a host", tag="hosts", body=HostCreate,
               response=HostView, status=201, errors=(409,))
    def create_host(body: HostCreate):
        if body.ovsdb.startswith("ssl:") and not fabric.advertise.startswith("ssl:"):
            raise InvalidRequest(f"ovsdb {body.ovsdb}: ssl: targets need the controller's TLS "
                                 f"identity (serve --tls-cert, --tls-key and --tls-ca)")
        host = store.create_host(body.name, body.ovsdb, str(body.tunnel_ip),
                                 body.datapath_type, body.bridge)
        return host_view(fabric, host)

    @api.route("GET", "/v1/hosts", summary="List hosts", tag="hosts", response=list[HostView])
    def list_hosts():
        return [host_view(fabric, h) for h in store.snapshot().hosts.values()]

    @api.route("GET", "/v1/hosts/{name}", summary="One host and its connection state",
               tag="hosts", response=HostView, errors=(404,))
    def get_host(name):
        return host_view(fabric, store.get_host(name))

    @api.route("DELETE", "/v1/hosts/{name}", summary="Remove a host (no endpoints left)",
               tag="hosts", status=204, errors=(404, 409))
    def delete_host(name):
        store.delete_host(name)

    @api.route("POST", "/v1/networks", summary="Create a network", tag="networks",
               body=NetworkCreate, response=NetworkView, status=201, errors=(409,),
               scope="host")
    def create_network(body: NetworkCreate):
        owner = body.owner or scopes.current().host
        scopes.require_owner(owner, f"a network for {owner!r}")
        net = store.create_network(body.name, body.subnet,
                                   str(body.gateway) if body.gateway else None, body.vni, body.mtu,
                                   owner)
        return network_view(net)

    @api.route("GET", "/v1/networks", summary="List networks", tag="networks",
               response=list[NetworkView])
    def list_networks():
        return [network_view(n, store.aliases_of(n.id))
                for n in store.snapshot().networks.values()]

    @api.route("GET", "/v1/networks/{ref}", summary="One network, by id, name or alias",
               tag="networks", response=NetworkView, errors=(404,))
    def get_network(ref):
        net = store.get_network(ref)
        return network_view(net, store.aliases_of(net.id))

    @api.route("DELETE", "/v1/networks/{ref}", summary="Delete a network (no endpoints left)",
               tag="networks", status=204, errors=(404, 409), scope="host")
    def delete_network(ref):
        net = store.get_network(ref)
        scopes.require_owner(net.owner, f"network {net.name!r}, which "
                                        f"{repr(net.owner) if net.owner else 'an admin'} made")
        store.delete_network(net.id)

    @api.route("POST", "/v1/networks/{ref}/aliases", summary="Give a network another name "
               "(e.g. a Docker network id); adding it again is fine", tag="networks",
               body=AliasCreate, response=NetworkView, status=201, errors=(404, 409),
               scope="host")
    def add_alias(ref, body: AliasCreate):
        scopes.require_alias(body.alias)
        net = store.add_alias(ref, body.alias)
        return network_view(net, store.aliases_of(net.id))

    @api.route("DELETE", "/v1/networks/{ref}/aliases/{alias}", summary="Remove an alias "
               "(one the network does not have is fine)", tag="networks", status=204,
               errors=(404, 409), scope="host")
    def remove_alias(ref, alias):
        scopes.require_alias(alias)
        store.remove_alias(ref, alias)

    @api.route("POST", "/v1/networks/{ref}/addresses", summary="Reserve an address for an "
               "owner (cluster-wide IPAM); asking again for one it holds returns it",
               tag="networks", body=AddressReserve, response=AddressView, status=201,
               errors=(404, 409), scope="host")
    def reserve_address(ref, body: AddressReserve):
        net = store.get_network(ref)
        scopes.require_owner(body.owner, f"addresses for {body.owner!r}")
        held = store.reserve_address(net.id, body.owner, str(body.ip) if body.ip else None,
                                     share_of=scopes.current().host)
        return address_view(net, held.ip, held.owner)

    @api.route("GET", "/v1/networks/{ref}/addresses", summary="Reserved addresses not yet "
               "used by an endpoint", tag="networks", response=list[AddressView], errors=(404,))
    def list_addresses(ref):
        net = store.get_network(ref)
        return [address_view(net, r.ip, r.owner)
                for (network_id, _), r in store.snapshot().reservations.items()
                if network_id == net.id]

    @api.route("DELETE", "/v1/networks/{ref}/addresses/{ip}", summary="Release a reserved "
               "address (an address already free is fine)", tag="networks", status=204,
               errors=(404, 409), scope="host",
               query={"owner": "only if this owner holds it (otherwise nothing changes)"})
    def release_address(ref, ip):
        net = store.get_network(ref)
        owner = request.args.get("owner")
        host = scopes.current().host
        if host is not None and owner is None:
            # Only the holder's own release: asked of the store as that owner's, so that a
            # reservation another owner makes meanwhile is left.
            held = store.snapshot().reservations.get((net.id, ip))
            owner = held.owner if held else host
        scopes.require_owner(owner, f"address {ip}, which {owner!r} holds")
        store.release_address(net.id, ip, owner)

    def wait_programmed(ep: Endpoint, bind: bool) -> None:
        """Answers once the flows are in on every connected host of the network (bounded)."""
        LOG.debug("endpoint %s committed", ep.id)
        started = time.monotonic()
        snap = store.snapshot()
        hosts = snap.hosts_of_network(ep.network_id) | {ep.host}
        bound = {ep.id: ep.host} if bind else None
        if fabric.wait_programmed(hosts, snap.revision, bound, PROGRAMMING_WAIT_S):
            fabric.metrics.convergence_seconds.observe(time.monotonic() - started)
        else:
            LOG.warning("endpoint %s: flows not confirmed within %.0f s", ep.id,
                        PROGRAMMING_WAIT_S)

    @api.route("POST", "/v1/endpoints", summary="Create an endpoint; answers once its flows "
               "are confirmed on every connected host of the network (at most 5 s)",
               tag="endpoints", body=EndpointCreate, response=EndpointView, status=201,
               errors=(400, 404, 409), scope="host")
    def create_endpoint(body: EndpointCreate):
        scopes.require_host(body.host, f"an endpoint on host {body.host!r}")
        if body.port is not None and (holder := fabric.port_holder(body.host, body.port)):
            raise InvalidRequest(f"port {body.port!r} on host {body.host!r} is {holder}, "
                                 f"not an endpoint's")
        ep = store.create_endpoint(body.network, body.host, body.port,
                                   str(body.ip) if body.ip else None, body.mac, body.name,
                                   bounded=not scopes.current().is_admin)
        created = store.snapshot()
        wait_programmed(ep, bind=ep.port is not None)
        error = fabric.port_error(ep.host, ep.id) if ep.port is not None else None
        if error is not None:
            # A port OVS cannot attach (no such device, say): the request changes nothing.
            store.delete_endpoint(ep.id)
            raise InvalidRequest(f"port {ep.port!r} on host {ep.host!r} cannot be attached: "
                                 f"{error}")
        return endpoint_view(created, ep)

    @api.route("GET", "/v1/endpoints", summary="List endpoints", tag="endpoints",
               response=list[EndpointView], errors=(404,),
               query={"network": "only this network (id or name)", "host": "only this host"})
    def list_endpoints():
        snap = store.snapshot()
        if "network" in request.args:
            eps = snap.network_endpoints(store.get_network(request.args["network"]).id)
        else:
            eps = snap.endpoints.values()
        if "host" in request.args:
            eps = [e for e in eps if e.host == request.args["host"]]
        return [endpoint_view(snap, e) for e in sorted(eps, key=lambda e: e.seq)]

    @api.route("GET", "/v1/endpoints/{endpoint_id}", summary="One endpoint", tag="endpoints",
               response=EndpointView, errors=(404,))
    def get_endpoint(endpoint_id):
        snap = store.snapshot()
        ep = snap.endpoints.get(endpoint_id)
        if ep is None:
            raise NotFound(f"endpoint {endpoint_id!r} does not exist")
        return endpoint_view(snap, ep)

    @api.route("DELETE", "/v1/endpoints/{endpoint_id}", summary="Delete an endpoint: port "
               "detached, flows gone on every host, address free", tag="endpoints", status=204,
               errors=(404,), scope="host")
    def delete_endpoint(endpoint_id):
        ep = store.get_endpoint(endpoint_id)
        scopes.require_host(ep.host, f"endpoint {endpoint_id} on host {ep.host!r}")
        ep = store.delete_endpoint(endpoint_id)
        wait_programmed(ep, bind=False)
