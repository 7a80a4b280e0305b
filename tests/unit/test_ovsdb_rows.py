"""The row cache: a value is reused only for the very row object it was made from, and only
until the IDL says the row changed."""
from __future__ import annotations

from types import SimpleNamespace

from ovsdb.rows import RowCache


def iface_row(uuid, ofport):
    return SimpleNamespace(uuid=uuid, name="p1", type="", options={}, external_ids={"a": "b"},
                           ofport=[ofport], ofport_request=[1000], error=[])


def test_values_follow_the_rows():
    cache = RowCache()
    row = iface_row("u1", 7)
    assert cache.interface(row).ofport == 7
    row.ofport = [8]  # python-ovs changes a row in place, then notifies
    assert cache.interface(row).ofport == 7, "reused until told"
    cache.forget("u1")
    assert cache.interface(row).ofport == 8
    again = iface_row("u1", 9)  # a reconnection makes new row objects for the same uuids
    assert cache.interface(again).ofport == 9
    assert cache.interface(iface_row("u2", -1)).ofport == -1
