"""The differential check: a scenario run under CPython and the same run under real
MicroPython must publish the same messages at the same virtual times.

Payloads are compared as parsed JSON: MicroPython's dicts do not keep insertion order, so
the key order of a payload is not part of the message."""

from __future__ import annotations

import json


def _norm(msgs):
    out = []
    for t, topic, payload in msgs:
        try:
            body = json.loads(payload)
        except ValueError:
            body = payload
        out.append((t, topic, body))
    return out


def compare(cpython: list[tuple[int, str, str]], micropython: list[tuple[int, str, str]]) -> list[str]:
    """Human-readable differences; empty when the runs agree."""
    a, b = _norm(cpython), _norm(micropython)
    diffs = []
    if len(a) != len(b):
        diffs.append("CPython published %d messages, MicroPython %d" % (len(a), len(b)))
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            diffs.append("message %d differs:\n  CPython:     %r\n  MicroPython: %r" % (i, x, y))
            if len(diffs) > 10:
                break
    return diffs
