"""Routes declared once: the same declaration registers the Flask view, validates the request
body with its pydantic schema, and describes the operation in the OpenAPI document."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, get_args, get_origin

from flask import Flask, jsonify, request
from pydantic import BaseModel, TypeAdapter, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from model import InvalidRequest

ERROR_TEXT = {400: "invalid request", 403: "outside the token's scope", 404: "not found",
              409: "conflicts with the current state", 413: "body too large",
              415: "the body is not sent as application/json",
              503: "a switch or host needed is not connected, or did not serve the request"}


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    handler: Callable
    body: Any = None  # a model, list[model] (a JSON array), None: no body
    response: Any = None  # a model, list[model], a tuple of those (one of), None: no body
    status: int = 200
    errors: tuple[int, ...] = ()
    query: dict[str, str] = field(default_factory=dict)  # name -> description
    tag: str = ""
    # Who may call it: "read" any token, "host" a host token too (the view checks what it
    # touches is the host's, see scopes.py), "admin" the admin token only.
    scope: str = "admin"


class Api:
    def __init__(self, app: Flask):
        self.app = app
        self.operations: list[Operation] = []
        self.by_endpoint: dict[str, Operation] = {}  # Flask's endpoint name -> operation

    def route(self, method: str, path: str, *, summary: str, tag: str, body=None, response=None,
              status: int = 200, errors: tuple[int, ...] = (), query: dict | None = None,
              scope: str | None = None):
        scope = scope or ("read" if method == "GET" else "admin")
        implied = ({400, 413, 415} if body else set()) | ({403} if scope != "read" else set())

        def register(handler: Callable) -> Callable:
            op = Operation(method, path, summary, handler, body, response, status,
                           tuple(sorted(set(errors) | implied)), query or {}, tag, scope)

            def view(**path_args):
                if op.body is not None:
                    path_args["body"] = parse(op.body)
                result = handler(**path_args)
                if op.response is None:
                    return "", op.status
                return jsonify(result), op.status

            view.__name__ = handler.__name__
            flask_path = re.sub(r"\{(\w+)\}", r"<\1>", path)
            self.app.add_url_rule(flask_path, handler.__name__, view, methods=[method])
            self.operations.append(op)
            self.by_endpoint[handler.__name__] = op
            return handler
        return register

    def openapi(self, title: str, version: str) -> dict:
        components: dict[str, dict] = {"ErrorBody": {
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "string", "description": "what is wrong"}}}}
        paths: dict[str, dict] = {}
        for op in self.operations:
            entry: dict[str, Any] = {"summary": op.summary, "operationId": op.handler.__name__,
                                     "tags": [op.tag]}
            params = [{"name": name, "in": "path", "required": True,
                       "schema": {"type": "string"}}
                      for name in re.findall(r"\{(\w+)\}", op.path)]
            params += [{"name": name, "in": "query", "required": False,
                        "description": text, "schema": {"type": "string"}}
                       for name, text in op.query.items()]
            if params:
                entry["parameters"] = params
            if op.body is not None:
                entry["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": _schema(op.body, components)}}}
            ok: dict[str, Any] = {"description": "success"}
            if op.response is not None:
                ok["content"] = {"application/json": {"schema": _schema(op.response, components)}}
            responses = {str(op.status): ok}
            for code in op.errors:
                responses[str(code)] = {"description": ERROR_TEXT.get(code, "error"), "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            paths.setdefault(op.path, {})[op.method.lower()] = entry | {"responses": responses}
        return {"openapi": "3.0.3", "info": {"title": title, "version": version},
                "paths": paths, "components": {"schemas": _openapi30(components)}}


def _schema(model: Any, components: dict) -> dict:
    if isinstance(model, tuple):  # one of several shapes, chosen by a query parameter
        return {"oneOf": [_schema(m, components) for m in model]}
    if get_origin(model) is list:
        return {"type": "array", "items": _schema(get_args(model)[0], components)}
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _openapi30(node: Any) -> Any:
    """pydantic writes JSON Schema 2020-12 (OpenAPI 3.1); OpenAPI 3.0, which more tools and
    Swagger UI 4 read, spells null and constants differently."""
    if isinstance(node, list):
        return [_openapi30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {k: _openapi30(v) for k, v in node.items() if k != "examples"}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    variants = node.get("anyOf")
    if variants and {"type": "null"} in variants:
        rest = [v for v in variants if v != {"type": "null"}]
        node.pop("anyOf")
        if len(rest) == 1 and "$ref" not in rest[0]:
            node |= rest[0]
        else:
            node["anyOf" if len(rest) > 1 else "allOf"] = rest
        node["nullable"] = True
    if "default" in node and node["default"] is None and not node.get("nullable"):
        # An optional field that refuses null (left out, it is not set): no default to show.
        del node["default"]
    return node


def parse(schema: Any) -> BaseModel | list:
    """The request body validated against ``schema`` (a model, or list[model] for a JSON
    array), or a 400 saying what is wrong."""
    is_array = get_origin(schema) is list
    body = json_body(list if is_array else dict)
    try:
        if is_array:
            return TypeAdapter(schema).validate_python(body)
        return schema.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest("; ".join(_describe(e) for e in exc.errors()[:5])) from None


def json_object() -> dict:
    """The request body as a JSON object, or a 400/413 saying what is wrong with it."""
    return json_body(dict)


def json_body(kind: type) -> Any:
    """The request body as JSON of ``kind`` (dict: an object, list: an array), or a 400/413
    saying what is wrong with it."""
    data = request.get_data()
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(data) >= limit:
        # A streamed (chunked) body has no length to refuse it by: werkzeug cuts it at the
        # limit instead, and a cut that happens to be a JSON object would be taken.
        raise RequestEntityTooLarge()
    if not data.strip():
        raise InvalidRequest(f"the body is empty: a JSON {_JSON_NAMES[kind]} is needed")
    try:
        body = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the body is not UTF-8 (byte {exc.start} is not)") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not JSON: {exc.msg} at line {exc.lineno} column "
                             f"{exc.colno}") from None
    except ValueError:  # the only other: an integer beyond Python's conversion limit
        raise InvalidRequest("a number in the body has too many digits") from None
    except RecursionError:  # nested deeper than Python's parser recurses
        raise InvalidRequest("the body is nested too deeply") from None
    if not isinstance(body, kind):
        raise InvalidRequest(f"the body must be a JSON {_JSON_NAMES[kind]}")
    return body


_JSON_NAMES = {dict: "object", list: "array"}


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"
