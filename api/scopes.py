"""What a token may do: the admin token everything, a host token its own host's share.

A host token may call every "read" operation and the "host" ones (spec.Operation.scope),
whose views check with the helpers here that what they touch is the host's; anything else is
answered 403 before the view runs.
"""
from __future__ import annotations

from flask import g, request

from model import Forbidden
from model.ownership import alias_host, belongs_to_host
from security.tokens import ADMIN, Scope

from .spec import Api

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Routes outside the declared operations that only read although they take a POST: Ryu's
# /stats, whose POST carries a filter.
READ_ONLY_PREFIXES = ("/stats/",)


def current() -> Scope:
    """The scope of the request's token (the admin's when `serve` has no token)."""
    return g.get("scope", ADMIN)


def check_operation(api: Api) -> None:
    """Refuses an operation a host token may not call at all."""
    scope = current()
    rule = request.url_rule
    if scope.is_admin or rule is None or request.method in SAFE_METHODS:
        return  # no rule: the 404 or 405 follows
    op = api.by_endpoint.get(rule.endpoint)
    allowed = op.scope != "admin" if op else request.path.startswith(READ_ONLY_PREFIXES)
    if not allowed:
        raise Forbidden(f"{_allowed(scope)}: {request.method} {rule.rule} needs the admin token")


def require_host(host: str, what: str) -> None:
    """Only an endpoint, say, on the token's own host."""
    scope = current()
    if not scope.is_admin and host != scope.host:
        raise Forbidden(f"{_allowed(scope)}, not {what}")


def require_owner(owner: str | None, what: str) -> None:
    """Only what an owner of the token's host holds (a reservation, a network it made)."""
    scope = current()
    if not scope.is_admin and not belongs_to_host(owner, scope.host):
        raise Forbidden(f"{_allowed(scope)}, not {what}")


def require_alias(alias: str) -> None:
    """Only an alias in the token's host's names (``KIND:HOST:...``)."""
    scope = current()
    if not scope.is_admin and alias_host(alias) != scope.host:
        raise Forbidden(f"{_allowed(scope)}, not alias {alias!r} (a host token's aliases "
                        f"are named KIND:{scope.host}:...)")


def _allowed(scope: Scope) -> str:
    return (f"this token may only read the fabric and manage host {scope.host}'s "
            f"endpoints, address reservations, aliases and the networks it made")
