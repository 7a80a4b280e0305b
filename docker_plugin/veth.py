"""veth pairs in the plugin's network namespace (the Docker host's), over netlink."""
from __future__ import annotations

import errno

from pyroute2 import IPRoute
from pyroute2.ethtool import Ethtool
from pyroute2.netlink.exceptions import NetlinkError


class Veths:
    def ensure(self, host_end: str, container_end: str, mtu: int, mac: str) -> None:
        """The pair exists with ``mtu`` on both ends (Docker never sets it for a remote
        driver) and ``mac`` on the container end; the host end is up, ready for br-int."""
        with IPRoute() as ipr:
            if ipr.link_lookup(ifname=host_end) and not ipr.link_lookup(ifname=container_end):
                ipr.link("del", ifname=host_end)  # half a pair from an earlier attempt
            if not ipr.link_lookup(ifname=host_end):
                try:
                    ipr.link("add", ifname=host_end, kind="veth", mtu=mtu,
                             peer={"ifname": container_end, "mtu": mtu, "address": mac})
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise
            ipr.link("set", ifname=container_end, mtu=mtu, address=mac)
            ipr.link("set", ifname=host_end, mtu=mtu, state="up")
        disable_tx_checksum_offload(container_end)

    def names(self) -> set[str]:
        """Every link name in this namespace."""
        with IPRoute() as ipr:
            return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}

    def exists(self, name: str) -> bool:
        with IPRoute() as ipr:
            return bool(ipr.link_lookup(ifname=name))

    def delete(self, name: str) -> None:
        """Deletes the pair by one end; a pair already gone is fine."""
        with IPRoute() as ipr:
            try:
                ipr.link("del", ifname=name)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise


def disable_tx_checksum_offload(ifname: str) -> None:
    """``ethtool -K IFNAME tx off``: a veth leaves TCP and UDP checksums for the receiver to
    fill in, which OVS's userspace datapath never does, so every segment would arrive with a
    bad checksum (ICMP, checksummed by the stack, still works). The setting stays with the
    device when Docker moves it into the container."""
    ethtool = Ethtool()
    try:
        wanted = ethtool.get_features(ifname)
        for name, feature in wanted.features.items():
            if name.startswith("tx-checksum") and feature.available:
                feature.enable = False
        ethtool.set_features(ifname, wanted)
    finally:
        ethtool.close()
