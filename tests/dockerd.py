"""What dockerd does with a remote network + IPAM driver, call for call (DOCKER_PLUGIN.md §3).

The transport is a function (method, body or None) -> (status, parsed JSON or raw text):
the Flask test client in unit tests, the plugin's unix socket in end-to-end tests. A sandbox
does to interfaces what Docker does (move the veth into the container and back).
"""
from __future__ import annotations

import http.client
import json
import base64
import secrets
import socket
from dataclasses import dataclass, field

GATEWAY_OPTION = {"RequestAddressType": "com.docker.network.gateway"}
ACCEPT = "application/vnd.docker.plugins.v1.2+json"


class PluginCallError(Exception):
    def __init__(self, method: str, status: int, payload):
        self.method, self.status, self.payload = method, status, payload
        self.err = payload.get("Err") if isinstance(payload, dict) else payload
        super().__init__(f"{method}: {status} {self.err}")


# ---- transports ----------------------------------------------------------------------------

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def encode(body: dict | None) -> bytes:
    """As Go's json.Encoder writes it: compact, with a newline at the end; no body: empty."""
    return b"" if body is None else json.dumps(body, separators=(",", ":")).encode() + b"\n"


def unix_transport(path: str):
    """POSTs as dockerd 20.10 does: no Content-Type, an empty Host header."""
    def call(method: str, body: dict | None, raw: bytes | None = None, verb: str = "POST"):
        data = raw if raw is not None else encode(body)
        conn = UnixHTTPConnection(path)
        try:
            conn.putrequest(verb, f"/{method}", skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", "")
            conn.putheader("Accept", ACCEPT)
            conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data)
            response = conn.getresponse()
            text = response.read().decode()
        finally:
            conn.close()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text
    return call


def flask_transport(client):
    def call(method: str, body: dict | None, raw: bytes | None = None, verb: str = "POST"):
        data = raw if raw is not None else encode(body)
        response = client.open(f"/{method}", method=verb, data=data,
                               headers={"Accept": ACCEPT})
        try:
            return response.status_code, json.loads(response.data)
        except ValueError:
            return response.status_code, response.data.decode()
    return call


# ---- the daemon ------------------------------------------------------------------------------

@dataclass
class Network:
    name: str
    id: str
    pool_id: str | None
    pool: str
    gateway: str  # CIDR
    aux: dict[str, str] = field(default_factory=dict)  # name -> CIDR
    ipam_options: dict | None = None
    internal: bool = False  # --internal: no way out, so no external connectivity


@dataclass
class Container:
    name: str
    network: Network
    endpoint_id: str
    address: str  # CIDR
    mac: str | None = None
    src_name: str | None = None
    gateway: str | None = None
    joined: dict = field(default_factory=dict)


class NoSandbox:
    def attach(self, container: Container) -> None:
        pass

    def detach(self, container: Container) -> None:
        pass


