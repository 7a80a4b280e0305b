"""The store: durability across reopen, and allocation under parallel writers."""
from __future__ import annotations

import concurrent.futures

from model import Store


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
