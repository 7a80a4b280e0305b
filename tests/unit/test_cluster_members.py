"""The members' records and names (cluster/members.py, cluster/election.py); the election
itself runs against a real etcd in tests/lab/test_cluster_election.py."""
from __future__ import annotations

import socket

from cluster.election import Term, default_name
from cluster.etcd import decode, encode
from cluster.members import Member, leader_key, listing, member_key, put


def test_a_record_round_trips_and_junk_is_no_member():
    m = Member("a:8686", "http://192.0.2.1:8686", "tcp:192.0.2.1:6653")
    assert Member.from_value(m.to_json()) == m
    assert Member.from_kv({"value": encode(m.to_json())}) == m
    for junk in (b"", b"[]", b"{}", b'{"name": "a"}', b"\xff"):
        assert Member.from_value(junk) is None


def test_the_keys_and_the_put_under_a_lease():
    assert leader_key() == "/ovsfabric/leader"
    assert member_key("a:8686") == "/ovsfabric/members/a:8686"
    op = put(member_key("a"), Member("a", "u", "t"), 42)["request_put"]
    assert decode(op["key"]) == b"/ovsfabric/members/a" and op["lease"] == 42
    assert Member.from_value(decode(op["value"])) == Member("a", "u", "t")


def test_the_listing_is_sorted_and_marks_the_leader():
    members = {n: Member(n, f"http://{n}", f"tcp:{n}") for n in ("c", "a", "b")}
    assert [(m["name"], m["leader"]) for m in listing(members, "b")] == [
        ("a", False), ("b", True), ("c", False)]
    assert not any(m["leader"] for m in listing(members, None))


def test_the_default_name_is_the_host_and_the_api_port():
    host = socket.gethostname()
    assert default_name("http://127.0.0.1:8686") == f"{host}:8686"
    assert default_name("127.0.0.1:9000") == f"{host}:9000"
    assert default_name("https://api.example") == host


def test_a_term_is_a_value():
    assert Term("a", 5) == Term("a", 5) and len({Term("a", 5), Term("a", 5)}) == 1


def test_an_election_connects_to_an_etcd_url():
    from cluster.election import Election
    e = Election.connect("etcd://127.0.0.1:2379,127.0.0.1:2380", "http://127.0.0.1:8686",
                         "tcp:192.0.2.1:6653", ttl=3.0)
    assert e.client.target.members == (("127.0.0.1", 2379), ("127.0.0.1", 2380))
    assert e.name == default_name("http://127.0.0.1:8686") and e.ttl == 3.0
    assert not e.leads() and e.term() is None and e.members() == []
