"""The connection tracker of one simulated switch: what the ct action consults and commits. Pure.

Connections are kept per zone under both of their 5-tuples, the original (as the initiator
sent it) and the reply (as the answer arrives, after NAT), as Linux and Open vSwitch keep
them; so a reply is found, is +est+rpl, and gets the reverse translation. For ICMP queries
the identifier stands in for both ports and the message type tells request from reply.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .packet import (ICMP_QUERY_REPLY, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, FlowSimError,
                     Packet)

# ct_state bits, from bit 0 up (the vocabulary's flags).
NEW, EST, REL, RPL, INV, TRK, SNAT, DNAT = (1 << bit for bit in range(8))
STATE_FLAGS = ("new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat")

_PORTS = {IPPROTO_TCP: ("tcp_src", "tcp_dst"), IPPROTO_UDP: ("udp_src", "udp_dst")}
_REPLY_OF_QUERY = {reply: query for query, reply in ICMP_QUERY_REPLY.items()}


def state_text(state: int) -> str:
    """ct_state as ovs-ofctl prints a match on it: "+trk+new"; "-trk" when untracked."""
    return "".join(f"+{flag}" for bit, flag in enumerate(STATE_FLAGS) if state >> bit & 1) \
        or "-trk"


@dataclass(frozen=True)
class Tuple:
    """What conntrack keys a packet by. For ICMP, sport is the identifier and dport the type."""
    proto: int
    src: str
    dst: str
    sport: int
    dport: int

    def __str__(self):
        return f"{self.proto}:{self.src}:{self.sport}->{self.dst}:{self.dport}"


@dataclass(frozen=True)
class Nat:
    """A ct's nat: kind None applies a connection's existing translation and sets up none."""
    kind: str | None
    addresses: tuple[str, str] | None = None  # (min, max)
    ports: tuple[int, int] | None = None  # (min, max)


@dataclass
class Connection:
    zone: int
    original: Tuple
    reply: Tuple
    nat: str | None = None  # "src" or "dst": how the original direction is translated
    mark: int = 0
    label: int = 0
    seen_reply: bool = False


@dataclass
class Outcome:
    """What one ct did, for the trace: the state it returned and the translation it made."""
    zone: int
    state: int
    commit: bool
    connection: Connection | None
    translated: str | None = None  # e.g. "ipv4_src 10.0.0.1 -> 192.0.2.1"
    committed_new: bool = False


def packet_tuple(pkt: Packet) -> Tuple | None:
    """The packet's tuple in its own direction; None for what conntrack cannot follow."""
    if pkt.ipv4_src is None or pkt.ipv4_dst is None:
        return None
    if pkt.ip_proto in _PORTS:
        sport, dport = (pkt.get_int(name) for name in _PORTS[pkt.ip_proto])
        if sport is None or dport is None:
            return None
        return Tuple(pkt.ip_proto, pkt.ipv4_src, pkt.ipv4_dst, sport, dport)
    if pkt.ip_proto == IPPROTO_ICMP:
        if pkt.icmpv4_type in ICMP_QUERY_REPLY or pkt.icmpv4_type in _REPLY_OF_QUERY:
            return Tuple(IPPROTO_ICMP, pkt.ipv4_src, pkt.ipv4_dst, pkt.icmp_id or 0,
                         pkt.icmpv4_type)
        return None  # an error: related to the connection of the header it quotes, not modelled
    return Tuple(pkt.ip_proto, pkt.ipv4_src, pkt.ipv4_dst, 0, 0)


def _inverse(t: Tuple) -> Tuple:
    if t.proto == IPPROTO_ICMP:
        answer = ICMP_QUERY_REPLY.get(t.dport, _REPLY_OF_QUERY.get(t.dport))
        return Tuple(t.proto, t.dst, t.src, t.sport, answer)
    return Tuple(t.proto, t.dst, t.src, t.dport, t.sport)


def _opens_connection(t: Tuple) -> bool:
    # Linux's icmp_new(): an ICMP reply cannot open a connection, so an unsolicited one is
    # invalid.
    return t.proto != IPPROTO_ICMP or t.dport in ICMP_QUERY_REPLY


def _addresses(low: str, high: str | None):
    first = int(ipaddress.IPv4Address(low))
    last = first if high is None else int(ipaddress.IPv4Address(high))
    return (str(ipaddress.IPv4Address(n)) for n in range(first, last + 1))


