"""Every metric the controller exports, declared in one place (Prometheus text format)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)


class FabricMetrics:
    def __init__(self):
        # One registry per fabric: tests build several fabrics in one process.
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "ovsfabric_http_requests", "REST requests answered", ["route", "method", "status"],
            registry=r)
        self.flow_mods = Counter(
            "ovsfabric_flow_mods_sent", "Flow mods sent to switches", ["host"], registry=r)
        self.switch_connects = Counter(
            "ovsfabric_switch_connects", "OpenFlow connections of managed switches", ["host"],
            registry=r)
        self.reconciles = Counter(
            "ovsfabric_reconcile_runs", "Full reconciliations of a switch's table (on connect)",
            ["host"], registry=r)
        self.reconcile_seconds = Histogram(
            "ovsfabric_reconcile_duration_seconds", "Reading a switch's table and correcting it",
            registry=r, buckets=LATENCY_BUCKETS)
        self.convergence_seconds = Histogram(
            "ovsfabric_convergence_seconds",
            "Endpoint committed until its flows are confirmed on every connected host",
            registry=r, buckets=LATENCY_BUCKETS)

    def watch(self, fabric) -> None:
        """Gauges read from the fabric when scraped, so they are never stale."""
        self.registry.register(_StateCollector(fabric))


class _StateCollector:
    def __init__(self, fabric):
        self.fabric = fabric

    def collect(self):
        flows = GaugeMetricFamily("ovsfabric_flows", "Flows the controller keeps on a switch",
                                  labels=["host"])
        switches = [*self.fabric.switches.values(), *self.fabric.physical_switches.values()]
        for switch in sorted(switches, key=lambda s: s.name):
            if switch.installed is not None:
                flows.add_metric([switch.name], len(switch.installed))
        endpoints = GaugeMetricFamily("ovsfabric_endpoints", "Endpoints per network",
                                      labels=["network"])
        snap = self.fabric.store.snapshot()
        for network in snap.networks.values():
            endpoints.add_metric([network.name],
                                 len(snap.endpoints_by_network.get(network.id, ())))
        connected = GaugeMetricFamily("ovsfabric_host_connected",
                                      "1 when both OVSDB and OpenFlow sessions are up",
                                      labels=["host"])
        for name in sorted(snap.hosts):
            connected.add_metric([name], int(self.fabric.host_status(name)["connected"]))
        return [flows, endpoints, connected]
