"""Published ports over HTTP: a host token manages those of its own host's endpoints."""
from __future__ import annotations

from controller.service import FabricService
from model import Host, InvalidRequest
from model.entities import PublishedPort

from . import scopes
from .schemas import PublishCreate, PublishedView
from .spec import Api


def published_json(published: PublishedPort, host: Host) -> dict:
    return {"protocol": published.protocol, "port": published.port,
            "host_port": published.host_port, "host": host.name, "host_ip": host.outside_ip}


def _port_number(text: str) -> int:
    if not text.isdigit():
        raise InvalidRequest(f"host_port {text!r} is not a port number")
    return int(text)


def register(api: Api, service: FabricService) -> None:
    @api.route("POST", "/v1/endpoints/{endpoint_id}/published", summary="Publish a port: "
               "connections to the host's outside address at host_port reach the endpoint's "
               "port", tag="endpoints", body=PublishCreate, response=PublishedView, status=201,
               errors=(404, 409), scope="host")
    def publish_port(endpoint_id, body: PublishCreate):
        published, host = service.publish_port(scopes.current(), endpoint_id, body.protocol,
                                               body.port, body.host_port)
        return published_json(published, host)

    @api.route("GET", "/v1/endpoints/{endpoint_id}/published", summary="The endpoint's "
               "published ports", tag="endpoints", response=list[PublishedView], errors=(404,))
    def list_published(endpoint_id):
        _, host, published = service.published(endpoint_id)
        return [published_json(p, host) for p in published]

    @api.route("DELETE", "/v1/endpoints/{endpoint_id}/published/{protocol}/{host_port}",
               summary="Unpublish a port", tag="endpoints", status=204, errors=(400, 404),
               scope="host")
    def unpublish_port(endpoint_id, protocol, host_port):
        service.unpublish_port(scopes.current(), endpoint_id, protocol, _port_number(host_port))
