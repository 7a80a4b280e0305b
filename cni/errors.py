"""The CNI specification's error codes, and the error a verb raises to report one."""
from __future__ import annotations

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50  # STATUS: the plugin cannot serve ADDs now
# The spec leaves 100 and up to plugins.
REFUSED = 100  # the controller refused the request, for a reason other than the config
INTERFACE_PROBLEM = 101  # CHECK found the container's interface not as it should be
EXISTS = 102  # the interface name is taken in the container


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = ""):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def result(self, cni_version: str) -> dict:
        error = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            error["details"] = self.details
        return error
