"""The OpenAPI document, generated from the route declarations, and a page that renders it
with Swagger UI's files from the swagger-ui-bundle package (no CDN needed)."""
from __future__ import annotations

from flask import Flask, jsonify, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from .spec import Api

VERSION = "0.1.0"
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>ovsfabric API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/v1/openapi.json", dom_id: "#ui"});</script>
</body></html>
"""


def register(app: Flask, api: Api) -> None:
    @app.get("/v1/openapi.json")
    def openapi_document():
        return jsonify(api.openapi("ovsfabric", VERSION))

    @app.get("/docs")
    def docs_page():
        return PAGE, 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.get("/docs/static/<path:name>")
    def docs_static(name):
        return send_from_directory(swagger_ui_path, name)
