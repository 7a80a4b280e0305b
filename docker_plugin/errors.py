"""Errors a handler raises; the app answers each with its status and {"Err": message}."""
from __future__ import annotations

import requests
from pyroute2.netlink.exceptions import NetlinkError
from werkzeug.exceptions import HTTPException

from api.client import ApiError


class PluginError(Exception):
    # Never 404: Docker reads a 404 as "method not implemented" and may skip the call.
    status = 500


class BadRequest(PluginError):
    status = 400


class ControllerUnavailable(PluginError):
    status = 503


def describe(exc: Exception, url: str) -> tuple[int, str]:
    """(status, message) for any exception, in words for Docker's log and the user."""
    if isinstance(exc, PluginError):
        return exc.status, str(exc)
    if isinstance(exc, HTTPException):
        return exc.code or 500, exc.description or exc.name
    if isinstance(exc, ApiError):  # what the controller refused, in its words
        return 500, f"ovsfabric controller: {exc.message}"
    if isinstance(exc, requests.RequestException):
        return ControllerUnavailable.status, f"cannot reach the ovsfabric controller at {url}"
    if isinstance(exc, NetlinkError):
        return 500, f"netlink: {exc}"
    return 500, f"internal error: {type(exc).__name__}"
