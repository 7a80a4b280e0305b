"""One host's Open vSwitch daemons, each with its own files under a run directory."""

from __future__ import annotations

import os

from .proc import alive, read_pidfile, run, stop_pidfile

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class OvsDaemons:
    """ovsdb-server and ovs-vswitchd of one host, run inside its network namespace.

    Both get OVS_RUNDIR=rundir so that every socket they make (notably the bridges'
    `<bridge>.mgmt`) lands in rundir rather than in the machine-wide /var/run/openvswitch.
    """

    def __init__(self, netns: str | None, rundir: str):
        self.netns = netns
        self.rundir = rundir
        self.db = os.path.join(rundir, "conf.db")
        self.db_sock = os.path.join(rundir, "db.sock")

    def path(self, name: str) -> str:
        return os.path.join(self.rundir, name)

    def _start(self, daemon: str, name: str, *args) -> None:
        run([daemon, *args,
             f"--pidfile={self.path(name + '.pid')}", f"--log-file={self.path(name + '.log')}",
             f"--unixctl={self.path(name + '.ctl')}", "--detach"],
            netns=self.netns,  # None: this process's own (a docker-compose host)
            env={"OVS_RUNDIR": self.rundir})  # --detach returns once the daemon is ready

    def start_ovsdb(self) -> None:
        created = not os.path.exists(self.db)
        if created:  # once: a restart keeps the database
            run(["ovsdb-tool", "create", self.db, SCHEMA])
        # As Open vSwitch's own start script does: TLS keys come from the database's SSL
        # table (empty until `ovs-vsctl set-ssl`), so TLS can be turned on at run time.
        self._start("ovsdb-server", "ovsdb", self.db, f"--remote=punix:{self.db_sock}",
                    "--private-key=db:Open_vSwitch,SSL,private_key",
                    "--certificate=db:Open_vSwitch,SSL,certificate",
                    "--ca-cert=db:Open_vSwitch,SSL,ca_cert")
        if created:
            run(["ovs-vsctl", f"--db=unix:{self.db_sock}", "--no-wait", "init"])

    def start_vswitchd(self) -> None:
        self._start("ovs-vswitchd", "vswitchd", f"unix:{self.db_sock}")

    def appctl_ovsdb(self, *args) -> str:
        return run(["ovs-appctl", "-t", self.path("ovsdb.ctl"), *args]).stdout

    def stop_ovsdb(self) -> None:
        stop_pidfile(self.path("ovsdb.pid"))

    def stop_vswitchd(self) -> None:
        stop_pidfile(self.path("vswitchd.pid"))

    def pid(self, name: str) -> int | None:
        """PID of the running 'ovsdb' or 'vswitchd', None when stopped."""
        pid = read_pidfile(self.path(name + ".pid"))
        return pid if pid is not None and alive(pid) else None
