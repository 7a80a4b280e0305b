"""The store: durability across reopen, and allocation under parallel writers."""
from __future__ import annotations

import concurrent.futures
import json
import pathlib
import shutil
import sqlite3

import pytest

from cli.main import main as cli_main
from model import Store, migrations
from model.errors import StoreDamaged, StoreTooNew


def test_state_survives_reopen(tmp_path):
    path = str(tmp_path / "s.db")
    store = Store(path)
    store.create_host("h1", "unix:/x", "192.0.2.1", "netdev")
    net = store.create_network("red", "10.0.0.0/24", vni=4242)
    ep = store.create_endpoint("red", "h1", port="p1")
    revision = store.snapshot().revision
    store.close()  # no clean shutdown is needed: every write is committed when it returns
    again = Store(path)
    snap = again.snapshot()
    assert snap.revision == revision
    assert snap.networks[net.id] == net and snap.endpoints[ep.id] == ep
    assert snap.hosts["h1"].dpid == store.snapshot().hosts["h1"].dpid
    # The address pool was rebuilt: the next address is not the one in use.
    assert again.create_endpoint("red", "h1").ip != ep.ip


def test_parallel_writers_never_share_an_allocation(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    store.create_host("h1", "unix:/x", "192.0.2.1")
    store.create_network("red", "10.0.0.0/22")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        eps = list(pool.map(lambda _: store.create_endpoint("red", "h1"), range(400)))
        nets = list(pool.map(lambda i: store.create_network(f"n{i}", "10.0.0.0/24"), range(64)))
    assert len({e.ip for e in eps}) == 400
    assert len({e.mac for e in eps}) == 400
    assert len({n.vni for n in nets}) == 64
    snap = Store(store.path).snapshot()
    assert len(snap.endpoints) == 400 and len(snap.networks) == 65


def _store_with_hosts(path: str, n: int = 20) -> None:
    store = Store(path)
    for i in range(n):
        store.create_host(f"h{i}", f"unix:/x{i}", f"192.0.2.{i + 1}")
    store.create_network("red", "10.0.0.0/24")
    store.create_endpoint("red", "h1")
    store.close()


def _refused(path: str, *words: str) -> None:
    before = open(path, "rb").read()
    with pytest.raises(StoreDamaged) as err:
        Store(path)
    for word in words:
        assert word in str(err.value)
    assert open(path, "rb").read() == before, "left as it is"
    assert cli_main(["store", "check", path]) == 1


def test_garbage_and_truncated_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    _refused(str(garbage), "cannot be read")
    whole = str(tmp_path / "whole.db")
    _store_with_hosts(whole)
    assert cli_main(["store", "check", whole]) == 0
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(open(whole, "rb").read()[:5000])
    _refused(str(truncated), str(truncated))


def test_a_corrupted_page_is_refused(tmp_path):
    path = str(tmp_path / "s.db")
    _store_with_hosts(path, 200)
    data = bytearray(open(path, "rb").read())
    page = 4096
    data[2 * page:3 * page] = bytes([0xA5]) * page  # a page of table data overwritten
    open(path, "wb").write(data)
    _refused(path, "damaged")


def test_broken_invariants_are_refused(tmp_path):
    path = str(tmp_path / "s.db")
    _store_with_hosts(path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("DELETE FROM hosts WHERE name = 'h1'")
    db.commit()
    db.close()
    _refused(path, "host 'h1', which does not exist")


def test_a_network_remembers_its_owner_across_reopen(tmp_path):
    path = str(tmp_path / "s.db")
    store = Store(path)
    mine = store.create_network("mine", "10.0.0.0/24", owner="h1")
    admins = store.create_network("admins", "10.0.1.0/24")
    store.close()
    again = Store(path)
    assert again.get_network("mine").owner == "h1" == mine.owner
    assert again.get_network("admins").owner is None is admins.owner


def _file_without_network_owners(path: str, damage: str | None = None) -> None:
    """A state file as an earlier version left it: networks without an owner column."""
    store = Store(path)
    store.create_network("old", "10.0.0.0/24")
    store.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE networks DROP COLUMN owner")
    db.execute("PRAGMA user_version = 0")
    if damage:
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute(damage)
    db.commit()
    db.close()


def _network_columns(path: str) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [row[1] for row in db.execute("PRAGMA table_info(networks)")]
    finally:
        db.close()


def test_a_state_file_without_network_owners_is_upgraded(tmp_path):
    """A file an earlier version wrote: its networks count as an admin's, new ones get owners."""
    path = str(tmp_path / "old.db")
    _file_without_network_owners(path)
    store = Store(path)
    assert store.get_network("old").owner is None
    store.create_network("new", "10.0.1.0/24", owner="h2")
    store.close()
    again = Store(path)
    assert [(n.name, n.owner) for n in again.snapshot().networks.values()] == \
        [("old", None), ("new", "h2")]


def test_a_damaged_file_is_not_upgraded(tmp_path):
    path = str(tmp_path / "old.db")
    _file_without_network_owners(path, "INSERT INTO reservations VALUES ('gone', '10.9.0.2', "
                                       "'h1')")
    _refused(path, "network gone, which does not exist")
    assert "owner" not in _network_columns(path)


def test_a_host_holds_at_most_half_of_a_network(tmp_path):
    from model.errors import Forbidden
    store = Store(str(tmp_path / "s.db"))
    store.create_host("h1", "unix:/x", "192.0.2.1")
    store.create_network("small", "10.0.0.0/28")  # 13 assignable addresses: 7 per host
    store.create_endpoint("small", "h1", ip="10.0.0.2", bounded=True)
    store.reserve_address("small", "aux.h1", "10.0.0.3", share_of="h1")
    for _ in range(5):
        store.reserve_address("small", "h1", share_of="h1")
    with pytest.raises(Forbidden, match="at most half"):
        store.reserve_address("small", "h1", share_of="h1")
    with pytest.raises(Forbidden):
        store.create_endpoint("small", "h1", bounded=True)
    held = [r.ip for r in store.snapshot().reservations.values() if r.owner == "h1"]
    # What it reserved it still turns into endpoints, and asking again for one is no new one.
    assert store.reserve_address("small", "h1", held[0], share_of="h1").ip == held[0]
    store.create_endpoint("small", "h1", ip=held[0], bounded=True)
    # Others (and unbounded requests) still get addresses.
    store.reserve_address("small", "h2", share_of="h2")
    store.reserve_address("small", "h1")


# State files written by earlier releases, with the fabric tests/data/README.md describes.
OLD_STATE_FILES = ("state-before-owners.db", "state-unversioned.db")
DATA = pathlib.Path(__file__).parent / "data"


@pytest.mark.parametrize("name", OLD_STATE_FILES)
def test_a_file_an_earlier_release_wrote_is_read_whole(tmp_path, name):
    path = str(tmp_path / name)
    shutil.copyfile(DATA / name, path)
    assert migrations.file_version(path) == 0
    store = Store(path)
    snap = store.snapshot()
    assert [(h.name, h.ovsdb, h.tunnel_ip, h.datapath_type, h.bridge)
            for h in snap.hosts.values()] == [
        ("h1", "tcp:192.0.2.11:6640", "198.51.100.11", "system", "br-int"),
        ("h2", "unix:/run/h2/db.sock", "198.51.100.12", "netdev", "br-fab")]
    owner = None if name == "state-before-owners.db" else "h1"
    nets = {n.name: n for n in snap.networks.values()}
    assert [(n.name, n.subnet, n.gateway, n.vni, n.mtu, n.owner) for n in nets.values()] == [
        ("red", "10.0.0.0/24", "10.0.0.1", 100, 1450, None),
        ("blue", "10.0.0.0/24", "10.0.0.254", 5000, 1400, owner)]
    red, blue = nets["red"], nets["blue"]
    assert store.aliases_of(red.id) == ["docker:h1:1f2e3d", "pool:h1:red"]
    assert store.get_network("docker:h2:9a8b7c") == blue
    assert sorted((e.name, e.network_id, e.host, e.port, e.ip, e.ofport)
                  for e in snap.endpoints.values()) == sorted([
        ("web", red.id, "h1", "veth1", "10.0.0.2", 1000),
        ("db", red.id, "h2", "veth2", "10.0.0.7", 1000),
        ("no-port", blue.id, "h1", None, "10.0.0.1", None)])
    assert sorted((r.network_id, r.ip, r.owner) for r in snap.reservations.values()) == sorted([
        (red.id, "10.0.0.50", "h1"), (red.id, "10.0.0.51", "aux.h1"),
        (blue.id, "10.0.0.2", "h2")])
    assert snap.revision == 10
    # Allocation goes on past what the file holds.
    ep = store.create_endpoint("red", "h1", port="veth9")
    assert (ep.ip, ep.ofport) == ("10.0.0.3", 1001)
    store.close()
    assert migrations.file_version(path) == migrations.SCHEMA_VERSION
    assert Store(path).snapshot().endpoints[ep.id] == ep


def test_a_file_a_later_release_wrote_is_refused_and_left_as_it_is(tmp_path, capsys):
    path = str(tmp_path / "newer.db")
    _store_with_hosts(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {migrations.SCHEMA_VERSION + 1}")
    db.close()
    _refused(path, f"schema version {migrations.SCHEMA_VERSION + 1}, newer than this "
                   f"ovsfabric reads ({migrations.SCHEMA_VERSION})")
    with pytest.raises(StoreTooNew):
        Store(path)
    capsys.readouterr()
    assert cli_main(["store", "check", path, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["schema_version"] == migrations.SCHEMA_VERSION + 1 and not report["ok"]


def test_an_upgrade_that_fails_midway_changes_nothing(tmp_path, monkeypatch):
    path = str(tmp_path / "old.db")
    _file_without_network_owners(path)
    before = open(path, "rb").read()
    # A column SQLite cannot add to a table with rows: the upgrade fails after the first one.
    monkeypatch.setattr(migrations, "ADDED_COLUMNS", migrations.ADDED_COLUMNS +
                        (("networks", "required", "TEXT NOT NULL"),))
    with pytest.raises(StoreDamaged, match="cannot be read"):
        Store(path)
    assert open(path, "rb").read() == before
    assert "owner" not in _network_columns(path) and migrations.file_version(path) == 0


def test_store_check_says_the_schema_version(tmp_path, capsys):
    path = str(tmp_path / "old.db")
    _file_without_network_owners(path)
    assert cli_main(["store", "check", path]) == 0
    version = migrations.SCHEMA_VERSION
    assert capsys.readouterr().out == f"{path}: ok, schema version {version} (upgraded from 0)\n"
    assert cli_main(["store", "check", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "path": path, "ok": True, "problems": [], "schema_version": version}
