"""The replicas: who they are, which one leads, the revision this one has seen.

With replicas, the answer is the election's (an object with ``status()``, cluster/election.py:
this room does not import it); a single process (the SQLite store) answers for itself alone:
it is the only member, and the leader.
"""
from __future__ import annotations

import socket
from typing import Any, Protocol

from flask import request

from controller.fabric import Fabric

from .schemas import ClusterView, ProgrammedView, ProgrammedWait
from .spec import Api


class ClusterStatus(Protocol):
    def status(self) -> dict[str, Any]: ...


def standalone(fabric: Fabric) -> dict[str, Any]:
    """The single process as a cluster of one: named as a replica would be by default (its
    host name and API port), its API where this request reached it."""
    port = request.environ.get("SERVER_PORT")
    name = f"{socket.gethostname()}:{port}" if port else socket.gethostname()
    member = {"name": name, "api": request.host_url.rstrip("/"),
              "advertise": fabric.advertise, "leader": True}
    return {"members": [member], "leader": name}


def register(api: Api, fabric: Fabric, cluster: ClusterStatus | None = None) -> None:
    @api.route("GET", "/v1/cluster", summary="The replicas, the leader among them and the "
               "revision this replica has seen", tag="cluster", response=ClusterView)
    def get_cluster():
        status = cluster.status() if cluster is not None else standalone(fabric)
        return {**status, "revision": fabric.store.served_revision()}

    @api.route("POST", "/v1/cluster/programmed", summary="Wait until the leader's switches "
               "have a revision: how a follower answers a write once its flows are in",
               tag="cluster", body=ProgrammedWait, response=ProgrammedView)
    def wait_programmed(body: ProgrammedWait):
        return {"programmed": fabric.wait_programmed(set(body.hosts), body.revision,
                                                     body.bound, body.timeout)}
