"""`ovsfabric store check PATH`: whether a state file can be served, and if not, why."""
from __future__ import annotations

import argparse
import json
import os


def add_parsers(commands: argparse._SubParsersAction) -> None:
    store = commands.add_parser("store", help="inspect a state file (no controller needed)")
    actions = store.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="SQLite's check and the model's invariants")
    check.add_argument("path", metavar="PATH")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(run=run_check)


def run_check(args) -> int:
    from model.errors import StoreDamaged
    from model.store import Store

    if not os.path.isfile(args.path):  # opening would create it
        problems = [f"{args.path} does not exist"]
    else:
        try:
            Store(args.path).close()
            problems = []
        except StoreDamaged as exc:
            problems = [str(exc)]
    if args.json:
        print(json.dumps({"path": args.path, "ok": not problems, "problems": problems}))
    else:
        print(f"{args.path}: ok" if not problems else "\n".join(problems))
    return 0 if not problems else 1
