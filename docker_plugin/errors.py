"""Errors a handler raises; the app answers each with its status and {"Err": message}."""


class PluginError(Exception):
    # Never 404: Docker reads a 404 as "method not implemented" and may skip the call.
    status = 500


class BadRequest(PluginError):
    status = 400


class ControllerUnavailable(PluginError):
    status = 503
