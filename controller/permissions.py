"""What a scope may change: the admin everything, a host its own host's share.

A host's share is its endpoints, the addresses its owners hold, the aliases in its names and
the networks it made (model/ownership.py says which owners and aliases are a host's). Every
refusal is a Forbidden saying what the scope may do instead.
"""
from __future__ import annotations

from model import Forbidden
from model.ownership import alias_host, belongs_to_host
from security.tokens import Scope


def require_admin(scope: Scope, what: str) -> None:
    """Only the admin: hosts, say."""
    if not scope.is_admin:
        raise Forbidden(f"{allowed(scope)}, not {what}")


def require_host(scope: Scope, host: str, what: str) -> None:
    """Only an endpoint, say, on the scope's own host."""
    if not scope.is_admin and host != scope.host:
        raise Forbidden(f"{allowed(scope)}, not {what}")


def require_owner(scope: Scope, owner: str | None, what: str) -> None:
    """Only what an owner of the scope's host holds (a reservation, a network it made)."""
    if not scope.is_admin and not belongs_to_host(owner, scope.host):
        raise Forbidden(f"{allowed(scope)}, not {what}")


def require_alias(scope: Scope, alias: str) -> None:
    """Only an alias in the scope's host's names (``KIND:HOST:...``)."""
    if not scope.is_admin and alias_host(alias) != scope.host:
        raise Forbidden(f"{allowed(scope)}, not alias {alias!r} (a host token's aliases "
                        f"are named KIND:{scope.host}:...)")


def allowed(scope: Scope) -> str:
    """What a host scope may do, said in every refusal."""
    return (f"this token may only read the fabric and manage host {scope.host}'s "
            f"endpoints, their labels and published ports, address reservations, aliases and the "
            f"networks it made")
