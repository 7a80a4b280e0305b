"""The store on a real 3-member etcd cluster (Debian's etcd-server on loopback), as replicas
share it: concurrent writes on several replicas never hand out a value twice and every
replica ends with the same state; members lost one and two at a time; a state file copied in."""
from __future__ import annotations

import concurrent.futures
import itertools
import os
import shutil
import subprocess
import sys
import time

import pytest

from cluster.etcd import EtcdClient, EtcdTarget, encode, prefix_end
from cluster.etcd_store import ROOT, SCHEMA, open_store
from lab.etcd import EtcdCluster
from model import Store, Unavailable, migrations
from model.errors import StoreFull, StoreTooNew
from tests.helpers import ROOT as REPO
from tests.slot import SLOT

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd-server")


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    with EtcdCluster(tmp_path_factory.mktemp("etcd"), SLOT) as cluster:
        yield cluster


@pytest.fixture
def replicas(etcd):
    """Three replicas on an empty etcd; closed (their watches stopped) after the test."""
    client = EtcdClient(EtcdTarget.parse(etcd.url))
    client.post("kv/deleterange", {"key": encode(ROOT), "range_end": encode(prefix_end(ROOT))})
    opened = []

    def replica(url: str | None = None) -> Store:
        opened.append(open_store(url or etcd.url))
        return opened[-1]
    yield replica
    for store in opened:
        store.close()
    for i in range(etcd.size):
        if not etcd.running(i):
            etcd.restart(i)
    etcd.wait_healthy(range(etcd.size))


def converged(stores: list[Store], timeout: float = 5.0) -> int:
    """Waits until every replica has applied the latest write; returns its revision."""
    deadline = time.monotonic() + timeout
    while True:
        latest = stores[0].stored_revision()
        if all(s.served_revision() == latest for s in stores):
            return latest
        assert time.monotonic() < deadline, [s.served_revision() for s in stores] + [latest]
        time.sleep(0.02)


def records(store: Store) -> list[str]:
    return sorted(map(repr, store.records()))


def test_concurrent_writes_on_three_replicas_never_hand_out_a_value_twice(replicas):
    stores = [replicas() for _ in range(3)]
    for i in range(3):
        stores[i].create_host(f"h{i}", f"unix:/h{i}", f"198.18.0.{i + 1}")
    nets = []
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        nets = list(pool.map(lambda i: stores[i % 3].create_network(f"n{i}", "10.0.0.0/22"),
                             range(12)))
        converged(stores)
        eps = list(pool.map(
            lambda i: stores[i % 3].create_endpoint(f"n{i % 2}", f"h{i % 3}", port=f"p{i}"),
            range(240)))
        routers = list(pool.map(lambda i: stores[i % 3].create_router(f"r{i}"), range(9)))
    assert len({n.vni for n in nets}) == 12
    assert len({(e.network_id, e.ip) for e in eps}) == 240
    assert len({(e.network_id, e.mac) for e in eps}) == 240
    assert len({(e.host, e.ofport) for e in eps}) == 240
    assert len({r.number for r in routers}) == 9
    assert len({e.seq for e in eps}) == 240
    converged(stores)
    # Every replica holds what every one acknowledged, and the same as a newcomer loads.
    for store in stores:
        assert set(store.snapshot().endpoints) == {e.id for e in eps}
        assert store.snapshot().endpoints == stores[0].snapshot().endpoints
    assert records(replicas()) == records(stores[0])


def test_every_kind_of_write_reaches_the_other_replicas(replicas):
    from tests.unit.test_store_records import populated
    a, b = replicas(), replicas()
    populated(a)
    ep = next(iter(a.snapshot().host_endpoints("h1")))
    b.set_endpoint_labels(ep.id, {"app": "db"})
    b.remove_alias("red", "docker-red")
    publishing = next(iter(a.snapshot().published))
    b.unpublish_port(publishing, "udp", 49152)
    converged([a, b])
    assert records(a) == records(b)
    assert a.get_endpoint(ep.id).label_map == {"app": "db"}
    assert a.aliases_of(a.get_network("red").id) == []
    assert [p.protocol for p in a.snapshot().published[publishing]] == ["tcp"]
    # The revision the snapshot carries moves only with what the compiler reads.
    assert a.snapshot().revision == b.snapshot().revision


