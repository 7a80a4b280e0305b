"""The state file's schema version: a new file gets the current one, an older file is brought
up to it in one transaction, a newer one is refused before anything is written to it.

The version is SQLite's ``user_version``. Version 0 is every file written before the schema
carried one, with or without the networks' owner column; version 1 has no routers, published
ports, network egress or host egress address; version 2 has them; version 3 adds endpoint
labels and security policies (with the counter their rule ids come from).
"""
from __future__ import annotations

import os
import sqlite3
from typing import Callable
from urllib.parse import quote

from .errors import StoreTooNew

SCHEMA_VERSION = 3

# (table, column, declaration): columns added since the first schema, in order. A new file
# has them already (store.SCHEMA); an older one gets them with their default.
ADDED_COLUMNS = (
    # Networks made before owners were recorded count as an admin's: no host token, and
    # no plugin, deletes them.
    ("networks", "owner", "TEXT"),
    # Version 2: networks made before reach the outside, as every new one does by default;
    # their hosts leave from their tunnel address.
    ("networks", "egress", "INTEGER NOT NULL DEFAULT 1"),
    ("hosts", "egress_ip", "TEXT"),
    # Version 3: endpoints made before carry no labels; no policy selects them but by {}.
    ("endpoints", "labels", "TEXT NOT NULL DEFAULT '{}'"),
)


def version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def file_version(path: str) -> int | None:
    """The schema version of the file at ``path``, read without writing to it (None: no
    SQLite file there)."""
    if not os.path.isfile(path):
        return None
    try:
        db = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
        try:
            return version(db)
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return None


def refuse_newer(path: str) -> None:
    """A file a later release wrote may hold what this one would misread or lose: it is
    refused (StoreTooNew) and left byte for byte as it is."""
    _refuse_if_newer(path, file_version(path))


def _refuse_if_newer(path: str, found: int | None) -> None:
    if found is not None and found > SCHEMA_VERSION:
        raise StoreTooNew(f"state file {path} has schema version {found}, newer than this "
                          f"ovsfabric reads ({SCHEMA_VERSION}): serve it with the release "
                          f"that wrote it, or give this one another --state")


def upgrade(db: sqlite3.Connection, path: str, schema: str, check: Callable[[], None]) -> None:
    """Brings the database to SCHEMA_VERSION: a new file's tables, an older file's missing
    tables and columns. ``check`` raises if the file cannot be trusted; it runs with every
    table there and, for an older file, before anything is committed, so a refused file is
    not upgraded."""
    found = version(db)
    # Seen before already, unless the read-only look could not open the file.
    _refuse_if_newer(path, found)
    if found == SCHEMA_VERSION:
        check()
        return
    try:
        # executescript commits what is pending, then runs the script: the transaction it
        # opens stays open for the check and the version.
        db.executescript(f"BEGIN IMMEDIATE;\n{schema}")
        for table, column, declaration in ADDED_COLUMNS:
            present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        check()
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
