"""The controller process against fake switches: plain TCP sockets speaking OpenFlow 1.3.

No lab needed: the controller listens on 127.0.0.1. A switch whose datapath id belongs to no
registered host gets no flows and is logged; a switch that sends something malformed loses
its own connection, and only that: the controller, its REST API and the other switches go on.
"""
from __future__ import annotations

import concurrent.futures
import socket
import struct
import threading
import time

import pytest
import requests

from lab.controller import ControllerProcess
from tests import slot
from tests.helpers import eventually

# Within this test slot's block of ports (the lab's controller uses +0, TLS tests +1).
API_PORT, OPENFLOW_PORT = slot.API_PORT + 5, slot.OPENFLOW_PORT + 5

OFP_VERSION = 4
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY, EXPERIMENTER = 0, 1, 2, 3, 4
FEATURES_REQUEST, FEATURES_REPLY, GET_CONFIG_REQUEST, SET_CONFIG = 5, 6, 7, 9
PACKET_OUT, FLOW_MOD, GROUP_MOD, PORT_MOD, TABLE_MOD = 13, 14, 15, 16, 17
MULTIPART_REQUEST, MULTIPART_REPLY, BARRIER_REQUEST, BARRIER_REPLY = 18, 19, 20, 21
MP_DESC, MP_AGGREGATE, MP_PORT_DESC = 0, 2, 13
ROLE_REQUEST = 24
# What changes a switch's state: none of it may reach a switch of no registered host.
STATE_CHANGING = {FLOW_MOD, GROUP_MOD, PORT_MOD, TABLE_MOD, SET_CONFIG, PACKET_OUT,
                  EXPERIMENTER}  # EXPERIMENTER: the ONF bundles the flows are sent in
HEADER = struct.Struct("!BBHI")


def message(msg_type: int, xid: int, body: bytes = b"", version: int = OFP_VERSION) -> bytes:
    return HEADER.pack(version, msg_type, HEADER.size + len(body), xid) + body


