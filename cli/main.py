"""The `ovsfabric` command."""
from __future__ import annotations

import argparse
import sys

from . import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovsfabric", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the controller (REST, OpenFlow, OVSDB)")
    serve.add_arguments(serve_parser)
    serve_parser.set_defaults(run=serve.run)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
