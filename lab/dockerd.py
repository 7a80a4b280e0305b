"""A real dockerd (Debian's docker.io 20.10) per lab host, in the host's network namespace.

Each daemon runs in the private mount namespace `ip netns exec` gives it, where it gets:
- the cgroup hierarchies mounted again (that namespace has a fresh /sys: "Devices cgroup isn't
  mounted" otherwise);
- its own /run/docker/plugins (so every host's plugin can be called `ovsfabric`) and its own
  /etc/docker (dockerd 20.10 writes key.json there), both bind mounts of directories under
  the lab's workdir.
Everything else of it (data root with vfs storage, exec root, socket, pidfile, log) lives in
<lab workdir>/<host>-docker, which the lab's cleanup removes.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import time

from .cgroups import CGROUP_MOUNTS, remove_cgroups
from .proc import alive, read_pidfile, run, stop_pidfile
from .rootfs import busybox_rootfs

log = logging.getLogger("lab")

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # not whatever comes first on PATH (/usr/local/bin/docker here)
PIDFILE = "dockerd.pid"  # in each daemon's directory: lab.cleanup finds leftovers by it


class DockerdError(RuntimeError):
    pass


class LabDockerd:
    """dockerd of one lab host. Its network plugin serves plugin_socket() (a file in
    plugin_dir, which dockerd sees in /run/docker/plugins); the docker CLI runs from the root
    namespace against `socket`."""

    def __init__(self, host, workdir: str):
        self.host = host
        self.dir = os.path.join(os.path.abspath(workdir), f"{host.name}-docker")
        self.data_root = os.path.join(self.dir, "data")
        self.exec_root = os.path.join(self.dir, "exec")
        self.socket = os.path.join(self.dir, "docker.sock")
        self.pidfile = os.path.join(self.dir, PIDFILE)
        self.log_path = os.path.join(self.dir, "dockerd.log")
        self.plugin_dir = os.path.join(self.dir, "plugins")  # its /run/docker/plugins
        self.etc_dir = os.path.join(self.dir, "etc")  # its /etc/docker
        self.client_config = os.path.join(self.dir, "client")  # the CLI's DOCKER_CONFIG
        # The host's netns name is "<lab prefix>-<host>": lab.cleanup finds the cgroups by it.
        self.cgroup_parent = "/" + host.netns
        self.proc: subprocess.Popen | None = None

    def plugin_socket(self, driver: str = "ovsfabric") -> str:
        """Where the plugin called `driver` must listen for this daemon to find it."""
        return os.path.join(self.plugin_dir, f"{driver}.sock")

    def __repr__(self) -> str:
        return f"LabDockerd({self.host.name!r}, socket={self.socket!r})"

    @property
    def pid(self) -> int | None:
        """dockerd's PID while it runs: ours if we started it (it may not have written its
        pidfile yet), else the pidfile's (a daemon another process started)."""
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        pid = read_pidfile(self.pidfile)
        return pid if pid is not None and alive(pid) else None

    def start(self, timeout: float = 30.0) -> None:
        if self.pid is not None:
            raise DockerdError(f"dockerd of {self.host.name} already runs (pid {self.pid})")
        for d in (self.data_root, self.exec_root, self.plugin_dir, self.etc_dir,
                  self.client_config):
            os.makedirs(d, exist_ok=True)
        # Mount points in the machine's tree (left empty there); the bind mounts themselves
        # stay in the daemon's mount namespace.
        os.makedirs("/run/docker/plugins", exist_ok=True)
        os.makedirs("/etc/docker", exist_ok=True)
        script = (f"set -e\n{CGROUP_MOUNTS}"
                  f'mount --bind "$1" /run/docker/plugins\n'
                  f'mount --bind "$2" /etc/docker\n'
                  f'shift 2\nexec "$@"\n')
        # sh execs dockerd and `ip netns exec` execs sh: the Popen PID is dockerd's own.
        args = ["ip", "netns", "exec", self.host.netns, "sh", "-c", script, "sh",
                self.plugin_dir, self.etc_dir,
                DOCKERD, "--data-root", self.data_root, "--exec-root", self.exec_root,
                "-H", f"unix://{self.socket}", "--pidfile", self.pidfile,
                "--iptables=false", "--ip6tables=false", "--ip-forward=false",
                "--ip-masq=false", "--bridge=none", "--storage-driver=vfs",
                f"--cgroup-parent={self.cgroup_parent}"]
        with open(self.log_path, "a") as logf:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DockerdError(f"dockerd of {self.host.name} exited with "
                                   f"{self.proc.returncode}: {self.log_tail()}")
            try:
                # After a crash the API answers only once the old containers are stopped
                # (10 s for one that ignores SIGTERM): a probe may hang, keep asking.
                ready = self.docker("version", check=False, timeout=5).returncode == 0
            except subprocess.TimeoutExpired:
                ready = False
            if ready:
                if read_pidfile(self.pidfile) != self.proc.pid:
                    raise DockerdError(f"pidfile {self.pidfile} does not name pid "
                                       f"{self.proc.pid}")
                return
            time.sleep(0.1)
        self.kill()
        raise DockerdError(f"dockerd of {self.host.name} did not answer within {timeout} s: "
                           f"{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: dockerd stops its containers, then its containerd, then itself. Then
        the cgroups go (dockerd makes them again for the next container it starts)."""
        if (pid := self.pid) is not None:
            os.kill(pid, signal.SIGTERM)
            if not self._wait_dead(pid, timeout):
                log.warning("dockerd of %s ignored SIGTERM for %s s: killing it",
                            self.host.name, timeout)
                self.kill()
        self._reap()
        remove_cgroups(self.cgroup_parent.lstrip("/"))

    def kill(self) -> None:
        """A crash: SIGKILL. Its containers and their shims live on, as with a real crash."""
        containerd = read_pidfile(os.path.join(self.exec_root, "containerd", "containerd.pid"))
        if (pid := self.pid) is not None:
            os.kill(pid, signal.SIGKILL)
            self._wait_dead(pid, 10)
        self._reap()
        # containerd dies with dockerd but stays a zombie until PID 1 reaps it (late here);
        # a new dockerd would take the zombie's pidfile for a live containerd and give up
        # after 15 s. Once it is dead (zombie or gone) its pidfile goes.
        if containerd is not None and self._wait_dead(containerd, 10):
            try:
                os.remove(os.path.join(self.exec_root, "containerd", "containerd.pid"))
            except FileNotFoundError:
                pass

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout)

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.wait(timeout=10)  # our child: no zombie of ours
            self.proc = None

    @staticmethod
    def _wait_dead(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while alive(pid):  # a zombie counts as dead
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def log_tail(self, chars: int = 3000) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-chars:]
        except FileNotFoundError:
            return ""

    # --- the docker CLI -------------------------------------------------------------------

    def docker(self, *args, check: bool = True, timeout: float = 60,
               input: str | None = None) -> subprocess.CompletedProcess:
        """`/usr/bin/docker -H unix://SOCKET ARGS...` from the root namespace."""
        cmd = [DOCKER, "-H", f"unix://{self.socket}", *map(str, args)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self._client_env(),
                              timeout=timeout, input=input, check=False)
        if check and proc.returncode != 0:
            raise DockerdError(f"{' '.join(cmd)} exited with {proc.returncode}: "
                               f"{proc.stderr.strip()}")
        return proc

    def _client_env(self) -> dict:
        # The machine's DOCKER_HOST/DOCKER_CONTEXT/config must not redirect the CLI.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = self.client_config
        return env

    def import_busybox_image(self, name: str) -> str:
        """An image made offline (no registry here) from /bin/busybox (busybox-static) and
        its applet links; returns the image ID."""
        with tempfile.TemporaryDirectory(dir=self.dir) as rootfs:
            busybox_rootfs(rootfs)
            tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
            imp = subprocess.run([DOCKER, "-H", f"unix://{self.socket}", "import",
                                  "-c", 'CMD ["/bin/sh"]', "-", name],
                                 stdin=tar.stdout, capture_output=True, text=True,
                                 env=self._client_env(), timeout=120, check=False)
            tar.stdout.close()
            if tar.wait() != 0 or imp.returncode != 0:
                raise DockerdError(f"docker import {name}: {imp.stderr.strip()}")
        return imp.stdout.strip()

    def container_pid(self, name: str) -> int:
        pid = int(self.docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip())
        if pid == 0:
            raise DockerdError(f"container {name} is not running")
        return pid

    def in_container_netns(self, name: str, *args, check: bool = True,
                           timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs a command of the machine (not the container's busybox) in the container's
        network namespace only, e.g. sys.executable for UDP (busybox nc has no -u), or
        ethtool."""
        return run(["nsenter", "-t", self.container_pid(name), "-n", *args], check=check,
                   timeout=timeout)


# --- cleanup, also after a killed run -------------------------------------------------------

def stop_leftovers(workdir: str, timeout: float = 30.0) -> None:
    """Stops every dockerd whose directory is in the lab's workdir, by its pidfile."""
    if not os.path.isdir(workdir):
        return
    for entry in sorted(os.scandir(workdir), key=lambda e: e.name):
        pidfile = os.path.join(entry.path, PIDFILE)
        if entry.is_dir() and (pid := stop_pidfile(pidfile, timeout)) is not None:
            log.info("stopped dockerd of %s (pid %d)", entry.name, pid)
