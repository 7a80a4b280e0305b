"""Controller replicas for the lab: several `ovsfabric serve` processes on one etcd, each with
its own REST API and OpenFlow ports on the lab's controller address, all told to every
switch."""
from __future__ import annotations

import os
import time

from .controller import ControllerProcess


class Replicas:
    def __init__(self, workdir: str, store: str | list[str], listen_ip: str, api_port: int,
                 openflow_port: int, count: int = 3, token: str | None = None):
        """Replica ``i`` serves its API on ``api_port + i`` and OpenFlow on
        ``openflow_port + i``; ``store`` is the etcd:// they share (or one per replica: the
        members each may reach)."""
        stores = store if isinstance(store, list) else [store] * count
        self.processes = [
            ControllerProcess(os.path.join(workdir, f"replica{i}.db"), listen_ip,
                              api_port + i, openflow_port + i, store=stores[i], token=token,
                              log_path=os.path.join(workdir, f"replica{i}.log"),
                              extra_args=("--replica-name", f"replica{i}"))
            for i in range(count)]

    def __getitem__(self, i: int) -> ControllerProcess:
        return self.processes[i]

    def __iter__(self):
        return iter(self.processes)

    def start(self) -> "Replicas":
        for process in self.processes:
            process.start()
        return self

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def running(self) -> list[ControllerProcess]:
        return [p for p in self.processes if p.proc is not None and p.proc.poll() is None]

    def cluster(self) -> dict:
        """GET /v1/cluster from the first running replica that answers."""
        for process in self.running():
            try:
                return process.client.request("GET", "/v1/cluster")
            except Exception:  # noqa: BLE001 - a replica going away: ask another
                continue
        raise RuntimeError("no replica answers")

    def leader(self, timeout: float = 10.0, other_than: str | None = None,
               among: list[ControllerProcess] | None = None) -> ControllerProcess:
        """The replica that leads (and is not ``other_than``), once every running one (or
        every one of ``among``) agrees."""
        deadline = time.monotonic() + timeout
        names = {f"replica{i}": p for i, p in enumerate(self.processes)}
        while time.monotonic() < deadline:
            seen = set()
            for process in among or self.running():
                try:
                    seen.add(process.client.request("GET", "/v1/cluster")["leader"])
                except Exception:  # noqa: BLE001 - not answering yet
                    seen.add(None)
            if len(seen) == 1 and (name := seen.pop()) not in (None, other_than):
                return names[name]
            time.sleep(0.05)
        raise RuntimeError(f"no leader agreed on within {timeout} s")

    def masters(self, process: ControllerProcess, hosts: list[str]) -> bool:
        """Whether every host's integration bridge confirmed ``process`` as its MASTER."""
        status = {h["name"]: h for h in process.client.hosts()}
        return all((status.get(h, {}).get("openflow_role") or "").startswith("master")
                   for h in hosts)
