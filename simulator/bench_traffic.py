"""Traffic figures for `make bench`: the traffic node against the road world at fixed rates.
Printed, never asserted; targets in docs/bench.md."""

from __future__ import annotations

import json

from simulator import engine, scenario

CLASSES = {"two_wheeler": "n_2w", "car": "n_car", "van": "n_van", "truck": "n_hgv"}


def run(rate_vph: float, minutes: float = 20, seed: int = 3) -> dict:
    """One kerb-side node, one lane at rate_vph; counts, speeds, classes against the truth
    over the intervals the node closed."""
    sc = scenario.parse({"name": "road", "hours": minutes / 60 + 0.01, "seed": seed, "nodes": [
        {"id": "tr-1", "type": "traffic", "board": "esp32-devkitc",
         "config": {"sample_s": 300, "report_s": 300}, "world": {"rate_vph": rate_vph, "lanes": 1}}]})
    sim = engine.Simulation(sc)
    try:
        sim.run()
        node = sim.nodes[0]
        rs = [r for m in node.messages if m.topic.endswith("/telemetry") for r in json.loads(m.payload)["r"]]
        rs = rs[1:]  # the first closes at power-on, empty
        span = 300 * len(rs)
        truth = node.world.vehicles(0, span)
    finally:
        sim.close()
    counted = sum(r["n"] for r in rs)
    true_kmh = sum(v[5] for v in truth) / max(1, len(truth))
    spd = [(r["spd_kmh10"] / 10, r["n_spd"]) for r in rs if "spd_kmh10" in r]
    node_kmh = sum(s * k for s, k in spd) / max(1, sum(k for _, k in spd))
    true_cls = {k: 0 for k in CLASSES.values()}
    for v in truth:
        true_cls[CLASSES[v[3]]] += 1
    node_cls = {k: sum(r.get(k, 0) for r in rs) for k in CLASSES.values()}
    classified = sum(node_cls.values())
    agree = sum(min(true_cls[k], node_cls[k]) for k in true_cls)
    return {"truth": len(truth), "counted": counted,
            "accuracy_pct": 100 * (1 - abs(counted - len(truth)) / max(1, len(truth))),
            "speed_err_kmh": abs(node_kmh - true_kmh), "class_agreement_pct": 100 * agree / max(1, classified)}
