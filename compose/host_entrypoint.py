"""A docker-compose host: its Open vSwitch set up by the lab's own code (lab/hostsetup.py),
registered with the controller, then `ovsfabric plugin` in its place.

Configuration comes from the environment (docker-compose.yml sets it):
OVSFABRIC_HOST, OVSFABRIC_CONTROLLER, OVSFABRIC_MGMT_IP (where the controller reaches this
host's OVSDB), OVSFABRIC_TUNNEL_IP (an address of the underlay NIC, moved to br-phy), and
optionally OVSFABRIC_DATAPATH (netdev), OVSFABRIC_OVSDB_PORT (6640), OVSFABRIC_RUNDIR,
OVSFABRIC_TOKEN_FILE / OVSFABRIC_TOKEN.
"""
from __future__ import annotations

import os
import sys
import time

import requests

from api.client import ApiError, FabricClient
from lab import hostsetup, netns
from lab.ovs import OvsDaemons
from security import tokens

REGISTER_WAIT_S = 120


def setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if not value:
        raise SystemExit(f"host-entrypoint: {name} is not set")
    return value


def nic_with(address: str, ip_addr_output: str) -> tuple[str, int]:
    """(device, prefix length) holding ``address`` in `ip -o -4 addr show` output."""
    for line in ip_addr_output.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] == "inet" and fields[3].split("/")[0] == address:
            return fields[1], int(fields[3].split("/")[1])
    raise SystemExit(f"host-entrypoint: no interface has the tunnel address {address}")


def register(client: FabricClient, name: str, ovsdb: str, tunnel_ip: str,
             datapath_type: str) -> None:
    """Registers the host, once the controller answers; an identical registration is fine."""
    deadline = time.monotonic() + REGISTER_WAIT_S
    while True:
        try:
            client.create_host(name, ovsdb, tunnel_ip, datapath_type=datapath_type)
            return
        except ApiError as exc:
            if exc.status != 409:
                raise SystemExit(f"host-entrypoint: the controller refused {name}: "
                                 f"{exc.message}") from None
            known = client.host(name)
            if (known["ovsdb"], known["tunnel_ip"]) != (ovsdb, tunnel_ip):
                raise SystemExit(f"host-entrypoint: {name} is registered with {known['ovsdb']}"
                                 f", {known['tunnel_ip']}") from None
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise SystemExit(f"host-entrypoint: no controller at {client.url}") from None
            time.sleep(1)


def main() -> None:
    name = setting("OVSFABRIC_HOST")
    controller = setting("OVSFABRIC_CONTROLLER")
    mgmt_ip = setting("OVSFABRIC_MGMT_IP")
    tunnel_ip = setting("OVSFABRIC_TUNNEL_IP")
    datapath_type = setting("OVSFABRIC_DATAPATH", "netdev")  # no kernel module needed
    ovsdb_port = setting("OVSFABRIC_OVSDB_PORT", "6640")
    rundir = setting("OVSFABRIC_RUNDIR", "/run/ovsfabric")
    os.makedirs(rundir, exist_ok=True)

    nic, prefix_len = nic_with(tunnel_ip, netns.ip("-o", "-4", "addr", "show").stdout)
    netns.ip("addr", "flush", "dev", nic)  # the address moves to br-phy
    hostsetup.prepare_underlay_nic(None, nic)
    daemons = OvsDaemons(None, rundir)
    hostsetup.start_open_vswitch(daemons, name, name)
    daemons.appctl_ovsdb("ovsdb-server/add-remote", f"ptcp:{ovsdb_port}:{mgmt_ip}")
    hostsetup.add_tunnel_bridge(daemons, nic, tunnel_ip, prefix_len, datapath_type)

    client = FabricClient(controller, token=tokens.load_token())
    register(client, name, f"tcp:{mgmt_ip}:{ovsdb_port}", tunnel_ip, datapath_type)
    print(f"host-entrypoint: {name} ready (underlay {nic}, tunnel {tunnel_ip}); starting the "
          f"plugin", file=sys.stderr, flush=True)
    # The plugin reads OVSFABRIC_CONTROLLER, OVSFABRIC_HOST and the token from the environment.
    os.execvp("ovsfabric", ["ovsfabric", "plugin"])


if __name__ == "__main__":
    main()
