"""The CNI versions this plugin speaks, and a result in the shape each of them expects."""
from __future__ import annotations

from .errors import INCOMPATIBLE_VERSION, CniError

SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
NEWEST = SUPPORTED[-1]


def checked(version) -> str:
    if version not in SUPPORTED:
        raise CniError(INCOMPATIBLE_VERSION, f"CNI version {version!r} is not supported",
                       f"this plugin speaks {', '.join(SUPPORTED)}")
    return version


def at_least(version: str, oldest: str) -> bool:
    return SUPPORTED.index(version) >= SUPPORTED.index(oldest)


def shaped(result: dict, version: str) -> dict:
    """``result`` (in 1.1.0's shape) as ``version`` writes it: before 1.0.0 every IP says its
    version, and only 1.1.0 knows an interface's ``mtu``."""
    out = dict(result, cniVersion=version)
    if not at_least(version, "1.0.0"):
        out["ips"] = [dict(ip, version="4") for ip in result.get("ips", [])]
    if not at_least(version, "1.1.0"):
        out["interfaces"] = [{k: v for k, v in iface.items() if k != "mtu"}
                             for iface in result.get("interfaces", [])]
    return out
