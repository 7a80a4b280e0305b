"""Test lab: Open vSwitch hosts as network namespaces on one machine (see LAB.md)."""

from .container import Container
from .host import LabHost
from .lab import Lab, cleanup

__all__ = ["Container", "Lab", "LabHost", "cleanup"]
