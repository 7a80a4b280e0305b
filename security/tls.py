"""TLS for the controller's southbound sessions: its identity and the CA that signs hosts."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TlsIdentity:
    cert: str
    key: str
    ca: str  # peers (switches, ovsdb-servers) must present a certificate signed by this CA


def use_for_ovsdb(identity: TlsIdentity) -> None:
    """python-ovs keeps one SSL configuration per process, used by every `ssl:` target."""
    from ovs.stream import Stream
    Stream.ssl_set_private_key_file(identity.key)
    Stream.ssl_set_certificate_file(identity.cert)
    Stream.ssl_set_ca_cert_file(identity.ca)


def os_ken_options(identity: TlsIdentity) -> dict:
    """os-ken's options for a mutual-TLS OpenFlow listener."""
    return {"ctl_privkey": identity.key, "ctl_cert": identity.cert, "ca_certs": identity.ca}
