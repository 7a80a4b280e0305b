"""A real Podman (Debian's podman 4.3 with its CNI backend) per lab host: the CNI client of
the ovsfabric plugin, as on a Podman machine.

`ip netns exec HOST podman` does not work (no cgroup mount in its fresh /sys, and the mount
namespace dies with each command, losing a detached container's netns mount). Each host gets
one persistent mount namespace instead, kept by a bind mount of it on a file (on a private
bind mount under <lab workdir>/<host>-podman) and made by
`unshare --mount=FILE --propagation slave nsenter --net=/run/netns/HOST`, where
- /sys is the host namespace's, with the cgroup hierarchies mounted as for dockerd;
- /run/netns (where Podman binds its containers' namespaces) and /var/lib/cni (libcni's
  cache of results) are directories of the lab, so nothing of it is left in the machine's.
Every podman command is `nsenter --mount=FILE --net=/run/netns/HOST podman ...` with a
containers.conf of its own (CONTAINERS_CONF), vfs storage, root, runroot and temporary
directory under the same directory, file locks (no /dev/shm segment), and its containers in
the cgroup /<host netns>-podman (which the lab's cleanup removes). Containers run from a
busybox root filesystem (`--rootfs`; no registry here).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from security import tokens

from .cgroups import CGROUP_MOUNTS, remove_cgroups
from .proc import run, stop_pid
from .rootfs import busybox_rootfs

log = logging.getLogger("lab")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
PODMAN = "/usr/bin/podman"
CNI_PLUGINS = "/usr/lib/cni"  # containernetworking-plugins (bandwidth, portmap, ...)
RUNROOT_MAX = 50  # "the specified runroot is longer than 50 characters"
SUFFIX = "-podman"  # <workdir>/<host>-podman: lab.cleanup finds leftovers by it
# PID 1 is sh, which ignores SIGTERM: the trap keeps `podman stop` and `rm -f` fast.
IDLE = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']

CONTAINERS_CONF = """\
[containers]
# No CAP_SYS_RESOURCE here: Podman's default of 1048576 fails ("error setting rlimit type 7").
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[network]
network_backend = "cni"
cni_plugin_dirs = [{bin_dir}, {cni_plugins}]
network_config_dir = {conf_dir}

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
tmp_dir = {tmp_dir}
lock_type = "file"
"""


class PodmanError(RuntimeError):
    pass


class LabPodman:
    """Podman of one lab host. ``bin_dir`` and ``conf_dir`` are its CNI plugin and network
    configuration directories (what `ovsfabric cni install` is given)."""

    def __init__(self, host, workdir: str):
        self.host = host
        self.dir = os.path.join(os.path.abspath(workdir), f"{host.name}{SUFFIX}")
        self.ns_dir = os.path.join(self.dir, "ns")  # the private bind mount
        self.ns_file = os.path.join(self.ns_dir, "mnt")  # the mount namespace, bound here
        self.bin_dir = os.path.join(self.dir, "cni-bin")
        self.conf_dir = os.path.join(self.dir, "cni-conf")
        self.rootfs = os.path.join(self.dir, "rootfs")
        self.config = os.path.join(self.dir, "containers.conf")
        self.cgroup_parent = "/" + host.netns + SUFFIX
        self._dirs = {name: os.path.join(self.dir, name)
                      for name in ("root", "runroot", "tmp", "netns", "cni-cache")}
        if len(self._dirs["runroot"]) > RUNROOT_MAX:
            raise PodmanError(f"{self._dirs['runroot']}: Podman refuses a runroot longer than "
                              f"{RUNROOT_MAX} characters (give a shorter workdir)")

    def __repr__(self) -> str:
        return f"LabPodman({self.host.name!r}, dir={self.dir!r})"

    def start(self) -> None:
        if _mounted(self.ns_file):
            raise PodmanError(f"the Podman of {self.host.name} runs already ({self.ns_file})")
        for d in (self.ns_dir, self.bin_dir, self.conf_dir, *self._dirs.values()):
            os.makedirs(d, exist_ok=True)
        with open(self.config, "w") as f:
            # TOML's basic strings are JSON's
            f.write(CONTAINERS_CONF.format(**{k: json.dumps(v) for k, v in (
                ("bin_dir", self.bin_dir), ("cni_plugins", CNI_PLUGINS),
                ("conf_dir", self.conf_dir), ("tmp_dir", self._dirs["tmp"]))}))
        busybox_rootfs(self.rootfs)
        # Mount points in the machine's tree (left empty there).
        os.makedirs("/var/lib/cni", exist_ok=True)
        script = ("set -e\numount -l /sys\nmount -t sysfs sysfs /sys\n" + CGROUP_MOUNTS +
                  'mount --bind "$1" /run/netns\nmount --bind "$2" /var/lib/cni\n')
        try:
            # unshare binds the namespace on a file only where mounts do not propagate.
            run(["mount", "--bind", self.ns_dir, self.ns_dir])
            run(["mount", "--make-private", self.ns_dir])
            open(self.ns_file, "w").close()
            run(["unshare", f"--mount={self.ns_file}", "--propagation", "slave",
                 "nsenter", f"--net=/run/netns/{self.host.netns}", "sh", "-c", script, "sh",
                 self._dirs["netns"], self._dirs["cni-cache"]])
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Removes its containers (their CNI DELs included), then whatever is left of it: the
        processes in its mount namespace and its cgroups, by PID; then its mounts."""
        if _mounted(self.ns_file):
            proc = self.podman("rm", "--all", "--force", "--time", "2", check=False)
            if proc.returncode != 0:
                log.warning("podman rm on %s: %s", self.host.name, proc.stderr.strip())
        stop_namespace(self.dir)
        remove_cgroups(self.cgroup_parent.lstrip("/"))

    def install_plugin(self, controller_url: str, network: str, admin_token: str) -> list[str]:
        """`ovsfabric cni install` into this Podman's CNI directories, with the host's own
        token in a file, as on a Podman machine; the command's arguments."""
        token_file = os.path.join(self.dir, "token")
        with open(token_file, "w") as f:
            f.write(tokens.host_token(admin_token, self.host.name))
        args = ["cni", "install", "--bin-dir", self.bin_dir, "--conf-dir", self.conf_dir,
                "--controller", controller_url, "--host", self.host.name,
                "--network", network, "--token-file", token_file]
        subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, check=True,
                       capture_output=True, timeout=60)
        return args

    # --- the podman CLI -------------------------------------------------------------------

    def podman(self, *args, check: bool = True, timeout: float = 90,
               input: str | None = None) -> subprocess.CompletedProcess:
        """`podman ARGS...` in the host's network and mount namespaces."""
        cmd = ["nsenter", f"--mount={self.ns_file}", f"--net=/run/netns/{self.host.netns}",
               PODMAN, "--storage-driver", "vfs", "--root", self._dirs["root"],
               "--runroot", self._dirs["runroot"], *map(str, args)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINERS_")}
        env["CONTAINERS_CONF"] = self.config
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                              input=input, check=False)
        if check and proc.returncode != 0:
            raise PodmanError(f"podman {' '.join(map(str, args))} on {self.host.name} exited "
                              f"with {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def run(self, name: str, network: str, *options, command=IDLE) -> str:
        """`podman run -d` of the busybox root filesystem; returns the container's ID."""
        return self.podman("run", "-d", "--name", name, "--network", network,
                           "--cgroup-parent", self.cgroup_parent, *options,
                           "--rootfs", self.rootfs, *command).stdout.strip()

    def inspect(self, name: str, template: str) -> str:
        return self.podman("inspect", "--format", template, name).stdout.strip()

    def address(self, name: str, network: str) -> str:
        return self.inspect(name, f'{{{{(index .NetworkSettings.Networks "{network}")'
                                  f'.IPAddress}}}}')

    def exec(self, name: str, *command, check: bool = True) -> str:
        """A command of the container's (its busybox) inside it; its output."""
        return self.podman("exec", name, *command, check=check).stdout.strip()

    def exec_detached(self, name: str, *command) -> None:
        self.podman("exec", "-d", name, *command)

    def in_netns(self, name: str, *argv) -> subprocess.Popen:
        """A program of the machine's in the container's network namespace, running."""
        pid = self.inspect(name, "{{.State.Pid}}")
        return subprocess.Popen(["nsenter", "-t", pid, "-n", *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def in_container_netns(self, name: str, *args, check: bool = True,
                           timeout: float = 60) -> subprocess.CompletedProcess:
        """A command of the machine (not the container's busybox) in the container's network
        namespace only (e.g. python3, or ethtool)."""
        pid = int(self.inspect(name, "{{.State.Pid}}"))
        if pid == 0:
            raise PodmanError(f"container {name} is not running")
        return run(["nsenter", "-t", pid, "-n", *args], check=check, timeout=timeout)


# --- what is left of it, also after a killed run --------------------------------------------

def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def stop_namespace(directory: str) -> None:
    """Stops, by PID, every process in the mount namespace bound in ``directory``/ns/mnt
    (conmon, a hung podman), then unmounts it and the private mount it is on. The namespace,
    with the container namespaces bound in it, goes with its last process."""
    ns_dir = os.path.join(directory, "ns")
    ns_file = os.path.join(ns_dir, "mnt")
    if _mounted(ns_file):
        ns = os.stat(ns_file)
        for pid in _pids_in(ns):
            log.info("stopping pid %d in the mount namespace of %s", pid, directory)
            stop_pid(pid)
        run(["umount", ns_file])
    if _mounted(ns_dir):
        run(["umount", ns_dir])


def _pids_in(ns: os.stat_result) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                st = os.stat(f"/proc/{entry}/ns/mnt")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (ns.st_dev, ns.st_ino):
                found.append(int(entry))
    return found


def stop_leftovers(workdir: str) -> None:
    """Every Podman mount namespace in the lab's workdir (lab.cleanup; the cgroups go with
    the lab's)."""
    if os.path.isdir(workdir):
        for entry in sorted(os.scandir(workdir), key=lambda e: e.name):
            if entry.is_dir() and entry.name.endswith(SUFFIX):
                stop_namespace(entry.path)
