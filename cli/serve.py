"""`ovsfabric serve`: REST API, OpenFlow controller and OVSDB sessions in one process."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import platform
import signal
import sys

LOG = logging.getLogger("ovsfabric")
# Requests in progress at once: a handler may wait seconds for switches to confirm flows.
API_THREADS = 16


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
                             "tcp:IP:PORT or ssl:IP:PORT (env OVSFABRIC_ADVERTISE; default: "
                             "the OpenFlow listener, or 127.0.0.1 when it listens everywhere)")
    parser.add_argument("--state", default=env("OVSFABRIC_STATE", "./ovsfabric.db"),
                        help="SQLite state file (env OVSFABRIC_STATE), unless --store says "
                             "otherwise")
    parser.add_argument("--store", default=env("OVSFABRIC_STORE"),
                        metavar="etcd://HOST:PORT[,HOST:PORT...]",
                        help="keep the state in etcd, shared by every replica (env "
                             "OVSFABRIC_STORE); without it, in the SQLite file --state")
    parser.add_argument("--replica-name", default=env("OVSFABRIC_REPLICA_NAME"),
                        help="this replica's name among those on --store (env "
                             "OVSFABRIC_REPLICA_NAME; default: the host name and API port)")
    parser.add_argument("--etcd-cert", default=env("OVSFABRIC_ETCD_CERT"),
                        help="client certificate for TLS to etcd (PEM)")
    parser.add_argument("--etcd-key", default=env("OVSFABRIC_ETCD_KEY"),
                        help="the private key of --etcd-cert")
    parser.add_argument("--etcd-ca", default=env("OVSFABRIC_ETCD_CA"),
                        help="CA that signed etcd's certificates (TLS to etcd)")
    parser.add_argument("--api-hostname", action="append", metavar="NAME",
                        default=_env_list("OVSFABRIC_API_HOSTNAME"),
                        help="a DNS name clients use for the REST API (repeatable; env "
                             "OVSFABRIC_API_HOSTNAME, comma-separated): other Host headers "
                             "than the listening address are refused")
    parser.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                        default=_env_list("OVSFABRIC_CORS_ORIGIN"),
                        help="a web origin (https://console.example) whose pages may call the "
                             "API (repeatable; env OVSFABRIC_CORS_ORIGIN, comma-separated); "
                             "requests from other origins are refused")
    parser.add_argument("--log-level", default=env("OVSFABRIC_LOG_LEVEL", "INFO"))
    parser.add_argument("--switch-reply-timeout", type=float, metavar="SECONDS",
                        default=float(env("OVSFABRIC_SWITCH_REPLY_TIMEOUT", "10")),
                        help="how long inspection and traces wait for a switch's answer "
                        "before they answer 503"),
    auth = parser.add_argument_group("security")
    auth.add_argument("--token-file", default=None,
                      help="REST bearer token (env OVSFABRIC_TOKEN_FILE, or the token itself "
                           "in OVSFABRIC_TOKEN); make one with `ovsfabric token`")
    auth.add_argument("--allow-insecure", action="store_true",
                      default=env("OVSFABRIC_ALLOW_INSECURE") == "1",
                      help="listen on a non-loopback address without a token (env "
                           "OVSFABRIC_ALLOW_INSECURE=1): anyone who reaches it can change "
                           "the network")
    auth.add_argument("--api-cert", default=env("OVSFABRIC_API_CERT"),
                      help="serve the REST API over HTTPS with this certificate (PEM)")
    auth.add_argument("--api-key", default=env("OVSFABRIC_API_KEY"),
                      help="the private key of --api-cert")
    auth.add_argument("--tls-cert", default=env("OVSFABRIC_TLS_CERT"),
                      help="the controller's certificate for OpenFlow and OVSDB over TLS; "
                           "make them with `ovsfabric certs`")
    auth.add_argument("--tls-key", default=env("OVSFABRIC_TLS_KEY"))
    auth.add_argument("--tls-ca", default=env("OVSFABRIC_TLS_CA"),
                      help="CA that signed the hosts' certificates")


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _audience(api_host: str, args: argparse.Namespace):
    from api.browsers import Audience, origin
    try:
        origins = frozenset(origin(o) for o in args.cors_origin)
    except ValueError as exc:
        raise SystemExit(f"ovsfabric: --cors-origin: {exc}") from None
    return Audience(api_host, frozenset(n.lower() for n in args.api_hostname), origins)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def open_store(args: argparse.Namespace):
    """The store --store or --state names; a refusal ends the process with its reason."""
    from model import Store, Unavailable, lockfile
    from model.errors import StoreDamaged
    if args.store:
        from cluster.etcd_store import open_store as open_etcd
        try:
            return open_etcd(args.store, args.etcd_cert, args.etcd_key, args.etcd_ca)
        except ValueError as exc:
            raise SystemExit(f"ovsfabric: --store: {exc}") from None
        except (StoreDamaged, Unavailable) as exc:
            raise SystemExit(f"ovsfabric: {exc}") from None
    try:
        lockfile.hold(args.state)  # held for the life of the process
    except (lockfile.StateInUse, OSError) as exc:
        raise SystemExit(f"ovsfabric: {exc}") from None
    try:
        return Store(args.state)
    except StoreDamaged as exc:
        raise SystemExit(f"ovsfabric: {exc}; it is left as it is (see `ovsfabric store "
                         f"check`)") from None


def make_leadership(args: argparse.Namespace, advertise: str, api_url: str):
    """Who leads (controller.leadership). One process on its SQLite file leads alone, with no
    OpenFlow roles (EQUAL, as ever); replicas on etcd take part in its election
    (cluster/election.py, docs/replicas.md)."""
    if args.store:
        from cluster.election import Election
        return Election.connect(args.store, api_url, advertise, cert=args.etcd_cert,
                                key=args.etcd_key, ca=args.etcd_ca, name=args.replica_name)
    from controller.leadership import Standalone
    return Standalone(name=platform.node() or "standalone", api=api_url, advertise=advertise)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # os-ken and ovsdbapp are chatty at INFO about every connection attempt.
    for noisy in ("os_ken", "ovsdbapp", "ovs"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # ovsdbapp logs an ERROR per failed connection attempt; the host's status carries it.
    logging.getLogger("ovsdbapp.backend.ovs_idl.idlutils").setLevel(logging.CRITICAL)
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)  # "Running on ..." is ours

    from security import tokens
    from security.tls import TlsIdentity

    api_host, api_port = split_host_port(args.api_listen, "--api-listen")
    audience = _audience(api_host, args)
    of_host, of_port = split_host_port(args.openflow_listen, "--openflow-listen")
    try:
        token = tokens.load_token(args.token_file)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"ovsfabric: cannot read the token: {exc}")
    if token is None and not _is_loopback(api_host) and not args.allow_insecure:
        raise SystemExit(
            f"ovsfabric: refusing to serve the REST API on {api_host} without a token: set "
            "OVSFABRIC_TOKEN or --token-file (make one with `ovsfabric token`), or pass "
            "--allow-insecure if this is really wanted")
    if bool(args.api_cert) != bool(args.api_key):
        raise SystemExit("ovsfabric: --api-cert and --api-key go together")
    tls_parts = (args.tls_cert, args.tls_key, args.tls_ca)
    if any(tls_parts) and not all(tls_parts):
        raise SystemExit("ovsfabric: --tls-cert, --tls-key and --tls-ca go together")
    identity = TlsIdentity(*tls_parts) if all(tls_parts) else None
    scheme = "ssl" if identity else "tcp"
    advertise = args.advertise or \
        f"{scheme}:{'127.0.0.1' if of_host in ('0.0.0.0', '::') else of_host}:{of_port}"
    if not advertise.startswith(f"{scheme}:"):
        raise SystemExit(f"ovsfabric: --advertise must be {scheme}:IP:PORT"
                         f"{' (TLS is configured)' if identity else ''}, not {advertise!r}")

    from api.app import MAX_BODY_BYTES, create_app
    from controller.fabric import Fabric
    from controller.heap import keep_pauses_short
    from controller.runtime import start_openflow
    from security.tls import use_for_ovsdb
    from webserver import WebServer

    if identity:
        use_for_ovsdb(identity)
    store = open_store(args)
    # Where the other replicas reach this one's API: the advertised address when it listens
    # everywhere.
    api_at = advertise.split(":")[1] if api_host in ("0.0.0.0", "::") else api_host
    leadership = make_leadership(
        args, advertise, f"{'https' if args.api_cert else 'http'}://{api_at}:{api_port}")
    fabric = Fabric(store, advertise, args.switch_reply_timeout, leadership=leadership)
    if args.store:
        from cluster.leader_wait import LeaderWait
        fabric.wait_on_leader = LeaderWait(leadership, token)
    try:  # before any thread starts, so that a refusal ends the process
        app = create_app(fabric, token, audience, cluster=leadership if args.store else None)
        server = WebServer.tcp(app, api_host, api_port,
                               threads=API_THREADS, max_body_bytes=MAX_BODY_BYTES,
                               certfile=args.api_cert, keyfile=args.api_key, name="api")
    except OSError as exc:
        raise SystemExit(f"ovsfabric: cannot serve the REST API on {args.api_listen}: "
                         f"{exc}") from None
    fabric.start()
    keep_pauses_short()
    start_openflow(fabric, of_host, of_port, identity)

    def shutdown(signum, _frame):
        LOG.info("signal %d: stopping", signum)
        fabric.stop()
        os._exit(0)  # os-ken's threads are not daemons and have no stop

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    LOG.info("REST API on %s://%s:%d%s, OpenFlow on %s:%d%s (advertised as %s), state %s",
             "https" if args.api_cert else "http", api_host, api_port,
             " (token required)" if token else "", of_host, of_port,
             " over TLS" if identity else "", advertise, args.store or args.state)
    sys.stdout.flush()
    server.serve_forever()
    return 0
