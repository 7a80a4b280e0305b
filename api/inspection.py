"""Seeing into the fabric: live flows with their owners, audits, port and table counters,
and packet traces."""
from __future__ import annotations

import functools

from flask import request
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.fabric import Fabric
from controller.switch import SwitchError
from flows import diff
from openflow.os_ken import flow_from_stats
from flows.pipeline import TABLE_BY_ID, TABLES
from inspection.policy_status import HostTables, policy_status
from inspection.trace import LiveHost, hosts_to_read, resolve_endpoint, trace
from inspection.views import Owners, flow_view, table_name
from model import InvalidRequest, Unavailable
from model.policy_hosts import policy_hosts

from .schemas import (AuditView, FlowView, PolicyStatusView, PortView, TableView, TraceRequest,
                      TraceView)
from .spec import Api

FLOW_QUERY = {"table": "only this table (number or name)",
              "network": "only flows owned by this network or its endpoints (id or name)",
              "endpoint": "only flows owned by this endpoint",
              "audit": "true: compare the installed table with the desired one instead"}


def _switch_refusal_is_503(handler):
    """A switch that answers a request with an OpenFlow error is a switch that cannot serve
    it, like one that does not answer (503), not a fault of the controller."""
    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except SwitchError as exc:
            raise Unavailable(str(exc)) from None
    return wrapper


