"""Routers over HTTP: each view turns a request into a call of the fabric's service, with the
token's scope, and its answer into JSON. Every write but a GET needs the admin token."""
from __future__ import annotations

from controller.service import FabricService
from model.entities import Router

from . import scopes
from .schemas import RouterAttach, RouterCreate, RouterView, RouteSpec
from .spec import Api


def router_json(router: Router) -> dict:
    return {"id": router.id, "name": router.name, "number": router.number, "mac": router.mac,
            "networks": list(router.networks),
            "routes": [{"destination": r.destination, "nexthop": r.nexthop}
                       for r in router.routes]}


def register(api: Api, service: FabricService) -> None:
    store = service.store

    @api.route("POST", "/v1/routers", summary="Create a router", tag="routers",
               body=RouterCreate, response=RouterView, status=201, errors=(409,))
    def create_router(body: RouterCreate):
        return router_json(service.create_router(scopes.current(), body.name))

    @api.route("GET", "/v1/routers", summary="List routers", tag="routers",
               response=list[RouterView])
    def list_routers():
        return [router_json(r) for r in sorted(store.snapshot().routers.values(),
                                               key=lambda r: r.seq)]

    @api.route("GET", "/v1/routers/{ref}", summary="One router, by id or name", tag="routers",
               response=RouterView, errors=(404,))
    def get_router(ref):
        return router_json(store.get_router(ref))

    @api.route("DELETE", "/v1/routers/{ref}", summary="Delete a router (no networks attached)",
               tag="routers", status=204, errors=(404, 409))
    def delete_router(ref):
        service.delete_router(scopes.current(), ref)

    @api.route("POST", "/v1/routers/{ref}/networks", summary="Attach a network: its gateway "
               "address becomes the router's interface there; attaching it again is fine",
               tag="routers", body=RouterAttach, response=RouterView, errors=(404, 409))
    def attach_network(ref, body: RouterAttach):
        return router_json(service.attach_network(scopes.current(), ref, body.network))

    @api.route("DELETE", "/v1/routers/{ref}/networks/{network}", summary="Detach a network "
               "(no route through it)", tag="routers", status=204, errors=(404, 409))
    def detach_network(ref, network):
        service.detach_network(scopes.current(), ref, network)

    @api.route("PUT", "/v1/routers/{ref}/routes", summary="Replace the router's static routes "
               "(at most 1000)", tag="routers", body=list[RouteSpec], response=RouterView,
               errors=(404,))
    def set_routes(ref, body: list[RouteSpec]):
        router = service.set_routes(scopes.current(), ref,
                                    [(r.destination, r.nexthop) for r in body])
        return router_json(router)
