"""Scenarios: which nodes, on which boards, in which world, with which faults, for how long.

A scenario is a JSON file (see docs/simulator.md); the bundled ones live in
simulator/scenarios/. Expansion turns node groups into one NodeSpec per node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from simulator import profiles

BUNDLED_DIR = Path(__file__).resolve().parent / "scenarios"
FAULT_KINDS = {"wifi_down", "ntp_down", "power_cut", "reset", "flash_full"}


class ScenarioError(ValueError):
    pass


@dataclass
class NodeSpec:
    id: str
    type: str
    board: str
    config: dict
    ticks_offset_ms: int = 0
    world: dict | None = None  # the node type's world around this node (simulator/worlds.py)


@dataclass
class Fault:
    kind: str
    at_us: int
    for_us: int = 0
    node: str | None = None
    value: int = 0


@dataclass
class Scenario:
    name: str
    description: str
    start_unix: int
    hours: float
    seed: int
    aps: list[dict]
    nodes: list[NodeSpec]
    faults: list[Fault] = field(default_factory=list)
    quantum_ms: int = 100

    def outages(self) -> dict:
        """Network outages as simnet.NetworkWorld wants them: kind -> [(start µs, end µs)]."""
        out: dict = {}
        for f in self.faults:
            if f.kind in ("wifi_down", "ntp_down"):
                out.setdefault(f.kind[:-5], []).append((f.at_us, f.at_us + f.for_us))
        return out

    @property
    def duration_us(self) -> int:
        return int(self.hours * 3_600_000_000)


def bundled() -> dict[str, Path]:
    return {p.stem: p for p in sorted(BUNDLED_DIR.glob("*.json"))}


def find(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.exists():
        return p
    known = bundled()
    if name_or_path in known:
        return known[name_or_path]
    raise ScenarioError("no scenario file or bundled scenario named %r (bundled: %s)"
                        % (name_or_path, ", ".join(known)))


def load(name_or_path: str, hours: float | None = None, seed: int | None = None) -> Scenario:
    path = find(name_or_path)
    try:
        raw = json.loads(path.read_text())
    except ValueError as e:
        raise ScenarioError("%s: not valid JSON: %s" % (path, e)) from None
    return parse(raw, hours=hours, seed=seed, where=str(path))


def _need(d: dict, key: str, kind, where: str):
    if key not in d:
        raise ScenarioError("%s: '%s' is required" % (where, key))
    v = d[key]
    if not isinstance(v, kind) or isinstance(v, bool):
        raise ScenarioError("%s: '%s' has the wrong type (%r)" % (where, key, v))
    return v


def parse(raw: dict, hours: float | None = None, seed: int | None = None, where: str = "scenario") -> Scenario:
    if not isinstance(raw, dict):
        raise ScenarioError("%s: expected an object" % where)
    name = _need(raw, "name", str, where)
    start = raw.get("start", "2026-06-01T00:00:00Z")
    try:
        start_unix = int(datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp())
    except (ValueError, AttributeError):
        raise ScenarioError("%s: 'start' must be an ISO date-time, got %r" % (where, start)) from None
    aps = raw.get("network", {}).get("aps") or [{"ssid": "townsense", "key": "townsense-demo"}]
    nodes: list[NodeSpec] = []
    for gi, group in enumerate(_need(raw, "nodes", list, where)):
        gw = "%s: nodes[%d]" % (where, gi)
        pattern = _need(group, "id", str, gw)
        count = group.get("count", 1)
        ntype = _need(group, "type", str, gw)
        board = _need(group, "board", str, gw)
        if board not in profiles.names():
            raise ScenarioError("%s: unknown board %r (known: %s)" % (gw, board, ", ".join(profiles.names())))
        for n in range(count):
            node_id = pattern.format(n=n + 1)
            cfg = {"node_id": node_id, "type": ntype,
                   "wifi": {"ssid": aps[0]["ssid"], "key": aps[0].get("key", "")}}
            cfg.update(group.get("config", {}))
            world = group.get("world")
            if isinstance(world, list):  # one entry per node, in turn: a mixed group
                world = world[n % len(world)] if world else None
            if world is not None and not isinstance(world, dict):
                raise ScenarioError("%s: 'world' is an object or a list of objects" % gw)
            nodes.append(NodeSpec(node_id, ntype, board, cfg, group.get("ticks_offset_ms", 0), world))
    ids = [n.id for n in nodes]
    if len(set(ids)) != len(ids):
        raise ScenarioError("%s: node ids repeat; give each group an id pattern with {n}" % where)
    faults = []
    for fi, f in enumerate(raw.get("faults", [])):
        fw = "%s: faults[%d]" % (where, fi)
        kind = _need(f, "kind", str, fw)
        if kind not in FAULT_KINDS:
            raise ScenarioError("%s: unknown fault kind %r (known: %s)" % (fw, kind, ", ".join(sorted(FAULT_KINDS))))
        at_us = int(float(f.get("at_h", 0)) * 3_600_000_000)
        for_us = int(float(f.get("for_h", 0)) * 3_600_000_000 + float(f.get("for_s", 0)) * 1_000_000)
        node = f.get("node")
        if node is not None and node not in ids:
            raise ScenarioError("%s: no node %r in this scenario" % (fw, node))
        if kind in ("power_cut", "reset", "flash_full") and node is None:
            raise ScenarioError("%s: a %s fault names its node" % (fw, kind))
        faults.append(Fault(kind, at_us, for_us, node, int(f.get("bytes", 0))))
    return Scenario(
        name=name, description=raw.get("description", ""), start_unix=start_unix,
        hours=float(hours if hours is not None else raw.get("hours", 24)),
        seed=int(seed if seed is not None else raw.get("seed", 1)),
        aps=aps, nodes=nodes, faults=faults, quantum_ms=int(raw.get("quantum_ms", 100)))
