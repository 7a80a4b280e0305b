"""The outside: a namespace on the lab's underlay that is no fabric host, with a TCP server
that tells each client the address it sees it from, an echo server for long streams, and a
packet capture. What the fabric's egress and published ports are checked against."""
from __future__ import annotations

import ipaddress
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

from ovsdb.config import NEXT_HOP_BINDING_KEY, NEXT_HOP_KEY, PHYSICAL_BRIDGE

from . import netns
from .proc import run, stop_pid

IFACE = "eth0"
WHO_PORT = 8080  # answers "<client address> <client port>\n" and closes
ECHO_PORT = 8090  # echoes every line, for as long as the client keeps the connection

SERVERS = """
import socket, sys, threading
def serve(port, handle):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, a = s.accept()
        threading.Thread(target=handle, args=(c, a), daemon=True).start()
def who(c, a):
    c.sendall(("%s %d\\n" % a).encode()); c.close()
def echo(c, a):
    f = c.makefile("rb")
    for line in f:
        c.sendall(line)
    c.close()
threading.Thread(target=serve, args=(int(sys.argv[1]), who), daemon=True).start()
serve(int(sys.argv[2]), echo)
"""


def start_servers(namespace: str, who_port: int, echo_port: int) -> subprocess.Popen:
    """The two TCP servers in ``namespace``, listening once this returns; stop them by the
    PID of the Popen (``ip netns exec`` execs the interpreter)."""
    server = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-c", SERVERS,
                               str(who_port), str(echo_port)])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        listening = run(["ss", "-ltn"], netns=namespace).stdout
        if f":{who_port} " in listening and f":{echo_port} " in listening:
            return server
        time.sleep(0.05)
    stop_pid(server.pid)
    server.wait()
    raise RuntimeError(f"the servers in {namespace} did not start")


class Outside:
    def __init__(self, prefix: str, bridge: str, ip: str, prefix_len: int):
        self.netns = f"{prefix}-out"
        self.link = netns.check_ifname(f"{prefix}-o")
        self.bridge = bridge
        self.ip = ip
        self.prefix_len = prefix_len
        self.mac: str | None = None
        self._server: subprocess.Popen | None = None

    def create(self) -> None:
        netns.add(self.netns)  # IPv6 off, lo up
        netns.add_veth(self.link, IFACE, self.netns)
        netns.no_ipv6(self.link)
        netns.ip("link", "set", self.link, "master", self.bridge, "up")
        netns.ip("addr", "add", f"{self.ip}/{self.prefix_len}", "dev", IFACE, netns=self.netns)
        netns.ip("link", "set", IFACE, "up", netns=self.netns)
        run(["ethtool", "-K", IFACE, "tx", "off"], netns=self.netns)
        self.mac = netns.ip("-br", "link", "show", IFACE, netns=self.netns).stdout.split()[2]
        self._server = start_servers(self.netns, WHO_PORT, ECHO_PORT)

    def destroy(self) -> None:
        if self._server is not None:
            stop_pid(self._server.pid)
            self._server.wait()
            self._server = None
        netns.delete(self.netns)
        netns.ip("link", "del", self.link, check=False)

    def exec(self, *args, check: bool = True) -> subprocess.CompletedProcess:
        return run(args, netns=self.netns, check=check)

    def capture(self, bpf: str, verbose: bool = False) -> "Capture":
        return Capture(self.netns, bpf, verbose)

    def http_get(self, address: str, port: int) -> str | None:
        """The last word of what ``GET /`` on ``address:port`` answers; None if nothing
        answers."""
        code = ("import socket,sys;s=socket.create_connection((sys.argv[1],int(sys.argv[2])),"
                "timeout=2);s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n');"
                "print(s.makefile().read().split()[-1])")
        result = self.exec("python3", "-c", code, address, str(port), check=False)
        return result.stdout.strip() if result.returncode == 0 else None


@contextmanager
def next_hop_outside(lab, hosts=None):
    """An outside at the lab underlay's 200th address, named by ``hosts`` (all the lab's by
    default) as their next hop in their physical bridges (each host's own setup, which the
    controller resolves); all of it undone on exit."""
    underlay = ipaddress.ip_network(lab.underlay_subnet)
    outside = Outside(lab.prefix, lab.ul_bridge, str(underlay[200]), underlay.prefixlen)
    hosts = lab.hosts if hosts is None else hosts
    outside.create()
    try:
        for host in hosts:
            host.vsctl("set", "Bridge", PHYSICAL_BRIDGE,
                       f"external_ids:{NEXT_HOP_KEY}={outside.ip}")
        yield outside
    finally:
        for host in hosts:
            host.vsctl("remove", "Bridge", PHYSICAL_BRIDGE, "external_ids", NEXT_HOP_KEY,
                       "--", "remove", "Bridge", PHYSICAL_BRIDGE, "external_ids",
                       NEXT_HOP_BINDING_KEY)
        outside.destroy()


class Capture:
    """tcpdump on the outside's interface; ``stop`` returns the packet lines it printed
    (``verbose``: with the IP header's fields, such as the TTL, on a line of their own)."""

    def __init__(self, namespace: str, bpf: str, verbose: bool = False):
        self._out = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "tcpdump", "-n", "-l", *(["-v"] if verbose else []),
             "-i", IFACE, bpf],
            stdout=self._out, stderr=subprocess.PIPE, text=True)
        # tcpdump says "listening on" once its filter is in place (after a hint on verbosity
        # when not verbose).
        said = []
        while len(said) < 2 and not any("listening" in line for line in said):
            said.append(self._proc.stderr.readline())
        if not any("listening" in line for line in said):
            raise RuntimeError(f"tcpdump did not start: {said}")

    def stop(self) -> list[str]:
        time.sleep(0.2)  # what is in flight reaches the capture
        stop_pid(self._proc.pid)
        self._proc.wait()
        self._proc.stderr.close()
        self._out.seek(0)
        lines = [line for line in self._out.read().splitlines() if line.strip()]
        self._out.close()
        return lines
