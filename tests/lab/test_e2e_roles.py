"""Roles and fencing against a real Open vSwitch: what a deposed leader still sends is refused.

OpenFlow: a bridge of a lab host is given two controller targets, two listeners of this test's
own (raw OpenFlow 1.3 over a socket, no os-ken): replica A takes MASTER with generation 5,
replica B takes it with 6, and the flow mod A still sends is refused by OVS (OFPET_BAD_REQUEST /
OFPBRC_IS_SLAVE), A asking MASTER again with its old generation is refused (OFPRRFC_STALE), and
B's flow mod is accepted; A, now SLAVE, still reads flows. Timed on the wire: ROLE_REQUEST to
ROLE_REPLY. Then two controller processes (each its own SQLite state, terms from a test-only
file leadership, tests/lab/replica.py): a takeover, timed from the new term to the last
switch's MASTER; the deposed leader, told by OVS (ONF role status), sends nothing more, and its
OVSDB write is fenced.

OVSDB: the fence of ovsdb.fence on the host's real database. A transaction built on a read of
generation 5 is refused by ovsdb-server once generation 6 is there (the "in flight" case), and
two HostSessions of two replicas: the deposed one's next change is not written, the new
leader's is.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import time
from types import SimpleNamespace

import pytest

from openflow import wire
from ovsdb.config import HostConfig
from ovsdb.fence import GENERATION_KEY, Writer
from tests.helpers import eventually
from tests.slot import OPENFLOW_PORT, needs_lab

pytestmark = [pytest.mark.lab, needs_lab]

BRIDGE = "brroles"  # a bridge of this test's own on h1: no controller process needed
# Within this slot's block of ports (the lab's controller uses +0, TLS +1, fake switches +5).
PORT_A, PORT_B = OPENFLOW_PORT + 6, OPENFLOW_PORT + 7

HEADER = struct.Struct("!BBHI")
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY, EXPERIMENTER = 0, 1, 2, 3, 4
ONF, ONFT_ROLE_STATUS = 0x4F4E4600, 1911  # ONF's role status extension for OpenFlow 1.3
PACKET_OUT, FLOW_MOD, MULTIPART_REQUEST, MULTIPART_REPLY = 13, 14, 18, 19
BARRIER_REQUEST, BARRIER_REPLY, ROLE_REQUEST, ROLE_REPLY = 20, 21, 24, 25
ROLE_MASTER, ROLE_SLAVE = 2, 3
OFPET_BAD_REQUEST, OFPBRC_IS_SLAVE = 1, 10
OFPET_ROLE_REQUEST_FAILED, OFPRRFC_STALE = 11, 0


def report(name: str, **figures) -> None:
    print(f"\n[roles] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


def flow_mod(xid: int, cookie: int, priority: int) -> bytes:
    """OFPT_FLOW_MOD add in table 0: an empty match, no instructions (drop)."""
    body = struct.pack("!QQBBHHHIIIH2x", cookie, 0, 0, 0, 0, 0, priority, 0xFFFFFFFF,
                       0xFFFFFFFF, 0xFFFFFFFF, 0)
    match = struct.pack("!HH4x", 1, 4)  # OFPMT_OXM, no fields
    return message(FLOW_MOD, xid, body + match)


def message(msg_type: int, xid: int, body: bytes = b"") -> bytes:
    return HEADER.pack(4, msg_type, HEADER.size + len(body), xid) + body


class RawController:
    """One OpenFlow connection OVS opened to a listener of the test: HELLO, then what the
    test sends; echo requests answered, every other message kept by xid."""

    def __init__(self, listener: socket.socket):
        self.sock, _ = listener.accept()
        self.sock.settimeout(10)
        self._buf = bytearray()
        self.unsolicited: list[tuple[int, bytes]] = []  # what came with no request of ours
        self.send(message(HELLO, 1))
        while self.read()[0] != HELLO:
            pass

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> tuple[int, int, bytes]:
        while True:
            while len(self._buf) < HEADER.size or \
                    len(self._buf) < HEADER.unpack_from(self._buf)[2]:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("the switch closed the connection")
                self._buf += chunk
            _, msg_type, length, xid = HEADER.unpack_from(self._buf)
            data = bytes(self._buf[HEADER.size:length])
            del self._buf[:length]
            if msg_type == ECHO_REQUEST:
                self.send(message(ECHO_REPLY, xid, data))
                continue
            return msg_type, xid, data

    def until(self, xid: int) -> tuple[int, bytes]:
        """The first answer to ``xid``; what else arrives on the way is kept."""
        while True:
            msg_type, got, data = self.read()
            if got == xid:
                return msg_type, data
            self.unsolicited.append((msg_type, data))

    def role(self, role: int, generation: int, xid: int) -> tuple[str, tuple]:
        """("reply", (role, generation)) or ("error", (type, code)), and how long it took."""
        started = time.monotonic()
        self.send(message(ROLE_REQUEST, xid, struct.pack("!I4xQ", role, generation)))
        msg_type, data = self.until(xid)
        self.last_seconds = time.monotonic() - started
        if msg_type == ROLE_REPLY:
            got_role, got_generation = struct.unpack("!I4xQ", data[:16])
            return "reply", (got_role, got_generation)
        assert msg_type == ERROR, msg_type
        return "error", struct.unpack("!HH", data[:4])

    def errors_of(self, data: bytes, xid: int) -> list[tuple[int, int]]:
        """Sends ``data`` (messages with ``xid``) then a barrier; the errors for ``xid``."""
        self.send(data + message(BARRIER_REQUEST, xid + 1))
        errors = []
        while True:
            msg_type, got, body = self.read()
            if got == xid + 1 and msg_type == BARRIER_REPLY:
                return errors
            if got == xid and msg_type == ERROR:
                errors.append(struct.unpack("!HH", body[:4]))
            else:
                self.unsolicited.append((msg_type, body))

    def flow_stats_ok(self, xid: int) -> bool:
        body = struct.pack("!HH4xB3xII4xQQHH4x", 1, 0, 0xFF, 0xFFFFFFFF, 0xFFFFFFFF, 0, 0, 1, 4)
        self.send(message(MULTIPART_REQUEST, xid, body))
        while True:
            msg_type, got, data = self.read()
            if got == xid:
                return msg_type == MULTIPART_REPLY

    def close(self) -> None:
        self.sock.close()


def listen(ip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ip, port))
    sock.listen(1)
    sock.settimeout(20)
    return sock


@pytest.fixture
def two_replicas(lab):
    """BRIDGE on h1 with two controller targets, and the connection OVS opened to each."""
    host = lab.host("h1")
    listeners = [listen(lab.controller_ip, port) for port in (PORT_A, PORT_B)]
    host.vsctl("--may-exist", "add-br", BRIDGE, "--", "set", "Bridge", BRIDGE,
               "datapath_type=netdev", "fail_mode=secure", "protocols=OpenFlow13",
               "other_config:disable-in-band=true", "other_config:datapath-id=00000000000000e5")
    host.vsctl("set-controller", BRIDGE, *(f"tcp:{lab.controller_ip}:{p}"
                                          for p in (PORT_A, PORT_B)))
    connections = []
    try:
        connections = [RawController(sock) for sock in listeners]
        yield host, connections
    finally:
        for conn in connections:
            conn.close()
        host.vsctl("--if-exists", "del-br", BRIDGE)
        for sock in listeners:
            sock.close()


def cookies(host) -> set[int]:
    out = host.ofctl("dump-flows", bridge=BRIDGE)
    return {int(part.split("=")[1].rstrip(","), 16) for line in out.splitlines()
            for part in line.split() if part.startswith("cookie=")}


def test_a_flow_mod_of_a_deposed_leader_is_refused_by_ovs(two_replicas):
    host, (a, b) = two_replicas
    assert a.errors_of(b"", 90) == [] and b.errors_of(b"", 190) == []  # both connections up
    assert a.role(ROLE_MASTER, 5, 100) == ("reply", (ROLE_MASTER, 5))
    first_master = a.last_seconds
    assert b.role(ROLE_SLAVE, 5, 200) == ("reply", (ROLE_SLAVE, 5))
    assert a.errors_of(flow_mod(101, 0xA1, 10), 101) == []
    assert b.errors_of(flow_mod(201, 0xB0, 11), 201) == [(OFPET_BAD_REQUEST, OFPBRC_IS_SLAVE)], \
        "a follower's flow mod"

    # B is elected with generation 6 and takes MASTER; A has not noticed yet.
    assert b.role(ROLE_MASTER, 6, 202) == ("reply", (ROLE_MASTER, 6))
    takeover = b.last_seconds
    assert a.errors_of(flow_mod(102, 0xA2, 12), 102) == [(OFPET_BAD_REQUEST, OFPBRC_IS_SLAVE)]
    # A asks for its old term's MASTER again (a reconnection, a retry): stale.
    assert a.role(ROLE_MASTER, 5, 104) == ("error", (OFPET_ROLE_REQUEST_FAILED, OFPRRFC_STALE))
    assert a.role(ROLE_SLAVE, 5, 105) == ("error", (OFPET_ROLE_REQUEST_FAILED, OFPRRFC_STALE)), \
        "a SLAVE request of an older generation is stale too: a follower asks the current one"
    # Nor a bundle (how the controller sends a reconnection's table) nor a packet-out.
    bundle_open = wire.Bundle(77).open(106)
    assert a.errors_of(bundle_open, 106) == [(OFPET_BAD_REQUEST, OFPBRC_IS_SLAVE)]
    packet_out = message(PACKET_OUT, 108, struct.pack("!IIH6x", 0xFFFFFFFF, 0xFFFFFFFD, 0)
                         + b"\xff" * 12 + b"\x08\x06" + bytes(46))
    assert a.errors_of(packet_out, 108) == [(OFPET_BAD_REQUEST, OFPBRC_IS_SLAVE)]
    assert a.flow_stats_ok(110), "a SLAVE still reads flows (inspection, traces)"

    assert b.errors_of(flow_mod(203, 0xB1, 13), 203) == []
    assert cookies(host) == {0xA1, 0xB1}, "only the masters' flow mods are in"
    # OVS told A, unasked, that it is SLAVE now: ONF's role status (OpenFlow 1.3 extension).
    statuses = [struct.unpack("!IIIB3xQ", data[:24]) for t, data in a.unsolicited
                if t == EXPERIMENTER and data[:8] == struct.pack("!II", ONF, ONFT_ROLE_STATUS)]
    assert [(role, generation) for _, _, role, _, generation in statuses] == [(ROLE_SLAVE, 6)]
    report("role takeover on the wire", first_master_ms=round(first_master * 1000, 3),
           takeover_ms=round(takeover * 1000, 3), role_status_to_the_deposed=statuses)


# ---- the OVSDB fence ---------------------------------------------------------------------------

def generation(host) -> str:
    """The fence the host's database holds ("" for none)."""
    return host.vsctl("--if-exists", "get", "Open_vSwitch", ".",
                      f"external_ids:{GENERATION_KEY}").strip().strip('"')


