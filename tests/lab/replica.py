"""`python -m tests.lab.replica serve ...`: the controller as `ovsfabric serve` runs it, with a
leadership read from a JSON file the test writes (OVSFABRIC_TEST_LEADERSHIP) instead of the
single process's: two controller processes on the lab, each with its own SQLite state, whose
terms the test decides (until the etcd election exists). Test-only: nothing in the product
reads that variable.

The file: {"leader": NAME, "generation": N, "controllers": [TARGET, ...]}; this replica is
OVSFABRIC_TEST_REPLICA. It is re-read every 20 ms; subscribers are called after a change.
"""
from __future__ import annotations

import json
import os
import sys
import threading

from controller.leadership import Term

POLL_S = 0.02


class FileLeadership:
    def __init__(self, path: str, name: str, advertise: str):
        self.path, self.name, self.advertise = path, name, advertise
        self._state: dict = self._read() or {}
        self._callbacks = []
        self._stop = threading.Event()

    def _read(self) -> dict | None:
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None  # being rewritten: the next poll

    def start(self) -> None:
        threading.Thread(target=self._poll, daemon=True, name="test-leadership").start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            state = self._read()
            if state is not None and state != self._state:
                self._state = state
                for callback in list(self._callbacks):
                    callback()

    def term(self) -> Term | None:
        state = self._state
        return Term(state["leader"], state["generation"]) if "leader" in state else None

    def leads(self) -> bool:
        return self._state.get("leader") == self.name

    def controllers(self) -> list[str]:
        return sorted(self._state.get("controllers") or [self.advertise])

    def subscribe(self, callback) -> None:
        self._callbacks.append(callback)

    def members(self) -> list[dict]:
        return [{"name": self.name, "api": "", "advertise": self.advertise,
                 "leader": self.leads()}]

    def status(self) -> dict:
        return {"kind": "test-file", "name": self.name, "term": self.term(),
                "leads": self.leads()}


def main() -> int:
    from cli import main as cli_main
    from cli import serve

    path, name = os.environ["OVSFABRIC_TEST_LEADERSHIP"], os.environ["OVSFABRIC_TEST_REPLICA"]
    serve.make_leadership = lambda args, advertise, api: FileLeadership(path, name, advertise)
    return cli_main.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
