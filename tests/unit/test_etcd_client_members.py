"""A write that must not be made twice goes on to the next member only when the first never
saw it: its connection refused, not a connection that took the request and said nothing."""
from __future__ import annotations

import socket

import pytest

from cluster.etcd import EtcdClient, EtcdMaybeApplied, EtcdTarget
from tests.unit.test_etcd_client_env import fake_etcd  # noqa: F401 - a fixture


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def test_a_write_refused_by_a_member_goes_to_the_next(fake_etcd):  # noqa: F811
    client = EtcdClient(EtcdTarget.parse(f"etcd://127.0.0.1:{closed_port()},"
                                         f"127.0.0.1:{fake_etcd}"))
    assert client.txn([], [], retry=False)["header"]["revision"] == "7"


def test_a_write_a_member_took_and_never_answered_is_not_sent_again(fake_etcd):  # noqa: F811
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # the kernel accepts; nothing answers
    try:
        client = EtcdClient(EtcdTarget.parse(f"etcd://127.0.0.1:{silent.getsockname()[1]},"
                                             f"127.0.0.1:{fake_etcd}"))
        with pytest.raises(EtcdMaybeApplied):
            client.txn([], [], timeout=0.3, retry=False)
    finally:
        silent.close()