def datapath_id(host, bridge: str) -> str:
    return host.vsctl("--if-exists", "get", "Bridge", bridge,
                      "other_config:datapath-id").strip().strip('"')


@pytest.fixture
def fence_host(lab):
    host = lab.host("h1")
    host.vsctl("--if-exists", "remove", "Open_vSwitch", ".", "external_ids", GENERATION_KEY)
    yield host
    host.vsctl("--if-exists", "del-br", "brfence")
    host.vsctl("--if-exists", "remove", "Open_vSwitch", ".", "external_ids", GENERATION_KEY)


def test_a_transaction_read_under_an_older_generation_is_refused_by_ovsdb(fence_host):
    """The "in flight" case, by hand: the read of generation 5, the successor's claim of 6
    reaching the server before the transaction does."""
    from ovs.db import idl
    from ovsdbapp.backend.ovs_idl import idlutils

    host = fence_host
    host.vsctl("set", "Open_vSwitch", ".", f"external_ids:{GENERATION_KEY}=5")
    helper = idlutils.get_schema_helper(host.ovsdb, "Open_vSwitch")
    helper.register_columns("Open_vSwitch", ["external_ids", "other_config"])
    db = idl.Idl(host.ovsdb, helper)
    try:
        def synced():
            db.run()
            rows = list(db.tables["Open_vSwitch"].rows.values())
            return rows and rows[0].external_ids.get(GENERATION_KEY) == "5"
        assert eventually(synced, 10)
        row = next(iter(db.tables["Open_vSwitch"].rows.values()))
        host.vsctl("set", "Open_vSwitch", ".", f"external_ids:{GENERATION_KEY}=6")
        txn = idl.Transaction(db)  # no db.run() since: the IDL still holds 5
        row.verify("external_ids")
        row.setkey("other_config", "ovsfabric-fence-test", "deposed")
        status = txn.commit_block()
        assert status == idl.Transaction.TRY_AGAIN, txn.get_error()
        assert "ovsfabric-fence-test" not in host.vsctl("get", "Open_vSwitch", ".",
                                                       "other_config")
    finally:
        db.close()
        host.vsctl("--if-exists", "remove", "Open_vSwitch", ".", "other_config",
                   "ovsfabric-fence-test")


