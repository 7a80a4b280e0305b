"""The REST API and the plugin's socket under idle and slow clients (no lab, no root).

Each server runs as its own process (`ovsfabric serve`, `ovsfabric plugin`). Unauthenticated
clients open --idle connections that send nothing and --slow ones that send a request head one
byte a second, never finishing it; each is opened again as soon as the server closes it, so
the numbers stay up for the whole run. Meanwhile a well-behaved client makes one request every
--interval seconds, each on a new connection, and its response times are the figures printed,
beside the same client's alone before. Then: the server's memory, how long the server let the
slow connections live, and what a 256 MiB header and a negative Content-Length get.

    .venv/bin/python bench/slow_clients.py [--idle 1000] [--slow 200] [--duration 30]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from common import ROOT, progress, summary_ms, write_results

from lab.controller import ControllerProcess

TOKEN = "bench-slow-clients-token"
UNANSWERED_S = 10.0
SLOW_HEAD = b"GET /v1/hosts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4096


class Target:
    """Where to connect and what a well-behaved request is."""

    def __init__(self, name: str, pid: int, connect, request: bytes):
        self.name, self.pid, self.connect, self.request = name, pid, connect, request


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for {pid}")


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines
                   if line.lower().startswith("content-length:")), 0)
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def well_behaved(target: Target, count: int, interval: float) -> tuple[list, list]:
    """count requests, one every interval s, each on a new connection: (ms, statuses); a
    request not answered within UNANSWERED_S has the status "unanswered" and no time."""
    times, statuses = [], []
    for _ in range(count):
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(target.connect(), UNANSWERED_S)
            writer.write(target.request)
            statuses.append(await asyncio.wait_for(read_response(reader), UNANSWERED_S))
            times.append((time.perf_counter() - started) * 1000)
            writer.close()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            statuses.append("unanswered")
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
    return times, statuses


async def hold(target: Target, slow: bool, stop: asyncio.Event, lifetimes: list,
               answered: list, start_delay: float) -> None:
    """One connection kept open until stop, opened again whenever the server closes it."""
    await asyncio.sleep(start_delay)
    while not stop.is_set():
        try:
            reader, writer = await target.connect()
        except OSError:
            await asyncio.sleep(0.1)
            continue
        opened = time.monotonic()
        closed = asyncio.ensure_future(reader.read(65536))
        position = 0
        while not stop.is_set() and not closed.done():
            if slow and position < len(SLOW_HEAD):
                try:
                    writer.write(SLOW_HEAD[position:position + 1])
                except (ConnectionError, RuntimeError):
                    pass
                position += 1
            await asyncio.wait([closed, asyncio.ensure_future(stop.wait())], timeout=1.0,
                               return_when=asyncio.FIRST_COMPLETED)
        if closed.done():
            lifetimes.append(time.monotonic() - opened)
            if not closed.cancelled() and closed.exception() is None and closed.result():
                answered.append(closed.result()[:12])
        else:
            closed.cancel()
        writer.close()


async def raw_exchange(target: Target, data: bytes, chunk: int = 1 << 16) -> tuple[str, float]:
    """Sends data until the server answers, returns the status line and the time."""
    started = time.perf_counter()
    reader, writer = await target.connect()
    answer = asyncio.ensure_future(reader.readline())
    try:
        for offset in range(0, len(data), chunk):
            if answer.done():
                break
            writer.write(data[offset:offset + chunk])
            await writer.drain()
            # Stop writing once answered: a write into a reset connection would drop the
            # answer not read yet.
            await asyncio.wait([answer], timeout=0.005)
    except ConnectionError:
        pass  # answered and closed before taking it all
    try:
        line = (await asyncio.wait_for(answer, 30)).decode().strip() or "(closed)"
    except (ConnectionError, asyncio.IncompleteReadError):
        line = "(closed)"
    writer.close()
    return line, round((time.perf_counter() - started) * 1000, 1)


async def measure(target: Target, args) -> dict:
    count = max(1, int(args.duration / args.interval))
    progress(f"{target.name}: well-behaved client alone")
    alone, _ = await well_behaved(target, min(count, 100), args.interval)
    rss_before = rss_mib(target.pid)
    stop = asyncio.Event()
    lifetimes: dict[str, list] = {"idle": [], "slow": []}
    answered: list = []
    progress(f"{target.name}: opening {args.idle} idle and {args.slow} slow connections")
    holders = [asyncio.ensure_future(hold(target, False, stop, lifetimes["idle"], answered,
                                          i / args.idle)) for i in range(args.idle)]
    holders += [asyncio.ensure_future(hold(target, True, stop, lifetimes["slow"], answered,
                                           i / args.slow)) for i in range(args.slow)]
    await asyncio.sleep(2)  # all of them open and trickling
    peak = [rss_mib(target.pid)]

    async def sample_rss():
        while not stop.is_set():
            peak.append(rss_mib(target.pid))
            await asyncio.sleep(0.5)

    sampler = asyncio.ensure_future(sample_rss())
    progress(f"{target.name}: well-behaved client, {count} requests over {args.duration:g} s")
    loaded, statuses = await well_behaved(target, count, args.interval)
    stop.set()
    await asyncio.gather(*holders, sampler)
    await asyncio.sleep(1)
    rss_after = rss_mib(target.pid)
    progress(f"{target.name}: a 256 MiB header, a negative Content-Length")
    huge = await raw_exchange(target, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (256 << 20))
    rss_huge = rss_mib(target.pid)
    negative = await raw_exchange(target, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                          b"Content-Length: -1\r\n\r\n")
    slow_life = lifetimes["slow"]
    return {
        "alone": summary_ms(alone), "loaded": summary_ms(loaded) if loaded else None,
        "loaded_statuses": {str(status): statuses.count(status) for status in set(statuses)},
        "rss_mib": {"before": rss_before, "peak_under_load": max(peak), "after": rss_after,
                    "after_256MiB_header": rss_huge},
        "slow_closed": len(slow_life),
        "slow_lifetime_s": ({"min": round(min(slow_life), 2),
                             "median": round(statistics.median(slow_life), 2),
                             "max": round(max(slow_life), 2)} if slow_life else None),
        "idle_closed": len(lifetimes["idle"]),
        "held_connections_answered": len(answered),
        "huge_header": {"status": huge[0], "ms": huge[1]},
        "negative_content_length": {"status": negative[0], "ms": negative[1]},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_api(directory: str) -> tuple[ControllerProcess, Target]:
    port = free_port()
    controller = ControllerProcess(os.path.join(directory, "state.db"), "127.0.0.1",
                                   api_port=port, openflow_port=free_port(), token=TOKEN)
    controller.start()
    request = (f"GET /v1/networks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}"
               f"\r\nConnection: close\r\n\r\n").encode()
    return controller, Target("api", controller.proc.pid,
                              lambda: asyncio.open_connection("127.0.0.1", port), request)


def start_plugin(directory: str) -> tuple[subprocess.Popen, Target]:
    path = os.path.join(directory, "plugin.sock")
    log = open(os.path.join(directory, "plugin.log"), "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "plugin", "--controller", "http://127.0.0.1:9",
         "--host", "bench", "--socket", path, "--orphan-sweep", "0"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the plugin did not start; see {log.name}")
        time.sleep(0.05)
    request = b"POST /Plugin.Activate HTTP/1.1\r\nHost: \r\nContent-Length: 0\r\n\r\n"
    return proc, Target("plugin", proc.pid, lambda: asyncio.open_unix_connection(path), request)


def show(name: str, result: dict) -> None:
    alone, loaded, rss = result["alone"], result["loaded"] or {}, result["rss_mib"]
    life = result["slow_lifetime_s"] or {}
    print(f"{name}: well-behaved client alone       p50 {alone['p50_ms']} ms, "
          f"p99 {alone['p99_ms']} ms, max {alone['max_ms']} ms ({alone['samples']} requests)")
    print(f"{name}: with the idle and slow clients  p50 {loaded.get('p50_ms')} ms, "
          f"p99 {loaded.get('p99_ms')} ms, max {loaded.get('max_ms')} ms (statuses "
          f"{result['loaded_statuses']})")
    print(f"{name}: RSS {rss['before']} MiB before, {rss['peak_under_load']} MiB at most under "
          f"load, {rss['after']} MiB after, {rss['after_256MiB_header']} MiB after a 256 MiB "
          f"header")
    print(f"{name}: slow connections closed by the server: {result['slow_closed']}, after "
          f"{life.get('min')} to {life.get('max')} s (median {life.get('median')}); idle ones "
          f"closed: {result['idle_closed']}; held connections answered: "
          f"{result['held_connections_answered']}")
    print(f"{name}: 256 MiB header: {result['huge_header']['status']!r} in "
          f"{result['huge_header']['ms']} ms; Content-Length -1: "
          f"{result['negative_content_length']['status']!r} in "
          f"{result['negative_content_length']['ms']} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds of well-behaved requests under load (longer than the "
                             "server's header timeout, so that it closes and they reopen)")
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--only", default="api,plugin")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this side's sockets too
    results = {"idle": args.idle, "slow": args.slow, "duration_s": args.duration}
    with tempfile.TemporaryDirectory(prefix="ovsfabric-slow-") as directory:
        for name in args.only.split(","):
            server, target = (start_api if name == "api" else start_plugin)(directory)
            try:
                results[name] = asyncio.run(measure(target, args))
            finally:
                server.terminate() if name == "plugin" else server.stop()
                if name == "plugin":
                    server.wait(10)
            show(name, results[name])
    progress(f"results in {write_results('slow_clients', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
