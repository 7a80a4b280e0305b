"""The `ovsfabric` command: `serve` runs the controller; the other commands are clients of its
REST API."""
from __future__ import annotations

import argparse
import os
import sys

from . import cni, commands, credentials, plugin, serve, store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovsfabric", description=__doc__,
                                     parents=[commands.global_options(with_defaults=True)])
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_parser = subcommands.add_parser("serve",
                                          help="run the controller (REST, OpenFlow, OVSDB)")
    serve.add_arguments(serve_parser)
    serve_parser.set_defaults(run=serve.run)
    plugin_parser = subcommands.add_parser(
        "plugin", help="run the Docker network and IPAM driver of this host")
    plugin.add_arguments(plugin_parser)
    plugin_parser.set_defaults(run=plugin.run)
    credentials.add_parsers(subcommands)
    cni.add_parsers(subcommands)
    store.add_parsers(subcommands)
    commands.add_commands(subcommands)
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        return args.run(args)
    try:
        return commands.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `ovsfabric flows h1 | head`: the reader left; say nothing more, even at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