def test_a_deposed_replicas_host_session_writes_nothing(fence_host):
    from ovsdb.session import HostSession

    host = fence_host
    writers = {"a": Writer(True, 5), "b": Writer(False, 5)}
    sessions = {name: HostSession("h1", host.ovsdb, lambda _h: None,
                                  lambda name=name: writers[name]) for name in writers}
    config = HostConfig("brfence", "netdev", 0xF0, controllers=())
    try:
        for session in sessions.values():
            session.start()
            session.set_desired(config)
        # A leads: the fence is taken, the bridge made; B follows and writes nothing.
        assert eventually(lambda: generation(host) == "5", 15)
        assert eventually(lambda: datapath_id(host, "brfence") == f"{0xF0:016x}", 15)
        # B is elected (generation 6) and A not told yet: B's claim, then A's next change.
        writers["b"] = Writer(True, 6)
        started = time.monotonic()
        sessions["b"].kick()
        assert eventually(lambda: generation(host) == "6", 15)
        claimed = time.monotonic() - started
        sessions["a"].set_desired(HostConfig("brfence", "netdev", 0xA5, controllers=()))
        assert eventually(lambda: sessions["a"].fenced_by == 6, 15), sessions["a"].last_error
        time.sleep(0.5)
        assert datapath_id(host, "brfence") == f"{0xF0:016x}", \
            "the deposed replica's change was written"
        sessions["b"].set_desired(HostConfig("brfence", "netdev", 0xB6, controllers=()))
        assert eventually(lambda: datapath_id(host, "brfence") == f"{0xB6:016x}", 15)
        report("OVSDB fence", claim_ms=round(claimed * 1000, 1),
               deposed_error=sessions["a"].last_error)
    finally:
        for session in sessions.values():
            session.stop()



