"""The MAC of each host's egress next hop, resolved through the host's physical bridge as OVN
resolves its gateways' next hops (MAC_Binding): the controller sends an ARP request from the
host's address by packet-out on the uplink and takes the reply by packet-in (a flow of the
physical bridge copies the next hop's replies to it). The binding is kept in the host's OVSDB,
so a restarted controller finds it there and compiles the same tables; until a binding exists,
what leaves is dropped (TCP retries).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from os_ken.lib.packet import arp, ethernet, packet
from os_ken.ofproto import ether

LOG = logging.getLogger(__name__)

RETRY_S = 1.0  # an unresolved next hop is asked for again
REFRESH_S = 30.0  # a resolved one too, so that a changed MAC is learnt
BROADCAST = "ff:ff:ff:ff:ff:ff"


@dataclass(frozen=True)
class Query:
    """One ARP request to send: on whose physical bridge, out of which port, from what."""

    host: str
    dp: object
    uplink: int
    bridge_mac: str
    source_ip: str
    next_hop: str
    resolved: bool


def arp_request(src_mac: str, src_ip: str, target_ip: str) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(BROADCAST, src_mac, ether.ETH_TYPE_ARP))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=src_mac, src_ip=src_ip,
                             dst_mac="00:00:00:00:00:00", dst_ip=target_ip))
    pkt.serialize()
    return bytes(pkt.data)


def arp_reply_sender(data: bytes) -> tuple[str, str] | None:
    """(address, MAC) of the sender of an ARP reply; None for anything else."""
    try:
        found = packet.Packet(data).get_protocol(arp.arp)
    except Exception:  # a truncated or foreign frame
        return None
    if found is None or found.opcode != arp.ARP_REPLY:
        return None
    return found.src_ip, found.src_mac


def send_query(query: Query) -> None:
    dp = query.dp
    ofp, parser = dp.ofproto, dp.ofproto_parser
    dp.send_msg(parser.OFPPacketOut(
        dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
        actions=[parser.OFPActionOutput(query.uplink, 0)],
        data=arp_request(query.bridge_mac, query.source_ip, query.next_hop)))


class NextHopResolver:
    """Asks, every RETRY_S, for the next hops ``queries()`` names: unresolved ones each time,
    resolved ones every REFRESH_S."""

    def __init__(self, queries):
        self._queries = queries
        self._last: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="next-hops", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(RETRY_S):
            now = time.monotonic()
            try:
                queries = self._queries()
            except Exception as exc:
                LOG.warning("next hops: %s", exc)
                continue
            for query in queries:
                key = (query.host, query.next_hop)
                if now - self._last.get(key, -REFRESH_S) < (REFRESH_S if query.resolved
                                                             else RETRY_S * 0.9):
                    continue
                self._last[key] = now
                try:
                    send_query(query)
                except Exception as exc:
                    LOG.warning("host %s: ARP request for %s not sent: %s", query.host,
                                query.next_hop, exc)
