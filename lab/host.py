"""A lab host: one network namespace with its own Open vSwitch."""

from __future__ import annotations

import os
import subprocess

from .ovs import OvsDaemons
from .proc import run


class LabHost:
    # No OVS kernel module on the lab machine: the userspace datapath. A per-host setting,
    # read it from here rather than hard-coding it.
    datapath_type = "netdev"

    def __init__(self, name: str, netns: str, rundir: str, tunnel_ip: str, mgmt_ip: str,
                 prefix_len: int, mgmt_prefix_len: int):
        self.name = name
        self.netns = netns
        self.rundir = rundir
        self.tunnel_ip = tunnel_ip
        self.mgmt_ip = mgmt_ip
        self.prefix_len = prefix_len
        self.mgmt_prefix_len = mgmt_prefix_len
        self.daemons = OvsDaemons(netns, rundir)
        self.ovsdb = f"unix:{self.daemons.db_sock}"

    def enable_tls(self, cert: str, key: str, ca: str, port: int = 6640) -> str:
        """Gives the host a TLS identity (ovs-vswitchd uses it towards an ssl: controller)
        and opens its OVSDB over TLS on the management address; returns that target."""
        self.vsctl("set-ssl", key, cert, ca)
        self.daemons.appctl_ovsdb("ovsdb-server/add-remote", f"pssl:{port}:{self.mgmt_ip}")
        return f"ssl:{self.mgmt_ip}:{port}"

    def __repr__(self) -> str:
        return f"LabHost({self.name!r}, netns={self.netns!r}, tunnel_ip={self.tunnel_ip!r})"

    def bridge_mgmt(self, bridge: str = "br-int") -> str:
        return f"unix:{os.path.join(self.rundir, bridge)}.mgmt"

    # --- commands -------------------------------------------------------------------------
    # The OVS tools run in the root namespace: they only talk to unix sockets under rundir.

    def vsctl(self, *args, timeout: int = 30) -> str:
        return run(["ovs-vsctl", f"--db={self.ovsdb}", f"--timeout={timeout}", *args]).stdout

    def ofctl(self, *args, bridge: str = "br-int") -> str:
        cmd, *rest = args
        return run(["ovs-ofctl", "-O", "OpenFlow13", "--timeout=30", cmd,
                    self.bridge_mgmt(bridge), *rest]).stdout

    def appctl(self, *args) -> str:
        return run(["ovs-appctl", "-t", os.path.join(self.rundir, "vswitchd.ctl"),
                    "--timeout=30", *args]).stdout

    def exec(self, *args, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command inside the host's namespace."""
        return run(args, netns=self.netns, check=check)

    # --- daemons --------------------------------------------------------------------------

    def start_ovsdb(self) -> None:
        self.daemons.start_ovsdb()

    def stop_ovsdb(self) -> None:
        self.daemons.stop_ovsdb()

    def start_vswitchd(self) -> None:
        self.daemons.start_vswitchd()

    def stop_vswitchd(self) -> None:
        self.daemons.stop_vswitchd()

    def pids(self) -> dict[str, int | None]:
        """{'ovsdb': pid, 'vswitchd': pid}, None for a stopped daemon."""
        return {n: self.daemons.pid(n) for n in ("ovsdb", "vswitchd")}
