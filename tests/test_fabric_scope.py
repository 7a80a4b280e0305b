"""Work per change is confined to the hosts where the changed network lives."""
from __future__ import annotations

import controller.fabric as fabric_module
from controller.fabric import Fabric
from model import Store


def test_a_change_touches_only_the_hosts_of_its_network(tmp_path, monkeypatch):
    store = Store(str(tmp_path / "s.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    recomputed: list[str] = []
    real = fabric_module.host_config

    def spy(snap, host, advertise):
        recomputed.append(host.name)
        return real(snap, host, advertise)

    monkeypatch.setattr(fabric_module, "host_config", spy)
    fabric.start()
    try:
        for i in range(1, 6):
            store.create_host(f"h{i}", f"unix:/nonexistent/h{i}", f"192.0.2.{i}")
        store.create_network("red", "10.0.0.0/24")
        store.create_network("blue", "10.1.0.0/24")
        store.create_endpoint("red", "h1")
        store.create_endpoint("blue", "h4")
        recomputed.clear()
        ep = store.create_endpoint("red", "h2")
        assert sorted(recomputed) == ["h1", "h2"]
        recomputed.clear()
        store.delete_endpoint(ep.id)
        assert sorted(recomputed) == ["h1", "h2"], "h2 lost the network: it is looked at too"
        recomputed.clear()
        store.reserve_address("blue", "h4")
        assert recomputed == []
        store.create_host("h6", "unix:/nonexistent/h6", "192.0.2.6")
        assert sorted(recomputed) == [f"h{i}" for i in range(1, 7)], "tunnels change everywhere"
    finally:
        fabric.stop()
        store.close()
