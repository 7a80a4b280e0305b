"""The store's security policies and endpoint labels: rule ids never given twice, what each
write says it touched, refusals that keep nothing, and what a reopen or an upgrade finds."""
from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from model import Conflict, InvalidRequest, NotFound, Store, migrations
from model.entities import Change, PublishedPort, Route
from model.errors import StoreDamaged
from model.policy import Peer, PortRange, Selector
from tests.unit.test_store_routing import DATA, unchanged


@pytest.fixture
def store(tmp_path):
    """h1, h2; networks a and b; endpoints web (a, h1, app=web) and db (b, h2); every later
    Change in store.changes."""
    store = Store(str(tmp_path / "s.db"))
    store.create_host("h1", "unix:/x1", "192.0.2.1")
    store.create_host("h2", "unix:/x2", "192.0.2.2")
    store.create_network("a", "10.0.0.0/24")
    store.create_network("b", "10.1.0.0/24")
    store.web = store.create_endpoint("a", "h1", name="web", labels={"app": "web"})
    store.db = store.create_endpoint("b", "h2", name="db")
    store.changes = []
    store.subscribe(lambda snap, change: store.changes.append(change))
    yield store
    store.close()


def body(name="web", **directions):
    return {"name": name, "applies_to": {"selector": {"labels": {"app": "web"}}}, **directions}


ANYONE = {"peers": [{"cidr": "0.0.0.0/0"}]}


def rule_ids(policy) -> list[int]:
    return [r.id for r in policy.rules()]


def test_created_policy_is_normalized_published_and_kept(store):
    policy = store.create_policy(body(
        ingress=[{"peers": [{"selector": {"labels": {"tier": "front"}}, "network": "b"}],
                  "ports": [{"protocol": "tcp", "port": 8000, "end_port": 8080}]}],
        egress=[{"peers": [{"cidr": "10.9.0.0/16"}], "action": "deny"}, ANYONE]))
    b = store.get_network("b").id
    assert policy.applies_to == Selector((("app", "web"),), None)
    rule, = policy.ingress
    assert (rule.direction, rule.index, rule.action) == ("ingress", 0, "allow")
    assert rule.peers == (Peer(selector=Selector((("tier", "front"),), b)),)
    assert rule.ports == (PortRange("tcp", 8000, 8080),)
    assert [(r.index, r.action, r.peers[0].cidr) for r in policy.egress] == [
        (0, "deny", "10.9.0.0/16"), (1, "allow", "0.0.0.0/0")]
    assert rule_ids(policy) == [1, 2, 3]
    assert store.changes == [Change(policies=frozenset({policy.id}))]
    snap = store.snapshot()
    assert snap.policies == {policy.id: policy}
    assert snap.guard_of(store.web).policies == (policy.id,)
    assert snap.guard_of(store.db) is None
    assert store.get_policy("web") == store.get_policy(policy.id) == policy
    assert Store(store.path).get_policy("web") == policy


def test_a_direction_left_out_is_not_governed_an_empty_one_is(store):
    policy = store.create_policy(body(egress=[]))
    assert (policy.ingress, policy.egress) == (None, ())
    guard = store.snapshot().guard_of(store.web)
    assert (guard.ingress, guard.egress) == (False, True)


def test_rule_ids_are_never_given_twice(store):
    first = store.create_policy(body(ingress=[ANYONE, ANYONE]))
    replaced = store.replace_policy("web", body(ingress=[ANYONE, ANYONE]))
    assert (replaced.id, replaced.seq) == (first.id, first.seq)
    assert rule_ids(first) == [1, 2] and rule_ids(replaced) == [3, 4]
    store.delete_policy("web")
    store.close()
    again = Store(store.path)  # the counter survives the policies it numbered
    assert rule_ids(again.create_policy(body(egress=[ANYONE]))) == [5]


def test_replace_renames_and_delete_forgets(store):
    policy = store.create_policy(body(ingress=[ANYONE]))
    renamed = store.replace_policy(policy.id, body("front", egress=[ANYONE]))
    assert renamed.name == "front" and renamed.ingress is None
    assert store.policies() == [renamed]
    with pytest.raises(NotFound, match="'web'"):
        store.get_policy("web")
    assert store.delete_policy("front") == renamed
    assert store.changes == [Change(policies=frozenset({policy.id}))] * 3
    assert store.policies() == [] and store.snapshot().guard_of(store.web) is None
    assert Store(store.path).policies() == []


