"""Hosts, networks and endpoints over HTTP: each view turns a request into a call of the
fabric's service (controller/service.py), with the token's scope, and its answer into JSON."""
from __future__ import annotations

from flask import request

from controller.fabric import Fabric
from controller.service import FabricService
from model import Endpoint, Network, NotFound

from . import scopes
from .schemas import (AddressReserve, AddressView, AliasCreate, EndpointCreate, EndpointUpdate,
                      EndpointView, HostCreate, HostView, NetworkCreate, NetworkUpdate,
                      NetworkView)
from .spec import Api


def host_json(fabric: Fabric, host) -> dict:
    return {"name": host.name, "ovsdb": host.ovsdb, "tunnel_ip": host.tunnel_ip,
            "datapath_type": host.datapath_type, "bridge": host.bridge,
            "egress_ip": host.egress_ip, **fabric.host_status(host.name)}


def network_json(net: Network, aliases=()) -> dict:
    return {"id": net.id, "name": net.name, "subnet": net.subnet, "gateway": net.gateway,
            "gateway_mac": net.gateway_mac, "vni": net.vni, "mtu": net.mtu,
            "aliases": list(aliases), "owner": net.owner, "egress": net.egress}


def address_json(net: Network, ip: str, owner: str) -> dict:
    return {"network": net.id, "ip": ip, "prefix_len": net.prefix_len, "gateway": net.gateway,
            "owner": owner}


def endpoint_json(ep: Endpoint, net: Network) -> dict:
    return {"id": ep.id, "name": ep.name, "network": net.id, "host": ep.host, "port": ep.port,
            "ip": ep.ip, "prefix_len": net.prefix_len, "mac": ep.mac, "gateway": net.gateway,
            "mtu": net.mtu, "labels": ep.label_map}


def _optional_str(value) -> str | None:
    return str(value) if value else None


