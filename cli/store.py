"""`ovsfabric store check PATH`: whether a state file can be served, its schema version, and
if it cannot be served, why. `ovsfabric store copy --from PATH --to etcd://...`: an
installation's state moved from its SQLite file to etcd, for replicas."""
from __future__ import annotations

import argparse
import json
import os
import sys


def add_parsers(commands: argparse._SubParsersAction) -> None:
    store = commands.add_parser("store", help="inspect a state file (no controller needed)")
    actions = store.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="SQLite's check and the model's invariants")
    check.add_argument("path", metavar="PATH")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(run=run_check)
    copy = actions.add_parser("copy", help="copy a state file's whole state into an empty etcd")
    copy.add_argument("--from", dest="source", required=True, metavar="PATH",
                      help="the SQLite state file (stop the controller serving it first)")
    copy.add_argument("--to", dest="target", required=True,
                      metavar="etcd://HOST:PORT[,HOST:PORT...]")
    copy.add_argument("--etcd-cert", help="client certificate for TLS to etcd (PEM)")
    copy.add_argument("--etcd-key", help="the private key of --etcd-cert")
    copy.add_argument("--etcd-ca", help="CA that signed etcd's certificates")
    copy.add_argument("--json", action="store_true", help="machine-readable output")
    copy.set_defaults(run=run_copy)


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


def run_copy(args) -> int:
    from cluster.etcd_store import copy_records, open_store
    from model.errors import FabricError
    from model.store import Store

    def progress(done: int, total: int) -> None:
        if not args.json:
            print(f"\rcopied {done}/{total} records", end="", file=sys.stderr, flush=True)

    try:
        if not os.path.isfile(args.source):
            raise FabricError(f"{args.source} does not exist")
        source = Store(args.source)
        records = source.records()
        source.close()
        target = open_store(args.target, args.etcd_cert, args.etcd_key, args.etcd_ca)
        copy_records(target, records, progress)
        copied = target.records()
        target.close()
    except (FabricError, ValueError) as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        else:
            print(f"\novsfabric: {exc}", file=sys.stderr)
        return 1
    same = sorted(map(repr, copied)) == sorted(map(repr, records))
    if args.json:
        print(json.dumps({"ok": same, "records": len(records), "from": args.source,
                          "to": args.target}))
    else:
        print(f"\n{args.source} -> {args.target}: {len(records)} records, "
              f"{'read back equal' if same else 'READ BACK DIFFERENT'}")
    return 0 if same else 1
