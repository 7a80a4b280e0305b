"""openflow.vocabulary and openflow.actions: one entry per field and action, agreeing with
os-ken (names, numbers, objects) and with ovs-ofctl (notation, and how it reads the bytes)."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from openflow import actions, wire
from openflow.actions import conjunction, ct, dec_ttl, move, nat, output, set_field
from openflow.flow import Flow
from openflow.notation import format_actions, format_match
from openflow.vocabulary import FIELDS

ROUTING_AND_POLICY = [
    dec_ttl(),
    set_field("ipv4_src", "192.0.2.1"),
    set_field("eth_dst", "02:00:00:00:00:09"),
    conjunction(7, 2, 3),
    ct(),
    ct(commit=True, zone=5, table=20),
    ct(table=30, nat=nat()),
    ct(commit=True, nat=nat("src", ("10.0.0.1", "10.0.0.9"), (1000, 2000)),
       exec_actions=[set_field("ct_mark", 1), set_field("ct_label", 1 << 64)]),
    ct(commit=True, zone=1, nat=nat("dst", ("10.0.0.7", None), (80, None))),
    ct(commit=True, nat=nat("dst", ("10.0.0.7", "10.0.0.8"), (80, 90))),
]


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_fields_are_named_and_numbered_as_os_ken_does(name):
    field = FIELDS[name]
    num, type_ = ofp.oxm_get_field_info_by_name(name)
    assert (num, type_.size) == ((field.oxm_class << 7) | field.oxm_field, field.size)
    if field.nxm is not None:  # the NXM spelling Open vSwitch answers a move with
        assert ofp.oxm_get_field_info_by_name(f"{name}_nxm")[0] == \
            (field.nxm[0] << 7) | field.nxm[1]


@pytest.mark.parametrize("action", ROUTING_AND_POLICY + [output(3), move("reg0", "reg1", 32)],
                         ids=repr)
def test_every_action_goes_both_ways(action):
    assert actions.decode(actions.encode(action)) == action
    assert actions.from_os_ken(actions.to_os_ken(action)) == action


@pytest.mark.parametrize("action", [
    ("dec_ttl", 1), conjunction(1, 0, 2), conjunction(1, 3, 2), conjunction(1 << 32, 1, 2),
    ct(commit=1), ct(zone=1 << 16), ct(table=256), ct(nat=("output", 1)),
    ct(nat=nat("both")), ct(nat=nat("src", (None, None))), ct(nat=nat("src", ports=(1 << 16, 1))),
    ct(nat=nat("src", ("10.0.0.0/8", None))), ("nat", None), ("ct", True)], ids=repr)
def test_what_an_entry_refuses_raises_value_error(action):
    with pytest.raises(ValueError):
        actions.encode(action)


needs_ofctl = pytest.mark.skipif(shutil.which("ovs-ofctl") is None, reason="needs ovs-ofctl")


def ofp_print(message: bytes) -> str:
    result = subprocess.run(["ovs-ofctl", "ofp-print", message.hex()], check=True,
                            capture_output=True, text=True)
    assert "decode error" not in result.stdout and not result.stderr, result
    return result.stdout


@needs_ofctl
@pytest.mark.parametrize("action", [a for a in ROUTING_AND_POLICY
                                    if a[0] != "set_field"] + [conjunction(9, 1, 2)], ids=repr)
def test_ovs_ofctl_reads_each_action_as_notation_prints_it(action):
    """Open vSwitch decodes the bytes (nat ranges that os-ken leaves unpadded included) into
    the action the notation shows."""
    flow = Flow.make(30, 5, 1, {"eth_type": 0x0800}, actions=[action])
    printed = ofp_print(wire.flow_mod_add(flow, 1))
    assert f"actions={format_actions(flow)}\n" in printed.replace(" ", "\n"), printed


@needs_ofctl
def test_ovs_ofctl_reads_the_new_match_fields_as_notation_prints_them():
    flow = Flow.make(30, 5, 1, {"eth_type": 0x0800, "ct_state": (0x21, 0x21), "ct_zone": 5,
                                "ct_mark": 3, "ct_label": 1 << 100, "conj_id": 10,
                                "tun_ipv4_dst": "192.0.2.1", "reg3": 4, "tcp_dst": 80,
                                "ip_proto": 6})
    printed = ofp_print(wire.flow_mod_add(flow, 1))
    for part in format_match(flow).split(","):
        assert part in printed, (part, printed)
