"""IpamDriver: cluster-wide addresses through the controller's reservations.

Every host asks the controller, so a container address is never handed to two hosts, and
the gateway is the fabric network's own (the same on every host, never reserved). A pool
named by ``--ipam-opt ovsfabric.network=NAME`` is in that fabric network from the start; an
unnamed pool is in the network CreateNetwork binds it to (see naming.py).
"""
from __future__ import annotations

import ipaddress

from .body import mapping, text
from .controller import Controller
from .errors import BadRequest, PluginError
from .naming import (GATEWAY_REQUEST, GLOBAL_SPACE, LOCAL_SPACE, OPTION, Pool,
                     has_docker_network, network_name, subnet)


class IpamDriver:
    def __init__(self, controller: Controller):
        self.controller = controller

    def methods(self) -> dict:
        return {"IpamDriver.GetCapabilities": self.capabilities,
                "IpamDriver.GetDefaultAddressSpaces": self.address_spaces,
                "IpamDriver.RequestPool": self.request_pool,
                "IpamDriver.ReleasePool": self.release_pool,
                "IpamDriver.RequestAddress": self.request_address,
                "IpamDriver.ReleaseAddress": self.release_address}

    def capabilities(self, body: dict) -> dict:
        # Replays after a daemon restart are answered from the controller as "yours".
        return {"RequiresMACAddress": False, "RequiresRequestReplay": True}

    def address_spaces(self, body: dict) -> dict:
        return {"LocalDefaultAddressSpace": LOCAL_SPACE,
                "GlobalDefaultAddressSpace": GLOBAL_SPACE}

    def request_pool(self, body: dict) -> dict:
        if body.get("V6"):
            raise BadRequest("IPv6 pools are not supported")
        if body.get("SubPool"):
            raise BadRequest("--ip-range is not supported: the pool is the whole subnet")
        options = mapping(body, "Options")
        name = network_name(options[OPTION]) if OPTION in options else None
        net = self.controller.network(name) if name else None
        if body.get("Pool"):
            pool = subnet(body["Pool"])
            if net is not None and net["subnet"] != str(pool):
                raise PluginError(f"fabric network {name} has subnet {net['subnet']}, "
                                  f"not {pool}")
        elif net is not None:
            pool = subnet(net["subnet"])  # later hosts may leave --subnet out
        else:
            raise BadRequest("give --subnet: the pool of a new fabric network is not chosen "
                             "for you")
        return {"PoolID": Pool(self.controller.host, pool, name).id, "Pool": str(pool),
                "Data": {}}

    def release_pool(self, body: dict) -> dict:
        pool = Pool.parse(text(body, "PoolID"))
        if pool.name:
            self.controller.remove_alias(pool.id)
            return {}
        # An unnamed pool's PoolID is the same for every Docker network of the subnet on
        # this host: it is released with the Docker network that holds it (DeleteNetwork),
        # not by a network whose creation failed.
        net = self.controller.network(pool.id)
        if net is not None and not has_docker_network(net, pool.host):
            self.controller.remove_alias(pool.id)
        return {}

    def request_address(self, body: dict) -> dict:
        pool = Pool.parse(text(body, "PoolID"))
        address = _address_in(pool, body.get("Address"))
        gateway = mapping(body, "Options").get("RequestAddressType") == GATEWAY_REQUEST
        if pool.name:
            net = self._named_network(pool, address if gateway else None, bind=gateway)
        else:
            net = self.controller.network(pool.id)
        if gateway:
            held = net["gateway"] if net else address or str(pool.subnet.network_address + 1)
            if address and address != held:
                raise PluginError(f"the gateway of fabric network {net['name']} is {held}, "
                                  f"not {address}")
            return {"Address": f"{held}/{pool.subnet.prefixlen}", "Data": {}}
        if net is None:
            if address is None:
                raise PluginError(f"no Docker network on this host uses pool {pool.id}")
            # An --aux-address before CreateNetwork: that call reserves it.
            return {"Address": f"{address}/{pool.subnet.prefixlen}", "Data": {}}
        held = self.controller.reserve(net["id"], address)
        return {"Address": f"{held['ip']}/{held['prefix_len']}", "Data": {}}

    def release_address(self, body: dict) -> dict:
        pool = Pool.parse(text(body, "PoolID"))
        address = _address_in(pool, text(body, "Address"))
        net = self.controller.network(pool.name or pool.id)
        # The gateway is the network's, not a reservation; an unknown pool holds nothing.
        if net is not None and address != net["gateway"]:
            self.controller.release(net["id"], address)
        return {}

    def _named_network(self, pool: Pool, gateway: str | None, bind: bool) -> dict:
        if bind:  # the gateway request, first of every network create and of every replay
            net, _ = self.controller.ensure_network(pool.name, str(pool.subnet), gateway)
            # CreateNetwork finds the name by this alias when -o does not give it.
            self.controller.add_alias(net["id"], pool.id)
        else:
            net = self.controller.network(pool.name)
            if net is None:
                raise PluginError(f"fabric network {pool.name} does not exist (deleted?)")
        if net["subnet"] != str(pool.subnet):
            raise PluginError(f"fabric network {pool.name} has subnet {net['subnet']}, "
                              f"not {pool.subnet}")
        return net


def _address_in(pool: Pool, value) -> str | None:
    if not value:
        return None
    try:
        address = ipaddress.IPv4Address(value)
    except (ValueError, TypeError):
        raise BadRequest(f"address {value!r} is not an IPv4 address") from None
    if address not in pool.subnet:
        raise BadRequest(f"address {address} is outside the pool {pool.subnet}")
    return str(address)
