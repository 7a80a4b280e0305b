"""`ovsfabric store check PATH`: whether a state file can be served, its schema version, and
if it cannot be served, why."""
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
    from model import migrations
    from model.errors import StoreDamaged
    from model.store import Store

    found = version = migrations.file_version(args.path)
    if not os.path.isfile(args.path):  # opening would create it
        problems = [f"{args.path} does not exist"]
    else:
        try:
            Store(args.path).close()  # an older file is upgraded, as `serve` would
            problems, version = [], migrations.SCHEMA_VERSION
        except StoreDamaged as exc:
            problems = [str(exc)]
    if args.json:
        print(json.dumps({"path": args.path, "ok": not problems, "problems": problems,
                          "schema_version": version}))
    elif problems:
        print("\n".join(problems))
    else:
        upgraded = f" (upgraded from {found})" if found != version else ""
        print(f"{args.path}: ok, schema version {version}{upgraded}")
    return 0 if not problems else 1