def test_policies_are_listed_in_the_order_made(store):
    for name in ("zeta", "alpha", "mid"):
        store.create_policy(body(name))
    assert [p.name for p in store.policies()] == ["zeta", "alpha", "mid"]


def test_refused_policy_writes_keep_nothing(store):
    store.create_policy(body(ingress=[ANYONE]))
    store.create_policy(body("other"))
    store.changes.clear()
    last = store._state.counter("last_rule_id")
    unchanged(store, lambda: store.create_policy(body(ingress=[ANYONE])), Conflict,
              "policy 'web' already exists")
    unchanged(store, lambda: store.replace_policy("other", body(ingress=[ANYONE])), Conflict,
              "policy 'web' already exists")
    unchanged(store, lambda: store.create_policy(body("x", ingress=[{"peers": []}])),
              InvalidRequest, "ingress[0].peers")
    unchanged(store, lambda: store.create_policy(
        {"name": "x", "applies_to": {"selector": {}, "network": "nope"}}),
        NotFound, "applies_to.network", "'nope'")
    unchanged(store, lambda: store.replace_policy("nope", body()), NotFound, "policy 'nope'")
    unchanged(store, lambda: store.delete_policy("nope"), NotFound, "policy 'nope'")
    assert store._state.counter("last_rule_id") == last
    assert Store(store.path).policies() == store.policies()


def test_a_network_a_policy_names_is_not_deleted(store):
    store.create_policy({"name": "p", "applies_to": {"selector": {}},
                         "egress": [{"peers": [{"selector": {}, "network": "a"}]}]})
    store.delete_endpoint(store.web.id)
    store.changes.clear()
    unchanged(store, lambda: store.delete_network("a"), Conflict, "named by policies p")
    store.delete_policy("p")
    store.delete_network("a")


def test_labels_replace_the_set_and_move_the_endpoint_between_policies(store):
    policy = store.create_policy(body(ingress=[]))
    store.changes.clear()
    db = store.set_endpoint_labels(store.db.id, {"app": "web", "tier": "back"})
    assert db.labels == (("app", "web"), ("tier", "back"))
    b = store.get_network("b").id
    assert store.changes == [Change(frozenset({b}), endpoints=frozenset({db.id}))]
    snap = store.snapshot()
    assert snap.endpoints[db.id] == db and snap.guard_of(db).policies == (policy.id,)
    assert set(snap.endpoints_by_label[("app", "web")]) == {store.web.id, db.id}
    assert store.set_endpoint_labels(store.db.id, {"tier": "back"}).labels == (("tier", "back"),)
    assert store.snapshot().guard_of(store.snapshot().endpoints[db.id]) is None
    store.changes.clear()
    store.set_endpoint_labels(store.db.id, {"tier": "back"})  # the same set: no write
    assert store.changes == []
    assert Store(store.path).get_endpoint(db.id).labels == (("tier", "back"),)


@pytest.mark.parametrize("labels, words", [
    ({"": "x"}, ["key ''"]),
    ({"-app": "x"}, ["key '-app'"]),
    ({"a" * 64: "x"}, ["1 to 63"]),
    ({"app": "a b"}, ["labels.app value 'a b'"]),
    ({"app": "v" * 64}, ["0 to 63"]),
    ({"app": 5}, ["labels.app value 5"]),
    ({f"k{i}": "" for i in range(65)}, ["65 labels: at most 64"]),
    (["app"], ["JSON object"]),
])
def test_bad_labels_are_refused(store, labels, words):
    unchanged(store, lambda: store.set_endpoint_labels(store.db.id, labels), InvalidRequest,
              *words)
    unchanged(store, lambda: store.create_endpoint("a", "h2", labels=labels), InvalidRequest,
              *words)


def test_label_limits_are_inclusive(store):
    labels = {f"a.b/{i}": "v" * 63 for i in range(64)} | {"k" * 63: ""}
    del labels["a.b/0"]
    assert len(store.set_endpoint_labels(store.db.id, labels).labels) == 64


