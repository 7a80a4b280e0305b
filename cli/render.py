"""Text output: aligned tables, key/value details, human-sized counters, flow labels."""
from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

MISSING = "-"


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def cell(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return yes_no(value)
    return str(value)


def yes_no(value: bool | None) -> str:
    return MISSING if value is None else ("yes" if value else "no")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Iterable[str] = (),
          indent: str = "") -> str:
    """Columns padded to their widest cell; columns named in ``right`` (numbers) right-aligned."""
    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text_rows]) for i, h in enumerate(headers)]
    right = set(right)

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if h in right else c.ljust(w)
                  for c, w, h in zip(cells, widths, headers)]
        return (indent + "  ".join(padded)).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in text_rows])


def details(pairs: Sequence[tuple[str, Any]]) -> str:
    width = max(len(label) for label, _ in pairs)
    return "\n".join(f"{label + ':':<{width + 1}}  {cell(value)}" for label, value in pairs)


def _scaled(value: float, base: int, units: Sequence[str]) -> str:
    for unit in units:
        value /= base
        # 999_999 packets must read 1.0M, not 1000.0K.
        if round(value, 1) < base:
            break
    return f"{value:.1f}{unit}"


def human_count(n: int | None) -> str:
    """Packets: 999, 1.2K, 3.4M (powers of 1000)."""
    if n is None:
        return MISSING
    return str(n) if n < 1000 else _scaled(n, 1000, "KMGTP")


def human_bytes(n: int | None) -> str:
    """Bytes: 512 B, 12.3 KiB, 4.0 MiB (powers of 1024)."""
    if n is None:
        return MISSING
    if n < 1024:
        return f"{n} B"
    return _scaled(n, 1024, (" KiB", " MiB", " GiB", " TiB", " PiB"))


def owner_label(owner: dict | None) -> str:
    """"endpoint web-1", "network red", "fabric": what the flow's cookie says it belongs to."""
    if not owner:
        return "unknown"
    who = owner.get("name") or owner.get("id")
    return f"{owner['kind']} {who}" if who else owner["kind"]


def table_label(number: int | None, name: str | None) -> str:
    return " ".join(str(part) for part in (number, name) if part is not None)


def flow_label(flow: dict) -> str:
    """One flow on one line: prio, match, actions and owner."""
    return (f"prio {flow['priority']} {flow['match'] or '(any)'} -> {flow['actions']} "
            f"[{owner_label(flow.get('owner'))}]")


FLOW_HEADERS = ("HOST", "TABLE", "PRIO", "OWNER", "PACKETS", "BYTES", "MATCH", "ACTIONS")
FLOW_NUMBERS = ("PRIO", "PACKETS", "BYTES")


def flow_row(flow: dict) -> list[str]:
    # The narrow columns come first and match/actions last: a row stays one line (greppable,
    # like ovs-ofctl) and the two long columns do not push the others out of sight.
    return [flow["host"], table_label(flow["table"], flow.get("table_name")),
            str(flow["priority"]), owner_label(flow.get("owner")),
            human_count(flow.get("packets")), human_bytes(flow.get("bytes")),
            flow["match"] or "(any)", flow["actions"]]


def flow_table(flows: Sequence[dict], indent: str = "", first: tuple[str, list[str]] | None = None
               ) -> str:
    """Flows as a table; ``first`` adds a leading column (header, one value per flow)."""
    headers, rows = list(FLOW_HEADERS), [flow_row(f) for f in flows]
    if first:
        headers.insert(0, first[0])
        rows = [[v] + r for v, r in zip(first[1], rows)]
    return table(headers, rows, right=FLOW_NUMBERS, indent=indent)


def confirm(as_json: bool, message: str) -> int:
    """A write's confirmation for people (with --json, nothing: the API answered no body);
    the exit status of success."""
    if not as_json:
        print(message)
    return 0


def error(message: str) -> None:
    print(f"ovsfabric: {message}", file=sys.stderr)
