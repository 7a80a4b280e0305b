"""Labels as people type and read them: key=value to set, key- to remove, k=v,k=v lists."""
from __future__ import annotations

from typing import Iterable

from .lookup import CommandError


def changed_labels(current: dict[str, str], changes: Iterable[str]) -> dict[str, str]:
    """``current`` with each change applied in order: ``key=value`` sets, ``key-`` removes."""
    labels = dict(current)
    for change in changes:
        key, sep, value = change.partition("=")
        if sep and key:
            labels[key] = value
        elif not sep and len(change) > 1 and change.endswith("-"):
            labels.pop(change[:-1], None)
        else:
            raise CommandError(f"label {change!r} is not KEY=VALUE (set) or KEY- (remove)")
    return labels


def parse_label_list(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` (``--labels``); values may be empty (``k=``)."""
    labels = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"label {item!r} in {text!r} is not KEY=VALUE")
        labels[key] = value
    return labels


def label_text(labels: dict[str, str]) -> str:
    """``app=web,tier=back``, sorted by key: the form --labels takes."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
