"""Pure compiler from the fabric model to OpenFlow 1.3 flow entries (no I/O)."""
from .compiler import HostPorts, compile_host
from .flow import Flow, FlowDiff, diff

__all__ = ["Flow", "FlowDiff", "HostPorts", "compile_host", "diff"]
