"""A container: a namespace holding one endpoint, wired by a veth to its host's namespace."""

from __future__ import annotations

import re
import signal
import subprocess
import tempfile

from . import netns
from .host import LabHost
from .proc import run, stop_pid

IFACE = "eth0"


class Container:
    def __init__(self, host: LabHost, name: str, netns_name: str, mtu: int = 1450):
        self.host = host
        self.mtu = mtu
        self.name = name
        self.netns = netns_name
        # Host-side end of the veth, in the HOST's namespace; the controller attaches it to br-int.
        self.port = netns.check_ifname(f"t-{name}")
        self.mac: str | None = None
        self.ip: str | None = None
        self._pings: dict[int, tuple[subprocess.Popen, object]] = {}

    def __repr__(self) -> str:
        return f"Container({self.host.name}/{self.name}, port={self.port!r})"

    def create(self) -> None:
        netns.add(self.netns)
        netns.add_veth(self.port, IFACE, self.netns, netns=self.host.netns)
        # The MTU is set before the port is attached: changing it later makes ovs-vswitchd
        # reconfigure the port, and the first packets after that were seen to vanish.
        netns.ip("link", "set", self.port, "mtu", self.mtu, "up", netns=self.host.netns)

    def destroy(self) -> None:
        for proc, out in list(self._pings.values()):
            stop_pid(proc.pid)
            proc.wait()
            out.close()
        self._pings.clear()
        netns.delete(self.netns)  # takes eth0 and, with it, the host-side end
        netns.ip("link", "del", self.port, netns=self.host.netns, check=False)

    def exec(self, *args, check: bool = True) -> subprocess.CompletedProcess:
        return run(args, netns=self.netns, check=check)

    def configure(self, mac: str, ip: str, prefix_len: int = 24, mtu: int = 1450,
                  gateway: str | None = None) -> None:
        """Give eth0 what the controller assigned. MTU 1450 = underlay 1500 - VXLAN's 50."""
        if mtu != self.mtu:
            netns.ip("link", "set", self.port, "mtu", mtu, netns=self.host.netns)
            self.mtu = mtu
        netns.ip("link", "set", IFACE, "address", mac, "mtu", mtu, netns=self.netns)
        netns.ip("addr", "flush", "dev", IFACE, netns=self.netns)  # re-configure replaces
        netns.ip("addr", "add", f"{ip}/{prefix_len}", "dev", IFACE, netns=self.netns)
        netns.ip("link", "set", IFACE, "up", netns=self.netns)
        # The userspace datapath forwards veth segments with unfilled checksums: TCP breaks.
        self.exec("ethtool", "-K", IFACE, "tx", "off")
        if gateway:
            netns.ip("route", "replace", "default", "via", gateway, "dev", IFACE, netns=self.netns)
        self.mac, self.ip = mac, ip

    def neigh(self, ip: str, mac: str) -> None:
        """Static neighbour entry, so timings measure the fabric, not the 1 s ARP retry."""
        netns.ip("neigh", "replace", ip, "lladdr", mac, "dev", IFACE, "nud", "permanent",
                 netns=self.netns)

    def ping(self, ip: str, count: int = 1, timeout: float = 2.0,
             interval: float | None = None) -> bool:
        """True if a reply came."""
        args = ["ping", "-n", "-q", "-c", count, "-W", timeout]
        if interval is not None:
            args += ["-i", interval]
        limit = timeout + count * (interval if interval is not None else 1.0) + 5
        return run([*args, ip], netns=self.netns, check=False, timeout=limit).returncode == 0

    def start_ping(self, ip: str, interval: float = 0.01,
                   count: int | None = None) -> subprocess.Popen:
        """Continuous ping, for loss measurements; stop_ping() stops it and counts.

        With ``count`` ping ends by itself after waiting for its last reply: use that for
        exact loss figures (a SIGINT counts the one packet then in flight as lost)."""
        # Output goes to a file, not a pipe: per-packet errors (unreachable...) would fill a
        # pipe nobody reads and block ping, skewing the count. -q keeps it to the summary.
        out = tempfile.TemporaryFile(mode="w+")
        # `ip netns exec` execs the command: proc.pid is ping's own PID.
        limit = ["-c", str(count)] if count else []
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns, "ping", "-n", "-q",
                                 "-i", str(interval), *limit, ip],
                                stdout=out, stderr=subprocess.STDOUT)
        self._pings[proc.pid] = (proc, out)
        return proc

    def stop_ping(self, proc: subprocess.Popen) -> tuple[int, int]:
        """SIGINT (ping then prints its summary); returns (sent, received)."""
        _, out = self._pings.pop(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.seek(0)
        text = out.read()
        out.close()
        m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
        if not m:
            raise RuntimeError(f"no ping summary in: {text!r}")
        return int(m.group(1)), int(m.group(2))
