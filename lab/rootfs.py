"""A busybox root filesystem made offline (no registry here): what the lab's containers run."""

from __future__ import annotations

import os
import shutil

from .proc import run

BUSYBOX = "/bin/busybox"  # busybox-static


def busybox_rootfs(rootfs: str) -> str:
    """/bin/busybox and its applet links, the usual directories, root and nobody; into
    ``rootfs`` (made if missing). Returns ``rootfs``."""
    os.makedirs(os.path.join(rootfs, "bin"), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(rootfs, "bin", "busybox"))
    applets = run([BUSYBOX, "--list-full"]).stdout.split()  # "bin/sh", "usr/bin/nc"
    for path in applets:
        link = os.path.join(rootfs, path)
        if path != "bin/busybox" and not os.path.lexists(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink("/bin/busybox", link)
    for d, mode in (("tmp", 0o1777), ("root", 0o700), ("etc", 0o755),
                    ("proc", 0o555), ("sys", 0o555), ("dev", 0o755)):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
        os.chmod(os.path.join(rootfs, d), mode)
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    return rootfs
