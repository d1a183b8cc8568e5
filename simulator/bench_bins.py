"""Fill-level figures for `make bench`: the bins-town scenario (50 bins, 30 days) against the
bin world's truth. Printed, never asserted; targets in docs/bench.md."""

from __future__ import annotations

import json
import statistics

from simulator import engine, scenario, worlds

EMPTIED_MATCH_S = 3 * 3600  # a bin_emptied within this of a collection is that collection


def _bins(sc: scenario.Scenario) -> dict:
    """The world of every node, rebuilt from the scenario (as SimNode seeds it): the truth."""
    world_bins = worlds.load("fill_level")
    return {n.id: world_bins.Bin(dict(n.world or {}), sc.seed * 100003 + i, sc.start_unix)
            for i, n in enumerate(sc.nodes)}


def _full_episodes(b, until_s: float, full: float, hyst: float, tol: float = 2.0, step_s: int = 60):
    """The truth's spells near or above full: (start, reached, end) with start when the fill
    first comes within tol points of `full` (a node may round up to it), reached when it is at
    or above `full` (None if it never got there), end when it falls below full - hyst."""
    out, cur, t = [], None, 0
    while t < until_s:
        f = b.truth_fill_pct(t)
        if cur is None and f >= full - tol:
            cur = [t, t if f >= full else None, None]
        elif cur is not None:
            if cur[1] is None and f >= full:
                cur[1] = t
            if f < full - hyst:
                cur[2] = t
                out.append(tuple(cur))
                cur = None
        t += step_s
    if cur is not None:
        out.append((cur[0], cur[1], until_s))
    return out


def evaluate(sc: scenario.Scenario, messages: dict) -> dict:
    bins = _bins(sc)
    until = sc.duration_us / 1e6
    errors_depth, errors_fill = [], []
    detected = missed = missed_low = false = 0
    latencies = []
    faults = 0
    detect_delays = []
    crossings_total = full_false = flapping = 0
    for spec in sc.nodes:
        b = bins[spec.id]
        node_cfg = spec.config["node"]
        depth = node_cfg["empty_mm"]
        msgs = messages.get(spec.id, [])
        readings = [r for m in msgs if m.topic.endswith("/telemetry") for r in json.loads(m.payload)["r"]]
        events = [json.loads(m.payload) for m in msgs if m.topic.endswith("/event")]
        for r in readings:
            if "mm" not in r:
                continue
            t = r["ts"] - sc.start_unix
            st = b.state_at(t)
            if st["lid_open"] or st["unplugged"]:
                continue
            errors_depth.append(abs(r["mm"] - st["distance_mm"]) * 100 / depth)
            errors_fill.append(abs(r["fill"] - max(0.0, min(100.0, st["fill_pct"]))))
        emptied = [e["ts"] - sc.start_unix for e in events if e["event"] == "bin_emptied"]
        used = set()
        colls = b.collections(until)
        for k, (t_c, before) in enumerate(colls):
            # the first bin_emptied after the collection and before the next one is its
            # detection (late when the sensor was blind: lid open, unplugged)
            t_next = colls[k + 1][0] if k + 1 < len(colls) else until
            hit = [i for i, t in enumerate(emptied) if i not in used and t_c <= t < t_next]
            if hit:
                used.add(hit[0])
                detected += 1
                detect_delays.append(emptied[hit[0]] - t_c)
            elif before >= 40:
                missed += 1
            else:
                missed_low += 1
        false += len(emptied) - len(used)
        full_pct = node_cfg.get("full_pct", 80)
        hyst = node_cfg.get("full_hyst_pct", 10)
        full_events = sorted(e["ts"] - sc.start_unix for e in events if e["event"] == "bin_full")
        episodes = _full_episodes(b, until, full_pct, hyst)
        in_episode = set()
        for t0, t_full, t_end in episodes:
            # a wake samples at most one interval after the spell starts
            mine = [t for t in full_events if t0 - 1800 <= t <= t_end]
            in_episode.update(mine)
            flapping += max(0, len(mine) - 1)
            if t_full is None:
                continue
            crossings_total += 1
            if mine:
                latencies.append(max(0, mine[0] - t_full))
        full_false += sum(1 for t in full_events if t not in in_episode)
        faults += sum(1 for e in events if e["event"] == "sensor_fault")
    return {
        "median_abs_error_pct_depth": statistics.median(errors_depth) if errors_depth else float("nan"),
        "p95_abs_error_pct_depth": sorted(errors_depth)[int(0.95 * len(errors_depth))] if errors_depth else float("nan"),
        "median_abs_fill_error_pts": statistics.median(errors_fill) if errors_fill else float("nan"),
        "readings_compared": len(errors_depth),
        "collections_detected": detected, "collections_missed": missed,
        "collections_missed_below_40pct": missed_low, "collections_false": false,
        "collection_detect_delay_median_s": statistics.median(detect_delays) if detect_delays else float("nan"),
        "collection_detected_late": sum(1 for d in detect_delays if d > EMPTIED_MATCH_S),
        "bin_full_latency_median_s": statistics.median(latencies) if latencies else float("nan"),
        "bin_full_latency_max_s": max(latencies) if latencies else float("nan"),
        "bin_full_crossings_caught": len(latencies), "bin_full_crossings_total": crossings_total,
        "bin_full_false": full_false, "bin_full_repeated_in_one_spell": flapping,
        "sensor_fault_events": faults,
    }


def battery_life(board: str, days: float = 14) -> dict:
    """One household bin sampling every 30 min, reporting every 6 h or on an event."""
    sc = scenario.parse({"name": "bin-energy", "hours": days * 24, "seed": 5, "nodes": [
        {"id": "bin-1", "type": "fill_level", "board": board,
         "config": {"sample_s": 1800, "report_s": 21600,
                    "node": {"sensor": "jsn-sr04t", "empty_mm": 1100, "full_mm": 300}},
         "world": {"use": "home"}}]})
    sim = engine.Simulation(sc)
    try:
        row = sim.run()[0]
        node = sim.nodes[0]
        sensor_mah = sum(p.charge_ma_us() for p in node.board.peripherals) / 3.6e9 / days
    finally:
        sim.close()
    return {"mah_per_day": row["mah_per_day"], "years": row["battery_days"] / 365.25,
            "sensor_mah_per_day": sensor_mah, "awake_s_per_day": row["awake_s"] / days}
