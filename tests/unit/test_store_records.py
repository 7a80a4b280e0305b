"""The store's records: what a write puts and deletes, the JSON etcd holds, a state rebuilt
from its records, and a write planned again when another replica wrote first."""
from __future__ import annotations

import threading

import pytest

from model import NotFound, Store
from model.records import HOST, KINDS, Put, delete, from_json, kind_of, to_json
from model.state import State
from model.store import Stale


def populated(store: Store) -> Store:
    """A store holding one of everything."""
    store.create_host("h1", "unix:/x", "192.0.2.1", "netdev", egress_ip="192.0.2.100")
    store.create_host("h2", "unix:/y", "192.0.2.2")
    store.create_network("red", "10.0.0.0/24", mtu=1400, owner="h1")
    store.create_network("blue", "10.0.1.0/24", egress=False)
    eps = [store.create_endpoint("red", "h1", port=f"p{i}", labels={"app": "web"})
           for i in range(3)]
    store.create_endpoint("blue", "h2", mac="02:00:00:00:00:07")
    store.add_alias("red", "docker-red")
    store.reserve_address("blue", "h2", "10.0.1.50")
    store.create_router("r1")
    store.attach_network("r1", "red")
    store.attach_network("r1", "blue")
    store.set_routes("r1", [("192.168.0.0/16", eps[0].ip)])
    store.publish_port(eps[1].id, "tcp", 80, 8080)
    store.publish_port(eps[1].id, "udp", 53)
    store.create_policy({"name": "web", "applies_to": {"selector": {"labels": {"app": "web"}}},
                         "ingress": [{"peers": [{"cidr": "0.0.0.0/0"}],
                                      "ports": [{"protocol": "tcp", "port": 80}]}]})
    return store


def test_every_kind_of_record_reads_back_from_its_json():
    records = populated(Store(":memory:")).records()
    assert {kind_of(r) for r in records} == set(KINDS)
    for record in records:
        assert from_json(kind_of(record), to_json(record)) == record


def test_a_state_holds_each_of_its_records_and_not_their_deletion():
    # How a replica tells whether a write whose answer was lost committed.
    store = populated(Store(":memory:"))
    state = State.loaded(store.records(), 1, {})
    for record in store.records():
        assert state.holds([Put(record)]), record
        assert not state.holds([delete(record)]), record
    other = Store(":memory:")
    other.create_host("h1", "unix:/elsewhere", "192.0.2.9")
    moved = next(r for r in other.records() if kind_of(r) == HOST)
    assert not state.holds([Put(moved)])  # h1, but not as the state has it


def test_a_state_loaded_from_the_records_is_the_one_the_writes_made(tmp_path):
    store = populated(Store(str(tmp_path / "s.db")))
    store.delete_endpoint(store.snapshot().host_endpoints("h2")[0].id)
    live = store.snapshot()
    loaded = State.loaded(store.records(), live.revision)
    for field in ("revision", "hosts", "networks", "endpoints", "endpoints_by_network",
                  "endpoints_by_host", "network_hosts", "reservations", "routers",
                  "network_router", "published", "policies", "endpoints_by_label"):
        # An index may keep an emptied entry (a network whose last endpoint went).
        assert non_empty(getattr(loaded.snapshot, field)) == non_empty(getattr(live, field)), \
            field
    assert loaded.aliases == store._state.aliases
    assert loaded.counters == store._state.counters
    # And so is the one the SQLite file gives back.
    assert sorted(map(repr, Store(store.path).records())) == sorted(map(repr, store.records()))


def non_empty(value):
    if hasattr(value, "items"):
        return {k: dict(v) if hasattr(v, "items") else v for k, v in value.items()
                if not hasattr(v, "items") or len(v)}
    return value


