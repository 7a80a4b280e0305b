"""Liveness and readiness for process supervisors and load balancers (Kubernetes' probes,
compose health checks): readable without a token, and telling nothing about the fabric."""
from __future__ import annotations

from model import Store, Unavailable

from .schemas import AliveView, ReadyView
from .spec import Api

PATHS = ("/healthz", "/readyz")


def register(api: Api, store: Store) -> None:
    @api.route("GET", "/healthz", summary="The process answers (liveness)", tag="health",
               response=AliveView)
    def healthz():
        return {"alive": True}

    @api.route("GET", "/readyz", summary="Ready to serve: the state store answers and the "
               "state served is the store's (readiness)", tag="health", response=ReadyView,
               errors=(503,))
    def readyz():
        stored = store.stored_revision()
        served = store.served_revision()
        if served != stored:
            raise Unavailable(f"the state served is at revision {served}, the store's at "
                              f"{stored}: catching up")
        return {"ready": True, "revision": served}
