"""A container runtime's executor for bench/cni.py, run inside a lab host's namespace (standard
library only): it starts the CNI plugin there as kubelet's runtime does (fork and exec, the
verb in the environment, the configuration on stdin) and times each run from just before the
fork to its exit, so that no `ip netns exec` sits inside a figure.

Line-delimited JSON on stdin, one request a line, one answer a line on stdout:

    {"jobs": [{"argv": [...], "env": {...}, "stdin": "..."}, ...]}

runs the jobs at once (all forked first, as a runtime starting many pods does) and answers one
line per job as it ends, in the order they end: {"index", "status", "stdout", "stderr",
"start", "end", "ms", "cpu_ms"} (start and end: CLOCK_REALTIME seconds, comparable across
processes; cpu_ms: the plugin's user and system time with that of the commands it ran).
An empty line ends the agent.
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time


def run_jobs(jobs: list[dict]) -> None:
    procs = []
    for index, job in enumerate(jobs):
        start = time.time()
        t0 = time.perf_counter()
        p = subprocess.Popen(job["argv"], env=job["env"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append((index, p, start, t0))
    # Stdin after every fork: the plugins start together.
    for index, p, _, _ in procs:
        try:
            p.stdin.write(jobs[index].get("stdin", "").encode())
            p.stdin.close()
        except BrokenPipeError:
            pass
    sel = selectors.DefaultSelector()
    outputs = {}
    for index, p, start, t0 in procs:
        outputs[index] = {"out": [], "err": []}
        sel.register(p.stdout, selectors.EVENT_READ, (index, "out"))
        sel.register(p.stderr, selectors.EVENT_READ, (index, "err"))
    open_streams = {index: 2 for index, *_ in procs}
    by_index = {index: (p, start, t0) for index, p, start, t0 in procs}
    while open_streams:
        for key, _ in sel.select():
            index, name = key.data
            chunk = os.read(key.fileobj.fileno(), 65536)
            if chunk:
                outputs[index][name].append(chunk)
                continue
            sel.unregister(key.fileobj)
            key.fileobj.close()
            open_streams[index] -= 1
            if open_streams[index] == 0:
                del open_streams[index]
                p, start, t0 = by_index[index]
                # wait4: the plugin's CPU time, with that of the commands it ran and waited for
                _, wait_status, usage = os.wait4(p.pid, 0)
                ms = (time.perf_counter() - t0) * 1000
                p.returncode = status = os.waitstatus_to_exitcode(wait_status)
                answer(index, status, outputs[index], start, ms,
                       (usage.ru_utime + usage.ru_stime) * 1000)


def answer(index: int, status: int, output: dict, start: float, ms: float,
           cpu_ms: float) -> None:
    sys.stdout.write(json.dumps({
        "index": index, "status": status,
        "stdout": b"".join(output["out"]).decode(errors="replace"),
        "stderr": b"".join(output["err"]).decode(errors="replace"),
        "start": start, "end": start + ms / 1000, "ms": ms, "cpu_ms": cpu_ms}) + "\n")
    sys.stdout.flush()


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            return
        run_jobs(json.loads(line)["jobs"])


if __name__ == "__main__":
    main()