def test_seqs_are_never_given_twice(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    first = store.create_host("h1", "unix:/x", "192.0.2.1")
    store.delete_host("h1")
    again = store.create_host("h1", "unix:/x", "192.0.2.1")
    assert again.seq == first.seq + 1 and again.dpid != first.dpid
    assert Store(store.path).create_host("h2", "unix:/y", "192.0.2.2").seq == again.seq + 1


class RacingBackend:
    """A backend another replica writes to: its first commit finds that replica's write
    there (Stale), which reaches this replica only a moment later, as a watch would bring
    it."""

    follows_own_writes = False
    seq_block = 1
    spread = 1

    def __init__(self, theirs):
        self.revision = 0
        self.theirs = theirs  # the other replica's operations
        self.commits: list[list] = []

    def load(self):
        return [], 0, {}

    def follow(self, apply, reload):
        self.apply = apply

    def resync(self):
        pass

    def stored_revision(self):
        return self.revision

    def commit(self, ops, revision, compare, writes):
        if self.theirs is not None:
            ops_theirs, self.theirs = self.theirs, None
            self.revision += 1
            threading.Timer(0.05, self.apply, (ops_theirs, self.revision, ())).start()
            raise Stale(self.revision)
        assert revision == self.revision, "planned on a stale revision"
        self.commits.append(ops)
        self.revision += 1
        return self.revision, self.revision - 1

    def close(self):
        pass


def test_a_write_beaten_by_another_replica_is_planned_again_on_its_state():
    other = Store(":memory:")
    other.create_host("h1", "unix:/x", "192.0.2.1")
    net = other.create_network("red", "10.0.0.0/24")
    setup = [Put(r) for r in other.records()]
    store = Store(RacingBackend(setup))
    ep = store.create_network("blue", "10.0.1.0/24")  # beaten by the other's host and network
    assert ep.vni != net.vni  # planned again: the other's VNI is taken
    assert set(store.snapshot().networks) == {net.id, ep.id}
    assert len(store.backend.commits) == 1 and store.served_revision() == 2


def test_a_write_the_backend_refuses_changes_nothing():
    class Down(RacingBackend):
        def commit(self, ops, revision, compare, writes):
            from model.errors import Unavailable
            raise Unavailable("the state store takes no writes now")

    store = Store(Down(None))
    with pytest.raises(Exception, match="takes no writes"):
        store.create_host("h1", "unix:/x", "192.0.2.1")
    assert store.snapshot().hosts == {} and store.served_revision() == 0
    assert store._state.counters == {}


class UnansweredBackend(RacingBackend):
    """Its first commit goes unanswered: carried out (``made``) or lost, which the store
    learns only by reading what the backend holds."""

    follows_own_writes = True

    def __init__(self, made: bool):
        super().__init__(None)
        self.made = made
        self.unanswered = True

    def commit(self, ops, revision, compare, writes):
        self.revision += 1
        self.commits.append(ops)
        if self.unanswered:
            self.unanswered = False
            if self.made:
                self.apply(ops, self.revision, ())
            raise Stale(self.revision if self.made else revision, undecided=True)
        self.apply(ops, self.revision, ())
        return self.revision, None


@pytest.mark.parametrize("made", [True, False])
def test_a_write_whose_commit_went_unanswered_is_made_once(made):
    store = Store(UnansweredBackend(made))
    store._seq_blocks["host"] = (1, 10)
    host = store.create_host("h1", "unix:/x", "192.0.2.1")
    assert store.snapshot().hosts == {"h1": host}
    # Carried out: not made again; lost: planned again and made.
    assert len(store.backend.commits) == (1 if made else 2)


class BehindBackend(RacingBackend):
    """Another replica's write is in the store but not yet in this replica's copy: it arrives
    once the replica asks for the store's revision."""

    follows_own_writes = True

    def stored_revision(self):
        if self.theirs is not None:
            ops, self.theirs = self.theirs, None
            self.revision += 1
            self.apply(ops, self.revision, ())
        return self.revision

    def commit(self, ops, revision, compare, writes):
        self.revision += 1
        self.apply(ops, self.revision, ())
        return self.revision, None


def test_what_another_replica_just_made_is_found_by_a_write():
    other = Store(":memory:")
    other.create_host("h1", "unix:/x", "192.0.2.1")
    net = other.create_network("red", "10.0.0.0/24")
    store = Store(BehindBackend([Put(r) for r in other.records()]))
    store._seq_blocks["endpoint"] = (1, 10)
    ep = store.create_endpoint("red", "h1")
    assert ep.network_id == net.id
    with pytest.raises(NotFound):  # and what does not exist is not found, once caught up
        store.create_endpoint("blue", "h1")


class SilentBackend(RacingBackend):
    """A shared backend whose watch is slow: it never delivers a write itself."""

    follows_own_writes = True

    def commit(self, ops, revision, compare, writes):
        self.revision += 1
        return self.revision, self.revision - 1


def test_a_write_right_after_the_last_one_applied_is_applied_as_it_commits(monkeypatch):
    import model.store
    monkeypatch.setattr(model.store, "CATCH_UP_S", 0.2)
    store = Store(SilentBackend(None))
    store._seq_blocks["host"] = (1, 10)
    host = store.create_host("h1", "unix:/x", "192.0.2.1")  # no wait for the watch
    assert store.snapshot().hosts == {"h1": host} and store.served_revision() == 1
    store.backend.revision += 1  # another replica's write came between: this one waits
    with pytest.raises(Exception, match="not caught up"):
        store.create_host("h2", "unix:/y", "192.0.2.2")