# ---- two controller processes, the terms decided by the test -----------------------------------

REPLICA_PORTS = {"a": 2, "b": 3}  # offsets of this slot's API and OpenFlow ports
SWITCHES = 6  # 3 hosts: an integration and a physical bridge each
LOG_TIME = "%Y-%m-%d %H:%M:%S"


def write_term(path, leader: str, generation: int, controllers: list[str]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"leader": leader, "generation": generation, "controllers": controllers}, f)
    os.replace(tmp, path)


def log_times(controller, text: str) -> list[float]:
    """The wall-clock times of the controller's log lines that contain ``text``."""
    times = []
    with open(controller.log_path) as f:
        for line in f:
            if text in line:
                stamp, _, millis = line[:23].partition(",")
                times.append(time.mktime(time.strptime(stamp, LOG_TIME)) + int(millis) / 1000)
    return times


def switches_logging(controller, text: str) -> set[str]:
    """The switches (h1, h1/br-phy, ...) whose log lines contain ``text``: a switch that
    reconnected asks again, and counts once."""
    names = set()
    with open(controller.log_path) as f:
        for line in f:
            if text in line and "controller.switch: switch " in line:
                names.add(line.split("controller.switch: switch ", 1)[1].split(":")[0])
    return names


@pytest.fixture(scope="module")
def replicas(lab, tmp_path_factory):
    """Replicas a and b (tests.lab.replica), each on its own SQLite state with the lab's hosts
    registered, told by their own file that a leads in generation 5."""
    from lab.controller import ControllerProcess
    from tests.slot import API_PORT

    work = tmp_path_factory.mktemp("replicas")
    targets = [f"tcp:{lab.controller_ip}:{OPENFLOW_PORT + i}" for i in REPLICA_PORTS.values()]
    files = {name: str(work / f"{name}.json") for name in REPLICA_PORTS}
    procs = {}
    for name, offset in REPLICA_PORTS.items():
        write_term(files[name], "a", 5, targets)
        procs[name] = ControllerProcess(
            str(work / f"{name}.db"), lab.controller_ip, API_PORT + offset,
            OPENFLOW_PORT + offset, module="tests.lab.replica",
            env={"OVSFABRIC_TEST_LEADERSHIP": files[name], "OVSFABRIC_TEST_REPLICA": name})
    try:
        for name in ("a", "b"):  # the leader first: it tells the switches of both replicas
            procs[name].start()
            procs[name].register(lab.hosts)
        yield SimpleNamespace(procs=procs, files=files, targets=targets, lab=lab)
    finally:
        for proc in procs.values():
            proc.stop()
        for host in lab.hosts:
            host.vsctl("--if-exists", "remove", "Open_vSwitch", ".", "external_ids",
                       GENERATION_KEY)


