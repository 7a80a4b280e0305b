"""A small client of the REST API, for the CLI, the demo, tests and benchmarks."""
from __future__ import annotations

from urllib.parse import quote

import requests


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def _seg(ref: str) -> str:
    """One path segment: a name typed by a user must not add segments to the URL."""
    return quote(ref, safe="")


class FabricClient:
    def __init__(self, url: str = "http://127.0.0.1:8686", timeout: float = 30.0,
                 token: str | None = None, ca_cert: str | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"
        # An HTTPS API signed by the fabric's own CA. Passed with each request: requests lets
        # REQUESTS_CA_BUNDLE override a session's setting.
        self.verify = ca_cert or True

    def request(self, method: str, path: str, body: dict | list | None = None, **params):
        response = self.http.request(method, self.url + path, json=body, timeout=self.timeout,
                                     verify=self.verify,
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
        return self.request("GET", f"/v1/hosts/{_seg(name)}")

    def delete_host(self, name: str) -> None:
        self.request("DELETE", f"/v1/hosts/{_seg(name)}")

    def create_network(self, name: str, subnet: str, **fields) -> dict:
        return self.request("POST", "/v1/networks", {"name": name, "subnet": subnet, **fields})

    def networks(self) -> list[dict]:
        return self.request("GET", "/v1/networks")

    def network(self, ref: str) -> dict:
        return self.request("GET", f"/v1/networks/{_seg(ref)}")

    def delete_network(self, ref: str) -> None:
        self.request("DELETE", f"/v1/networks/{_seg(ref)}")

    def set_network_egress(self, ref: str, egress: bool) -> dict:
        return self.request("PATCH", f"/v1/networks/{_seg(ref)}", {"egress": egress})

    def add_alias(self, ref: str, alias: str) -> dict:
        """Lets ``alias`` name the network too (idempotent); returns the network."""
        return self.request("POST", f"/v1/networks/{_seg(ref)}/aliases", {"alias": alias})

    def remove_alias(self, ref: str, alias: str) -> None:
        self.request("DELETE", f"/v1/networks/{_seg(ref)}/aliases/{_seg(alias)}")

    def reserve_address(self, ref: str, owner: str, ip: str | None = None) -> dict:
        body = {"owner": owner, **({"ip": ip} if ip else {})}
        return self.request("POST", f"/v1/networks/{_seg(ref)}/addresses", body)

    def addresses(self, ref: str) -> list[dict]:
        return self.request("GET", f"/v1/networks/{_seg(ref)}/addresses")

    def release_address(self, ref: str, ip: str, owner: str | None = None) -> None:
        self.request("DELETE", f"/v1/networks/{_seg(ref)}/addresses/{_seg(ip)}", owner=owner)

    def create_endpoint(self, network: str, host: str, **fields) -> dict:
        body = {"network": network, "host": host,
                **{k: v for k, v in fields.items() if v is not None}}
        return self.request("POST", "/v1/endpoints", body)

    def endpoints(self, network: str | None = None, host: str | None = None) -> list[dict]:
        return self.request("GET", "/v1/endpoints", network=network, host=host)

    def endpoint(self, endpoint_id: str) -> dict:
        return self.request("GET", f"/v1/endpoints/{_seg(endpoint_id)}")

    def delete_endpoint(self, endpoint_id: str) -> None:
        self.request("DELETE", f"/v1/endpoints/{_seg(endpoint_id)}")

    def set_endpoint_labels(self, endpoint_id: str, labels: dict[str, str]) -> dict:
        """Replaces all the endpoint's labels; returns the endpoint."""
        return self.request("PATCH", f"/v1/endpoints/{_seg(endpoint_id)}", {"labels": labels})

    # ---- routers -------------------------------------------------------------------------

    def create_router(self, name: str) -> dict:
        return self.request("POST", "/v1/routers", {"name": name})

    def routers(self) -> list[dict]:
        return self.request("GET", "/v1/routers")

    def router(self, ref: str) -> dict:
        return self.request("GET", f"/v1/routers/{_seg(ref)}")

    def delete_router(self, ref: str) -> None:
        self.request("DELETE", f"/v1/routers/{_seg(ref)}")

    def attach_network(self, ref: str, network: str) -> dict:
        """Attaches the network (attaching it again is fine); returns the router."""
        return self.request("POST", f"/v1/routers/{_seg(ref)}/networks", {"network": network})

    def detach_network(self, ref: str, network: str) -> None:
        self.request("DELETE", f"/v1/routers/{_seg(ref)}/networks/{_seg(network)}")

    def set_routes(self, ref: str, routes: list[dict]) -> dict:
        """Replaces the router's routes ({destination, nexthop} each); returns the router."""
        return self.request("PUT", f"/v1/routers/{_seg(ref)}/routes", routes)

    # ---- security policies ---------------------------------------------------------------

    def create_policy(self, body: dict) -> dict:
        return self.request("POST", "/v1/policies", body)

    def policies(self) -> list[dict]:
        return self.request("GET", "/v1/policies")

    def policy(self, ref: str) -> dict:
        return self.request("GET", f"/v1/policies/{_seg(ref)}")

    def replace_policy(self, ref: str, body: dict) -> dict:
        return self.request("PUT", f"/v1/policies/{_seg(ref)}", body)

    def delete_policy(self, ref: str) -> None:
        self.request("DELETE", f"/v1/policies/{_seg(ref)}")

    def policy_status(self, ref: str) -> dict:
        """Where the policy is realized and what its rules matched: {policy, hosts, rules}."""
        return self.request("GET", f"/v1/policies/{_seg(ref)}/status")

    # ---- published ports -----------------------------------------------------------------

    def publish(self, endpoint_id: str, protocol: str, port: int,
                host_port: int | None = None) -> dict:
        body = {"protocol": protocol, "port": port,
                **({"host_port": host_port} if host_port is not None else {})}
        return self.request("POST", f"/v1/endpoints/{_seg(endpoint_id)}/published", body)

    def published(self, endpoint_id: str) -> list[dict]:
        return self.request("GET", f"/v1/endpoints/{_seg(endpoint_id)}/published")

    def unpublish(self, endpoint_id: str, protocol: str, host_port: int) -> None:
        self.request("DELETE", f"/v1/endpoints/{_seg(endpoint_id)}/published/"
                               f"{_seg(protocol)}/{host_port}")

    # ---- inspection ----------------------------------------------------------------------

    def host_flows(self, host: str, network: str | None = None, endpoint: str | None = None,
                   table: int | str | None = None) -> list[dict]:
        """The host's flows (FlowView), with their counters, optionally filtered; ``table``
        by number or name."""
        return self.request("GET", f"/v1/hosts/{_seg(host)}/flows", network=network,
                            endpoint=endpoint, table=table)

    def network_flows(self, ref: str) -> list[dict]:
        """The network's flows on every host."""
        return self.request("GET", f"/v1/networks/{_seg(ref)}/flows")

    def router_flows(self, ref: str) -> list[dict]:
        """The router's flows on every host."""
        return self.request("GET", f"/v1/routers/{_seg(ref)}/flows")

    def endpoint_flows(self, endpoint_id: str) -> list[dict]:
        """The endpoint's flows on every host."""
        return self.request("GET", f"/v1/endpoints/{_seg(endpoint_id)}/flows")

    def cluster(self) -> dict:
        """The replicas, the leader and the revision the answering replica has seen
        (ClusterView)."""
        return self.request("GET", "/v1/cluster")

    def audit(self, host: str) -> dict:
        """The host's installed table compared with the desired one (AuditView); 503 while
        the host is not connected."""
        return self.request("GET", f"/v1/hosts/{_seg(host)}/flows", audit="true")

    def trace(self, source: str, destination: str, protocol: str | None = None,
              dst_port: int | None = None) -> dict:
        """A packet's path through the fabric's tables (TraceView)."""
        body = {"from": source, "to": destination, "protocol": protocol, "dst_port": dst_port}
        return self.request("POST", "/v1/trace", {k: v for k, v in body.items() if v is not None})
