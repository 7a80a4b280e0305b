"""The plugin's access to the controller's REST API, over ``http.client`` (``requests`` alone
would take most of the start-up budget of a plugin kubelet runs for every pod).

An unreachable or failing controller is CNI's "try again later"; what it refuses because of
the configuration (an unknown network or host, a refused token) is an invalid configuration.
"""
from __future__ import annotations

import http.client
import json
import socket
import sys
from urllib.parse import quote, urlencode, urlsplit

from .errors import INVALID_CONFIG, REFUSED, TRY_AGAIN_LATER, CniError

TIMEOUT = 30.0  # an endpoint's create waits for its flows, which the controller bounds


class ControllerError(CniError):
    def __init__(self, code: int, msg: str, status: int | None = None):
        super().__init__(code, msg)
        self.status = status


def seg(text: str) -> str:
    return quote(text, safe="")


class Controller:
    def __init__(self, url: str, token: str | None = None, ca_cert: str | None = None,
                 timeout: float = TIMEOUT):
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._netloc = parts.netloc
        self._base = parts.path
        self._token = token
        self._ca_cert = ca_cert
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self._https:
                import ssl  # only then: it costs a plain-HTTP plugin's start-up
                try:
                    context = ssl.create_default_context(cafile=self._ca_cert)
                except (OSError, ssl.SSLError) as exc:
                    raise CniError(INVALID_CONFIG, f"ca_cert {self._ca_cert}: {exc}") from None
                self._connection = http.client.HTTPSConnection(
                    self._netloc, timeout=self._timeout, context=context)
            else:
                self._connection = http.client.HTTPConnection(self._netloc,
                                                              timeout=self._timeout)
        return self._connection

    def request(self, method: str, path: str, body=None, **params):
        if params:
            path += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        payload = json.dumps(body).encode() if body is not None else None
        try:
            connection = self._connect()
            connection.request(method, self._base + path, payload, headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            ssl = sys.modules.get("ssl")  # imported for https only
            if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
                raise ControllerError(INVALID_CONFIG, f"the controller at {self.url} is not "
                                                      f"the one ca_cert signs: "
                                                      f"{exc.verify_message}") from None
            why = "timed out" if isinstance(exc, socket.timeout) else str(exc) or type(
                exc).__name__
            raise ControllerError(TRY_AGAIN_LATER, f"cannot reach the ovsfabric controller "
                                                   f"at {self.url}: {why}") from None
        if response.status >= 400:
            raise _refusal(response.status, data)
        return json.loads(data) if data else None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # ---- what the verbs ask ---------------------------------------------------------------

    def network(self, ref: str) -> dict:
        return self.request("GET", f"/v1/networks/{seg(ref)}")

    def host(self, name: str) -> dict:
        return self.request("GET", f"/v1/hosts/{seg(name)}")

    def endpoints(self, host: str, network: str | None = None) -> list[dict]:
        return self.request("GET", "/v1/endpoints", host=host, network=network)

    def create_endpoint(self, **fields) -> dict:
        """Answers once the port is attached and its flows are confirmed."""
        return self.request("POST", "/v1/endpoints", fields)

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Idempotent: an endpoint already gone is fine."""
        try:
            self.request("DELETE", f"/v1/endpoints/{seg(endpoint_id)}")
        except ControllerError as exc:
            if exc.status != 404:
                raise

    def publish(self, endpoint_id: str, protocol: str, port: int, host_port: int) -> dict:
        return self.request("POST", f"/v1/endpoints/{seg(endpoint_id)}/published",
                            {"protocol": protocol, "port": port, "host_port": host_port})

    def audit(self, host: str) -> dict:
        return self.request("GET", f"/v1/hosts/{seg(host)}/flows", audit="true")


def _refusal(status: int, data: bytes) -> ControllerError:
    try:
        message = json.loads(data).get("error") or data.decode(errors="replace")
    except (ValueError, AttributeError):
        message = data.decode(errors="replace")
    text = f"ovsfabric controller: {message} (HTTP {status})"
    if status >= 500:
        return ControllerError(TRY_AGAIN_LATER, text, status)
    if status in (401, 403, 404):
        return ControllerError(INVALID_CONFIG, text, status)
    return ControllerError(REFUSED, text, status)
