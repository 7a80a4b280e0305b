"""The machine's cgroup hierarchies, mounted again in a private mount namespace (a lab daemon's,
whose `/sys` is fresh), and the lab's cgroups removed from them afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The machine's cgroup v1 hierarchies (and cgroup2), mounted again in a private mount
# namespace. Mounting a v1 hierarchy with the same controllers joins the kernel's existing
# hierarchy: what a daemon creates there is the machine's, and outlives the namespace.
CGROUP_MOUNTS = """
mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
  mkdir -p /sys/fs/cgroup/$c
  mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c || rmdir /sys/fs/cgroup/$c
done
mkdir -p /sys/fs/cgroup/systemd
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd || rmdir /sys/fs/cgroup/systemd
mkdir -p /sys/fs/cgroup/unified
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified || rmdir /sys/fs/cgroup/unified
"""


class CgroupError(RuntimeError):
    pass


def remove_cgroups(name: str, timeout: float = 10.0) -> None:
    """Removes the cgroups `/name` and `/name-*` from every hierarchy.

    They are the machine's own cgroups (here the root namespace sees them as
    /sys/fs/cgroup/<controller>/<name>), but the root mount namespace need not have the
    hierarchies mounted at all: mount them again in a throwaway mount namespace of our own
    (as for dockerd) and work there. Processes still in them (containers of a dockerd that
    was SIGKILLed) are killed by PID first: a cgroup with tasks cannot be removed.
    """
    code = ("import sys; from lab.cgroups import _remove_cgroups_here as r; "
            "r(sys.argv[1], float(sys.argv[2]))")
    args = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            CGROUP_MOUNTS + 'exec "$@"', "sh", sys.executable, "-c", code, name, str(timeout)]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=timeout + 30,
                          check=False)
    if proc.returncode != 0:
        raise CgroupError(f"removing cgroups {name}: {proc.stderr.strip()[-2000:]}")


def _remove_cgroups_here(name: str, timeout: float) -> None:
    """Runs inside remove_cgroups' mount namespace."""
    base = "/sys/fs/cgroup"
    tops = [os.path.join(base, h, c) for h in sorted(os.listdir(base))
            for c in sorted(os.listdir(os.path.join(base, h)))
            if (c == name or c.startswith(name + "-")) and os.path.isdir(os.path.join(base, h, c))]
    dirs = [os.path.join(root, d) for top in tops for root, subdirs, _ in os.walk(top)
            for d in subdirs]
    dirs = sorted(dirs + tops, key=lambda p: p.count("/"), reverse=True)  # deepest first
    deadline = time.monotonic() + timeout
    while dirs:
        for d in list(dirs):
            for pid in _procs(d):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.rmdir(d)
                dirs.remove(d)
            except FileNotFoundError:
                dirs.remove(d)
            except OSError:  # EBUSY: tasks still exiting, or a child not removed yet
                pass
        if dirs and time.monotonic() > deadline:
            raise SystemExit(f"cgroups left: {dirs}")
        if dirs:
            time.sleep(0.05)


def _procs(cgroup: str) -> list[int]:
    try:
        with open(os.path.join(cgroup, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []
