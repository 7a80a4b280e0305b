"""Endpoints no container holds any more, removed with their address, port, flows and veth.

Docker does not retry a DeleteEndpoint that failed (the controller or the plugin unreachable
during ``docker stop`` or ``rm -f``): it logs a warning and forgets the endpoint. The sweep
finds such endpoints by their veth, which needs nothing from dockerd (no socket, no secrets):

- a live container holds the container end inside its own network namespace;
- an orphan's container end is back in the host's namespace (Docker moves it back when it
  tears the sandbox down), or the pair is gone (DeleteEndpoint deletes it even when the
  controller is unreachable, and a namespace that dies takes its veths with it).

The container end also sits in the host's namespace between CreateEndpoint and Join, so an
endpoint is removed only once it has looked orphaned for ``grace`` seconds.
"""
from __future__ import annotations

import logging
import threading
import time

import requests

from api.client import ApiError

from .controller import Controller
from .errors import describe
from .naming import is_docker_endpoint, veth_names
from .veth import Veths

LOG = logging.getLogger(__name__)


def remove_orphan(controller: Controller, veths: Veths, ep: dict, why: str) -> None:
    LOG.warning("removing endpoint %s (%s on %s): %s", ep["name"][:12], ep["ip"], ep["port"],
                why)
    controller.delete_endpoint(ep["id"])  # its address is freed with it
    veths.delete(ep["port"])


class OrphanSweep:
    def __init__(self, controller: Controller, veths: Veths, grace: float,
                 clock=time.monotonic):
        self.controller = controller
        self.veths = veths
        self.grace = grace
        self._clock = clock
        self._since: dict[str, float] = {}  # endpoint id -> first seen without a container

    def sweep(self) -> list[str]:
        """One pass; the ids of the endpoints removed."""
        now = self._clock()
        links = self.veths.names()
        ours = [ep for ep in self.controller.host_endpoints() if is_docker_endpoint(ep)]
        listed = {ep["id"] for ep in ours}
        self._since = {ep_id: t for ep_id, t in self._since.items() if ep_id in listed}
        removed = []
        for ep in ours:
            host_end, container_end = veth_names(ep["name"])
            if host_end in links and container_end not in links:
                self._since.pop(ep["id"], None)  # in a container's namespace
                continue
            since = self._since.setdefault(ep["id"], now)
            if now - since >= self.grace:
                why = ("its veth is gone" if host_end not in links
                       else "its container end is back on the host")
                remove_orphan(self.controller, self.veths, ep,
                              f"no container holds it ({why} for {now - since:.0f} s)")
                self._since.pop(ep["id"])
                removed.append(ep["id"])
        return removed

    def run_every(self, interval: float) -> threading.Thread:
        """Sweeps now and then every ``interval`` seconds, in a daemon thread."""
        def loop():
            while True:
                try:
                    self.sweep()
                except (requests.RequestException, ApiError) as exc:
                    LOG.warning("orphan sweep: %s", describe(exc, self.controller.url)[1])
                except Exception:  # noqa: BLE001 - the sweep must outlive a bad pass
                    LOG.exception("orphan sweep failed")
                time.sleep(interval)
        thread = threading.Thread(target=loop, name="orphan-sweep", daemon=True)
        thread.start()
        return thread

