"""etcd traffic per endpoint change, by the fabric's size (simulated: no OVS, no root).

A 3-member etcd on loopback (lab/etcd.py, the test slot's ports); a fabric of N endpoints
(networks of 100 endpoints over 10 hosts each, N/100 hosts) built in an in-memory store and
copied in (cluster/etcd_store.copy_records); then --replicas Stores opened on it
(cluster/etcd_store.open_store), each watching, as replicas do. One of them, the writer, makes
--changes endpoint changes (a create, then its delete, alternately, in network 0); after each,
the script waits until every replica has applied it.

Bytes are counted on each Store's HTTP sessions (the requests.Session of every member client
of its EtcdClient, and its watch stream's session): a request's JSON body as requests
serializes it, a response's body (len(response.content)), and a watch stream's bytes as they
arrive (iter_content's chunks, which iter_lines reads through too). HTTP headers and chunked
framing are not counted (about 150 to 250 bytes a request on the gateway). The writer's
figure is every request it made for the change (the transaction, and its share of any other
request: a seq block, a retry); each watcher's, the bytes its watch stream delivered.

Prints a table and writes bench/results/etcd_traffic.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from common import mac_for, progress, write_results  # noqa: E402
from cluster.etcd_store import copy_records, open_store  # noqa: E402
from lab.etcd import EtcdCluster  # noqa: E402
from model import Store  # noqa: E402

SLOT = int(os.environ.get("OVSFABRIC_TEST_SLOT", "0"))


class Counted:
    """Bytes a Store sends and receives over its etcd sessions, by gateway path. Counted by
    requests.Session.post patched once (install(), before any Store opens: a watch stream
    opens with the Store), by the session it is called on."""

    by_session: dict[int, "Counted"] = {}

    def __init__(self, store: Store):
        self.sent: dict[str, int] = defaultdict(int)
        self.received: dict[str, int] = defaultdict(int)
        self.requests: dict[str, int] = defaultdict(int)
        # the member clients' sessions, and the watch stream's own where it has one
        sessions = [m.session for m in store.backend.client._clients]
        sessions += [s for s in [getattr(store.backend, "_session", None)] if s is not None]
        for session in sessions:
            key = id(session)
            pending = Counted.by_session.get(key)
            if pending is not None:  # what it sent while opening, before this existed
                for side in ("sent", "received", "requests"):
                    for path, n in getattr(pending, side).items():
                        getattr(self, side)[path] += n
            Counted.by_session[key] = self

    @classmethod
    def pending(cls, session) -> "Counted":
        found = cls.by_session.get(id(session))
        if found is None:
            found = cls.by_session[id(session)] = cls.__new__(cls)
            found.sent, found.received, found.requests = (defaultdict(int) for _ in range(3))
        return found

    @staticmethod
    def install() -> None:
        original = requests.Session.post

        def post(session, url, data=None, json=None, **kwargs):
            counted = Counted.pending(session)
            path = url.rsplit("/v3/", 1)[-1]
            counted.requests[path] += 1
            if json is not None:
                counted.sent[path] += len(_dumps(json))
            response = original(session, url, data=data, json=json, **kwargs)
            if not kwargs.get("stream"):
                counted.received[path] += len(response.content)
                return response
            chunks = response.iter_content  # iter_lines reads through it too

            def iter_content(*a, **k):
                for chunk in chunks(*a, **k):
                    # the Counted of now: the Store's, once it exists
                    Counted.pending(session).received[path] += len(chunk)
                    yield chunk
            response.iter_content = iter_content
            return response
        requests.Session.post = post

    def totals(self) -> dict:
        return {"sent": dict(self.sent), "received": dict(self.received),
                "requests": dict(self.requests)}


def _dumps(body) -> bytes:
    # What requests sends for json=: its complexjson.dumps with allow_nan=False, UTF-8.
    return json.dumps(body, allow_nan=False).encode()


def diff(after: dict, before: dict) -> dict:
    return {side: {path: after[side].get(path, 0) - before[side].get(path, 0)
                   for path in after[side] if after[side].get(path, 0) != before[side].get(path, 0)}
            for side in after}


def build(size: int) -> tuple[list, list[str]]:
    """The records of a fabric of ``size`` endpoints, and its hosts."""
    source = Store(":memory:")
    hosts = [f"h{i}" for i in range(max(10, size // 100))]
    for i, host in enumerate(hosts):
        source.create_host(host, f"unix:/run/{host}.sock", f"198.18.{i // 250}.{1 + i % 250}")
    for n in range(size // 100):
        net = source.create_network(f"net{n}", f"10.{n // 256}.{n % 256}.0/24").id
        for j in range(100):
            i = n * 100 + j
            source.create_endpoint(net, hosts[(n * 10 + j % 10) % len(hosts)], port=f"p{i}",
                                   mac=mac_for(i))
    records = source.records()
    source.close()
    return records, hosts


def converged(stores: list[Store], revision: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(s.served_revision() < revision for s in stores):
        if time.monotonic() > deadline:
            raise RuntimeError(f"replicas not at {revision}: "
                               f"{[s.served_revision() for s in stores]}")
        time.sleep(0.002)


def measure(size: int, args, workdir: str) -> dict:
    Counted.by_session.clear()  # the last size's sessions are gone (their ids may recur)
    progress(f"{size} endpoints: building the records")
    records, hosts = build(size)
    etcd = EtcdCluster(os.path.join(workdir, f"etcd{size}"), SLOT)
    etcd.start()
    stores: list[Store] = []
    try:
        progress(f"{size} endpoints: copying {len(records)} records into etcd")
        copier = open_store(etcd.url)
        copy_records(copier, records)
        copier.close()
        stores = [open_store(etcd.url) for _ in range(args.replicas)]
        counters = [Counted(s) for s in stores]
        writer = stores[0]
        converged(stores, writer.stored_revision())
        net = writer.get_network("net0").id
        per_change = []
        made = None
        base = 100000 + size
        for k in range(args.changes):
            before = [c.totals() for c in counters]
            started = time.perf_counter()
            if made is None:
                made = writer.create_endpoint(net, hosts[k % 10], port=f"q{k}",
                                              mac=mac_for(base + k))
                kind = "create"
            else:
                writer.delete_endpoint(made.id)
                made, kind = None, "delete"
            written = time.perf_counter()
            converged(stores, writer.served_revision())
            applied = time.perf_counter()
            after = [c.totals() for c in counters]
            deltas = [diff(a, b) for a, b in zip(after, before)]
            writes = {p: n for p, n in deltas[0]["requests"].items() if p != "watch"}
            per_change.append({
                "kind": kind,
                "write_sent": sum(v for p, v in deltas[0]["sent"].items() if p != "watch"),
                "write_received": sum(v for p, v in deltas[0]["received"].items()
                                      if p != "watch"),
                "requests": writes,
                "watch_received": [d["received"].get("watch", 0) for d in deltas],
                "write_ms": (written - started) * 1000,
                "all_applied_ms": (applied - started) * 1000})
        # A watcher's load is what a replica starting on this fabric reads once (not per
        # change): the whole state.
        load = Counted(newcomer := open_store(etcd.url))
        load_bytes = load.received.get("kv/range", 0)
        newcomer.close()
    finally:
        for s in stores:
            s.close()
        etcd.close()

    def med(values):
        return round(statistics.median(values), 1)
    plain = [c for c in per_change if set(c["requests"]) == {"kv/txn"}
             and c["requests"]["kv/txn"] == 1]
    result = {"endpoints": size, "hosts": len(hosts), "records": len(records),
              "replicas_watching": args.replicas, "changes": len(per_change),
              "changes_one_txn": len(plain)}
    for kind in ("create", "delete"):
        these = [c for c in plain if c["kind"] == kind]
        if not these:
            continue
        result[kind] = {
            "samples": len(these),
            "txn_request_bytes_p50": med([c["write_sent"] for c in these]),
            "txn_response_bytes_p50": med([c["write_received"] for c in these]),
            "watch_bytes_per_replica_p50": med([w for c in these for w in c["watch_received"]]),
            "watch_bytes_per_replica_max": max(w for c in these for w in c["watch_received"]),
            "write_ms_p50": med([c["write_ms"] for c in these]),
            "all_applied_ms_p50": med([c["all_applied_ms"] for c in these])}
    others = [c for c in per_change if c not in plain]
    result["changes_with_more_requests"] = [
        {"kind": c["kind"], "requests": c["requests"], "write_sent": c["write_sent"],
         "write_received": c["write_received"]} for c in others]
    total_sent = sum(c["write_sent"] + c["write_received"] for c in per_change)
    result["writer_bytes_per_change_all_included"] = round(total_sent / len(per_change), 1)
    result["watch_bytes_per_change_all_included"] = round(
        statistics.mean(sum(c["watch_received"][r] for c in per_change) / len(per_change)
                        for r in range(args.replicas)), 1)
    result["initial_load_bytes"] = load_bytes
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="ovsfabric-etcd-traffic-")
    results = {"slot": SLOT, "sizes": []}
    Counted.install()
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            results["sizes"].append(measure(size, args, workdir))
            write_results("etcd_traffic", results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the etcd members' logs
    print(f"\netcd bytes per endpoint change (HTTP bodies; {args.replicas} replicas watching):")
    print(f"{'endpoints':>10} {'kind':>7} {'txn req':>8} {'txn resp':>9} {'watch/replica':>14} "
          f"{'all incl.':>10} {'write ms':>9} {'applied ms':>11} {'initial load':>13}")
    for r in results["sizes"]:
        for kind in ("create", "delete"):
            k = r.get(kind)
            if k:
                print(f"{r['endpoints']:>10} {kind:>7} {k['txn_request_bytes_p50']:>8} "
                      f"{k['txn_response_bytes_p50']:>9} {k['watch_bytes_per_replica_p50']:>14} "
                      f"{r['writer_bytes_per_change_all_included']:>10} "
                      f"{k['write_ms_p50']:>9} {k['all_applied_ms_p50']:>11} "
                      f"{r['initial_load_bytes']:>13}")
        if r["changes_with_more_requests"]:
            print(f"{'':>10} {len(r['changes_with_more_requests'])} of {r['changes']} changes "
                  f"made more requests: {r['changes_with_more_requests'][:2]}")
    path = write_results("etcd_traffic", results)
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
