"""The controller's trace and Open vSwitch's own (`ofproto/trace`) of one packet, side by side."""
from __future__ import annotations

import re


def ofproto_trace_tables(host, flow: str) -> tuple[list[tuple[int, int]], str]:
    """(table, priority) of each br-int flow ofproto/trace hit, and its datapath actions.

    A tunnel output continues into br-phy (userspace tunnelling): those hits are not ours."""
    out = host.appctl("ofproto/trace", "br-int", flow)
    hits, bridge = [], None
    for line in out.splitlines():
        if (named := re.search(r'bridge\("([^"]+)"\)', line)):
            bridge = named.group(1)
        elif bridge == "br-int" and (hit := re.match(r"\s*(\d+)\. .*priority (\d+)", line)):
            hits.append((int(hit.group(1)), int(hit.group(2))))
    actions = re.search(r"^Datapath actions: (.*)$", out, re.MULTILINE).group(1)
    return hits, actions


def both_traces(fabric, src: dict, to: str, dst_ip: str, dst_mac: str) -> tuple[dict, list, str]:
    """(our trace, OVS's datapath actions) of an ICMP echo from endpoint ``src`` on h1 to
    ``to``; asserts that both hit the same flows of h1's table."""
    ours = fabric.client.request("POST", "/v1/trace", {"from": src["id"], "to": to})
    our_hits = [(h["table"], h["flow"]["priority"]) for h in ours["hops"]
                if h["step"] == "table" and h["host"] == "h1"]
    in_port = next(p["port_no"] for p in fabric.client.request("GET", "/v1/hosts/h1/ports")
                   if p["endpoint"] and p["endpoint"]["id"] == src["id"])
    hits, actions = ofproto_trace_tables(
        fabric.lab.host("h1"),
        f"in_port={in_port},icmp,dl_src={src['mac']},dl_dst={dst_mac},nw_src={src['ip']},"
        f"nw_dst={dst_ip},nw_ttl=64,icmp_type=8")
    assert our_hits == hits
    return ours, actions
