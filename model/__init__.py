"""Domain model and the embedded store."""
from .entities import Endpoint, Host, Network, Snapshot
from .errors import Conflict, FabricError, Forbidden, InvalidRequest, NotFound, Unavailable
from .store import Store

__all__ = ["Endpoint", "Host", "Network", "Snapshot", "Store",
           "Conflict", "FabricError", "Forbidden", "InvalidRequest", "NotFound", "Unavailable"]
