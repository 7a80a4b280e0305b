"""NetworkDriver: Docker networks as fabric networks, endpoints as veth pairs on br-int."""
from __future__ import annotations

import logging

from api.client import ApiError
from model.ownership import aux_owner

from .body import mapping, text
from .controller import Controller
from .creates import PendingCreates
from .errors import BadRequest, PluginError
from .external import ExternalConnectivity
from .naming import (GENERIC, GLOBAL_SPACE, INTERNAL_OPTION, IPV6_OPTION, LOCAL_SPACE,
                     MTU_OPTION, NETWORK_OPTIONS,
                     OPTION, Pool, docker_alias, docker_network_of, endpoint_mac,
                     is_docker_endpoint, mac_address, network_name, strip_prefix, subnet,
                     unknown_options, veth_names)
from .orphans import remove_orphan
from .veth import Veths

LOG = logging.getLogger(__name__)
CAPABILITIES = {"Scope": "local", "ConnectivityScope": "global"}


class NetworkDriver:
    def __init__(self, controller: Controller, veths: Veths, creates: PendingCreates):
        self.controller = controller
        self.host = controller.host
        self.veths = veths
        self.creates = creates
        self.external = ExternalConnectivity(controller)

    def methods(self) -> dict:
        empty = _empty  # for calls with nothing to do here
        return {"NetworkDriver.GetCapabilities": lambda body: dict(CAPABILITIES),
                "NetworkDriver.CreateNetwork": self.create_network,
                "NetworkDriver.DeleteNetwork": self.delete_network,
                "NetworkDriver.CreateEndpoint": self.create_endpoint,
                "NetworkDriver.EndpointOperInfo": self.endpoint_info,
                "NetworkDriver.DeleteEndpoint": self.delete_endpoint,
                "NetworkDriver.Join": self.join,
                "NetworkDriver.Leave": empty,  # the veth goes in DeleteEndpoint, not here
                "NetworkDriver.DiscoverNew": empty,  # the controller knows the hosts
                "NetworkDriver.DiscoverDelete": empty,
                "NetworkDriver.ProgramExternalConnectivity": self.external.program,
                "NetworkDriver.RevokeExternalConnectivity": self.external.revoke,
                "NetworkDriver.AllocateNetwork": lambda body: {
                    "Options": mapping(body, "Options")},
                "NetworkDriver.FreeNetwork": empty,
                "NetworkDriver.GwAllocCheck": lambda body: {"SkipIPv4": False,
                                                            "SkipIPv6": False}}

    # ---- networks ------------------------------------------------------------------------

    def create_network(self, body: dict) -> dict:
        network_id = text(body, "NetworkID")
        options = mapping(body, "Options")
        generic = mapping(options, GENERIC)  # where -o options are
        unknown_options(generic, NETWORK_OPTIONS, "-o")
        name = network_name(generic[OPTION]) if OPTION in generic else None
        mtu = _mtu(generic.get(MTU_OPTION))
        egress = not options.get(INTERNAL_OPTION)
        if body.get("IPv6Data") or options.get(IPV6_OPTION):
            raise BadRequest("IPv6 is not supported: create the network without --ipv6")
        pools = body.get("IPv4Data") or []
        if not isinstance(pools, list) or len(pools) != 1 or not isinstance(pools[0], dict):
            raise BadRequest("exactly one IPv4 pool is supported")
        data = pools[0]
        if data.get("AddressSpace") not in (LOCAL_SPACE, GLOBAL_SPACE):
            # Docker's own IPAM would hand every host the same addresses.
            raise BadRequest("the ovsfabric driver needs the ovsfabric IPAM: add "
                             "--ipam-driver ovsfabric")
        alias = docker_alias(self.host, network_id)
        if self.controller.network(alias) is not None:
            return {}  # created already (a re-sent request)
        pool = self.creates.take(subnet(data.get("Pool")), name)
        gateway = strip_prefix(data.get("Gateway"))
        fabric_name = name or pool.name or network_id  # unnamed: a network of its own
        net = self.controller.network(fabric_name)
        created = net is None
        if created:
            net, created = self.controller.create_network(fabric_name, str(pool.subnet),
                                                          gateway, mtu, egress)
        undo = []
        try:
            self._check(net, pool, gateway, mtu, egress)
            if pool.name is None:
                self._bind_unnamed_pool(net, pool, undo)
            for aux in mapping(data, "AuxAddresses").values():
                held = self.controller.reserve(net["id"], strip_prefix(aux),
                                               owner=aux_owner(self.host))
                undo.append(lambda ip=held["ip"]: self.controller.release(net["id"], ip))
            self.controller.add_alias(net["id"], alias)
        except BaseException:
            if created:
                self.controller.delete_network(net["id"])  # its aliases and addresses too
            else:
                for step in reversed(undo):
                    step()
            raise
        LOG.info("docker network %s is fabric network %s (%s)", network_id[:12], net["name"],
                 net["subnet"])
        return {}

    def _bind_unnamed_pool(self, net: dict, pool: Pool, undo: list) -> None:
        """Our IPAM's pool was not named: its PoolID becomes an alias of this network, by
        which the IPAM finds it."""
        try:
            self.controller.add_alias(net["id"], pool.id)
        except ApiError as exc:
            if exc.status != 409:
                raise
            holder = self.controller.network(pool.id)
            raise PluginError(
                f"this host already has a Docker network with subnet {pool.subnet} (fabric "
                f"network {holder['name'] if holder else '?'}) whose pool is not named: give "
                f"--ipam-opt {OPTION}=NAME to tell them apart") from None
        undo.append(lambda: self.controller.remove_alias(pool.id))

    def _check(self, net: dict, pool: Pool, gateway: str | None, mtu: int | None,
               egress: bool) -> None:
        if net["subnet"] != str(pool.subnet):
            raise PluginError(f"fabric network {net['name']} has subnet {net['subnet']}, "
                              f"not {pool.subnet}")
        if gateway and net["gateway"] != gateway:
            raise PluginError(f"fabric network {net['name']} has gateway {net['gateway']}, "
                              f"not {gateway}")
        if mtu is not None and net["mtu"] != mtu:
            raise PluginError(f"fabric network {net['name']} has MTU {net['mtu']}, not {mtu}")
        if net["egress"] and not egress:
            raise PluginError(f"fabric network {net['name']} has egress (its containers reach "
                              f"the outside): create this Docker network without --internal")
        if egress and not net["egress"]:
            raise PluginError(f"fabric network {net['name']} has no egress: create this Docker "
                              f"network with --internal")
        if (other := docker_network_of(net, self.host)) is not None:
            raise PluginError(f"fabric network {net['name']} is already Docker network "
                              f"{other[:12]} on this host")

    def delete_network(self, body: dict) -> dict:
        network_id = text(body, "NetworkID")
        alias = docker_alias(self.host, network_id)
        net = self.controller.network(alias)
        if net is None:
            return {}  # deleted already
        # Docker removes a network only once no container is on it: an endpoint of ours
        # still there was orphaned by a DeleteEndpoint that could not reach the controller.
        for ep in self.controller.endpoints_of(net["id"]):
            if is_docker_endpoint(ep):
                remove_orphan(self.controller, self.veths, ep,
                              "its Docker network is being removed")
        if net["name"] == network_id and net.get("owner") == self.host:
            # Its own (unnamed, made here): goes with its aliases and addresses. A network
            # someone else made is never deleted, even when it is named by this NetworkID.
            self.controller.delete_network(net["id"])
            return {}
        for ip in self.controller.reservations(net["id"], aux_owner(self.host)):
            self.controller.release(net["id"], ip)
        self.controller.remove_alias(alias)
        unnamed_pool = Pool(self.host, subnet(net["subnet"])).id
        if unnamed_pool in net["aliases"]:
            self.controller.remove_alias(unnamed_pool)
        return {}

    # ---- endpoints -----------------------------------------------------------------------

    def create_endpoint(self, body: dict) -> dict:
        net = self._network(body)
        endpoint_id = text(body, "EndpointID")
        iface = mapping(body, "Interface")
        if iface.get("AddressIPv6"):
            raise BadRequest("IPv6 is not supported")
        ip = strip_prefix(iface.get("Address"))
        given_mac = mac_address(iface.get("MacAddress"))
        host_end, container_end = veth_names(endpoint_id)
        ep = self.controller.endpoint_named(endpoint_id)
        mac = given_mac or (ep["mac"] if ep else endpoint_mac(endpoint_id))
        self.veths.ensure(host_end, container_end, mtu=net["mtu"], mac=mac)
        if ep is None:
            try:
                ep = self.controller.create_endpoint(network=net["id"], port=host_end, ip=ip,
                                                     mac=mac, name=endpoint_id)
            except BaseException:
                self.veths.delete(host_end)
                raise
        # Only what Docker left empty may be answered: an echo, even equal, is an error.
        answer = {}
        if not given_mac:
            answer["MacAddress"] = ep["mac"]
        if not ip:
            answer["Address"] = f"{ep['ip']}/{ep['prefix_len']}"
        return {"Interface": answer} if answer else {}

    def join(self, body: dict) -> dict:
        net = self._network(body)
        endpoint_id = text(body, "EndpointID")
        if self.controller.endpoint_named(endpoint_id) is None:
            raise PluginError(f"endpoint {endpoint_id[:12]} does not exist on this host")
        _, container_end = veth_names(endpoint_id)
        if not self.veths.exists(container_end):
            raise PluginError(f"interface {container_end} of endpoint {endpoint_id[:12]} is "
                              f"gone")
        return {"InterfaceName": {"SrcName": container_end, "DstPrefix": "eth"},
                "Gateway": net["gateway"], "DisableGatewayService": False}

    def endpoint_info(self, body: dict) -> dict:
        ep = self.controller.endpoint_named(text(body, "EndpointID"))
        if ep is None:
            return {"Value": {}}
        return {"Value": {"ovsfabric.endpoint": ep["id"], "ovsfabric.port": ep["port"]}}

    def delete_endpoint(self, body: dict) -> dict:
        endpoint_id = text(body, "EndpointID")
        try:
            ep = self.controller.endpoint_named(endpoint_id)
            if ep is not None:
                self.controller.delete_endpoint(ep["id"])  # port detached, flows gone
        finally:
            # Docker has moved the container end back by now (if the container's namespace
            # died with it, the pair is gone already). Deleted even when the controller is
            # unreachable: the orphan sweep then knows the endpoint for one no container holds.
            self.veths.delete(veth_names(endpoint_id)[0])
        return {}

    def _network(self, body: dict) -> dict:
        network_id = text(body, "NetworkID")
        net = self.controller.network(docker_alias(self.host, network_id))
        if net is None:
            raise PluginError(f"network {network_id[:12]} is not an ovsfabric network of "
                              f"this host")
        return net


def _empty(body: dict) -> dict:
    return {}


def _mtu(value) -> int | None:
    if value in (None, ""):
        return None
    try:
        mtu = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{MTU_OPTION} must be a number, not {value!r}") from None
    if not 576 <= mtu <= 9000:
        raise BadRequest(f"{MTU_OPTION} must be 576..9000")
    return mtu
