"""A lab host as a Docker host: the ovsfabric plugin and a real dockerd in its namespace, and a
busybox image."""
from __future__ import annotations

import os
import subprocess

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

    def exec_detached(self, name: str, *command) -> None:
        self.docker("exec", "-d", name, *command)

    def in_netns(self, name: str, *argv) -> subprocess.Popen:
        """A program of this machine in the container's network namespace only."""
        return subprocess.Popen(["nsenter", "-t", str(self.dockerd.container_pid(name)), "-n",
                                 *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
