"""The CNI plugin run as a runtime runs it, on a lab host: the verb and the container in
environment variables, the network configuration on stdin, the result on stdout."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass

from cni.install import conflist, install
from security import tokens

from . import netns
from .host import LabHost
from .proc import run

REFERENCE_PLUGINS = "/usr/lib/cni"  # Debian's containernetworking-plugins


@dataclass
class Outcome:
    status: int | None  # None: killed
    output: dict | None
    stderr: str

    @property
    def error(self) -> dict | None:
        return self.output if self.status != 0 else None


class Run:
    """A plugin process running; ``ip netns exec`` execs the plugin, so its PID is the
    plugin's."""

    def __init__(self, process: subprocess.Popen, stdin: bytes):
        self.process = process
        process.stdin.write(stdin)  # a configuration fits a pipe's buffer
        process.stdin.close()
        process.stdin = None  # for communicate(), which would flush it

    def outcome(self, timeout: float = 60, kill: bool = False) -> Outcome:
        """Its outcome once it exits; with ``kill``, SIGKILLed after ``timeout``."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            if not kill:
                raise
            self.process.kill()
            self.process.communicate()
            return Outcome(None, None, "")
        text = out.decode().strip()
        return Outcome(self.process.returncode, json.loads(text) if text else None,
                       err.decode())


class CniRuntime:
    """A runtime's view of one lab host: its bin and conf dirs and the plugin's config."""

    @classmethod
    def with_host_token(cls, host: LabHost, workdir: str, controller_url: str, network: str,
                        admin_token: str, ca_cert: str | None = None) -> "CniRuntime":
        """As deployed: the plugin reads the host's own token from a file."""
        token_file = os.path.join(workdir, "token")
        with open(token_file, "w") as f:
            f.write(tokens.host_token(admin_token, host.name))
        return cls(host, workdir, controller_url, network, token_file, ca_cert)

    def __init__(self, host: LabHost, workdir: str, controller_url: str, network: str,
                 token_file: str | None = None, ca_cert: str | None = None):
        self.host = host
        self.bin_dir = os.path.join(workdir, "bin")
        self.conf_dir = os.path.join(workdir, "net.d")
        self.conflist = conflist(network, controller_url, host.name, token_file, ca_cert)
        self.plugin, self.conflist_path = install(self.bin_dir, self.conf_dir, self.conflist)

    def config(self, version: str | None = None, **extra) -> dict:
        """The first plugin's configuration as a runtime passes it (name and version from
        the list, ``extra`` such as runtimeConfig or prevResult added)."""
        return {"cniVersion": version or self.conflist["cniVersion"],
                "name": self.conflist["name"], **self.conflist["plugins"][0], **extra}

    def start(self, command: str, config: dict | bytes | None = None,
              container_id: str = "", netns_path: str = "", ifname: str = "eth0",
              args: str = "", plugin: str | None = None, with_path: bool = True) -> Run:
        """The plugin started in the host's namespace (``with_path``: given PATH, as
        runtimes pass their own environment on)."""
        env = {"CNI_COMMAND": command, "CNI_PATH": self.bin_dir}
        if with_path:
            env["PATH"] = os.environ["PATH"]
        for key, value in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns_path),
                           ("CNI_IFNAME", ifname), ("CNI_ARGS", args)):
            if value:
                env[key] = value
        stdin = config if isinstance(config, bytes) else json.dumps(
            config if config is not None else self.config()).encode()
        process = subprocess.Popen(["ip", "netns", "exec", self.host.netns,
                                    plugin or self.plugin], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        return Run(process, stdin)

    def exec(self, command: str, config: dict | bytes | None = None, container_id: str = "",
             netns_path: str = "", ifname: str = "eth0", args: str = "",
             plugin: str | None = None, timeout: float = 60,
             kill_after: float | None = None) -> Outcome:
        """Runs the plugin to its end; with ``kill_after``, SIGKILLs it then (status None)."""
        run = self.start(command, config, container_id, netns_path, ifname, args, plugin)
        if kill_after is not None:
            return run.outcome(kill_after, kill=True)
        return run.outcome(timeout)

    def add(self, container_id: str, netns_path: str, ifname: str = "eth0", **kw) -> Outcome:
        return self.exec("ADD", container_id=container_id, netns_path=netns_path,
                         ifname=ifname, **kw)

    def delete(self, container_id: str, netns_path: str = "", ifname: str = "eth0",
               **kw) -> Outcome:
        return self.exec("DEL", container_id=container_id, netns_path=netns_path,
                         ifname=ifname, **kw)

    def chain(self, command: str, plugins: list[dict], container_id: str, netns_path: str,
              ifname: str = "eth0", runtime_config: dict | None = None,
              prev_result: dict | None = None) -> list[Outcome]:
        """``command`` through a conflist's ``plugins`` as runtimes do it: ADD in order, each
        given the one before's result as prevResult; DEL and CHECK in reverse, each given
        ``prev_result``. Stops at the first failure; each plugin's outcome."""
        outcomes, prev = [], prev_result
        for plugin in plugins if command == "ADD" else plugins[::-1]:
            config = {"cniVersion": self.conflist["cniVersion"], "name": self.conflist["name"],
                      **plugin}
            wanted = {k for k, on in plugin.get("capabilities", {}).items() if on}
            if runtime_config and wanted & runtime_config.keys():
                config["runtimeConfig"] = {k: runtime_config[k] for k in wanted
                                           if k in runtime_config}
            if prev is not None:
                config["prevResult"] = prev
            executable = self.plugin if plugin["type"] == "ovsfabric" else os.path.join(
                REFERENCE_PLUGINS, plugin["type"])
            outcome = self.exec(command, config, container_id, netns_path, ifname,
                                plugin=executable)
            outcomes.append(outcome)
            if outcome.status != 0:
                break
            if command == "ADD":
                prev = outcome.output
        return outcomes

    def host_veths(self) -> list[str]:
        """The plugin's veths on the host (named ofn...)."""
        out = netns.ip("-o", "link", "show", "type", "veth", netns=self.host.netns).stdout
        names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
        return [n for n in names if n.startswith("ofn")]

    def ovs_ports(self) -> list[str]:
        return [p for p in self.host.vsctl("list-ports", "br-int").split() if
                p.startswith("ofn")]


def sandbox(prefix: str, name: str) -> str:
    """A fresh network namespace for a pod, ``<prefix>-pod-<name>``; its path, as runtimes
    pass it."""
    netns.add(f"{prefix}-pod-{name}")
    return f"/run/netns/{prefix}-pod-{name}"


class Sandbox:
    """A pod's namespace, given by its path, as lab.traffic's agents take a container."""

    def __init__(self, path: str):
        self.netns = self.name = path.rsplit("/", 1)[1]

    def exec(self, *args, check: bool = True):
        return run(args, netns=self.netns, check=check)


def remove_sandboxes(prefix: str) -> None:
    """Every pod namespace ``sandbox`` made with ``prefix``."""
    for name in netns.names(f"{prefix}-pod"):
        netns.delete(name)
