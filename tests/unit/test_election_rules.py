"""The election's rules against a fake etcd in this process (no watch streams: the fake serves
none, so the election learns from its own transactions): the deadline, a lost lease, a lease
renewed after the deadline. The same against a real etcd: tests/lab/test_cluster_election.py."""
from __future__ import annotations

import threading
import time

import pytest

from cluster.election import Election, Term
from cluster.etcd import EtcdTarget, EtcdUnavailable, decode

TTL = 1.0  # keepalives every 0.25 s, step-down 0.875 s after the last


class FakeEtcd:
    """The few gateway calls the election makes, on a dict; ``reachable`` False: every call
    fails as with no member answering."""

    def __init__(self):
        self.target = EtcdTarget.parse("etcd://127.0.0.1:9")  # the watches find no one there
        self.reachable = True
        self.revision = 1
        self.kvs: dict[str, dict] = {}
        self.leases: dict[int, int] = {}
        self._next_lease = 100
        self._lock = threading.Lock()

    @property
    def current(self):
        return type("Member", (), {"host": "127.0.0.1", "port": 9})()

    def post(self, path: str, body: dict, timeout=None) -> dict:
        with self._lock:
            if not self.reachable:
                raise EtcdUnavailable("etcd did not answer (fake)")
            return getattr(self, path.replace("/", "_"))(body)

    def txn(self, compare, success, failure=None, timeout=None):
        return self.post("kv/txn", {"compare": compare, "success": success,
                                    "failure": failure or []})

    def header(self) -> dict:
        return {"revision": str(self.revision)}

    def lease_grant(self, body):
        self._next_lease += 1
        self.leases[self._next_lease] = int(body["TTL"])
        return {"header": self.header(), "ID": str(self._next_lease), "TTL": str(body["TTL"])}

    def lease_keepalive(self, body):
        ttl = self.leases.get(int(body["ID"]))
        return {"result": {"header": self.header(), **({"TTL": str(ttl)} if ttl else {})}}

    def kv_lease_revoke(self, body):
        self.drop(int(body["ID"]))
        return {"header": self.header()}

    def kv_range(self, body):
        key = decode(body["key"]).decode()
        end = decode(body["range_end"]).decode() if body.get("range_end") else None
        kvs = [kv for k, kv in sorted(self.kvs.items())
               if (k == key if end is None else key <= k < end)]
        return {"header": self.header(), "kvs": kvs}

    def kv_txn(self, body):
        ok = all(self.kvs.get(decode(c["key"]).decode(), {}).get("create_revision", 0)
                 == c["create_revision"] for c in body["compare"])
        responses = []
        for op in body["success"] if ok else body["failure"]:
            lease = int(op.get("request_put", {}).get("lease", 0))
            if lease and lease not in self.leases:  # as etcd: the txn fails, nothing written
                raise EtcdUnavailable("etcd did not answer (404 requested lease not found)")
            if "request_put" in op:
                put = op["request_put"]
                key = decode(put["key"]).decode()
                self.revision += 1
                old = self.kvs.get(key)
                self.kvs[key] = {"key": put["key"], "value": put["value"],
                                 "lease": str(put.get("lease", 0)),
                                 "create_revision": old["create_revision"] if old
                                 else str(self.revision),
                                 "mod_revision": str(self.revision)}
                responses.append({"response_put": {}})
            else:
                responses.append({"response_range": self.kv_range(op["request_range"])})
        return {"header": self.header(), "succeeded": ok, "responses": responses}

    def drop(self, lease: int) -> None:
        """The lease revoked or expired: its keys go."""
        self.leases.pop(lease, None)
        for key in [k for k, kv in self.kvs.items() if int(kv["lease"]) == lease]:
            del self.kvs[key]
            self.revision += 1


def wait_for(predicate, timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - start


@pytest.fixture
def etcd():
    return FakeEtcd()


@pytest.fixture
def elected(etcd):
    e = Election(etcd, "http://127.0.0.1:8686", "tcp:192.0.2.1:6653", name="a", ttl=TTL)
    changes = []
    e.subscribe(lambda: changes.append((e.leads(), e.term())))
    e.start()
    e.changes = changes
    wait_for(e.leads, 2)
    yield e
    etcd.reachable = True
    e.stop()


def test_the_first_leads_with_the_leader_keys_create_revision(etcd, elected):
    kv = etcd.kvs["/ovsfabric/leader"]
    assert elected.term() == Term("a", int(kv["create_revision"]))
    assert int(kv["lease"]) in etcd.leases
    assert decode(etcd.kvs["/ovsfabric/members/a"]["value"]).decode() == \
        elected.me.to_json()
    assert elected.controllers() == ["tcp:192.0.2.1:6653"]
    assert elected.status()["leader"] == "a"
    assert (True, elected.term()) in elected.changes


def test_a_second_one_follows(etcd, elected):
    b = Election(etcd, "http://127.0.0.1:8687", "tcp:192.0.2.2:6653", name="b", ttl=TTL)
    b.start()
    try:
        wait_for(lambda: b.term() is not None, 2)
        assert b.term() == elected.term() and not b.leads()
    finally:
        b.stop()


def test_unreachable_past_the_deadline_steps_down_before_the_ttl(etcd, elected):
    cut = time.monotonic()
    etcd.reachable = False
    took = wait_for(lambda: not elected.leads(), TTL)
    assert TTL - TTL / 4 - 0.3 <= took <= TTL - TTL / 8 + 0.05
    assert elected.term() is None  # it cannot know who leads
    wait_for(lambda: elected.changes[-1] == (False, None), 0.5)  # and said so
    assert time.monotonic() - cut < TTL


def test_renewed_after_the_deadline_it_leads_on_in_the_same_term(etcd, elected):
    term = elected.term()
    etcd.reachable = False
    wait_for(lambda: not elected.leads(), TTL)
    etcd.reachable = True  # the lease never expired: the key is still its
    wait_for(elected.leads, 1)
    assert elected.term() == term


def test_a_lost_lease_means_a_new_lease_and_a_new_term(etcd, elected):
    term = elected.term()
    lease = int(etcd.kvs["/ovsfabric/leader"]["lease"])
    etcd.drop(lease)  # expired: the leader key and the member record go with it
    wait_for(lambda: elected.leads() and elected.term() != term, 2)
    assert elected.term().generation > term.generation
    assert int(etcd.kvs["/ovsfabric/leader"]["lease"]) != lease
    assert "/ovsfabric/members/a" in etcd.kvs
    assert any(not leads for leads, _ in elected.changes)  # it stepped down in between


def test_stop_revokes_the_lease(etcd, elected):
    elected.stop()
    assert etcd.leases == {} and "/ovsfabric/leader" not in etcd.kvs
    assert not elected.leads() and elected.changes[-1][0] is False
