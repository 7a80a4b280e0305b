"""Brings a state file written by an earlier version up to the current schema."""
from __future__ import annotations

import sqlite3

# (table, column, declaration): columns added since the first schema, in order. A new file
# has them already (store.SCHEMA); an older one gets them with their default.
ADDED_COLUMNS = (
    # Networks made before owners were recorded count as an admin's: no host token, and
    # no plugin, deletes them.
    ("networks", "owner", "TEXT"),
)


def upgrade(db: sqlite3.Connection) -> None:
    for table, column, declaration in ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