def test_one_member_down_changes_nothing_two_stop_writes_not_reads(etcd, replicas):
    a, b = replicas(), replicas()
    a.create_host("h1", "unix:/x", "198.18.0.1")
    a.create_network("red", "10.0.0.0/24")
    converged([a, b])  # b plans on its own copy: it must hold the network first
    etcd.kill(0)
    made = [b.create_endpoint("red", "h1"), a.create_endpoint("red", "h1")]
    converged([a, b])
    etcd.kill(1)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="takes no writes now.*reads are still served"):
        a.create_endpoint("red", "h1")
    took = time.monotonic() - started
    assert took < 15, f"a refused write took {took:.1f} s"
    # Reads are this replica's copy: still there, whole.
    assert {e.id for e in made} <= set(b.snapshot().endpoints)
    assert b.get_network("red").name == "red"
    etcd.restart(0)
    etcd.restart(1)
    etcd.wait_healthy(range(3))
    more = a.create_endpoint("red", "h1")
    converged([a, b], timeout=10)
    # The write refused meanwhile may have been applied later by etcd (its answer was lost):
    # what was acknowledged is there, and no address is held twice.
    ips = [e.ip for e in b.snapshot().endpoints.values()]
    assert {e.id for e in made + [more]} <= set(b.snapshot().endpoints)
    assert len(ips) == len(set(ips))


def test_a_replica_whose_watch_member_dies_catches_up_through_another(etcd, replicas):
    members = list(itertools.islice(etcd.url.removeprefix("etcd://").split(","), 3))
    follower = replicas("etcd://" + ",".join(members))  # watches member 0 first
    writer = replicas("etcd://" + ",".join(reversed(members)))
    writer.create_host("h1", "unix:/x", "198.18.0.1")
    converged([follower, writer])
    etcd.kill(0)
    net = writer.create_network("red", "10.0.0.0/24")
    converged([follower, writer], timeout=10)
    assert follower.get_network("red") == net


def test_a_newer_schema_is_refused(etcd, replicas):
    replicas()  # writes the current schema version
    client = EtcdClient(EtcdTarget.parse(etcd.url))
    client.txn([], [{"request_put": {"key": encode(SCHEMA),
                                     "value": encode(str(migrations.SCHEMA_VERSION + 1))}}])
    with pytest.raises(StoreTooNew, match="newer than this ovsfabric reads"):
        open_store(etcd.url)


def test_a_state_file_copied_into_etcd_is_served_whole(etcd, replicas, tmp_path):
    from tests.unit.test_store_records import populated
    path = str(tmp_path / "s.db")
    source = populated(Store(path))
    expected = records(source)
    source.close()
    command = [sys.executable, "-m", "cli.main", "store", "copy", "--from", path,
               "--to", etcd.url, "--json"]
    copied = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert copied.returncode == 0, copied.stderr
    assert '"ok": true' in copied.stdout
    store = replicas()
    assert records(store) == expected
    # The counters came along: what is given next is new.
    host = store.create_host("h3", "unix:/z", "192.0.2.3")
    assert host.seq == max(h.seq for h in store.snapshot().hosts.values())
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 1 and "holds a state already" in again.stdout


def test_a_copy_of_many_endpoints_fits_etcds_transactions(replicas):
    # 100 endpoints with ports take 500 claims: more than etcd's 128 operations a transaction
    # (it answered 400 "too many operations in txn request" before the copy counted them).
    from cluster.etcd_store import copy_records
    source = Store(":memory:")
    source.create_host("h1", "unix:/x", "198.18.0.1")
    net = source.create_network("red", "10.0.0.0/22").id
    for i in range(300):
        source.create_endpoint(net, "h1", port=f"p{i}")
    expected = records(source)
    copy_records(replicas(), source.records())
    assert records(replicas()) == expected


def test_a_write_larger_than_one_etcd_transaction_is_refused_whole(replicas):
    # Deleting a network deletes its reservations with it: with 70 of them the transaction
    # is more than etcd's 128 operations. It is refused before etcd sees it, nothing changes,
    # and it goes through once fewer are left.
    store = replicas()
    net = store.create_network("red", "10.0.0.0/24").id
    for i in range(70):
        store.reserve_address(net, "docker", f"10.0.0.{10 + i}")
    before = records(store)
    with pytest.raises(StoreFull, match="more than the 128 etcd takes in one transaction"):
        store.delete_network(net)
    assert records(store) == before
    assert records(replicas()) == before  # as etcd holds it
    for i in range(40):
        store.release_address(net, f"10.0.0.{10 + i}")
    store.delete_network(net)
    assert [r for r in records(replicas()) if not r.startswith("Counter(")] == []
