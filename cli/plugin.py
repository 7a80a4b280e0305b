"""`ovsfabric plugin`: the Docker network and IPAM driver of one Docker host."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

LOG = logging.getLogger("ovsfabric.plugin")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from docker_plugin import DEFAULT_SOCKET
    env = os.environ.get
    parser.add_argument("--controller", default=env("OVSFABRIC_CONTROLLER"),
                        required=not env("OVSFABRIC_CONTROLLER"), metavar="URL",
                        help="the controller's REST API, e.g. http://192.0.2.1:8686 "
                             "(env OVSFABRIC_CONTROLLER)")
    parser.add_argument("--host", default=env("OVSFABRIC_HOST"),
                        required=not env("OVSFABRIC_HOST"), metavar="NAME",
                        help="this Docker host's name in the fabric (env OVSFABRIC_HOST)")
    parser.add_argument("--socket", default=env("OVSFABRIC_PLUGIN_SOCKET", DEFAULT_SOCKET),
                        metavar="PATH", help="unix socket Docker finds the plugin by "
                        f"(env OVSFABRIC_PLUGIN_SOCKET, default {DEFAULT_SOCKET})")
    parser.add_argument("--orphan-sweep", type=float, metavar="SECONDS",
                        default=float(env("OVSFABRIC_ORPHAN_SWEEP", "30")),
                        help="how often endpoints no container holds are looked for "
                             "(env OVSFABRIC_ORPHAN_SWEEP, default 30; 0: never)")
    parser.add_argument("--orphan-grace", type=float, metavar="SECONDS",
                        default=float(env("OVSFABRIC_ORPHAN_GRACE", "60")),
                        help="how long an endpoint must look orphaned before it is removed "
                             "(env OVSFABRIC_ORPHAN_GRACE, default 60)")
    parser.add_argument("--log-level", default=env("OVSFABRIC_LOG_LEVEL", "INFO"))
    auth = parser.add_argument_group("security")
    auth.add_argument("--token-file", metavar="PATH",
                      help="bearer token for the controller's API (env OVSFABRIC_TOKEN_FILE, "
                           "or the token itself in OVSFABRIC_TOKEN)")
    auth.add_argument("--ca-cert", metavar="PATH", default=env("OVSFABRIC_CA_CERT"),
                      help="CA of an HTTPS API (env OVSFABRIC_CA_CERT)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # every netlink message otherwise
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)  # "Running on ..." is ours
    from docker_plugin.app import create_app
    from docker_plugin.controller import Controller
    from docker_plugin.orphans import OrphanSweep
    from docker_plugin.server import create_server
    from docker_plugin.veth import Veths
    from security import tokens

    try:
        token = tokens.load_token(args.token_file)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"ovsfabric plugin: cannot read the token: {exc}") from None
    token_host = tokens.host_of(token) if token else None
    if token_host not in (None, args.host):
        raise SystemExit(f"ovsfabric plugin: the token is host {token_host}'s, not "
                         f"{args.host}'s: give this host's (`ovsfabric token --host "
                         f"{args.host}`)")
    url = args.controller if "://" in args.controller else "http://" + args.controller
    controller = Controller(url, args.host, token=token, ca_cert=args.ca_cert)
    veths = Veths()
    server = create_server(create_app(controller, veths), args.socket)
    if args.orphan_sweep > 0:
        OrphanSweep(controller, veths, args.orphan_grace).run_every(args.orphan_sweep)

    def shutdown(signum, _frame):
        LOG.info("signal %d: stopping", signum)
        server.close()
        try:
            os.unlink(args.socket)
        except FileNotFoundError:
            pass
        os._exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    LOG.info("plugin for host %s on %s, controller %s", args.host, args.socket, url)
    sys.stdout.flush()
    server.serve_forever()
    return 0
