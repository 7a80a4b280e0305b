"""`ovsfabric cni install`: the CNI plugin and its network configuration on this node."""
from __future__ import annotations

import argparse
import json

from .commands import EXIT_ERROR


def add_parsers(commands: argparse._SubParsersAction) -> None:
    cni = commands.add_parser("cni", help="the CNI plugin of a node (Kubernetes, Podman, ...)")
    actions = cni.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = actions.add_parser(
        "install", help="put the plugin in a CNI bin dir and a .conflist naming it in a CNI "
                        "conf dir")
    install.add_argument("--bin-dir", required=True, metavar="DIR",
                         help="where runtimes find plugins, e.g. /opt/cni/bin")
    install.add_argument("--conf-dir", required=True, metavar="DIR",
                         help="where runtimes find network configurations, e.g. "
                              "/etc/cni/net.d")
    install.add_argument("--controller", required=True, metavar="URL",
                         help="the controller's REST API, e.g. http://192.0.2.1:8686")
    install.add_argument("--host", required=True, metavar="NAME",
                         help="this node's name in the fabric")
    install.add_argument("--network", required=True, metavar="NAME",
                         help="the fabric network containers are attached to")
    install.add_argument("--token-file", metavar="PATH",
                         help="bearer token for the controller's API (the host's token)")
    install.add_argument("--ca-cert", metavar="PATH", help="CA of an HTTPS API")
    install.add_argument("--mtu", type=int, metavar="BYTES",
                         help="the containers' MTU (default: the network's)")
    install.add_argument("--python", metavar="PATH",
                         help="the interpreter the plugin file names, as the node has it "
                              "(Python 3.9 or newer; default: /usr/bin/python3 when it exists "
                              "here, else this one)")
    install.add_argument("--json", action="store_true", help="machine-readable output")
    install.set_defaults(run=run_install)


def run_install(args) -> int:
    from cni.errors import CniError
    from cni.install import conflist, install
    from cni.request import netconf

    from .render import error

    conf = conflist(args.network, args.controller, args.host, args.token_file, args.ca_cert,
                    args.mtu)
    try:  # what the plugin will refuse is refused now
        netconf({"cniVersion": conf["cniVersion"], "name": conf["name"], **conf["plugins"][0]})
    except CniError as exc:
        error(exc.msg)
        return EXIT_ERROR
    written = install(args.bin_dir, args.conf_dir, conf, python=args.python)
    if args.json:
        print(json.dumps({"plugin": written[0], "conflist": written[1]}))
    else:
        print(f"plugin:   {written[0]}\nconflist: {written[1]}")
    return 0
