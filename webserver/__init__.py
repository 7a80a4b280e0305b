"""The HTTP server of the REST API and of the Docker plugin's socket."""
from .server import HEADER_TIMEOUT_S, MAX_HEAD_BYTES, MAX_TARGET_BYTES, WebServer

__all__ = ["HEADER_TIMEOUT_S", "MAX_HEAD_BYTES", "MAX_TARGET_BYTES", "WebServer"]