def register(api: Api, fabric: Fabric) -> None:
    store = fabric.store

    def live_flows(host: str) -> list[dict]:
        owners = Owners(store.snapshot())
        stats = fabric.switch(host).flow_stats()
        return [flow_view(host, flow_from_stats(s), owners, s) for s in stats]

    def owned_by(flows: list[dict], network_id: str | None = None,
                 endpoint_id: str | None = None) -> list[dict]:
        snap = store.snapshot()
        if endpoint_id is not None:
            return [f for f in flows if f["owner"]["id"] == endpoint_id]
        members = {e.id for e in snap.network_endpoints(network_id)} | {network_id}
        return [f for f in flows if f["owner"]["id"] in members]

    def connected_hosts(names) -> list[str]:
        return [h for h in sorted(names) if h in fabric.switches]

    def flows_across(network_id: str, select) -> list[dict]:
        """``select`` applied to the live flows of every connected host of the network."""
        hosts = connected_hosts(store.snapshot().hosts_of_network(network_id))
        return [flow for host in hosts for flow in select(live_flows(host))]

    @api.route("GET", "/v1/hosts/{name}/flows", summary="The switch's live flow table, each "
               "flow with its owner and counters; with audit=true, desired against installed",
               tag="inspection", response=(list[FlowView], AuditView), errors=(400, 404, 503),
               query=FLOW_QUERY)
    @_switch_refusal_is_503
    def host_flows(name):
        if request.args.get("audit", "").lower() in ("1", "true", "yes"):
            return audit(name)
        flows = live_flows(name)
        if "table" in request.args:
            table = _table_id(request.args["table"])
            flows = [f for f in flows if f["table"] == table]
        if "network" in request.args:
            flows = owned_by(flows, network_id=store.get_network(request.args["network"]).id)
        if "endpoint" in request.args:
            flows = owned_by(flows, endpoint_id=store.get_endpoint(request.args["endpoint"]).id)
        return flows

    def audit(host: str) -> dict:
        switch = fabric.switch(host)
        desired = fabric.desired_table(host)
        if desired is None:
            raise Unavailable(f"host {host!r}: its OVSDB view is not ready, nothing to compare")
        owners = Owners(store.snapshot())
        result = {"host": host, **compare(host, desired, switch, owners)}
        # The host's physical bridge, when the controller keeps its flows, is held to its
        # desired table too: the host is in sync when both are.
        physical = fabric.physical_switch(host)
        desired_physical = fabric.desired_physical_table(host) if physical else None
        if desired_physical is not None:
            result["physical"] = compare(host, desired_physical, physical, owners)
            result["in_sync"] = result["in_sync"] and result["physical"]["in_sync"]
        return result

    def compare(host: str, desired: dict, switch, owners: Owners) -> dict:
        stats = {f.key: s for s in switch.flow_stats() for f in [flow_from_stats(s)]}
        installed = {key: flow_from_stats(s) for key, s in stats.items()}
        changes = diff(desired, installed)
        changed_keys = {f.key for f in changes.add} & installed.keys()
        return {
            "in_sync": not changes, "installed": len(installed), "desired": len(desired),
            "missing": [flow_view(host, f, owners) for f in changes.add
                        if f.key not in changed_keys],
            "extra": [flow_view(host, f, owners, stats[f.key]) for f in changes.delete],
            "different": [flow_view(host, installed[k], owners, stats[k])
                          for k in sorted(changed_keys)],
        }

    @api.route("GET", "/v1/networks/{ref}/flows", summary="The flows of a network and its "
               "endpoints on every connected host", tag="inspection", response=list[FlowView],
               errors=(404, 503))
    @_switch_refusal_is_503
    def network_flows(ref):
        network = store.get_network(ref)
        return flows_across(network.id, lambda flows: owned_by(flows, network_id=network.id))

    @api.route("GET", "/v1/routers/{ref}/flows", summary="The flows of a router (its entry "
               "into each network and its routes) on every connected host", tag="inspection",
               response=list[FlowView], errors=(404, 503))
    @_switch_refusal_is_503
    def router_flows(ref):
        router = store.get_router(ref)
        snap = store.snapshot()
        hosts = connected_hosts({h for n in router.networks for h in snap.hosts_of_network(n)})
        return [f for host in hosts for f in live_flows(host) if f["owner"]["id"] == router.id]

    @api.route("GET", "/v1/endpoints/{endpoint_id}/flows", summary="The flows of an endpoint "
               "on every connected host", tag="inspection", response=list[FlowView],
               errors=(404, 503))
    @_switch_refusal_is_503
    def endpoint_flows(endpoint_id):
        ep = store.get_endpoint(endpoint_id)
        return flows_across(ep.network_id, lambda flows: owned_by(flows, endpoint_id=ep.id))

    @api.route("GET", "/v1/policies/{ref}/status", summary="Where a policy is in force: per "
               "host, realized and the flows it costs there; per rule, the packets and bytes "
               "it allowed or denied", tag="inspection", response=PolicyStatusView,
               errors=(404,))
    def policy_status_view(ref):
        policy = store.get_policy(ref)
        snap = store.snapshot()
        tables = {}
        for host in policy_hosts(snap, [policy]):
            switch = fabric.switches.get(host)
            try:
                stats = switch.flow_stats() if switch is not None else None
            except SwitchError:  # not answering now: no counters from it, and said unrealized
                stats, switch = None, None
            tables[host] = HostTables(fabric.desired_table(host),
                                      switch.installed if switch is not None else None, stats)
        return policy_status(policy, tables)

    @api.route("GET", "/v1/hosts/{name}/ports", summary="Port counters, each port named by "
               "its endpoint or tunnel", tag="inspection", response=list[PortView],
               errors=(404, 503))
    @_switch_refusal_is_503
    def host_ports(name):
        switch = fabric.switch(name)
        names = {p.port_no: p.name.decode(errors="replace") if isinstance(p.name, bytes)
                 else p.name
                 for reply in switch.request(parser.OFPPortDescStatsRequest(switch.dp, 0))
                 for p in reply.body}
        stats = [s for reply in switch.request(
            parser.OFPPortStatsRequest(switch.dp, 0, ofp.OFPP_ANY)) for s in reply.body]
        snap = store.snapshot()
        ports = fabric.ovsdb_sessions[name].ports
        by_port = {no: snap.endpoints.get(ep) for ep, no in ports.endpoints.items()}
        peers = {no: peer for peer, no in ports.tunnels.items()}
        result = []
        for s in sorted(stats, key=lambda s: s.port_no):
            ep = by_port.get(s.port_no)
            result.append({
                "port_no": s.port_no, "name": names.get(s.port_no, ""),
                "endpoint": {"id": ep.id, "name": ep.name, "network": ep.network_id}
                if ep else None,
                "tunnel_to": peers.get(s.port_no),
                **{k: getattr(s, k) for k in ("rx_packets", "tx_packets", "rx_bytes",
                                              "tx_bytes", "rx_dropped", "tx_dropped",
                                              "rx_errors", "tx_errors")}})
        return result

    @api.route("GET", "/v1/hosts/{name}/tables", summary="Per table: active flows, lookups "
               "and matches", tag="inspection", response=list[TableView], errors=(404, 503))
    @_switch_refusal_is_503
    def host_tables(name):
        switch = fabric.switch(name)
        stats = [s for reply in switch.request(parser.OFPTableStatsRequest(switch.dp, 0))
                 for s in reply.body]
        return [{"table_id": s.table_id, "name": table_name(s.table_id),
                 "active_count": s.active_count, "lookup_count": s.lookup_count,
                 "matched_count": s.matched_count}
                for s in stats if s.table_id in TABLE_BY_ID or s.active_count]

    @api.route("POST", "/v1/trace", summary="Follow a packet through the live flows of every "
               "host it crosses", tag="inspection", body=TraceRequest, response=TraceView,
               errors=(404, 503), scope="read")
    @_switch_refusal_is_503
    def trace_packet(body: TraceRequest):
        snap = store.snapshot()
        src = resolve_endpoint(snap, body.from_)
        live = {}
        for host in connected_hosts(hosts_to_read(snap, src)):
            live[host] = LiveHost(fabric.switch(host).flow_stats(),
                                  fabric.ovsdb_sessions[host].ports)
        if src.host not in live:
            raise Unavailable(f"host {src.host!r} of endpoint {src.name} is not connected")
        return trace(snap, src.id, body.to, body.protocol, body.dst_port, live)


def _table_id(text: str) -> int:
    if text.isdigit():
        return int(text)
    for table in TABLES:
        if table.name == text:
            return table.id
    raise InvalidRequest(f"table {text!r}: a number or one of "
                         f"{', '.join(t.name for t in TABLES)}")
