"""Traffic inside a lab container, run there with the machine's python3 (stdlib only): echo
servers that log what they receive, and streams that log every answer, one line per event,
flushed, so that a test reads when each packet got through.

    server [--tcp PORTS] [--udp PORTS] --log FILE     TCP echo per connection; UDP echo, each
                                                      datagram logged as "t src_ip port"
    tcp-stream IP PORT --interval S --log FILE        one connection, a sequence number every
                                                      S seconds, "t seq" per echo, "t error .."
                                                      and exit when it breaks
    udp-stream IP PORT --interval S --count N --log FILE
                                                      N numbered datagrams, "t seq" per echo
    udp-send IP PORT --interval S --count N           N datagrams, nothing awaited
    udp-ask IP PORT                                   one datagram on a connected socket:
                                                      prints "echo", "refused" (an ICMP port
                                                      unreachable came back) or "timeout"
"""
from __future__ import annotations

import argparse
import socket
import struct
import sys
import threading
import time

SEQ = struct.Struct("!Q")


def _log(out, *fields) -> None:
    out.write(" ".join(str(f) for f in (f"{time.time():.6f}", *fields)) + "\n")
    out.flush()


def serve(tcp_ports: list[int], udp_ports: list[int], log_path: str) -> None:
    out = open(log_path, "a")
    lock = threading.Lock()

    def echo_tcp(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept(port: int) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(64)
        while True:
            conn, _ = s.accept()
            threading.Thread(target=echo_tcp, args=(conn,), daemon=True).start()

    def echo_udp(port: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", port))
        while True:
            data, peer = s.recvfrom(4096)
            with lock:
                _log(out, peer[0], port)
            s.sendto(data, peer)

    threads = [threading.Thread(target=accept, args=(p,), daemon=True) for p in tcp_ports]
    threads += [threading.Thread(target=echo_udp, args=(p,), daemon=True) for p in udp_ports]
    for t in threads:
        t.start()
    _log(out, "ready")
    while True:
        time.sleep(3600)


def tcp_stream(ip: str, port: int, interval: float, log_path: str) -> None:
    out = open(log_path, "a")
    try:
        s = socket.create_connection((ip, port), timeout=2)
        s.settimeout(1.0)
        _log(out, "connected")
        seq = 0
        while True:
            s.sendall(SEQ.pack(seq))
            got = b""
            while len(got) < SEQ.size:
                chunk = s.recv(SEQ.size - len(got))
                if not chunk:
                    raise ConnectionError("closed by the peer")
                got += chunk
            _log(out, SEQ.unpack(got)[0])
            seq += 1
            time.sleep(interval)
    except OSError as exc:
        _log(out, "error", type(exc).__name__)


def udp_stream(ip: str, port: int, interval: float, count: int, log_path: str) -> None:
    out = open(log_path, "a")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((ip, port))

    def receive() -> None:
        while True:
            try:
                data = s.recv(64)
            except OSError:  # an ICMP error answered a datagram: keep counting the others
                continue
            _log(out, SEQ.unpack(data[:SEQ.size])[0])

    threading.Thread(target=receive, daemon=True).start()
    for seq in range(count):
        try:
            s.send(SEQ.pack(seq))
        except OSError:
            pass
        time.sleep(interval)
    time.sleep(1.0)  # the last answers
    _log(out, "done")


def udp_send(ip: str, port: int, interval: float, count: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for seq in range(count):
        try:
            s.sendto(SEQ.pack(seq), (ip, port))
        except OSError:  # no route yet, or a refusal: the next one tries again
            pass
        time.sleep(interval)


def udp_ask(ip: str, port: int) -> str:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((ip, port))
    s.settimeout(2.0)
    s.send(b"hello")
    try:
        s.recv(64)
        return "echo"
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"


def _ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("server")
    p.add_argument("--tcp", type=_ports, default=[])
    p.add_argument("--udp", type=_ports, default=[])
    p.add_argument("--log", required=True)
    for verb in ("tcp-stream", "udp-stream", "udp-send", "udp-ask"):
        p = sub.add_parser(verb)
        p.add_argument("ip")
        p.add_argument("port", type=int)
        p.add_argument("--interval", type=float, default=0.01)
        p.add_argument("--count", type=int, default=100)
        p.add_argument("--log")
    args = parser.parse_args(argv)
    if args.verb == "server":
        serve(args.tcp, args.udp, args.log)
    elif args.verb == "tcp-stream":
        tcp_stream(args.ip, args.port, args.interval, args.log)
    elif args.verb == "udp-stream":
        udp_stream(args.ip, args.port, args.interval, args.count, args.log)
    elif args.verb == "udp-send":
        udp_send(args.ip, args.port, args.interval, args.count)
    else:
        print(udp_ask(args.ip, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
