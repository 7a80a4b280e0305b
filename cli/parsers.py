"""The argument tree's two levels: a resource (`routers`) and its actions (`routers list`)."""
from __future__ import annotations

import argparse


def resource(commands, common, name: str, text: str) -> argparse._SubParsersAction:
    parser = commands.add_parser(name, parents=[common], help=text, description=text)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def action(actions, common, name: str, handler, text: str) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, parents=[common], help=text, description=text)
    parser.set_defaults(handler=handler)
    return parser
