"""Work per change is confined to the hosts where the changed network lives, and within them
to the compile units the change touched."""
from __future__ import annotations

import controller.fabric as fabric_module
from controller.fabric import Fabric
from flows.compiler import endpoint_unit, network_unit
from model import Store


def test_a_change_touches_only_the_hosts_of_its_network(tmp_path, monkeypatch):
    store = Store(str(tmp_path / "s.db"))
    fabric = Fabric(store, "tcp:127.0.0.1:6653")
    ovsdb_recomputed: list[str] = []
    real = fabric_module.host_config

    def spy(snap, host, advertise, *more):
        ovsdb_recomputed.append(host.name)
        return real(snap, host, advertise, *more)

    monkeypatch.setattr(fabric_module, "host_config", spy)
    fabric.start()
    try:
        for i in range(1, 6):
            store.create_host(f"h{i}", f"unix:/nonexistent/h{i}", f"192.0.2.{i}")
        store.create_network("red", "10.0.0.0/24")
        store.create_network("blue", "10.1.0.0/24")
        red = store.get_network("red")
        store.create_endpoint("red", "h1")
        store.create_endpoint("blue", "h4")
        fabric._dirty.clear()
        ovsdb_recomputed.clear()

        ep = store.create_endpoint("red", "h2", port="veth-a")
        units = {network_unit(red.id), endpoint_unit(ep.id)}
        assert fabric._dirty == {"h1": units, "h2": units}
        assert ovsdb_recomputed == ["h2"], "only the host whose ports changed"

        fabric._dirty.clear()
        ovsdb_recomputed.clear()
        store.delete_endpoint(ep.id)
        assert fabric._dirty == {"h1": units, "h2": units}, "h2 lost the network: it is told"
        assert ovsdb_recomputed == ["h2"]

        fabric._dirty.clear()
        ovsdb_recomputed.clear()
        store.create_endpoint("red", "h3")  # no port: nothing for OVSDB to do
        assert set(fabric._dirty) == {"h1", "h3"} and ovsdb_recomputed == []
        store.reserve_address("blue", "h4")
        assert set(fabric._dirty) == {"h1", "h3"} and ovsdb_recomputed == []

        store.create_host("h6", "unix:/nonexistent/h6", "192.0.2.6")
        assert sorted(ovsdb_recomputed) == [f"h{i}" for i in range(1, 7)], "tunnels change"
        assert fabric._dirty == {f"h{i}": None for i in range(1, 7)}, "every table rebuilt"
    finally:
        fabric.stop()
        store.close()
