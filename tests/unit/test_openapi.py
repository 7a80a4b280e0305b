"""The OpenAPI document: generated from the same schemas that validate requests, and valid."""
from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from api import health
from api.app import create_app
from api.schemas import EndpointCreate
from controller.fabric import Fabric
from model import Store


@pytest.fixture
def client(tmp_path):
    store = Store(str(tmp_path / "state.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    app = create_app(fabric)
    yield app.test_client()
    store.close()


def test_document_validates_against_the_openapi_schema(client):
    doc = client.get("/v1/openapi.json").json
    validate(doc)  # raises on any violation of the OpenAPI 3 schema
    assert doc["openapi"].startswith("3.")


def test_document_covers_every_v1_route_and_the_probes(client):
    doc = client.get("/v1/openapi.json").json
    app_routes = {(rule.rule, method) for rule in client.application.url_map.iter_rules()
                  for method in rule.methods - {"HEAD", "OPTIONS"}
                  if rule.rule.startswith("/v1/") and rule.rule != "/v1/openapi.json"
                  or rule.rule in health.PATHS}
    documented = {(path.replace("{", "<").replace("}", ">"), method.upper())
                  for path, ops in doc["paths"].items() for method in ops}
    assert app_routes == documented


def test_request_schema_is_the_validating_one(client):
    doc = client.get("/v1/openapi.json").json
    body = doc["paths"]["/v1/endpoints"]["post"]["requestBody"]["content"]["application/json"]
    schema = doc["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(schema["properties"]) == set(EndpointCreate.model_fields)
    assert schema["additionalProperties"] is False
    assert "400" in doc["paths"]["/v1/endpoints"]["post"]["responses"]


def test_docs_page_and_its_files_are_served_locally(client):
    page = client.get("/docs")
    assert page.status_code == 200 and b"/v1/openapi.json" in page.data
    script = client.get("/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.data) > 100_000


def test_every_cookie_kind_is_an_owner_kind_the_document_declares():
    import typing

    from api.schemas import Owner
    from flows.pipeline import KINDS
    declared = set(typing.get_args(Owner.model_fields["kind"].annotation))
    assert declared == set(KINDS.values()) | {"unknown"}
