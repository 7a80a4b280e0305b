"""The convergence latency distributions of ovsfabric and OVN, as a PNG.

    .venv/bin/python bench/plot.py [bench/results/compare.json] [-o out.png]

One panel per convergence step (empty network, loaded network): each system's samples as a
cumulative distribution (the fraction of endpoints that answered within x ms) on a log axis,
p50 and p95 marked. matplotlib comes with the optional extra `bench`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # no display on the lab machines
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"ovsfabric": "tab:blue", "OVN": "tab:orange"}
PANELS = (("convergence", "empty network"), ("convergence_loaded", "loaded network"))


def _panel(ax, step_results: dict, title: str) -> None:
    for name, r in step_results.items():
        samples = sorted(r.get("all_ms") or [])
        if not samples:
            continue
        fractions = [0.0] + [(k + 1) / len(samples) for k in range(len(samples))]
        ax.step([samples[0]] + samples, fractions, where="post", color=COLOURS.get(name),
                label=f"{name}: p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms "
                      f"(n={len(samples)})")
        for p in ("p50_ms", "p95_ms"):
            ax.axvline(r[p], color=COLOURS.get(name), linestyle=":", linewidth=0.8)
    background = max((r.get("background_endpoints", 0) for r in step_results.values()),
                     default=0)
    ax.set_title(f"{title} ({background} other endpoints)" if background else title)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("API call -> first ping reply from another host (ms)")
    ax.set_ylabel("fraction of endpoints")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def plot(results: dict, out: str) -> str:
    panels = [(step, title) for step, title in PANELS if step in results]
    if not panels:
        raise ValueError("no convergence results to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, (step, title) in zip(axes[0], panels):
        _panel(ax, results[step], title)
    meta = results.get("meta", {})
    fig.suptitle(f"Convergence, ovsfabric vs OVN: {meta.get('hosts', '?')} hosts, "
                 f"{meta.get('started', '')}, load average {meta.get('loadavg', {}).get('start')}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="?", default=os.path.join(here, "results", "compare.json"))
    p.add_argument("-o", "--out")
    args = p.parse_args(argv)
    with open(args.results) as f:
        results = json.load(f)
    print(plot(results, args.out or os.path.splitext(args.results)[0] + ".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
