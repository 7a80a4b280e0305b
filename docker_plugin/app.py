"""The plugin's HTTP side: POST /<Interface>.<Method>, JSON in and out.

Success is 200 with a JSON body; every error is a non-200 with {"Err": message} (Docker reads
an IPAM 200 carrying an error as success). An unknown method is 404, which Docker takes as
"not implemented".
"""
from __future__ import annotations

import json
import logging
from typing import Callable

import requests
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from api.client import ApiError

from . import body
from .controller import Controller
from .creates import PendingCreates
from .errors import PluginError, describe
from .ipam_driver import IpamDriver
from .network_driver import NetworkDriver
from .veth import Veths

LOG = logging.getLogger(__name__)
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
IMPLEMENTS = ["NetworkDriver", "IpamDriver"]
MAX_BODY_BYTES = 1 << 20


def create_app(controller: Controller, veths: Veths | None = None) -> Flask:
    app = Flask("ovsfabric-plugin", static_folder=None)  # no /static route
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    creates = PendingCreates()  # what the IPAM tells CreateNetwork
    methods = {"Plugin.Activate": lambda _: {"Implements": IMPLEMENTS},
               **NetworkDriver(controller, veths or Veths(), creates).methods(),
               **IpamDriver(controller, creates).methods()}
    for name, handler in methods.items():
        app.add_url_rule(f"/{name}", name, _view(name, handler), methods=["POST"])

    @app.errorhandler(Exception)
    def _error(exc: Exception):
        status, message = describe(exc, controller.url)
        # A traceback only for what nobody foresaw (not for an unreachable controller).
        expected = isinstance(exc, (PluginError, ApiError, HTTPException,
                                    requests.RequestException))
        LOG.warning("%s: %d %s", request.path.lstrip("/"), status, message,
                    exc_info=not expected)
        return _answer({"Err": message}, status)

    return app


def _view(name: str, handler: Callable[[dict], dict]):
    def view():
        # Docker sends no Content-Type, and an empty body for Activate and the capabilities.
        result = handler(body.parse(request.get_data(cache=False)))
        LOG.debug("%s -> %s", name, result)
        return _answer(result, 200)
    return view


def _answer(payload: dict, status: int) -> Response:
    return Response(json.dumps(payload), status, content_type=CONTENT_TYPE)
