"""The REST API: JSON in and out, every error a status with {"error": "..."}."""
from __future__ import annotations

import logging

from flask import Flask, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from controller.fabric import Fabric
from controller.service import FabricService
from model import FabricError
from security import tokens

from . import (browsers, cluster as cluster_views, docs, health, inspection, inventory,
               policies, publishing, routing, scopes)
from .browsers import Audience
from .spec import Api

LOG = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024


# The API's own documentation and the probes hold no state: readable without the token.
OPEN_PATHS = ("/docs", "/v1/openapi.json", *health.PATHS)
# Metric labels come from this set only: a client inventing methods cannot grow /metrics.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def create_app(fabric: Fabric, token: str | None = None,
               audience: Audience = Audience(), cluster=None) -> Flask:
    """``token`` is the admin token; host tokens derived from it are accepted too.
    ``cluster``: the replicas' election (an object with ``status()``, see api/cluster.py);
    None for a single process."""
    app = Flask("ovsfabric", static_folder=None)  # no /static: nothing is served from disk
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    api = Api(app)
    app.extensions["ovsfabric.api"] = api

    @app.errorhandler(FabricError)
    def _fabric_error(exc: FabricError):
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        # Keep the exception's own headers (a 405's Allow); the body becomes ours.
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return jsonify(error=exc.description or exc.name), exc.code, headers

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        LOG.exception("unexpected error on %s %s", request.method, request.path)
        return jsonify(error=f"internal error: {type(exc).__name__}"), 500

    browsers.guard(app, audience)  # first: a CORS preflight carries no token

    @app.before_request
    def _authenticate():
        if token is None or request.path.startswith(OPEN_PATHS):
            return None
        scope = tokens.identify(token, request.headers.get("Authorization"))
        if scope is None:
            return (jsonify(error="a valid bearer token is required "
                                  "(header Authorization: Bearer <token>)"), 401,
                    {"WWW-Authenticate": "Bearer"})
        g.scope = scope
        scopes.check_operation(api)
        return None

    @app.after_request
    def _count(response):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        method = request.method if request.method in KNOWN_METHODS else "other"
        fabric.metrics.http_requests.labels(route, method, response.status_code).inc()
        return response

    @app.get("/metrics")
    def metrics():
        return generate_latest(fabric.metrics.registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}

    service = FabricService(fabric)
    for views in (inventory, routing, publishing, policies):
        views.register(api, service)
    inspection.register(api, fabric)
    health.register(api, fabric.store)
    cluster_views.register(api, fabric, cluster)
    docs.register(app, api)
    from . import ryu_compat
    ryu_compat.register(app, fabric)
    return app
