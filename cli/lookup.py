"""Names for ids: the API answers with ids, people type and read names."""
from __future__ import annotations

from api.client import FabricClient


class CommandError(Exception):
    """A command the CLI refuses before or without asking the API."""


def endpoint_id(client: FabricClient, ref: str) -> str:
    """The API addresses endpoints by id only; a name is resolved here so people can type it."""
    matches = [e["id"] for e in client.endpoints() if ref in (e["id"], e["name"])]
    if ref in matches:
        return ref
    if len(matches) > 1:
        raise CommandError(f"endpoint name {ref!r} is ambiguous, give one of the ids: "
                           + ", ".join(matches))
    return matches[0] if matches else ref  # unknown: the API's 404 says so


def network_names(client: FabricClient) -> dict[str, str]:
    return {n["id"]: n["name"] for n in client.networks()}


def endpoint_names(client: FabricClient) -> dict[str, str]:
    return {e["id"]: e["name"] for e in client.endpoints()}
