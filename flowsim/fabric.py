"""SimFabric: SimSwitches joined by tunnel links, with named host endpoints."""
from __future__ import annotations

from collections import deque

from .packet import FlowSimError, Packet
from .switch import SimSwitch

Port = tuple[str, int]  # (switch name, port number)


class SimFabric:
    def __init__(self, max_hops: int = 16):
        self.max_hops = max_hops  # tunnel crossings allowed per packet copy
        self.switches: dict[str, SimSwitch] = {}
        self._tunnels: dict[Port, Port] = {}
        self._endpoints: dict[str, Port] = {}
        self._attached: dict[Port, str] = {}
        self.punted: list[tuple[str, Packet]] = []  # (switch, packet) sent to the controller
        self.normal: list[tuple[str, Packet]] = []  # (switch, packet) given to NORMAL
        # Every switch visit of the last send(): (switch, in_port, that switch's last_trace).
        self.last_path: list[tuple[str, int, list]] = []

    def add_switch(self, name: str, sw: SimSwitch) -> None:
        self.switches[name] = sw

    def link_tunnel(self, a: Port, b: Port, both_ways: bool = True) -> None:
        """Output on a arrives on b (and, by default, b on a)."""
        for port in (a, b):
            if port[0] not in self.switches:
                raise FlowSimError(f"unknown switch {port[0]!r}")
        self._tunnels[a] = b
        if both_ways:
            self._tunnels[b] = a

    def attach(self, endpoint: str, at: Port) -> None:
        if at[0] not in self.switches:
            raise FlowSimError(f"unknown switch {at[0]!r}")
        self._endpoints[endpoint] = at
        self._attached[at] = endpoint

    def send(self, from_endpoint: str, pkt: Packet) -> list[tuple[str, Packet]]:
        """Inject pkt from an endpoint; return (endpoint, packet) for every copy delivered."""
        start = pkt.copy()
        start.tunnel_id = 0  # a host port is not a tunnel
        queue = deque([(*self._endpoints[from_endpoint], start, 0)])
        delivered = []
        self.punted, self.normal, self.last_path = [], [], []
        while queue:
            name, in_port, p, hops = queue.popleft()
            sw = self.switches[name]
            outputs = sw.process(p, in_port)
            self.last_path.append((name, in_port, sw.last_trace))
            for out_port, q in outputs:
                if out_port == "controller":
                    self.punted.append((name, q))
                elif out_port == "normal":
                    self.normal.append((name, q))
                elif (name, out_port) in self._tunnels:
                    if hops + 1 > self.max_hops:
                        raise FlowSimError(f"hop limit {self.max_hops} exceeded: forwarding loop?")
                    # The far end sees the VNI and the inner headers; pipeline
                    # state does not travel through a tunnel.
                    q.reset_pipeline()
                    queue.append((*self._tunnels[(name, out_port)], q, hops + 1))
                elif (name, out_port) in self._attached:
                    # What the host receives is a frame: no tunnel or pipeline state.
                    q.reset_pipeline()
                    q.tunnel_id, q.in_port = 0, None
                    delivered.append((self._attached[(name, out_port)], q))
                # else: output to a port with nothing behind it is lost
        return delivered

    def reachable(self, src_ep: str, dst_ep: str, pkt: Packet) -> bool:
        return any(name == dst_ep for name, _ in self.send(src_ep, pkt))
