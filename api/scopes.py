"""What a token may do: the admin token everything, a host token its own host's share.

A host token may call every "read" operation and the "host" ones (spec.Operation.scope),
whose service calls get the token's scope and check that what they touch is the host's
(controller/permissions.py); anything else is answered 403 before the view runs.
"""
from __future__ import annotations

from flask import g, request

from controller import permissions
from model import Forbidden
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
        raise Forbidden(f"{permissions.allowed(scope)}: {request.method} {rule.rule} needs "
                        f"the admin token")
