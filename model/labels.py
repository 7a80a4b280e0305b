"""Endpoint labels, what security policies select endpoints by: the keys and values allowed,
checked once for endpoints and selectors alike."""
from __future__ import annotations

import re
from typing import Any

from .errors import InvalidRequest
from .policy import Labels, labels_of

# Kubernetes' shape, without its prefix rules: a key may hold a slash (app.kubernetes.io/name).
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
VALUE = re.compile(r"[A-Za-z0-9._-]{0,63}")
# Every label of an endpoint is an index entry and, for the compiler, a set it may be in.
MAX_LABELS = 64


def parse_labels(value: Any, field: str = "labels") -> Labels:
    """``value`` ({key: value}, strings) as sorted pairs; InvalidRequest names ``field`` and
    what is wrong."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"{field} must be a JSON object of strings")
    if len(value) > MAX_LABELS:
        raise InvalidRequest(f"{field} has {len(value)} labels: at most {MAX_LABELS}")
    for key, text in value.items():
        if not isinstance(key, str) or not KEY.fullmatch(key):
            raise InvalidRequest(f"{field} key {key!r} is not 1 to 63 of A-Z a-z 0-9 . _ / - "
                                 f"starting with a letter or digit")
        if not isinstance(text, str) or not VALUE.fullmatch(text):
            raise InvalidRequest(f"{field}.{key} value {text!r} is not 0 to 63 of "
                                 f"A-Z a-z 0-9 . _ -")
    return labels_of(value)
