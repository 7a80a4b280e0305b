"""The HTTP server of the REST API and of the Docker plugin's socket."""
from .server import MAX_HEAD_BYTES, MAX_TARGET_BYTES, WebServer

__all__ = ["MAX_HEAD_BYTES", "MAX_TARGET_BYTES", "WebServer"]