class FakeSwitch:
    """Says HELLO, answers FEATURES_REQUEST with its datapath id, echoes, barriers and
    multipart requests (empty), and records every message the controller sends.

    ``stats``: what it does with statistics requests (all multipart but the port list of
    the handshake): "answer", "refuse" (an OpenFlow error) or "ignore"."""

    def __init__(self, dpid: int, hello: bool = True, stats: str = "answer"):
        self.dpid = dpid
        self.stats = stats
        self.sock = socket.create_connection(("127.0.0.1", OPENFLOW_PORT), timeout=5)
        self.received: list[tuple[int, int, bytes]] = []
        self.closed = threading.Event()
        self.handshake_done = threading.Event()  # the controller asked for the port list
        self._lock = threading.Lock()
        if hello:
            self.send(message(HELLO, 1))
        threading.Thread(target=self._loop, daemon=True).start()

    def send(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)

    def types(self) -> set[int]:
        return {t for t, _, _ in self.received}

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _loop(self) -> None:
        self.sock.settimeout(None)
        try:
            while True:
                _, msg_type, length, xid = HEADER.unpack(self._read(HEADER.size))
                body = self._read(length - HEADER.size)
                self.received.append((msg_type, xid, body))
                self._answer(msg_type, xid, body)
        except (EOFError, OSError):
            pass
        finally:
            self.closed.set()

    def _answer(self, msg_type: int, xid: int, body: bytes) -> None:
        if msg_type == ECHO_REQUEST:
            self.send(message(ECHO_REPLY, xid, body))
        elif msg_type == FEATURES_REQUEST:
            # datapath_id, n_buffers, n_tables, auxiliary_id, pad, capabilities, reserved
            self.send(message(FEATURES_REPLY, xid,
                              struct.pack("!QIBB2xII", self.dpid, 0, 254, 0, 0x4f, 0)))
        elif msg_type == BARRIER_REQUEST:
            self.send(message(BARRIER_REPLY, xid))
        elif msg_type == MULTIPART_REQUEST:
            mp_type = struct.unpack_from("!H", body)[0]
            if mp_type != MP_PORT_DESC and self.stats == "ignore":
                return
            if mp_type != MP_PORT_DESC and self.stats == "refuse":
                # OFPET_BAD_REQUEST, OFPBRC_BAD_VERSION, then the start of the request
                self.send(message(ERROR, xid, struct.pack("!HH", 1, 0) + body[:56]))
                return
            reply = {MP_DESC: b"\0" * 1056, MP_AGGREGATE: b"\0" * 24}.get(mp_type, b"")
            self.send(message(MULTIPART_REPLY, xid, struct.pack("!HH4x", mp_type, 0) + reply))
            if mp_type == MP_PORT_DESC:
                self.handshake_done.set()


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    state = str(tmp_path_factory.mktemp("openflow") / "ovsfabric.db")
    # Switches that ignore requests are the point of some tests: not 10 s of waiting each.
    proc = ControllerProcess(state, "127.0.0.1", api_port=API_PORT, openflow_port=OPENFLOW_PORT,
                             extra_args=("--switch-reply-timeout", "2"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def known(controller):
    """A fake switch with the datapath id of a registered host (its OVSDB is unreachable)."""
    host = controller.client.create_host("fake1", "unix:/nonexistent/fake1.sock", "192.0.2.201")
    switch = FakeSwitch(int(host["dpid"], 16))
    assert switch.handshake_done.wait(5)
    assert eventually(lambda: openflow_connected(controller, "fake1"))
    yield switch
    switch.close()


def openflow_connected(controller, host: str) -> bool:
    return controller.client.host(host)["openflow_connected"]


def log_text(controller) -> str:
    with open(controller.log_path) as f:
        return f.read()


def test_unknown_datapath_gets_no_flows_and_is_logged(controller, known):
    # Positive control: the same fake switch with a registered host's dpid is taken as that
    # host's switch (the `known` fixture), so the handshake below is a real one.
    dpid = 0x00000000DEAD0001
    switch = FakeSwitch(dpid)
    try:
        assert switch.handshake_done.wait(5), "the controller completed the handshake"
        assert eventually(lambda: f"switch {dpid:016x} connected but belongs to no registered "
                          "host" in log_text(controller))
        time.sleep(0.5)  # flows would come within milliseconds of the handshake
        sent = switch.types()
        assert not sent & STATE_CHANGING, f"messages sent to an unknown switch: {sent}"
        assert not switch.closed.is_set()
        assert f"switch {dpid:016x} connected but belongs to no registered host" \
            in log_text(controller)
        switches = requests.get(f"{controller.url}/stats/switches", timeout=5).json()
        assert known.dpid in switches and dpid not in switches, switches
    finally:
        switch.close()


def test_a_single_controller_asks_for_no_role(controller, known):
    """Standalone (controller.leadership): no ROLE_REQUEST, the switch keeps EQUAL, as it did
    before replicas. A replica with a term asks before anything else it sends."""
    time.sleep(0.5)
    assert ROLE_REQUEST not in known.types(), known.types()


def _short_length(data: bytes) -> bytes:
    return data[:2] + struct.pack("!H", 4) + data[4:]


MALFORMED = {
    # 0x99 everywhere: a header announcing 39,321 bytes that will never come.
    "garbage": b"\x99" * 64,
    # A length shorter than the header itself (os-ken took it for 8 and carried on).
    "length below header": _short_length(message(ECHO_REQUEST, 7)),
    "unknown version": message(ECHO_REQUEST, 7, version=0x7F),
    "unknown type": message(200, 7, b"abc"),
    "truncated body": message(FEATURES_REPLY, 7, b"\0" * 3),
    "multipart with a broken port": message(MULTIPART_REPLY, 7,
                                            struct.pack("!HH4x", MP_PORT_DESC, 0) + b"\1" * 10),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_message_closes_only_that_connection(controller, known, case):
    bad = FakeSwitch(0x00000000BAD00001)
    try:
        assert bad.handshake_done.wait(5)
        bad.send(MALFORMED[case])
        assert bad.closed.wait(3), "the controller keeps talking to a switch sending garbage"
    finally:
        bad.close()
    assert_controller_unharmed(controller, known)


def test_garbage_instead_of_hello_closes_the_connection(controller, known):
    bad = FakeSwitch(0x00000000BAD00002, hello=False)
    try:
        bad.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # someone at the wrong port
        assert bad.closed.wait(3)
    finally:
        bad.close()
    assert_controller_unharmed(controller, known)


def assert_controller_unharmed(controller, known) -> None:
    assert requests.get(f"{controller.url}/v1/hosts", timeout=5).status_code == 200
    assert not known.closed.is_set(), "another switch's connection was closed"
    assert openflow_connected(controller, "fake1")
    again = FakeSwitch(0x00000000600D0001)
    try:
        assert again.handshake_done.wait(5), "a new switch can still connect"
    finally:
        again.close()


def test_known_switch_sending_garbage_is_disconnected_and_can_come_back(controller):
    host = controller.client.create_host("fake2", "unix:/nonexistent/fake2.sock",
                                         "192.0.2.202")
    dpid = int(host["dpid"], 16)
    switch = FakeSwitch(dpid)
    assert switch.handshake_done.wait(5)
    assert eventually(lambda: openflow_connected(controller, "fake2"))
    switch.send(MALFORMED["truncated body"])
    assert switch.closed.wait(3)
    # The host's status says so: under native threads os-ken never reported a closed
    # connection to a switch that nothing was being sent to.
    assert eventually(lambda: not openflow_connected(controller, "fake2"), timeout=3)
    back = FakeSwitch(dpid)
    try:
        assert back.handshake_done.wait(5)
        assert eventually(lambda: openflow_connected(controller, "fake2"))
        back.close()  # a clean close is reported too
        assert eventually(lambda: not openflow_connected(controller, "fake2"), timeout=3)
    finally:
        back.close()
        switch.close()
        controller.client.delete_host("fake2")


def test_ryu_flow_filter_nested_10000_deep_is_400(controller, known):
    # Only reachable with a connected switch: the dpid is checked before the body is read.
    r = requests.post(f"{controller.url}/stats/flow/{known.dpid}",
                      data="[" * 10_000 + "]" * 10_000, timeout=10)
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("stats", ["refuse", "ignore"])
def test_inspection_of_a_misbehaving_switch_answers_as_documented(controller, stats):
    # A switch that refuses statistics requests made the inspection routes answer 500; one
    # that ignores them made two routes answer a 503 their document did not declare.
    name = f"fake-{stats}"
    host = controller.client.create_host(name, f"unix:/nonexistent/{name}.sock",
                                         f"192.0.2.{210 + len(stats)}")
    switch = FakeSwitch(int(host["dpid"], 16), stats=stats)
    network = controller.client.create_network(f"net-{stats}", "10.77.0.0/24")
    ep = controller.client.create_endpoint(network["id"], name, name=f"ep-{stats}")
    doc = requests.get(f"{controller.url}/v1/openapi.json", timeout=5).json()
    calls = [("get", "/v1/hosts/{name}/flows", f"/v1/hosts/{name}/flows", None),
             ("get", "/v1/hosts/{name}/ports", f"/v1/hosts/{name}/ports", None),
             ("get", "/v1/hosts/{name}/tables", f"/v1/hosts/{name}/tables", None),
             ("get", "/v1/networks/{ref}/flows", f"/v1/networks/{network['id']}/flows", None),
             ("get", "/v1/endpoints/{endpoint_id}/flows", f"/v1/endpoints/{ep['id']}/flows",
              None),
             ("post", "/v1/trace", "/v1/trace", {"from": ep["id"], "to": ep["id"]})]
    try:
        assert switch.handshake_done.wait(5)
        assert eventually(lambda: openflow_connected(controller, name))
        # In parallel: an ignored request takes the controller's reply timeout.
        with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
            answers = list(pool.map(lambda call: requests.request(
                call[0], controller.url + call[2], json=call[3], timeout=30), calls))
        for (method, path, _, _), answer in zip(calls, answers):
            declared = doc["paths"][path][method]["responses"]
            assert answer.status_code == 503, (path, answer.status_code, answer.text)
            assert str(answer.status_code) in declared, (path, sorted(declared))
            assert set(answer.json()) == {"error"}
        assert requests.get(f"{controller.url}/v1/hosts", timeout=5).status_code == 200
    finally:
        switch.close()
        controller.client.delete_endpoint(ep["id"])
        controller.client.delete_network(network["id"])
        controller.client.delete_host(name)


# ---- the REST server of the same process, under absurd bodies -------------------------------

def test_10_mb_bodies_are_refused_quickly_over_http(controller):
    # In-process tests cannot show what the HTTP server does with a body it is not allowed
    # to read: here the real one, with and without Content-Length.
    url = f"{controller.url}/v1/networks"
    body = b'{"name": "big", "subnet": "10.9.0.0/24"}'.ljust(10 << 20)

    def chunks():
        for i in range(0, len(body), 1 << 20):
            yield body[i:i + (1 << 20)]

    for data in (body, chunks()):
        started = time.monotonic()
        try:
            r = requests.post(url, data=data, headers={"Content-Type": "application/json"},
                              timeout=5)
        except requests.ConnectionError:
            r = None  # a server may also cut the upload short after answering: acceptable
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"took {elapsed:.2f} s"
        if r is not None:
            assert r.status_code in (400, 413), r.text[:200]
            assert set(r.json()) == {"error"}
    assert requests.get(f"{url}/big", timeout=5).status_code == 404, "nothing was created"
    assert requests.get(f"{controller.url}/v1/hosts", timeout=5).status_code == 200
