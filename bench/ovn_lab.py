"""OVN deployed on the namespace lab, as /work/shared/OVN_LAB.md describes (checked there).

    root namespace, <workdir>/central/    NB and SB ovsdb-servers (unix sockets), ovn-northd
    each lab host (its own namespace)     ovn-controller on the host's own ovsdb-server and
                                          ovs-vswitchd; integration bridge `ovnbr-int`
                                          (netdev), geneve over the host's br-phy address

The hosts, underlay and containers are a `lab.Lab` of their own (prefix "ovnb" by default),
not the ovsfabric lab's hosts: sharing one ovs-vswitchd per host would let either system's
ports and flows slow the other's measurements (every OVSDB change reconfigures all bridges
of a vswitchd, one main thread forwards for all of them), and the 1,000 background ports of
one system would sit in the other's figures. Two labs of identical topology built side by side
on the same machine, measured in the same run, keep the comparison a ratio.

Daemons start from argument lists with --detach/--pidfile and stop by the PIDs in their
pidfiles; cleanup() also removes what a killed run with the same prefix left behind.

    python bench/ovn_lab.py up|down [--hosts 3] [--prefix ovnb] [--underlay CIDR] [--mgmt CIDR]
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from lab import Lab  # noqa: E402
from lab import cleanup as lab_cleanup  # noqa: E402
from lab.lab import default_workdir  # noqa: E402
from lab.proc import CommandError, alive, read_pidfile, run, stop_pidfile  # noqa: E402

log = logging.getLogger("ovn_lab")

INT_BRIDGE = "ovnbr-int"
NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"
CENTRAL_DAEMONS = ("northd", "sb", "nb")  # stop order: northd before its databases
CONTROLLER = "ovn-controller"


def cleanup(prefix: str, workdir: str | None = None) -> None:
    """Stops the OVN daemons a lab with this prefix may have left, then removes the lab."""
    workdir = os.path.abspath(workdir or default_workdir(prefix))
    for pidfile in glob.glob(os.path.join(workdir, "h*", f"{CONTROLLER}.pid")):
        if (pid := stop_pidfile(pidfile)) is not None:
            log.info("stopped %s (pid %d)", pidfile, pid)
    for name in CENTRAL_DAEMONS:
        if (pid := stop_pidfile(os.path.join(workdir, "central", f"{name}.pid"))) is not None:
            log.info("stopped central %s (pid %d)", name, pid)
    lab_cleanup(prefix, workdir)


class OvnLab:
    def __init__(self, n_hosts: int = 3, prefix: str = "ovnb", *,
                 underlay_subnet: str = "198.18.92.0/24", mgmt_subnet: str = "198.18.93.0/24"):
        # The management network is unused by OVN (everything is unix sockets) but Lab builds
        # it; its own subnet keeps it apart from other labs.
        self.lab = Lab(n_hosts, prefix, underlay_subnet=underlay_subnet,
                       mgmt_subnet=mgmt_subnet)
        self.prefix = prefix
        self.central = os.path.join(self.lab.workdir, "central")
        self.nb = f"unix:{self.central}/nb.sock"
        self.sb = f"unix:{self.central}/sb.sock"

    @property
    def hosts(self):
        return self.lab.hosts

    # --- build / tear down ----------------------------------------------------------------

    def up(self) -> None:
        cleanup(self.prefix, self.lab.workdir)
        self.lab.up()
        try:
            self._start_central()
            for h in self.hosts:
                self._configure_chassis(h)
                self.start_controller(h)
            self.wait_chassis()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Idempotent; also removes what a killed run with this prefix left."""
        for c in list(self.lab.containers):
            self.lab.remove_container(c)
        cleanup(self.prefix, self.lab.workdir)

    def _central(self, name: str) -> str:
        return os.path.join(self.central, name)

    def _start_central(self) -> None:
        os.makedirs(self.central)
        for db, schema in (("nb", NB_SCHEMA), ("sb", SB_SCHEMA)):
            run(["ovsdb-tool", "create", self._central(f"{db}.db"), schema])
            run(["ovsdb-server", self._central(f"{db}.db"),
                 f"--remote=punix:{self._central(db + '.sock')}", *self._daemon_files(db)])
        self.nbctl("--no-wait", "init")
        self.sbctl("init")  # ovn-sbctl refuses --no-wait
        run(["ovn-northd", f"--ovnnb-db={self.nb}", f"--ovnsb-db={self.sb}",
             *self._daemon_files("northd")])

    def _daemon_files(self, name: str) -> list[str]:
        return [f"--pidfile={self._central(name + '.pid')}",
                f"--log-file={self._central(name + '.log')}",
                f"--unixctl={self._central(name + '.ctl')}", "--detach"]

    def _configure_chassis(self, h) -> None:
        # The last two as ovn-kubernetes sets them: at ~2,500 ports under load here an
        # ovn-controller spent over 10 s computing in the middle of a flow bundle; vswitchd
        # expired the bundle (OFPBFC_TIMEOUT, 10 s by default), the OpenFlow probe dropped the
        # connection, and afterwards four of five chassis never reported the new nb_cfg
        # (`--wait=hv` hung, seen twice). An OVN left at its defaults would be measured unfairly.
        h.vsctl("set", "Open_vSwitch", ".",
                f"external_ids:ovn-remote={self.sb}",
                "external_ids:ovn-encap-type=geneve",
                f"external_ids:ovn-encap-ip={h.tunnel_ip}",
                f"external_ids:ovn-bridge={INT_BRIDGE}",
                f"external_ids:ovn-bridge-datapath-type={h.datapath_type}",
                "external_ids:ovn-openflow-probe-interval=180",
                "other_config:bundle-idle-timeout=180")

    # --- ovn-controller, one per host ----------------------------------------------------

    def controller_pidfile(self, h) -> str:
        return os.path.join(h.rundir, f"{CONTROLLER}.pid")

    def start_controller(self, h) -> None:
        # 23.03 has no --unixctl: OVN_RUNDIR puts its control socket in the host's rundir.
        # OVS_RUNDIR is where it finds the bridge's .mgmt socket.
        run(["ip", "netns", "exec", h.netns, CONTROLLER, f"unix:{h.daemons.db_sock}",
             f"--pidfile={self.controller_pidfile(h)}",
             f"--log-file={os.path.join(h.rundir, CONTROLLER + '.log')}", "--detach"],
            env={"OVS_RUNDIR": h.rundir, "OVN_RUNDIR": h.rundir})

    def stop_controller(self, h) -> None:
        # SIGTERM: ovn-controller exits without removing its chassis or flows (unlike
        # `exit`), i.e. what a crash or an upgrade restart leaves.
        stop_pidfile(self.controller_pidfile(h))

    def controller_pid(self, h) -> int:
        pid = read_pidfile(self.controller_pidfile(h))
        if pid is None or not alive(pid):
            raise RuntimeError(f"{CONTROLLER} of {h.name} is not running")
        return pid

    def central_pid(self, name: str) -> int:
        pid = read_pidfile(self._central(f"{name}.pid"))
        if pid is None or not alive(pid):
            raise RuntimeError(f"central {name} is not running")
        return pid

    def wait_chassis(self, timeout: float = 30.0) -> None:
        """Every host registered as a chassis, with its bridge and a geneve port to each peer."""
        deadline = time.monotonic() + timeout
        while True:
            chassis = set(self.sbctl("--bare", "--columns=name", "list", "Chassis").split())
            ready = chassis >= {h.netns for h in self.hosts} and all(
                self._tunnels(h) >= len(self.hosts) - 1 for h in self.hosts)
            if ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"OVN chassis not ready within {timeout} s: {chassis}")
            time.sleep(0.1)

    def _tunnels(self, h) -> int:
        return len(h.vsctl("--bare", "--columns=name", "find", "Interface",
                           "type=geneve").split())

    # --- commands -------------------------------------------------------------------------

    def nbctl(self, *args, timeout: int = 120) -> str:
        return run(["ovn-nbctl", f"--db={self.nb}", f"--timeout={timeout}", *args],
                   timeout=timeout + 10).stdout

    def sbctl(self, *args, timeout: int = 60) -> str:
        return run(["ovn-sbctl", f"--db={self.sb}", f"--timeout={timeout}", *args],
                   timeout=timeout + 10).stdout

    def wait_hv(self, timeout: int = 300) -> None:
        """Returns once every chassis has applied the current northbound contents."""
        try:
            self.nbctl("--wait=hv", "sync", timeout=timeout)
        except CommandError as exc:
            # Say which chassis lag: seen once here, every ovn-controller stuck after its
            # bundle had timed out in ovs-vswitchd (see bench/README.md).
            wanted = self.nbctl("get", "NB_Global", ".", "nb_cfg").strip()
            seen = self.sbctl("--format=csv", "--no-headings", "--columns=name,nb_cfg",
                              "list", "Chassis_Private").split()
            raise RuntimeError(f"--wait=hv sync: no answer within {timeout} s; NB nb_cfg "
                               f"{wanted}, chassis report {seen}") from exc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="OVN on the namespace lab (root)")
    p.add_argument("cmd", choices=["up", "down"])
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--prefix", default="ovnb")
    p.add_argument("--underlay", default="198.18.92.0/24")
    p.add_argument("--mgmt", default="198.18.93.0/24")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="ovn_lab: %(message)s", stream=sys.stderr)
    if args.cmd == "down":
        cleanup(args.prefix)
        return 0
    ovn = OvnLab(args.hosts, args.prefix, underlay_subnet=args.underlay, mgmt_subnet=args.mgmt)
    ovn.up()
    print(f"NB {ovn.nb}\nSB {ovn.sb}")
    for h in ovn.hosts:
        print(f"{h.name} netns={h.netns} ovsdb={h.ovsdb} encap={h.tunnel_ip} "
              f"bridge={h.bridge_mgmt(INT_BRIDGE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
