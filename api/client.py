"""A small client of the REST API, for the CLI, the demo, tests and benchmarks."""
from __future__ import annotations

import requests


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class FabricClient:
    def __init__(self, url: str = "http://127.0.0.1:8686", timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def request(self, method: str, path: str, body: dict | None = None, **params):
        response = self.http.request(method, self.url + path, json=body, timeout=self.timeout,
                                     params={k: v for k, v in params.items() if v is not None})
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise ApiError(response.status_code, message)
        return response.json() if response.content else None

    def create_host(self, name: str, ovsdb: str, tunnel_ip: str, **fields) -> dict:
        return self.request("POST", "/v1/hosts",
                            {"name": name, "ovsdb": ovsdb, "tunnel_ip": tunnel_ip, **fields})

    def hosts(self) -> list[dict]:
        return self.request("GET", "/v1/hosts")

    def host(self, name: str) -> dict:
        return self.request("GET", f"/v1/hosts/{name}")

    def delete_host(self, name: str) -> None:
        self.request("DELETE", f"/v1/hosts/{name}")

    def create_network(self, name: str, subnet: str, **fields) -> dict:
        return self.request("POST", "/v1/networks", {"name": name, "subnet": subnet, **fields})

    def networks(self) -> list[dict]:
        return self.request("GET", "/v1/networks")

    def network(self, ref: str) -> dict:
        return self.request("GET", f"/v1/networks/{ref}")

    def delete_network(self, ref: str) -> None:
        self.request("DELETE", f"/v1/networks/{ref}")

    def create_endpoint(self, network: str, host: str, **fields) -> dict:
        body = {"network": network, "host": host,
                **{k: v for k, v in fields.items() if v is not None}}
        return self.request("POST", "/v1/endpoints", body)

    def endpoints(self, network: str | None = None, host: str | None = None) -> list[dict]:
        return self.request("GET", "/v1/endpoints", network=network, host=host)

    def endpoint(self, endpoint_id: str) -> dict:
        return self.request("GET", f"/v1/endpoints/{endpoint_id}")

    def delete_endpoint(self, endpoint_id: str) -> None:
        self.request("DELETE", f"/v1/endpoints/{endpoint_id}")