def test_a_file_of_schema_version_2_is_upgraded_and_read_whole(tmp_path):
    path = str(tmp_path / "v2.db")
    shutil.copyfile(DATA / "state-v2.db", path)
    assert migrations.file_version(path) == 2
    store = Store(path)
    snap = store.snapshot()
    assert [(h.name, h.egress_ip, h.datapath_type, h.bridge) for h in snap.hosts.values()] == [
        ("h1", "203.0.113.11", "system", "br-int"), ("h2", None, "netdev", "br-fab")]
    assert [(n.name, n.owner, n.egress) for n in snap.networks.values()] == [
        ("red", None, True), ("green", "h1", False)]
    eps = {e.name: e for e in snap.endpoints.values()}
    assert {n: (e.host, e.port, e.ip, e.labels) for n, e in eps.items()} == {
        "web": ("h1", "veth1", eps["web"].ip, ()), "db": ("h2", "veth2", "10.0.0.7", ()),
        "fw": ("h1", None, "10.2.0.5", ())}
    assert eps["db"].mac == "02:00:00:00:00:07"
    assert list(snap.reservations) == [(store.get_network("red").id, "10.0.0.50")]
    router, = snap.routers.values()
    assert router.networks == (store.get_network("red").id, store.get_network("green").id)
    assert router.routes == (Route("192.168.0.0/16", "10.2.0.5"),)
    assert snap.published == {eps["web"].id: (PublishedPort(eps["web"].id, "tcp", 80, 8080),)}
    assert store.aliases_of(store.get_network("red").id) == ["docker:h1:1f2e3d"]
    assert snap.revision == 13 and snap.policies == {}
    assert migrations.file_version(path) == migrations.SCHEMA_VERSION == 3
    # The new column and tables work on the upgraded file.
    store.set_endpoint_labels(eps["fw"].id, {"role": "fw"})
    policy = store.create_policy({"name": "fw", "applies_to": {"selector": {
        "labels": {"role": "fw"}}}, "egress": [ANYONE]})
    store.close()
    again = Store(path)
    assert again.get_endpoint(eps["fw"].id).labels == (("role", "fw"),)
    assert again.policies() == [policy] and rule_ids(policy) == [1]


def test_a_refused_upgrade_of_a_version_2_file_changes_nothing(tmp_path):
    path = str(tmp_path / "v2.db")
    shutil.copyfile(DATA / "state-v2.db", path)
    db = sqlite3.connect(path)
    db.execute("UPDATE endpoints SET host = 'gone' WHERE name = 'fw'")
    db.commit()
    db.close()
    before = open(path, "rb").read()
    # The check runs after the new column and tables, before the commit.
    with pytest.raises(StoreDamaged, match="host 'gone'"):
        Store(path)
    assert open(path, "rb").read() == before and migrations.file_version(path) == 2
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    columns = {row[1] for row in db.execute("PRAGMA table_info(endpoints)")}
    db.close()
    assert "policies" not in tables and "labels" not in columns


@pytest.mark.parametrize("damage, words", [
    ("UPDATE endpoints SET labels = 'nope'", ["has labels 'nope'"]),
    ("UPDATE endpoints SET labels = '{\"-x\": \"1\"}'", ["key '-x'"]),
    ("UPDATE policies SET body = '{}'", ["policy 'p' cannot be read"]),
    ("UPDATE policies SET body = replace(body, (SELECT id FROM networks), 'gone')",
     ["policy 'p' names network gone, which does not exist"]),
    ("DELETE FROM meta WHERE key = 'last_rule_id'", ["last rule id given is not recorded"]),
    ("UPDATE meta SET value = 0 WHERE key = 'last_rule_id'",
     ["rule id 1 is above the last one given (0)"]),
    ("INSERT INTO policies (id, name, body) SELECT 'q', 'q', body FROM policies",
     ["rule id 1 is given 2 times"]),
])
def test_damaged_policies_and_labels_are_refused(tmp_path, damage, words):
    path = str(tmp_path / "s.db")
    store = Store(path)
    store.create_host("h1", "unix:/x1", "192.0.2.1")
    store.create_network("a", "10.0.0.0/24")
    store.create_endpoint("a", "h1", labels={"app": "web"})
    store.create_policy({"name": "p", "applies_to": {"selector": {}, "network": "a"},
                         "egress": [ANYONE]})
    store.close()
    db = sqlite3.connect(path)
    db.execute(damage)
    db.commit()
    db.close()
    with pytest.raises(StoreDamaged) as err:
        Store(path)
    for word in words:
        assert word in str(err.value)


def test_policy_body_is_json_with_network_ids(store):
    store.create_policy({"name": "p", "applies_to": {"selector": {}, "network": "a"}})
    db = sqlite3.connect(store.path)
    stored, = db.execute("SELECT body FROM policies").fetchone()
    db.close()
    assert json.loads(stored) == {"applies_to": {"labels": {},
                                                 "network": store.get_network("a").id}}