class ConnTracker:
    def __init__(self):
        self._by_tuple: dict[tuple[int, Tuple], tuple[Connection, bool]] = {}

    def connections(self) -> list[Connection]:
        return list({id(c): c for c, _ in self._by_tuple.values()}.values())

    def execute(self, pkt: Packet, zone: int, commit: bool, nat: Nat | None,
                writes: dict[str, int]) -> Outcome:
        """Run pkt through conntrack in zone: set its ct_* fields and, with nat, its headers.
        writes are the ct_mark / ct_label a commit's exec sets."""
        t = packet_tuple(pkt)
        found = None if t is None else self._by_tuple.get((zone, t))
        if found is not None:
            conn, is_reply = found
            if is_reply:
                conn.seen_reply = True
            state = TRK | (EST if conn.seen_reply else NEW) | (RPL if is_reply else 0)
            outcome = Outcome(zone, state, commit, conn)
            if nat is not None and conn.nat is not None:
                self._translate(pkt, conn, is_reply, outcome)
        elif t is None or not _opens_connection(t):
            outcome = Outcome(zone, TRK | INV, commit, None)
        else:
            conn = Connection(zone, t, _inverse(t))
            outcome = Outcome(zone, TRK | NEW, commit, conn)
            if nat is not None and nat.kind is not None:
                self._bind(conn, nat)
                self._translate(pkt, conn, False, outcome)
            if commit:
                self._by_tuple[(zone, conn.original)] = (conn, False)
                self._by_tuple[(zone, conn.reply)] = (conn, True)
                outcome.committed_new = True
            else:
                outcome.connection = None  # nothing is kept of an uncommitted connection
        conn = outcome.connection
        if commit and conn is not None:
            conn.mark = writes.get("ct_mark", conn.mark)
            conn.label = writes.get("ct_label", conn.label)
        pkt.ct_state, pkt.ct_zone = outcome.state, zone
        pkt.ct_mark = conn.mark if conn is not None else 0
        pkt.ct_label = conn.label if conn is not None else 0
        return outcome

    def _bind(self, conn: Connection, nat: Nat) -> None:
        """Choose the translation of a new connection: the lowest address of the range, and
        the packet's own port if the range holds it and the reply tuple stays unique, else
        the lowest free one (Linux hashes over the range; lowest keeps traces reproducible).
        With no range, the range is the own port's class (below 512, below 1024, above)."""
        o = conn.original
        has_ports = o.proto in _PORTS and nat.ports is not None
        port_low, port_high = nat.ports if has_ports else (None, None)
        port_high = port_low if port_high is None else port_high
        if nat.kind == "src":
            own, candidates = o.sport, (o.src,)
        else:
            own, candidates = o.dport, (o.dst,)
        if nat.addresses is not None:
            candidates = _addresses(*nat.addresses)
        ports = [own]
        if o.proto in _PORTS and nat.ports is None:
            # No range given: the packet's own port if free, else another of its class, as
            # Open vSwitch's and Linux's conntrack choose.
            low, high = (1, 511) if own < 512 else (600, 1023) if own < 1024 else (1024, 65535)
            ports = [own] + [p for p in range(low, high + 1) if p != own]
        elif has_ports and not port_low <= own <= port_high:
            ports = list(range(port_low, port_high + 1))
        elif has_ports:
            ports = [own] + [p for p in range(port_low, port_high + 1) if p != own]
        for address in candidates:
            for port in ports:
                if nat.kind == "src":
                    reply = Tuple(o.proto, o.dst, address, conn.reply.sport,
                                  port if o.proto != IPPROTO_ICMP else conn.reply.dport)
                else:
                    reply = Tuple(o.proto, address, o.src,
                                  port if o.proto != IPPROTO_ICMP else conn.reply.sport,
                                  conn.reply.dport)
                if (conn.zone, reply) not in self._by_tuple:
                    conn.reply, conn.nat = reply, nat.kind
                    return
        raise FlowSimError(f"nat({nat.kind}): no free address and port left for {o}")

    @staticmethod
    def _translate(pkt: Packet, conn: Connection, is_reply: bool, outcome: Outcome) -> None:
        """Rewrite pkt's headers to what the other end of the binding sees: the original
        direction to the reply tuple's view, a reply back to the original's."""
        target = _inverse(conn.original) if is_reply else _inverse(conn.reply)
        # The side a SNAT rewrites is the source going out and the destination coming back.
        rewrites_source = (conn.nat == "src") != is_reply
        address_field = "ipv4_src" if rewrites_source else "ipv4_dst"
        new_address = target.src if rewrites_source else target.dst
        changes = [(address_field, getattr(pkt, address_field), new_address)]
        if target.proto in _PORTS:
            port_field = _PORTS[target.proto][0 if rewrites_source else 1]
            new_port = target.sport if rewrites_source else target.dport
            changes.append((port_field, getattr(pkt, port_field), new_port))
        for name, _, new in changes:
            setattr(pkt, name, new)
        outcome.state |= SNAT if rewrites_source else DNAT
        outcome.translated = ", ".join(f"{name} {old} -> {new}" for name, old, new in changes
                                       if old != new) or "unchanged"
