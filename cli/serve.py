"""`ovsfabric serve`: REST API, OpenFlow controller and OVSDB sessions in one process."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

LOG = logging.getLogger("ovsfabric")


def split_host_port(text: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"ovsfabric: {option} must be HOST:PORT, not {text!r}")
    return host, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--api-listen", default=env("OVSFABRIC_API_LISTEN", "127.0.0.1:8686"),
                        help="REST API address (env OVSFABRIC_API_LISTEN)")
    parser.add_argument("--openflow-listen",
                        default=env("OVSFABRIC_OPENFLOW_LISTEN", "0.0.0.0:6653"),
                        help="OpenFlow listener (env OVSFABRIC_OPENFLOW_LISTEN)")
    parser.add_argument("--advertise", default=env("OVSFABRIC_ADVERTISE"),
                        help="controller target the hosts' switches are told to connect to, "
                             "tcp:IP:PORT (env OVSFABRIC_ADVERTISE; default: the OpenFlow "
                             "listener, or 127.0.0.1 when it listens on every address)")
    parser.add_argument("--state", default=env("OVSFABRIC_STATE", "./ovsfabric.db"),
                        help="SQLite state file (env OVSFABRIC_STATE)")
    parser.add_argument("--log-level", default=env("OVSFABRIC_LOG_LEVEL", "INFO"))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # os-ken and ovsdbapp are chatty at INFO about every connection attempt.
    for noisy in ("os_ken", "ovsdbapp", "ovs"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # ovsdbapp logs an ERROR per failed connection attempt; the host's status carries it.
    logging.getLogger("ovsdbapp.backend.ovs_idl.idlutils").setLevel(logging.CRITICAL)
    api_host, api_port = split_host_port(args.api_listen, "--api-listen")
    of_host, of_port = split_host_port(args.openflow_listen, "--openflow-listen")
    advertise = args.advertise or \
        f"tcp:{'127.0.0.1' if of_host in ('0.0.0.0', '::') else of_host}:{of_port}"
    if not advertise.startswith(("tcp:", "ssl:")):
        raise SystemExit(f"ovsfabric: --advertise must be tcp:IP:PORT, not {advertise!r}")

    import waitress

    from api.app import create_app
    from controller.fabric import Fabric
    from controller.runtime import start_openflow
    from model import Store

    store = Store(args.state)
    fabric = Fabric(store, advertise)
    fabric.start()
    start_openflow(fabric, of_host, of_port)
    server = waitress.create_server(create_app(fabric), host=api_host, port=api_port,
                                    threads=16, ident="ovsfabric")

    def shutdown(signum, _frame):
        LOG.info("signal %d: stopping", signum)
        server.close()
        fabric.stop()
        os._exit(0)  # os-ken's threads are not daemons and have no stop

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    LOG.info("REST API on http://%s:%d, OpenFlow on %s:%d (advertised as %s), state %s",
             api_host, api_port, of_host, of_port, advertise, args.state)
    sys.stdout.flush()
    server.run()
    return 0
