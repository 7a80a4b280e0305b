"""The REST API: JSON in and out, every error a status with {"error": "..."}."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from controller.fabric import Fabric
from model import Endpoint, FabricError, InvalidRequest, Network

from .schemas import EndpointCreate, HostCreate, NetworkCreate

LOG = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024
PROGRAMMING_WAIT_S = 5.0


def create_app(fabric: Fabric) -> Flask:
    app = Flask("ovsfabric")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    store = fabric.store

    @app.errorhandler(FabricError)
    def _fabric_error(exc: FabricError):
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return jsonify(error=exc.description or exc.name), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        LOG.exception("unexpected error on %s %s", request.method, request.path)
        return jsonify(error=f"internal error: {type(exc).__name__}"), 500

    # ---- hosts ---------------------------------------------------------------------------

    def host_view(host) -> dict:
        return {"name": host.name, "ovsdb": host.ovsdb, "tunnel_ip": host.tunnel_ip,
                "datapath_type": host.datapath_type, "bridge": host.bridge,
                **fabric.host_status(host.name)}

    @app.post("/v1/hosts")
    def create_host():
        body = parse(HostCreate)
        host = store.create_host(body.name, body.ovsdb, str(body.tunnel_ip),
                                 body.datapath_type, body.bridge)
        return jsonify(host_view(host)), 201

    @app.get("/v1/hosts")
    def list_hosts():
        return jsonify([host_view(h) for h in store.snapshot().hosts.values()])

    @app.get("/v1/hosts/<name>")
    def get_host(name):
        return jsonify(host_view(store.get_host(name)))

    @app.delete("/v1/hosts/<name>")
    def delete_host(name):
        store.delete_host(name)
        return "", 204

    # ---- networks ------------------------------------------------------------------------

    def network_view(net: Network) -> dict:
        return {"id": net.id, "name": net.name, "subnet": net.subnet, "gateway": net.gateway,
                "vni": net.vni, "mtu": net.mtu}

    @app.post("/v1/networks")
    def create_network():
        body = parse(NetworkCreate)
        net = store.create_network(body.name, body.subnet,
                                   str(body.gateway) if body.gateway else None,
                                   body.vni, body.mtu)
        return jsonify(network_view(net)), 201

    @app.get("/v1/networks")
    def list_networks():
        return jsonify([network_view(n) for n in store.snapshot().networks.values()])

    @app.get("/v1/networks/<ref>")
    def get_network(ref):
        return jsonify(network_view(store.get_network(ref)))

    @app.delete("/v1/networks/<ref>")
    def delete_network(ref):
        store.delete_network(ref)
        return "", 204

    # ---- endpoints -----------------------------------------------------------------------

    def endpoint_view(ep: Endpoint) -> dict:
        net = store.snapshot().networks[ep.network_id]
        return {"id": ep.id, "name": ep.name, "network": net.id, "host": ep.host,
                "port": ep.port, "ip": ep.ip, "prefix_len": net.prefix_len, "mac": ep.mac,
                "gateway": net.gateway, "mtu": net.mtu}

    def wait_programmed(ep: Endpoint, bind: bool) -> None:
        """Answers once the flows are in on every connected host of the network (bounded)."""
        LOG.debug("endpoint %s committed", ep.id)
        snap = store.snapshot()
        hosts = snap.hosts_of_network(ep.network_id) | {ep.host}
        bound = {ep.id: ep.host} if bind else None
        if not fabric.wait_programmed(hosts, snap.revision, bound, PROGRAMMING_WAIT_S):
            LOG.warning("endpoint %s: flows not confirmed within %.0f s", ep.id,
                        PROGRAMMING_WAIT_S)

    @app.post("/v1/endpoints")
    def create_endpoint():
        body = parse(EndpointCreate)
        ep = store.create_endpoint(body.network, body.host, body.port,
                                   str(body.ip) if body.ip else None, body.mac, body.name)
        wait_programmed(ep, bind=ep.port is not None)
        return jsonify(endpoint_view(ep)), 201

    @app.get("/v1/endpoints")
    def list_endpoints():
        snap = store.snapshot()
        eps = list(snap.endpoints.values())
        if "network" in request.args:
            network_id = store.get_network(request.args["network"]).id
            eps = [e for e in eps if e.network_id == network_id]
        if "host" in request.args:
            eps = [e for e in eps if e.host == request.args["host"]]
        return jsonify([endpoint_view(e) for e in eps])

    @app.get("/v1/endpoints/<endpoint_id>")
    def get_endpoint(endpoint_id):
        return jsonify(endpoint_view(store.get_endpoint(endpoint_id)))

    @app.delete("/v1/endpoints/<endpoint_id>")
    def delete_endpoint(endpoint_id):
        ep = store.delete_endpoint(endpoint_id)
        wait_programmed(ep, bind=False)
        return "", 204

    return app


def parse(schema: type[BaseModel]) -> BaseModel:
    """The request body validated against ``schema``, or a 400 saying what is wrong."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest("; ".join(_describe(e) for e in exc.errors()[:5])) from None


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"
