"""Keeps web pages of other sites out of the API.

A browser lets any page send "simple" cross-site requests (a POST of text/plain, say) and, after
a DNS rebinding, even same-origin ones under the attacker's host name. Without a token, the
default on loopback, either would reach the API. So: the Host header must name this API,
a request from another origin is refused unless configured, and whatever changes something
must say it is JSON, which no page can send cross-site without a CORS preflight.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import Flask, jsonify, request

from .scopes import READ_ONLY_PREFIXES

# A JSON body is required on these: a page can send them cross-site without asking first.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
CORS_HEADERS = "Authorization, Content-Type"


@dataclass(frozen=True)
class Audience:
    """Who may address this API: by which Host names, and from which other web origins."""
    listen_host: str = "127.0.0.1"  # the listening address; 0.0.0.0 or :: for every one
    hostnames: frozenset[str] = field(default_factory=frozenset)  # --api-hostname
    cors_origins: frozenset[str] = field(default_factory=frozenset)  # --cors-origin

    def allows_host(self, host_header: str) -> bool:
        name = _host_name(host_header)
        if name is None:
            return False
        name = name.lower()
        if name in self.hostnames or name == self.listen_host.lower():
            return True
        listen = _address(self.listen_host)
        address = _address(name)
        if address is None:  # a name: one the operator gave, or localhost on loopback
            return name == "localhost" and listen is not None and \
                (listen.is_loopback or listen.is_unspecified)
        # An address literal cannot be rebound; it must still be one this API listens on.
        return listen is not None and (address == listen or listen.is_unspecified or
                                       (address.is_loopback and listen.is_loopback))


def guard(app: Flask, audience: Audience) -> None:
    """Registers the checks; they run before authentication, and answer CORS preflights."""

    @app.before_request
    def _keep_browsers_out():
        if not audience.allows_host(request.host):
            return _refuse(421, f"this API is not served under the name {request.host!r}: "
                                "use its address, or start serve with --api-hostname")
        origin = request.headers.get("Origin")
        foreign = origin is not None and not _same_origin(origin, request.host)
        if foreign and origin not in audience.cors_origins:
            return _refuse(403, f"requests from web origin {origin!r} are refused: start "
                                "serve with --cors-origin to allow it")
        if foreign and request.method == "OPTIONS" and \
                "Access-Control-Request-Method" in request.headers:
            return "", 204, {"Access-Control-Allow-Methods": CORS_METHODS,
                             "Access-Control-Allow-Headers": CORS_HEADERS,
                             "Access-Control-Max-Age": "600"}
        if request.method in BODY_METHODS and request.mimetype != "application/json" and \
                not request.path.startswith(READ_ONLY_PREFIXES):  # Ryu's clients: curl -d
            given = request.content_type or "none"
            return _refuse(415, f"the body must be sent as Content-Type: application/json, "
                                f"not {given}")
        return None

    @app.after_request
    def _allow_configured_origin(response):
        origin = request.headers.get("Origin")
        if origin is not None and origin in audience.cors_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response


def origin(text: str) -> str:
    """A web origin as browsers send it (scheme://host[:port]); ValueError otherwise."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or \
            parts.path or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r} is not a web origin like https://console.example:8443")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _refuse(status: int, message: str):
    return jsonify(error=message), status


def _host_name(host_header: str) -> str | None:
    """The name or address of a Host header, without its port; None if it is malformed."""
    try:
        parts = urlsplit(f"//{host_header}")
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return None
    return parts.hostname or None


def _same_origin(origin: str, host_header: str) -> bool:
    """A page of this API itself (the /docs page): its origin names the host it was served by."""
    return urlsplit(origin).netloc.lower() == host_header.lower()


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
