"""Messages between two containers of a container engine (dockerd, Podman), over TCP with
busybox's nc and over UDP with the machine's Python in the containers' namespaces: what the
demo and the tests prove traffic with, beyond ping."""
from __future__ import annotations

import subprocess
import sys
import time
from typing import Protocol


class Engine(Protocol):
    """What a lab host's container engine offers here (lab.dockerhost.DockerHost,
    lab.podman.LabPodman)."""

    def exec(self, name: str, *command, check: bool = True) -> str: ...

    def exec_detached(self, name: str, *command) -> None: ...

    def in_netns(self, name: str, *argv) -> subprocess.Popen: ...


def tcp_message(sender: Engine, src: str, receiver: Engine, dst: str, dst_ip: str,
                message: str, port: int = 7000, timeout: float = 10) -> str:
    """Sends ``message`` over TCP with busybox nc; returns what the receiver got."""
    out = f"/tmp/tcp-{port}"
    receiver.exec(dst, "rm", "-f", out)
    receiver.exec_detached(dst, "sh", "-c", f"nc -l -p {port} > {out}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # until the listener is up and the message is in
        sender.exec(src, "sh", "-c", f"echo {message} | nc -w 2 {dst_ip} {port}", check=False)
        got = receiver.exec(dst, "cat", out, check=False)
        if got:
            return got
        time.sleep(0.2)
    return ""


UDP_RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
data, peer = s.recvfrom(2048)
print(data.decode(), flush=True)
"""
UDP_SENDER = """
import socket, sys
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(sys.argv[3].encode(),
                                                        (sys.argv[1], int(sys.argv[2])))
"""


def udp_message(sender: Engine, src: str, receiver: Engine, dst: str, dst_ip: str,
                message: str, port: int = 7001, timeout: float = 10) -> str:
    """Sends ``message`` in UDP datagrams (busybox nc has no -u: the machine's Python does it,
    in the containers' namespaces); returns what the receiver got."""
    listener = receiver.in_netns(dst, sys.executable, "-c", UDP_RECEIVER, str(port),
                                 str(timeout))
    try:
        if listener.stdout.readline().strip() != "ready":
            return ""
        deadline = time.monotonic() + timeout
        while listener.poll() is None and time.monotonic() < deadline:
            sender.in_netns(src, sys.executable, "-c", UDP_SENDER, dst_ip, str(port),
                            message).wait(timeout=10)
            time.sleep(0.2)
        out, _ = listener.communicate(timeout=timeout)
        return out.strip()
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
