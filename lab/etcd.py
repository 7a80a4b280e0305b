"""An etcd cluster on loopback for the lab: Debian's etcd-server, one process per member, each
with its own data dir and log file, started, killed, stopped and restarted by its PID.

Member ``i`` (0-based) of slot ``s`` listens for clients on 24000+100*s+first+i and for its
peers on 24050+100*s+first+i, so that test runs in different slots never share an etcd;
``first`` (0 unless given; the slot has 50 ports of each kind) lets two clusters of one slot
run side by side.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("lab")

ETCD = "/usr/bin/etcd"
CLIENT_PORT_BASE = 24000
PEER_PORT_BASE = 24050
# Half etcd's defaults (100 ms heartbeat, 1000 ms election timeout). etcd replaces a dead
# raft leader after one to two election timeouts, and until then no lease is renewed: with the
# defaults that can take longer than the 1.75 s an election lease (TTL 2 s) may go without a
# keepalive before its leader steps down, so killing etcd's raft leader made ours step down for
# a moment in 4 of 10 tries; with 500 ms, in none (docs/replicas.md). On loopback a heartbeat
# is never late: 50 ms has not made the cluster flap here, with the 2 cores shared.
HEARTBEAT_MS = 50
ELECTION_MS = 500
START_TIMEOUT_S = 30.0


class EtcdCluster:
    """``size`` members on 127.0.0.1; ``url`` is the etcd:// target of them all."""

    def __init__(self, workdir: str | os.PathLike, slot: int, size: int = 3,
                 token: str | None = None, heartbeat_ms: int = HEARTBEAT_MS,
                 election_ms: int = ELECTION_MS, first: int = 0):
        if not 0 <= first <= 50 - size:
            raise ValueError(f"first={first}: the slot has 50 client ports, members 0 to "
                             f"{size - 1} must fit")
        self.first = first
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.workdir = Path(workdir)
        self.slot = slot
        self.size = size
        self.token = token or f"ovsfabric-lab-{slot}-{first}-{os.getpid()}"
        self.procs: list[subprocess.Popen | None] = [None] * size
        self._logs: list = [None] * size

    # ---- addresses --------------------------------------------------------------------------

    def client_port(self, i: int) -> int:
        return CLIENT_PORT_BASE + 100 * self.slot + self.first + i

    def peer_port(self, i: int) -> int:
        return PEER_PORT_BASE + 100 * self.slot + self.first + i

    def name(self, i: int) -> str:
        return f"m{i}"

    def data_dir(self, i: int) -> Path:
        return self.workdir / f"{self.name(i)}.etcd"

    def log_path(self, i: int) -> Path:
        return self.workdir / f"{self.name(i)}.log"

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(f"127.0.0.1:{self.client_port(i)}" for i in range(self.size))

    def member_url(self, i: int) -> str:
        """The etcd:// target of member ``i`` alone."""
        return f"etcd://127.0.0.1:{self.client_port(i)}"

    def command(self, i: int) -> list[str]:
        client = f"http://127.0.0.1:{self.client_port(i)}"
        peer = f"http://127.0.0.1:{self.peer_port(i)}"
        initial = ",".join(f"{self.name(j)}=http://127.0.0.1:{self.peer_port(j)}"
                           for j in range(self.size))
        # A restart is the same command: on an existing data dir the --initial-* flags are
        # ignored and the member rejoins with what it stored.
        return [ETCD, "--name", self.name(i), "--data-dir", str(self.data_dir(i)),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial, "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new",
                "--heartbeat-interval", str(self.heartbeat_ms),
                "--election-timeout", str(self.election_ms),
                "--logger", "zap", "--log-outputs", "stderr"]

    # ---- life -------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> EtcdCluster:
        """Every member started; returns once each one answers healthy."""
        if shutil.which(ETCD) is None:
            raise RuntimeError(f"{ETCD} is missing: apt-get install etcd-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for i in range(self.size):
            self._spawn(i)
        self.wait_healthy(range(self.size), timeout)
        return self

    def _spawn(self, i: int) -> None:
        if self.procs[i] is not None and self.procs[i].poll() is None:
            raise RuntimeError(f"etcd member {i} is already running (pid {self.procs[i].pid})")
        if self._logs[i] is not None:
            self._logs[i].close()
        self._logs[i] = open(self.log_path(i), "ab")
        self.procs[i] = subprocess.Popen(self.command(i), stdin=subprocess.DEVNULL,
                                         stdout=self._logs[i], stderr=subprocess.STDOUT)
        log.info("etcd member %d: pid %d, client port %d", i, self.procs[i].pid,
                 self.client_port(i))

    def running(self, i: int) -> bool:
        return self.procs[i] is not None and self.procs[i].poll() is None

    def pid(self, i: int) -> int | None:
        return self.procs[i].pid if self.running(i) else None

    def healthy(self, i: int, timeout: float = 1.0) -> bool:
        """Member ``i`` answers /health with true (it is running and sees a raft leader)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.client_port(i)}/health",
                                        timeout=timeout) as response:
                return json.loads(response.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def raft_leader(self, timeout: float = 1.0) -> int | None:
        """The member that is etcd's raft leader (None: none of the running ones knows one)."""
        ids = {}
        leader = None
        for i in range(self.size):
            if not self.running(i):
                continue
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.client_port(i)}/v3/maintenance/status", data=b"{}",
                method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    status = json.loads(response.read())
            except (OSError, ValueError):
                continue
            ids[status["header"]["member_id"]] = i
            leader = status.get("leader") or leader
        return ids.get(leader)

    def wait_healthy(self, members, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(members)
        while waiting:
            for i in sorted(waiting):
                if not self.running(i):
                    raise RuntimeError(f"etcd member {i} exited with {self.procs[i].returncode}"
                                       f": {self._tail(i)}")
                if self.healthy(i):
                    waiting.discard(i)
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"etcd members {sorted(waiting)} not healthy after "
                                   f"{timeout:.0f} s: {self._tail(min(waiting))}")
            if waiting:
                time.sleep(0.1)

    def _signal(self, i: int, sig: int, timeout: float = 10.0) -> None:
        proc = self.procs[i]
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)  # by its PID, never by name
        if sig != signal.SIGKILL:
            os.kill(proc.pid, signal.SIGCONT)  # a paused member handles its SIGTERM too
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("etcd member %d (pid %d) still alive after signal %d: SIGKILL",
                        i, proc.pid, sig)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def kill(self, i: int) -> None:
        """Member ``i`` killed at once (SIGKILL): a crash."""
        self._signal(i, signal.SIGKILL)

    def stop(self, i: int) -> None:
        """Member ``i`` stopped cleanly (SIGTERM)."""
        self._signal(i, signal.SIGTERM)

    def pause(self, i: int) -> None:
        """Member ``i`` frozen (SIGSTOP): its connections stay open and nothing answers, as
        when its traffic is dropped."""
        if self.running(i):
            os.kill(self.procs[i].pid, signal.SIGSTOP)

    def resume(self, i: int) -> None:
        if self.running(i):
            os.kill(self.procs[i].pid, signal.SIGCONT)

    def restart(self, i: int, wait: bool = False, timeout: float = START_TIMEOUT_S) -> None:
        """Member ``i`` started again on its data dir (stopped first if it runs); ``wait``:
        until it answers healthy (which needs a quorum)."""
        self.stop(i)
        self._spawn(i)
        if wait:
            self.wait_healthy([i], timeout)

    def close(self) -> None:
        """Every member stopped by its PID; the data dirs removed (the logs stay)."""
        for i in range(self.size):
            try:
                self.stop(i)
            except Exception:
                log.exception("stopping etcd member %d", i)
            if self._logs[i] is not None:
                self._logs[i].close()
                self._logs[i] = None
            shutil.rmtree(self.data_dir(i), ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def _tail(self, i: int, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path(i).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextmanager
def etcd_cluster(workdir, slot: int, size: int = 3) -> Iterator[EtcdCluster]:
    """The fixture form: ``with etcd_cluster(tmp, slot) as etcd: ...``."""
    with EtcdCluster(workdir, slot, size) as cluster:
        yield cluster
