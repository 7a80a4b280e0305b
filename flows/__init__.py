"""Pure compiler from the fabric model to OpenFlow 1.3 flow entries (no I/O)."""
from .compiler import HostPorts, HostWiring, compile_host, host_wiring
from .flow import Flow, FlowDiff, diff
from .host_flows import HostFlows

__all__ = ["Flow", "FlowDiff", "HostFlows", "HostPorts", "HostWiring", "compile_host", "diff",
           "host_wiring"]
