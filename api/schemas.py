"""Request schemas: one per request body, validated before anything is touched."""
from __future__ import annotations

from ipaddress import IPv4Address
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# Linux interface names: at most 15 bytes, no slash, colon or whitespace.
IFNAME_PATTERN = r"^[A-Za-z0-9_.-]{1,15}$"
OVSDB_PATTERN = r"^(unix:/.+|(tcp|ssl):[0-9.]+:[0-9]{1,5})$"
MAC_PATTERN = r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class HostCreate(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    ovsdb: str = Field(max_length=256, pattern=OVSDB_PATTERN,
                       description='"unix:PATH" or "tcp:IP:PORT" of the host\'s ovsdb-server')
    tunnel_ip: IPv4Address
    datapath_type: Literal["system", "netdev"] = "system"
    bridge: str = Field("br-int", pattern=IFNAME_PATTERN)


class NetworkCreate(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    subnet: str = Field(max_length=18, description="IPv4 CIDR, e.g. 10.0.0.0/24")
    gateway: Optional[IPv4Address] = None
    vni: Optional[int] = Field(None, ge=1, le=(1 << 24) - 1)
    mtu: Optional[int] = Field(None, ge=576, le=9000)


class EndpointCreate(Strict):
    network: str = Field(min_length=1, max_length=64, description="network id or name")
    host: str = Field(min_length=1, max_length=64)
    port: Optional[str] = Field(None, pattern=IFNAME_PATTERN,
                                description="existing interface on the host to attach")
    ip: Optional[IPv4Address] = None
    mac: Optional[str] = Field(None, pattern=MAC_PATTERN)
    name: Optional[str] = Field(None, min_length=1, max_length=64, pattern=NAME_PATTERN)
