"""Pure compiler from the fabric model to OpenFlow 1.3 flow entries (no I/O)."""
from .compiler import HostPorts, HostView, compile_host, host_view
from .flow import Flow, FlowDiff, diff
from .table import HostTable

__all__ = ["Flow", "FlowDiff", "HostPorts", "HostTable", "HostView", "compile_host", "diff",
           "host_view"]
