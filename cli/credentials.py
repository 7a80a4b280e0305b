"""`ovsfabric token` and `ovsfabric certs`: the credentials a fabric needs."""
from __future__ import annotations

import argparse
import os

from security import certs, tokens


def add_parsers(commands: argparse._SubParsersAction) -> None:
    token = commands.add_parser("token", help="make a bearer token for the REST API")
    token.add_argument("--file", metavar="PATH",
                       help="write it there (mode 0600) instead of printing it")
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
    token = tokens.new_token()
    if args.file:
        if os.path.islink(args.file):
            raise SystemExit(f"ovsfabric token: {args.file} is a symbolic link: not followed")
        try:
            tokens.write_token_file(args.file, token)
        except OSError as exc:
            raise SystemExit(f"ovsfabric token: cannot write {args.file}: {exc.strerror}") \
                from None
        print(f"token written to {args.file}")
    else:
        print(token)
    return 0


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