class Dockerd:
    """One Docker host's daemon, with the plugin `ovsfabric` as network and IPAM driver."""

    def __init__(self, transport, sandbox=None):
        self.transport = transport
        self.sandbox = sandbox or NoSandbox()
        self.networks: dict[str, Network] = {}
        self.containers: dict[str, Container] = {}
        self.calls: list[str] = []
        self.warnings: list[PluginCallError] = []  # failed calls Docker only logs

    def post(self, method: str, body: dict | None = None) -> dict:
        self.calls.append(method)
        status, payload = self.transport(method, body)
        if status != 200 or not isinstance(payload, dict):
            raise PluginCallError(method, status, payload)
        return payload

    def post_logged(self, method: str, body: dict) -> None:
        """A call whose failure Docker logs and goes on (Leave, DeleteEndpoint, Release*)."""
        try:
            self.post(method, body)
        except (PluginCallError, OSError) as exc:
            self.warnings.append(exc)

    def activate(self) -> dict:
        """First use of the plugin: Activate, then what each interface's registration asks."""
        found = {"implements": self.post("Plugin.Activate")["Implements"]}
        found["network"] = self.post("NetworkDriver.GetCapabilities")
        found["ipam"] = self.post("IpamDriver.GetCapabilities")
        found["spaces"] = self.post("IpamDriver.GetDefaultAddressSpaces")
        self.space = found["spaces"]["LocalDefaultAddressSpace"]
        return found

    # ---- docker network create / rm -------------------------------------------------------

    def network_create(self, name: str, subnet: str | None = None, gateway: str | None = None,
                       driver_opts: dict | None = None, ipam_opts: dict | None = None,
                       aux: dict | None = None, network_id: str | None = None,
                       internal: bool = False) -> Network:
        if not hasattr(self, "space"):
            self.activate()
        network_id = network_id or secrets.token_hex(32)
        pool = self.post("IpamDriver.RequestPool", {
            "AddressSpace": self.space, "Pool": subnet or "", "SubPool": "",
            "Options": dict(ipam_opts or {}), "V6": False})
        net = Network(name, network_id, pool["PoolID"], pool["Pool"], "", {}, ipam_opts,
                      internal)
        try:
            net.gateway = self.post("IpamDriver.RequestAddress", {
                "PoolID": net.pool_id, "Address": gateway or "",
                "Options": GATEWAY_OPTION})["Address"]
            for key, ip in (aux or {}).items():
                net.aux[key] = self.post("IpamDriver.RequestAddress", {
                    "PoolID": net.pool_id, "Address": ip, "Options": None})["Address"]
            options = {"com.docker.network.enable_ipv6": False,
                       "com.docker.network.generic": dict(driver_opts or {}),
                       **({"com.docker.network.internal": True} if internal else {})}
            self.post("NetworkDriver.CreateNetwork", {
                "NetworkID": network_id, "Options": options,
                "IPv4Data": [{"AddressSpace": self.space, "Pool": net.pool,
                              "Gateway": net.gateway,
                              **({"AuxAddresses": net.aux} if net.aux else {})}],
                "IPv6Data": []})
        except PluginCallError:
            self._release_network_addresses(net)  # Docker rolls the IPAM back
            raise
        self.networks[name] = net
        return net

    def network_rm(self, name: str) -> None:
        """Current engines: addresses, pool, then the driver."""
        net = self.networks.pop(name)
        self._release_network_addresses(net)
        self.post("NetworkDriver.DeleteNetwork", {"NetworkID": net.id})

    def _release_network_addresses(self, net: Network) -> None:
        for cidr in ([net.gateway] if net.gateway else []) + list(net.aux.values()):
            self.post("IpamDriver.ReleaseAddress",
                      {"PoolID": net.pool_id, "Address": cidr.split("/")[0]})
        self.post("IpamDriver.ReleasePool", {"PoolID": net.pool_id})

    # ---- docker run / stop ------------------------------------------------------------------

    def run(self, name: str, network: str, ip: str | None = None, mac: str | None = None,
            before_join=None, ports: tuple[tuple[int, int], ...] = ()) -> Container:
        """``ports``: (container port, host port) pairs of ``-p``, TCP."""
        net = self.networks[network]
        address = self.post("IpamDriver.RequestAddress", {
            "PoolID": net.pool_id, "Address": ip or "", "Options": None})["Address"]
        endpoint_id = secrets.token_hex(32)
        exposed = [{"Proto": 6, "Port": port} for port, _ in ports]
        portmap = [{"Proto": 6, "IP": "", "Port": port, "HostIP": "", "HostPort": host_port,
                    "HostPortEnd": host_port} for port, host_port in ports]
        options = {"com.docker.network.endpoint.exposedports": exposed,
                   "com.docker.network.portmap": portmap}
        if mac:  # a net.HardwareAddr, which Go encodes as base64
            options["com.docker.network.endpoint.macaddress"] = base64.b64encode(
                bytes.fromhex(mac.replace(":", ""))).decode()
        try:
            created = self.post("NetworkDriver.CreateEndpoint", {
                "NetworkID": net.id, "EndpointID": endpoint_id,
                "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": mac or ""},
                "Options": options})
        except PluginCallError:
            self.post("IpamDriver.ReleaseAddress",
                      {"PoolID": net.pool_id, "Address": address.split("/")[0]})
            raise
        interface = created.get("Interface") or {}
        container = Container(name, net, endpoint_id, address,
                              mac or interface.get("MacAddress"))
        container.created = created
        if before_join is not None:
            before_join(container)
        ids = {"NetworkID": net.id, "EndpointID": endpoint_id}
        sandbox_options = {"com.docker.network.endpoint.exposedports": exposed,
                           "com.docker.network.portmap": portmap}
        try:
            joined = self.post("NetworkDriver.Join", {
                **ids, "SandboxKey": f"/var/run/docker/netns/{secrets.token_hex(6)}",
                "Options": sandbox_options})
        except PluginCallError:
            self.post("NetworkDriver.DeleteEndpoint", ids)
            self.post("IpamDriver.ReleaseAddress",
                      {"PoolID": net.pool_id, "Address": address.split("/")[0]})
            raise
        container.joined = joined
        container.src_name = joined["InterfaceName"]["SrcName"]
        container.gateway = joined.get("Gateway")
        self.sandbox.attach(container)
        self.containers[name] = container
        if not net.internal:
            try:
                self.post("NetworkDriver.ProgramExternalConnectivity",
                          {**ids, "Options": sandbox_options})
            except PluginCallError:  # the start fails: Docker undoes the join
                self.containers.pop(name)
                self.sandbox.detach(container)
                self.post_logged("NetworkDriver.Leave", ids)
                self.post_logged("NetworkDriver.DeleteEndpoint", ids)
                self.post_logged("IpamDriver.ReleaseAddress",
                                 {"PoolID": net.pool_id, "Address": address.split("/")[0]})
                raise
        for _ in range(2):  # once for the sandbox, once for the container's port info
            self.post("NetworkDriver.EndpointOperInfo", ids)
        return container

    def stop(self, name: str, after_leave=None) -> None:
        container = self.containers.pop(name)
        ids = {"NetworkID": container.network.id, "EndpointID": container.endpoint_id}
        if not container.network.internal:
            self.post_logged("NetworkDriver.RevokeExternalConnectivity", ids)
        self.post_logged("NetworkDriver.Leave", ids)
        if after_leave is not None:
            after_leave(container)
        self.sandbox.detach(container)  # back to the host, renamed to SrcName, down
        self.post_logged("NetworkDriver.DeleteEndpoint", ids)
        self.post_logged("IpamDriver.ReleaseAddress", {
            "PoolID": container.network.pool_id, "Address": container.address.split("/")[0]})

    # ---- daemon restart ----------------------------------------------------------------------

    def restart(self) -> list[dict]:
        """A graceful stop (live-restore off) tears every container's endpoints down; the new
        daemon activates the plugin again and replays each network's pool, gateway and aux
        addresses, no more. Returns the replay's answers."""
        for name in list(self.containers):
            self.stop(name)
        return self._replay([])

    def crash_restart(self) -> list[dict]:
        """After ``kill -9`` the new daemon replays pools, gateways, aux addresses and the
        addresses of the containers that died with it, then tears their endpoints down."""
        dead = list(self.containers.values())
        answers = self._replay(dead)
        for container in dead:
            ids = {"NetworkID": container.network.id, "EndpointID": container.endpoint_id}
            self.post("NetworkDriver.Leave", ids)
            self.sandbox.detach(container)
            self.post("NetworkDriver.DeleteEndpoint", ids)
            self.post("IpamDriver.ReleaseAddress", {"PoolID": container.network.pool_id,
                                                    "Address": container.address.split("/")[0]})
        self.containers.clear()
        return answers

    def _replay(self, containers: list[Container]) -> list[dict]:
        self.activate()
        answers = []
        for net in self.networks.values():
            pool = self.post("IpamDriver.RequestPool", {
                "AddressSpace": self.space, "Pool": net.pool, "SubPool": "",
                "Options": dict(net.ipam_options or {}), "V6": False})
            answers.append(pool)
            answers.append(self.post("IpamDriver.RequestAddress", {
                "PoolID": pool["PoolID"], "Address": net.gateway.split("/")[0],
                "Options": GATEWAY_OPTION}))
            for cidr in net.aux.values():
                answers.append(self.post("IpamDriver.RequestAddress", {
                    "PoolID": pool["PoolID"], "Address": cidr.split("/")[0], "Options": None}))
            for container in containers:
                if container.network is net:
                    answers.append(self.post("IpamDriver.RequestAddress", {
                        "PoolID": pool["PoolID"], "Address": container.address.split("/")[0],
                        "Options": None}))
        return answers
