"""The comparison table: one row per figure, ovsfabric and OVN side by side, and their ratio."""
from __future__ import annotations

FAB, OVN = "ovsfabric", "OVN"


def value_at(results: dict, step: str, side: str, *path):
    value = results.get(step, {}).get(side)
    for key in path:
        if value is None:
            return None
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _sum(d):
    return None if d is None or any(v is None for v in d.values()) else sum(d.values())


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def rows(results: dict) -> list[tuple[str, object, object]]:
    out = []

    def both(label, step, *path, fn=None):
        f, o = (value_at(results, step, s, *path) for s in (FAB, OVN))
        if fn is not None:
            f, o = fn(f, FAB), fn(o, OVN)
        if f is not None or o is not None:
            out.append((label, f, o))

    for step, title in (("convergence", "empty network"),
                        ("convergence_loaded", "loaded network")):
        bg = value_at(results, step, FAB, "background_endpoints")
        title += f", {bg} endpoints" if bg else ""
        for p in ("p50", "p95", "p99"):
            both(f"convergence {p} ms ({title})", step, f"{p}_ms")
        both("  API call returned, p50 ms (OVN: before the plug)", step,
             "api_returned_p50_ms")
        both("  samples (failed)", step, "samples",
             fn=lambda v, s, step=step: None if v is None else
             f"{v} ({value_at(results, step, s, 'failed')})")
    both("bulk: endpoints", "bulk", "endpoints")
    both("bulk: API calls returned, s", "bulk", "api_s")
    both("bulk: all converged, s", "bulk", "converged_s")
    both("bulk: flows per host (max)", "bulk", "flows_per_host",
         fn=lambda v, s: max(v.values()) if v else None)

    def control(v, side, key):
        if not v:
            return None
        roles = ["ovsfabric controller"] if side == FAB else \
            ["ovn-northd", "ovn-controller (all hosts)"]
        return round(sum(v[r][key] for r in roles), 2)
    both("bulk: control CPU s (OVN: northd + ovn-controllers)", "bulk", "control_plane",
         fn=lambda v, s: control(v, s, "cpu_s"))
    both("bulk: control peak RSS MB (same processes)", "bulk", "control_plane",
         fn=lambda v, s: control(v, s, "peak_rss_mb"))
    both("bulk: NB+SB ovsdb-server CPU s (OVN only)", "bulk", "control_plane",
         fn=lambda v, s: v["NB+SB ovsdb-server"]["cpu_s"] if v and s == OVN else None)
    both("resync: flows per host (min)", "resync", "flows_per_host",
         fn=lambda v, s: min(v.values()) if v else None)
    both("resync: reconciled, s from restart", "resync", "reconciled_s")
    both("resync:   of which process start until API answers", "resync", "process_up_s",
         fn=lambda v, s: v if s == FAB else None)
    both("resync:   the controller's own reconcile, max s per host", "resync",
         "controller_reported", fn=lambda v, s: max(
             (r["seconds"] for r in v.values() if r), default=None) if v else None)
    both("resync: flow mods sent (all hosts)", "resync", "flow_mods", fn=lambda v, s: _sum(v))
    both("resync: OpenFlow msgs into switches", "resync", "openflow_msgs_received",
         fn=lambda v, s: _sum(v))
    both("resync: idle control CPU % afterwards (as bulk)", "resync", "idle_cpu_percent",
         fn=lambda v, s: None if not v else round(
             sum(v[r] for r in (["ovsfabric controller"] if s == FAB else
                                ["ovn-northd", "ovn-controller (all hosts)"])), 1))
    both("flowrate: flows in h1's table", "flowrate", "flows")
    both("flowrate: raw ovs-ofctl --bundle, flows/s", "flowrate", "raw_flows_per_s")
    both("flowrate: controller, flows/s", "flowrate", "controller_flows_per_s")
    both("api: endpoints already in the network", "api", "endpoints_present")
    both("api: endpoints/s, 8 clients (OVN: no wait)", "api", "endpoints_per_s")
    both("api: p50 ms per call (OVN: no wait)", "api", "p50_ms")
    fab_rate, fab_p50 = (value_at(results, "api", FAB, k) for k in ("endpoints_per_s", "p50_ms"))
    both("api: endpoints/s (OVN: --wait=hv, as the POST)", "api", "wait_hv",
         "endpoints_per_s", fn=lambda v, s: fab_rate if s == FAB else v)
    both("api: p50 ms per call (OVN: --wait=hv)", "api", "wait_hv", "p50_ms",
         fn=lambda v, s: fab_p50 if s == FAB else v)
    return out


def table(results: dict, figures=None) -> str:
    """`figures`: (label, ovsfabric, OVN) rows, by default compare.py's from `results`; then
    the errors any step recorded."""
    lines = [f"{'figure':<52} {FAB:>12} {OVN:>12} {'ratio':>7}", "-" * 86]
    for label, f, o in (rows(results) if figures is None else figures):
        ratio = f / o if isinstance(f, (int, float)) and isinstance(o, (int, float)) and o \
            else None
        lines.append(f"{label:<52} {_fmt(f):>12} {_fmt(o):>12} "
                     f"{(f'{ratio:.2f}' if ratio is not None else ''):>7}")
    lines.append("ratio = ovsfabric / OVN (times: below 1 is ovsfabric faster; rates: above 1)")
    for step, by_side in results.items():
        if step == "meta":
            continue
        if "error" in by_side:
            lines.append(f"FAILED {step}: {by_side['error']}")
        for side, r in by_side.items():
            if isinstance(r, dict) and "error" in r:
                lines.append(f"FAILED {step} ({side}): {r['error']}")
    return "\n".join(lines)