def test_every_switch_knows_every_replica_and_only_the_leader_is_master(replicas):
    a, b = replicas.procs["a"], replicas.procs["b"]
    for host in replicas.lab.hosts:
        for bridge in ("br-int", "br-phy"):
            assert eventually(lambda: sorted(host.vsctl("get-controller", bridge).split())
                              == replicas.targets, 10), (host.name, bridge)
        assert generation(host) == "5", "the leader took the OVSDB fence"
        assert eventually(lambda: a.client.audit(host.name)["in_sync"], 15), host.name
    assert eventually(lambda: len(switches_logging(a, "role master@5 in")) == SWITCHES, 10)
    assert eventually(lambda: len(switches_logging(b, "role slave@5 in")) == SWITCHES, 10)
    assert log_times(b, "flows in") == [], "a follower sent flow mods"
    assert b.client.host_flows("h1"), "a follower reads the flows"


def test_a_new_leader_takes_over_and_the_deposed_one_is_refused(replicas):
    a, b, lab = replicas.procs["a"], replicas.procs["b"], replicas.lab
    # b is elected in generation 6; a is cut off and still believes it leads in 5.
    started = time.time()
    write_term(replicas.files["b"], "b", 6, replicas.targets)
    assert eventually(lambda: len(switches_logging(b, "role master@6 in")) == SWITCHES, 10)
    failover = max(log_times(b, "role master@6")) - started
    for host in lab.hosts:
        assert eventually(lambda: generation(host) == "6", 10), host.name
        status = eventually(lambda: (s := b.client.host(host.name))["last_reconcile"] and s, 15)
        assert status, host.name
        reconcile = status["last_reconcile"]
        assert (reconcile["added"], reconcile["deleted"]) == (0, 0), (host.name, reconcile)
        assert status["flow_mods_sent"] == 0, "the same model: nothing to change"

    # OVS told a, which still believes it leads, that it is SLAVE now (ONF's role status): a
    # stops at once, asks its old MASTER again and is refused (stale).
    assert eventually(
        lambda: len(switches_logging(a, "made this replica slave@6")) == SWITCHES, 10)
    demoted = max(log_times(a, "made this replica slave@6")) - started
    assert eventually(lambda: len(switches_logging(a, "role master@5 refused")) == SWITCHES, 10)
    # The deposed a changes its model: it sends no flow mod, and its OVSDB write is fenced.
    sent_before = len(log_times(a, "flows in"))
    a.client.create_network("deposed", "10.99.0.0/24")
    a.client.create_endpoint("deposed", "h1", port="depp1")
    assert eventually(lambda: "fenced" in (a.client.host("h1")["error"] or ""), 10)
    assert len(log_times(a, "flows in")) == sent_before, "the deposed leader sent flow mods"
    assert log_times(a, "code=10") == [], "nothing for OVS to refuse: it sent nothing"
    h1 = lab.host("h1")
    assert "depp1" not in h1.vsctl("list-ports", "br-int").split()
    assert b.client.audit("h1")["in_sync"], "h1's table is still the new leader's"
    # a learns its deposal: SLAVE in the new term, accepted.
    write_term(replicas.files["a"], "b", 6, replicas.targets)
    assert eventually(lambda: len(switches_logging(a, "role slave@6 in")) == SWITCHES, 10)
    report("failover between two controller processes", switches=SWITCHES,
           all_master_after_ms=round(failover * 1000, 1),
           old_leader_told_after_ms=round(demoted * 1000, 1))
