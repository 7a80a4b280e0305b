"""`ovsfabric token` and `ovsfabric certs`: the credentials a fabric needs."""
from __future__ import annotations

import argparse
import os

from security import certs, tokens


def add_parsers(commands: argparse._SubParsersAction) -> None:
    token = commands.add_parser(
        "token", help="make a bearer token for the REST API: the admin token, or with --host "
                      "a host's")
    token.add_argument("--file", metavar="PATH",
                       help="write it there (mode 0600) instead of printing it")
    token.add_argument("--host", metavar="NAME",
                       help="a host token, derived from the admin token: it may read the fabric "
                            "and manage that host's endpoints, address reservations and the "
                            "networks it makes (what the host's Docker plugin needs)")
    token.add_argument("--admin-token-file", metavar="PATH",
                       help="the admin token a host token is derived from (default: the "
                            "token settings, --token-file, OVSFABRIC_TOKEN_FILE or "
                            "OVSFABRIC_TOKEN)")
    token.set_defaults(run=make_token)
    make = commands.add_parser(
        "certs", help="make a small CA and certificates for TLS (REST, OpenFlow, OVSDB)")
    make.add_argument("directory")
    make.add_argument("--controller", metavar="IP", action="append", default=[],
                      help="an address the controller is reached at (repeatable)")
    make.add_argument("--host", metavar="NAME[=IP]", action="append", default=[],
                      help="a host to make a certificate for (repeatable)")
    make.set_defaults(run=make_certs)


def make_token(args) -> int:
    token = host_token(args) if args.host else tokens.new_token()
    kind = f"host token for {args.host}" if args.host else "token"
    if args.file:
        if os.path.islink(args.file):
            raise SystemExit(f"ovsfabric token: {args.file} is a symbolic link: not followed")
        try:
            tokens.write_token_file(args.file, token)
        except OSError as exc:
            raise SystemExit(f"ovsfabric token: cannot write {args.file}: {exc.strerror}") \
                from None
        print(f"{kind} written to {args.file}")
    else:
        print(token)
    return 0


def host_token(args) -> str:
    try:
        admin = tokens.load_token(args.admin_token_file or args.token_file)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"ovsfabric token: cannot read the admin token: {exc}") from None
    if admin is None:
        raise SystemExit("ovsfabric token: a host token is derived from the admin token: give "
                         "--admin-token-file (or OVSFABRIC_TOKEN_FILE, OVSFABRIC_TOKEN)")
    try:
        return tokens.host_token(admin, args.host)
    except ValueError as exc:
        raise SystemExit(f"ovsfabric token: {exc}") from None


def make_certs(args) -> int:
    directory = args.directory
    if os.path.exists(os.path.join(directory, "ca-key.pem")):
        print(f"using the CA in {directory}")
    else:
        certs.make_ca(directory)
        print(f"CA: {directory}/ca.pem")
    cert, _ = certs.make_cert(directory, "controller", args.controller + ["127.0.0.1"])
    print(f"controller: {cert}")
    for spec in args.host:
        name, _, ip = spec.partition("=")
        cert, _ = certs.make_cert(directory, name, [ip] if ip else [])
        print(f"host {name}: {cert}")
    return 0