def register(api: Api, service: FabricService) -> None:
    fabric, store = service.fabric, service.store

    @api.route("POST", "/v1/hosts", summary="Register a host", tag="hosts", body=HostCreate,
               response=HostView, status=201, errors=(409,))
    def create_host(body: HostCreate):
        host = service.create_host(scopes.current(), body.name, body.ovsdb,
                                   str(body.tunnel_ip), body.datapath_type, body.bridge,
                                   _optional_str(body.egress_ip))
        return host_json(fabric, host)

    @api.route("GET", "/v1/hosts", summary="List hosts", tag="hosts", response=list[HostView])
    def list_hosts():
        return [host_json(fabric, h) for h in store.snapshot().hosts.values()]

    @api.route("GET", "/v1/hosts/{name}", summary="One host and its connection state",
               tag="hosts", response=HostView, errors=(404,))
    def get_host(name):
        return host_json(fabric, store.get_host(name))

    @api.route("DELETE", "/v1/hosts/{name}", summary="Remove a host (no endpoints left)",
               tag="hosts", status=204, errors=(404, 409))
    def delete_host(name):
        service.delete_host(scopes.current(), name)

    @api.route("POST", "/v1/networks", summary="Create a network", tag="networks",
               body=NetworkCreate, response=NetworkView, status=201, errors=(409,),
               scope="host")
    def create_network(body: NetworkCreate):
        net = service.create_network(scopes.current(), body.name, body.subnet,
                                     _optional_str(body.gateway), body.vni, body.mtu,
                                     body.owner, body.egress)
        return network_json(net)

    @api.route("GET", "/v1/networks", summary="List networks", tag="networks",
               response=list[NetworkView])
    def list_networks():
        return [network_json(n, store.aliases_of(n.id))
                for n in store.snapshot().networks.values()]

    @api.route("GET", "/v1/networks/{ref}", summary="One network, by id, name or alias",
               tag="networks", response=NetworkView, errors=(404,))
    def get_network(ref):
        net = store.get_network(ref)
        return network_json(net, store.aliases_of(net.id))

    @api.route("PATCH", "/v1/networks/{ref}", summary="Change whether the network's "
               "containers reach the outside", tag="networks", body=NetworkUpdate,
               response=NetworkView, errors=(404,), scope="host")
    def update_network(ref, body: NetworkUpdate):
        net = service.set_network_egress(scopes.current(), ref, body.egress)
        return network_json(net, store.aliases_of(net.id))

    @api.route("DELETE", "/v1/networks/{ref}", summary="Delete a network (no endpoints left, "
               "on no router)", tag="networks", status=204, errors=(404, 409), scope="host")
    def delete_network(ref):
        service.delete_network(scopes.current(), ref)

    @api.route("POST", "/v1/networks/{ref}/aliases", summary="Give a network another name "
               "(e.g. a Docker network id); adding it again is fine", tag="networks",
               body=AliasCreate, response=NetworkView, status=201, errors=(404, 409),
               scope="host")
    def add_alias(ref, body: AliasCreate):
        net = service.add_alias(scopes.current(), ref, body.alias)
        return network_json(net, store.aliases_of(net.id))

    @api.route("DELETE", "/v1/networks/{ref}/aliases/{alias}", summary="Remove an alias "
               "(one the network does not have is fine)", tag="networks", status=204,
               errors=(404, 409), scope="host")
    def remove_alias(ref, alias):
        service.remove_alias(scopes.current(), ref, alias)

    @api.route("POST", "/v1/networks/{ref}/addresses", summary="Reserve an address for an "
               "owner (cluster-wide IPAM); asking again for one it holds returns it",
               tag="networks", body=AddressReserve, response=AddressView, status=201,
               errors=(404, 409), scope="host")
    def reserve_address(ref, body: AddressReserve):
        net, held = service.reserve_address(scopes.current(), ref, body.owner,
                                            _optional_str(body.ip))
        return address_json(net, held.ip, held.owner)

    @api.route("GET", "/v1/networks/{ref}/addresses", summary="Reserved addresses not yet "
               "used by an endpoint", tag="networks", response=list[AddressView], errors=(404,))
    def list_addresses(ref):
        net, held = service.reservations(ref)
        return [address_json(net, r.ip, r.owner) for r in held]

    @api.route("DELETE", "/v1/networks/{ref}/addresses/{ip}", summary="Release a reserved "
               "address (an address already free is fine)", tag="networks", status=204,
               errors=(404, 409), scope="host",
               query={"owner": "only if this owner holds it (otherwise nothing changes)"})
    def release_address(ref, ip):
        service.release_address(scopes.current(), ref, ip, request.args.get("owner"))

    @api.route("POST", "/v1/endpoints", summary="Create an endpoint; answers once its flows "
               "are confirmed on every connected host of the network (at most 5 s)",
               tag="endpoints", body=EndpointCreate, response=EndpointView, status=201,
               errors=(400, 404, 409), scope="host")
    def create_endpoint(body: EndpointCreate):
        ep, net = service.create_endpoint(scopes.current(), body.network, body.host, body.port,
                                          _optional_str(body.ip), body.mac, body.name,
                                          body.labels)
        return endpoint_json(ep, net)

    @api.route("GET", "/v1/endpoints", summary="List endpoints", tag="endpoints",
               response=list[EndpointView], errors=(404,),
               query={"network": "only this network (id or name)", "host": "only this host"})
    def list_endpoints():
        snap, eps = service.endpoints(request.args.get("network"), request.args.get("host"))
        return [endpoint_json(e, snap.networks[e.network_id]) for e in eps]

    @api.route("GET", "/v1/endpoints/{endpoint_id}", summary="One endpoint", tag="endpoints",
               response=EndpointView, errors=(404,))
    def get_endpoint(endpoint_id):
        snap = store.snapshot()
        ep = snap.endpoints.get(endpoint_id)
        if ep is None:
            raise NotFound(f"endpoint {endpoint_id!r} does not exist")
        return endpoint_json(ep, snap.networks[ep.network_id])

    @api.route("PATCH", "/v1/endpoints/{endpoint_id}", summary="Replace the endpoint's "
               "labels; answers once the hosts whose policing changes have confirmed (at "
               "most 5 s)", tag="endpoints", body=EndpointUpdate, response=EndpointView,
               errors=(404,), scope="host")
    def update_endpoint(endpoint_id, body: EndpointUpdate):
        ep, net = service.set_endpoint_labels(scopes.current(), endpoint_id, body.labels)
        return endpoint_json(ep, net)

    @api.route("DELETE", "/v1/endpoints/{endpoint_id}", summary="Delete an endpoint: port "
               "detached, flows gone on every host, address free", tag="endpoints", status=204,
               errors=(404,), scope="host")
    def delete_endpoint(endpoint_id):
        service.delete_endpoint(scopes.current(), endpoint_id)
