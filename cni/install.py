"""``ovsfabric cni install``: the plugin into a CNI bin dir, as one self-contained file, and a
network configuration list naming it into a CNI conf dir. Both are replaced atomically: a
runtime may run the plugin or read the directory meanwhile."""
from __future__ import annotations

import io
import json
import os
import py_compile
import sys
import tempfile
import zipfile

from .versions import SUPPORTED

PLUGIN_TYPE = "ovsfabric"
PACKAGE = os.path.dirname(os.path.abspath(__file__))
CONF_VERSION = "1.0.0"  # what Debian's Podman and reference plugins speak
# The interpreter the executable names: the system's, which the plugin needs nothing beyond.
# -I: no environment variables or user site, -S: no site-packages (faster start).
DEFAULT_PYTHON = "/usr/bin/python3"


def interpreter() -> str:
    return DEFAULT_PYTHON if os.access(DEFAULT_PYTHON, os.X_OK) else os.path.realpath(
        sys.executable)


def executable(python: str) -> bytes:
    """A zipapp of this package, run by ``python``.

    Each module is there compiled too: zipimport cannot cache bytecode, so without it every
    run (every pod) compiled the sources again. An interpreter of another version than this
    one finds the bytecode's magic number foreign and compiles the source instead."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf, \
            tempfile.TemporaryDirectory() as scratch:
        zf.writestr("__main__.py", "from cni.plugin import main\nmain()\n")
        for entry in sorted(os.listdir(PACKAGE)):
            if entry.endswith(".py"):
                zf.write(os.path.join(PACKAGE, entry), f"cni/{entry}")
                # Unchecked: the archive is written whole, its sources never change in it.
                compiled = py_compile.compile(
                    os.path.join(PACKAGE, entry), os.path.join(scratch, entry + "c"),
                    f"cni/{entry}", doraise=True,
                    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
                zf.write(compiled, f"cni/{entry}c")
    return f"#!{python} -IS\n".encode() + archive.getvalue()


def conflist(network: str, controller: str, host: str, token_file: str | None = None,
             ca_cert: str | None = None, mtu: int | None = None) -> dict:
    plugin = {"type": PLUGIN_TYPE, "controller": controller, "host": host, "network": network,
              "capabilities": {"portMappings": True}}
    for key, value in (("token_file", token_file), ("ca_cert", ca_cert), ("mtu", mtu)):
        if value is not None:
            plugin[key] = value
    # cniVersions: a 1.1 runtime takes the newest it shares (and then calls STATUS and GC);
    # an older one reads cniVersion.
    return {"cniVersion": CONF_VERSION,
            "cniVersions": [v for v in SUPPORTED if v >= CONF_VERSION],
            "name": network, "plugins": [plugin]}


def conflist_path(conf_dir: str, network: str) -> str:
    return os.path.join(conf_dir, f"10-ovsfabric-{network}.conflist")


def install(bin_dir: str, conf_dir: str, conf: dict, python: str | None = None) -> list[str]:
    """Writes both files; their paths."""
    plugin_path = os.path.join(bin_dir, PLUGIN_TYPE)
    _replace(plugin_path, executable(python or interpreter()), mode=0o755)
    conf_path = conflist_path(conf_dir, conf["name"])
    _replace(conf_path, (json.dumps(conf, indent=2) + "\n").encode(), mode=0o644)
    return [plugin_path, conf_path]


def _replace(path: str, content: bytes, mode: int) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".ovsfabric-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
