"""Runs `ovsfabric plugin` inside a lab host's network namespace, as on a Docker host."""
from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time

from .proc import ChildProcess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PluginProcess(ChildProcess):
    def __init__(self, host, url: str, socket_path: str, log_path: str, token: str | None = None,
                 extra_args: tuple = ()):
        self.host = host
        self.url = url
        self.socket = socket_path
        self.log_path = log_path
        self.token = token
        self.extra_args = list(extra_args)

    def start(self, timeout: float = 20.0) -> None:
        env = dict(os.environ)
        if self.token:
            env["OVSFABRIC_TOKEN"] = self.token
        with open(self.log_path, "a") as log:
            # `ip netns exec` execs: the PID is the plugin's own.
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.host.netns, sys.executable, "-m", "cli.main",
                 "plugin", "--controller", self.url, "--host", self.host.name,
                 "--socket", self.socket, *self.extra_args],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"plugin exited with {self.proc.returncode}: "
                                   f"{self.log()[-2000:]}")
            if self.answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"plugin did not answer within {timeout} s")

    def answers(self) -> bool:
        """Whether Plugin.Activate is answered on the socket."""
        conn = http.client.HTTPConnection("localhost", timeout=2)
        conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.sock.settimeout(2)
            conn.sock.connect(self.socket)
            conn.request("POST", "/Plugin.Activate", body=b"")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()
