"""Reading Docker's request bodies: Go sends nil maps as null and never a Content-Type."""
from __future__ import annotations

import json

from .errors import BadRequest


def parse(data: bytes) -> dict:
    """The JSON object in ``data``; an empty body (Activate, capabilities) or null is {}."""
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def text(body: dict, key: str) -> str:
    """A required, non-empty string field (ids are not checked further: swarm's are base36)."""
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key} is missing or not a string")
    return value


def mapping(body: dict, key: str) -> dict:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{key} must be an object")
    return value
