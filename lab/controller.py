"""Runs `ovsfabric serve` as a separate process for the demo, tests and benchmarks."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import requests

from api.client import FabricClient

from .proc import ChildProcess


class ControllerProcess(ChildProcess):
    def __init__(self, state: str, listen_ip: str, api_port: int = 8686,
                 openflow_port: int = 6653, log_path: str | None = None,
                 extra_args: tuple = (), env: dict | None = None, token: str | None = None,
                 scheme: str = "http", ca_cert: str | None = None, api_ip: str = "127.0.0.1",
                 store: str | None = None, module: str = "cli.main"):
        self.state = state
        self.store = store  # etcd://...: the state is there, not in the file ``state``
        self.module = module  # what `python -m` runs: the command, or a test's wrapper of it
        # api_ip: e.g. the lab's management address, where plugins in host namespaces reach it
        self.api_listen = f"{api_ip}:{api_port}"
        self.openflow_listen = f"{listen_ip}:{openflow_port}"
        self.url = f"{scheme}://{self.api_listen}"
        self.log_path = log_path or state + ".log"
        self.proc: subprocess.Popen | None = None
        self.extra_args = list(extra_args)
        self.env = {**os.environ, **(env or {})}
        if token:
            self.env["OVSFABRIC_TOKEN"] = token
        self.verify = ca_cert or True
        self.client = FabricClient(self.url, token=token, ca_cert=ca_cert)

    def start(self, timeout: float = 20.0) -> None:
        try:
            requests.get(self.url, timeout=1, verify=self.verify)
            raise RuntimeError(f"something already answers on {self.url}: stop it first")
        except requests.ConnectionError:
            pass
        command = [sys.executable, "-m", self.module, "serve", "--api-listen", self.api_listen,
                   "--openflow-listen", self.openflow_listen, "--state", self.state,
                   *(["--store", self.store] if self.store else []), *self.extra_args]
        log = open(self.log_path, "a")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root,
                                     env=self.env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            try:
                if requests.get(self.url + "/readyz", timeout=1,
                                verify=self.verify).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or listening but busy starting
            time.sleep(0.05)
        raise RuntimeError(f"controller was not ready within {timeout} s")

    def register(self, hosts, timeout: float = 20.0) -> None:
        """Registers lab hosts (userspace datapath) and waits until they are connected."""
        for host in hosts:
            self.client.create_host(host.name, host.ovsdb, host.tunnel_ip,
                                    datapath_type="netdev")
        self.wait_connected([h.name for h in hosts], timeout)

    def wait_connected(self, hosts: list[str], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = {h["name"]: h for h in self.client.hosts()}
            if all(status.get(h, {}).get("connected") for h in hosts):
                return
            time.sleep(0.05)
        raise RuntimeError(f"hosts not connected within {timeout} s: {status}")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
