"""IpamDriver: cluster-wide addresses through the controller's reservations.

Every host asks the controller, so a container address is never handed to two hosts, and
the gateway is the fabric network's own (the same on every host, never reserved). Nothing is
created here: the fabric network of a new Docker network is made by CreateNetwork, which
knows every option (see creates.py), and until then its gateway and ``--aux-address`` values
are only answered, not held.
"""
from __future__ import annotations

import ipaddress

from api.client import ApiError
from model.ownership import aux_owner

from .body import mapping, text
from .controller import Controller
from .creates import PendingCreates
from .errors import BadRequest, PluginError
from .naming import (GATEWAY_REQUEST, GLOBAL_SPACE, IPAM_OPTIONS, LOCAL_SPACE, OPTION, Pool,
                     docker_network_of, network_name, subnet, unknown_options)


class IpamDriver:
    def __init__(self, controller: Controller, creates: PendingCreates):
        self.controller = controller
        self.creates = creates

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
            raise BadRequest("IPv6 is not supported: create the network without --ipv6")
        if body.get("SubPool"):
            raise BadRequest("--ip-range is not supported: the pool is the whole subnet")
        options = mapping(body, "Options")
        unknown_options(options, IPAM_OPTIONS, "--ipam-opt")
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
        # A pool holds nothing of its own: the alias an unnamed pool becomes is bound and
        # removed with its Docker network (CreateNetwork, DeleteNetwork). Releasing here
        # would take it from a live network whenever a second create of the pool failed.
        Pool.parse(text(body, "PoolID"))
        return {}

    def request_address(self, body: dict) -> dict:
        pool = Pool.parse(text(body, "PoolID"))
        address = _address_in(pool, body.get("Address"))
        net = self.controller.network(pool.name or pool.id)
        if mapping(body, "Options").get("RequestAddressType") == GATEWAY_REQUEST:
            # First call of every create (and of a daemon's replay): CreateNetwork follows.
            self.creates.note(pool, bound=bool(net and docker_network_of(net, pool.host)))
            held = net["gateway"] if net else address or str(pool.subnet.network_address + 1)
            if address and address != held:
                raise PluginError(f"the gateway of fabric network {net['name']} is {held}, "
                                  f"not {address}")
            return {"Address": f"{held}/{pool.subnet.prefixlen}", "Data": {}}
        if net is None or docker_network_of(net, pool.host) is None:
            if address is None:
                raise PluginError(f"no Docker network on this host uses pool {pool.id}")
            # An --aux-address of a create in progress: CreateNetwork reserves it.
            return {"Address": f"{address}/{pool.subnet.prefixlen}", "Data": {}}
        if net["subnet"] != str(pool.subnet):
            raise PluginError(f"fabric network {net['name']} has subnet {net['subnet']}, "
                              f"not {pool.subnet}")
        try:
            held = self.controller.reserve(net["id"], address)
        except ApiError as exc:
            if exc.status != 409 or address not in self.controller.reservations(
                    net["id"], aux_owner(pool.host)):
                raise
            # This host's --aux-address, which a daemon restarted after a crash replays.
            # A container asking for it is refused by CreateEndpoint: it stays reserved.
            return {"Address": f"{address}/{pool.subnet.prefixlen}", "Data": {}}
        return {"Address": f"{held['ip']}/{held['prefix_len']}", "Data": {}}

    def release_address(self, body: dict) -> dict:
        pool = Pool.parse(text(body, "PoolID"))
        address = _address_in(pool, text(body, "Address"))
        net = self.controller.network(pool.name or pool.id)
        # Only what this host's containers hold: the gateway is the network's, --aux-address
        # values go with the Docker network (DeleteNetwork), and an address another host
        # holds was only answered, to a create of ours that failed.
        if net is not None and address != net["gateway"]:
            self.controller.release(net["id"], address, owner=self.controller.host)
        return {}


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
