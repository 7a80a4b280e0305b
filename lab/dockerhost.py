"""A lab host as a Docker host: the ovsfabric plugin and a real dockerd in its namespace, a
busybox image, and the ways the demo and the tests exchange messages between containers."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from .dockerd import LabDockerd
from .plugin import PluginProcess

IMAGE = "ovsfabric-busybox"
# PID 1 is sh, which ignores SIGTERM: the trap keeps `docker stop` fast.
IDLE = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']


class DockerHost:
    def __init__(self, host, controller_url: str, workdir: str, token: str | None = None,
                 plugin_args: tuple = ()):
        self.host = host
        self.dockerd = LabDockerd(host, workdir)
        self.plugin = PluginProcess(
            host, controller_url, self.dockerd.plugin_socket(),
            os.path.join(self.dockerd.dir, "plugin.log"), token=token, extra_args=plugin_args)

    @property
    def name(self) -> str:
        return self.host.name

    def start(self) -> None:
        """The plugin first: dockerd finds it by its socket when a network asks for it."""
        os.makedirs(self.dockerd.plugin_dir, exist_ok=True)
        self.plugin.start()
        self.dockerd.start()
        self.dockerd.import_busybox_image(IMAGE)

    def stop(self) -> None:
        self.dockerd.stop()
        self.plugin.stop()

    def docker(self, *args, check: bool = True, timeout: float = 90) -> str:
        return self.dockerd.docker(*args, check=check, timeout=timeout).stdout.strip()

    def refused(self, *args) -> str:
        """What the docker CLI says when a command fails (it must fail)."""
        proc = self.dockerd.docker(*args, check=False)
        if proc.returncode == 0:
            raise AssertionError(f"docker {' '.join(map(str, args))} succeeded: {proc.stdout}")
        return proc.stderr.strip()

    def run(self, name: str, network: str, *options) -> str:
        """Starts an idle container; returns its address in ``network``."""
        self.docker("run", "-d", "--name", name, "--network", network, *options, IMAGE, *IDLE)
        return self.address(name, network)

    def address(self, name: str, network: str) -> str:
        return self.docker("inspect", "-f",
                           f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
                           name)

    def exec(self, name: str, *command, check: bool = True, timeout: float = 30) -> str:
        return self.docker("exec", name, *command, check=check, timeout=timeout)

    def ping(self, name: str, ip: str) -> bool:
        proc = self.dockerd.docker("exec", name, "ping", "-c", "3", "-W", "2", ip, check=False)
        return proc.returncode == 0

    def in_netns(self, name: str, *argv) -> subprocess.Popen:
        """A program of this machine in the container's network namespace only."""
        return subprocess.Popen(["nsenter", "-t", str(self.dockerd.container_pid(name)), "-n",
                                 *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)


def tcp_message(sender: DockerHost, src: str, receiver: DockerHost, dst: str, dst_ip: str,
                message: str, port: int = 7000, timeout: float = 10) -> str:
    """Sends ``message`` over TCP with busybox nc; returns what the receiver got."""
    out = f"/tmp/tcp-{port}"
    receiver.exec(dst, "rm", "-f", out)
    receiver.docker("exec", "-d", dst, "sh", "-c", f"nc -l -p {port} > {out}")
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


def udp_message(sender: DockerHost, src: str, receiver: DockerHost, dst: str, dst_ip: str,
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
