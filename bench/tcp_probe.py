"""TCP probes for the policy benchmark, run inside a container's namespace.

    tcp_probe.py serve PORT
        accepts connections on PORT and closes them (the probed side)
    tcp_probe.py connect IP PORT [--timeout 0.2]
        one connection: exits 0 if it is answered within the timeout, 1 if not
    tcp_probe.py probe IP PORT --until fail|success [--interval 0.005] [--timeout 0.2]
                       [--first-port N]
        opens a new connection every interval; prints "ready" once the state before is seen
        (until fail: 5 connections answered in a row; until success: one timed out), then,
        as JSON, the first probe after that with the wanted outcome: {"sent": ..., "answered":
        ..., "next_port": ...} in time.perf_counter() seconds (CLOCK_MONOTONIC, the same clock
        in every process of the machine), and exits 0; exits 1 after --deadline seconds
        without one. With --first-port the probes' source ports are N, N+1, ... (below the
        kernel's ephemeral range), so that the caller can keep 4-tuples from repeating.

Source ports that do not repeat: Open vSwitch 3.1.0's userspace conntrack (3.1.3 fixed it)
can fail an assertion (conntrack.c, conn_update_state) when a packet meets the un-NAT entry
of a connection that has just expired; OVN commits every connection with an all-zero SNAT,
which makes such entries, and a reused 4-tuple brought a reply onto one: OVN's host died
mid-run here.

Every probe is a new connection (a SYN of its own), not a packet of a flow already admitted:
both systems judge it against the policy as it is at that moment, whatever each does with
established connections. A probe counts as failed if it is refused or not answered within
the timeout; its send time is when the policy (or its absence) was in force.
"""
from __future__ import annotations

import argparse
import errno
import json
import selectors
import socket
import struct
import sys
import time

READY_SUCCESSES = 5
# A reset after the handshake still proves the SYN was answered (a refused SYN is
# ECONNREFUSED; a dropped one, a timeout).
ANSWERED = (0, errno.ECONNRESET)
# Closing with RST leaves no TIME_WAIT: 200 connections a second would exhaust the
# ephemeral ports of one address pair within minutes otherwise.
LINGER_RESET = struct.pack("ii", 1, 0)


def serve(port: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(1024)
    print("listening", flush=True)
    while True:
        conn, _ = listener.accept()
        conn.close()  # a FIN: the prober's reset then ends it (no TIME_WAIT on either side)


class Probe:
    def __init__(self, ip: str, port: int, source_port: int = 0):
        self.sent = time.perf_counter()
        self.outcome: str | None = None  # "success" or "fail"
        self.answered: float | None = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        if source_port:
            self.sock.bind(("0.0.0.0", source_port))
        code = self.sock.connect_ex((ip, port))
        if code not in (0, errno.EINPROGRESS):
            self.finish("fail")

    def finish(self, outcome: str) -> None:
        self.outcome = outcome
        if outcome == "success":
            self.answered = time.perf_counter()
        self.sock.close()


def connect(ip: str, port: int, timeout: float) -> int:
    try:
        with socket.create_connection((ip, port), timeout=timeout) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        return 0
    except OSError:
        return 1


def probe(ip: str, port: int, until: str, interval: float, timeout: float,
          deadline: float, first_port: int = 0) -> int:
    selector = selectors.DefaultSelector()
    pending: list[Probe] = []  # in send order, the oldest first
    sent = 0
    ready, successes = False, 0
    end = time.perf_counter() + deadline
    next_send = time.perf_counter()
    while time.perf_counter() < end:
        now = time.perf_counter()
        if now >= next_send:
            p = Probe(ip, port, first_port + sent if first_port else 0)
            sent += 1
            if p.outcome is None:
                selector.register(p.sock, selectors.EVENT_WRITE, p)
            pending.append(p)
            next_send += interval
        for key, _ in selector.select(max(0.0, next_send - time.perf_counter())):
            p = key.data
            selector.unregister(p.sock)
            err = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            p.finish("success" if err in ANSWERED else "fail")
        now = time.perf_counter()
        for p in pending:
            if p.outcome is None and now - p.sent > timeout:
                selector.unregister(p.sock)
                p.finish("fail")
        # Outcomes are taken in send order: the first probe with the wanted outcome is the
        # earliest sent, even though a failure is known only when its timeout expires.
        while pending and pending[0].outcome is not None:
            p = pending.pop(0)
            if not ready:
                successes = successes + 1 if p.outcome == "success" else 0
                ready = successes >= READY_SUCCESSES if until == "fail" else p.outcome == "fail"
                if ready:
                    print("ready", flush=True)
            elif p.outcome == until:
                print(json.dumps({"sent": p.sent, "answered": p.answered,
                                  "next_port": first_port + sent if first_port else None}),
                      flush=True)
                return 0
    return 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("port", type=int)
    o = sub.add_parser("connect")
    o.add_argument("ip")
    o.add_argument("port", type=int)
    o.add_argument("--timeout", type=float, default=0.2)
    c = sub.add_parser("probe")
    c.add_argument("ip")
    c.add_argument("port", type=int)
    c.add_argument("--until", choices=("fail", "success"), required=True)
    c.add_argument("--interval", type=float, default=0.005)
    c.add_argument("--timeout", type=float, default=0.2)
    c.add_argument("--deadline", type=float, default=10.0)
    c.add_argument("--first-port", type=int, default=0)
    args = p.parse_args(argv)
    if args.cmd == "serve":
        serve(args.port)
        return 0
    if args.cmd == "connect":
        return connect(args.ip, args.port, args.timeout)
    return probe(args.ip, args.port, args.until, args.interval, args.timeout, args.deadline,
                 args.first_port)


if __name__ == "__main__":
    sys.exit(main())
