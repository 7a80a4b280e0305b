"""Traffic between lab containers (lab/traffic_agent.py run inside them), read back as what
got through and when. Each process is stopped by its own PID."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from .proc import stop_pid

AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "traffic_agent.py")


class _Agent:
    def __init__(self, container, *args: str):
        fd, self.log = tempfile.mkstemp(prefix=f"traffic-{container.name}-", suffix=".log")
        os.close(fd)
        # `ip netns exec` execs the command: proc.pid is the agent's own PID.
        self.proc = subprocess.Popen(["ip", "netns", "exec", container.netns, sys.executable,
                                      AGENT, *args, "--log", self.log])

    def lines(self) -> list[list[str]]:
        with open(self.log) as f:
            return [line.split() for line in f if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_pid(self.proc.pid)
        self.proc.wait()

    def close(self) -> None:
        self.stop()
        os.unlink(self.log)


class Server(_Agent):
    """Echo on the TCP and UDP ports given; every UDP datagram received logged with its
    source."""

    def __init__(self, container, tcp=(), udp=()):
        super().__init__(container, "server", "--tcp", ",".join(map(str, tcp)),
                         "--udp", ",".join(map(str, udp)))
        deadline = time.monotonic() + 10
        while not any(line[1:] == ["ready"] for line in self.lines()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"traffic server in {container} did not start")
            time.sleep(0.02)

    def received_from(self, ip: str, since: float = 0.0) -> list[float]:
        """When datagrams from ``ip`` arrived (after ``since``)."""
        return [float(t) for t, *rest in self.lines() if rest[:1] == [ip] and float(t) > since]


class TcpStream(_Agent):
    """One TCP connection carrying a numbered message every ``interval`` s, each echoed."""

    def __init__(self, container, ip: str, port: int, interval: float = 0.01):
        super().__init__(container, "tcp-stream", ip, str(port), "--interval", str(interval))

    def echoes(self) -> list[float]:
        return [float(line[0]) for line in self.lines() if line[1].isdigit()]

    def broke(self) -> bool:
        return any(line[1] == "error" for line in self.lines())

    def connected(self) -> bool:
        return any(line[1] == "connected" for line in self.lines())


class UdpStream(_Agent):
    """``count`` numbered datagrams every ``interval`` s; which were echoed, and when."""

    def __init__(self, container, ip: str, port: int, count: int, interval: float = 0.01):
        super().__init__(container, "udp-stream", ip, str(port), "--interval", str(interval),
                         "--count", str(count))

    def done(self) -> bool:
        return any(line[1] == "done" for line in self.lines())

    def echoed(self) -> dict[int, float]:
        return {int(line[1]): float(line[0]) for line in self.lines() if line[1].isdigit()}


def udp_sender(container, ip: str, port: int, count: int,
               interval: float = 0.01) -> subprocess.Popen:
    """Datagrams sent blindly (a probe that should not get through)."""
    return subprocess.Popen(["ip", "netns", "exec", container.netns, sys.executable, AGENT,
                             "udp-send", ip, str(port), "--interval", str(interval),
                             "--count", str(count)])


def udp_ask(container, ip: str, port: int) -> str:
    """"echo", "refused" (an ICMP port unreachable came back) or "timeout"."""
    done = container.exec(sys.executable, AGENT, "udp-ask", ip, str(port))
    return done.stdout.strip()


def tcp_connects(container, ip: str, port: int, timeout: float = 1.0) -> bool:
    code = (f"import socket; socket.create_connection(({ip!r}, {port}), timeout={timeout})")
    return container.exec(sys.executable, "-c", code, check=False).returncode == 0
