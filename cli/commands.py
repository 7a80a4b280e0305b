"""The client commands: global options, the argument tree, and errors turned into exit codes.

Exit status: 0 success, 1 `audit` found a host out of sync (like diff) or `policies status` a
host that has not realized the policy, 2 an error.
"""
from __future__ import annotations

import argparse
import os
import re

import requests

from api.client import ApiError, FabricClient
from security import tokens

from . import inspection, inventory, policies, publishing, replicas, routing
from .lookup import CommandError
from .render import error

DEFAULT_API = "http://127.0.0.1:8686"
EXIT_ERROR = 2


def global_options(with_defaults: bool) -> argparse.ArgumentParser:
    """--api and --json, accepted before and after the subcommand.

    Only the top-level parser has defaults: argparse copies every attribute a subcommand's
    parser sets over the top-level ones, so a default there would undo `--json hosts list`.
    """
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("global options")
    group.add_argument("--api", metavar="URL",
                       default=os.environ.get("OVSFABRIC_API") or DEFAULT_API if with_defaults
                       else argparse.SUPPRESS,
                       help=f"the REST API (env OVSFABRIC_API, default {DEFAULT_API})")
    group.add_argument("--json", action="store_true",
                       default=False if with_defaults else argparse.SUPPRESS,
                       help="print the API's JSON instead of tables")
    group.add_argument("--token-file", metavar="PATH",
                       default=None if with_defaults else argparse.SUPPRESS,
                       help="bearer token for the API (env OVSFABRIC_TOKEN_FILE, or the token "
                            "itself in OVSFABRIC_TOKEN)")
    group.add_argument("--ca-cert", metavar="PATH",
                       default=os.environ.get("OVSFABRIC_CA_CERT") if with_defaults
                       else argparse.SUPPRESS,
                       help="CA certificate of an HTTPS API (env OVSFABRIC_CA_CERT)")
    return parser


def add_commands(commands: argparse._SubParsersAction) -> None:
    common = global_options(with_defaults=False)
    for module in (inventory, routing, publishing, policies, inspection, replicas):
        module.add_parsers(commands, common)


def api_url(text: str) -> str:
    return text if "://" in text else "http://" + text


def run(args: argparse.Namespace) -> int:
    try:
        token = tokens.load_token(args.token_file)
    except (OSError, ValueError) as exc:
        error(f"cannot read the token: {exc}")
        return EXIT_ERROR
    client = FabricClient(api_url(args.api), token=token, ca_cert=args.ca_cert)
    try:
        return args.handler(client, args)
    except ApiError as exc:
        error(exc.message)
    except CommandError as exc:
        error(str(exc))
    except (requests.ConnectionError, requests.Timeout) as exc:
        error(f"cannot reach the API at {client.url}: {_reason(exc)} "
              "(give another with --api or OVSFABRIC_API)")
    except requests.JSONDecodeError:
        error(f"the answer of {client.url} is not JSON: is it the ovsfabric API?")
    except requests.RequestException as exc:
        error(f"cannot use the API at {client.url}: {exc}")
    return EXIT_ERROR


def _reason(exc: requests.RequestException) -> str:
    """"Connection refused" out of requests' nested wrappers."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    found = re.search(r"\[Errno -?\d+\] ([^\"')]+)", str(exc))
    return found.group(1).strip() if found else type(exc).__name__
