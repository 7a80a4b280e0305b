"""flowsim: an OpenFlow 1.3 flow-table simulator fed with os-ken message objects."""
from .fabric import SimFabric
from .packet import FlowSimError, Packet
from .switch import FlowEntry, SimSwitch
from .trace import CtEvent, Step, TtlEvent

__all__ = ["CtEvent", "FlowEntry", "FlowSimError", "Packet", "SimFabric", "SimSwitch", "Step",
           "TtlEvent"]
