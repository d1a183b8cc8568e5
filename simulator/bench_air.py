"""Air-quality figures for `make bench`: the air-town scenario (6 nodes, 30 winter days)
against the air world's truth. Printed, never asserted; targets in docs/bench.md."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from simulator import engine, scenario, worlds

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware" / "lib"))
from nodes import aq_index  # noqa: E402  (the firmware's own index functions: one definition)


def sites(sc: scenario.Scenario) -> dict:
    world_air = worlds.load("air_quality")
    return {n.id: world_air.Site(dict(n.world or {}), sc.seed * 100003 + i, sc.start_unix)
            for i, n in enumerate(sc.nodes)}


def truth_category(site, hour_end_s: float) -> int | None:
    hourly = [int(v * 10) for v in site.hourly_pm25(hour_end_s, 12)]
    nc = aq_index.nowcast(hourly)
    return None if nc is None else aq_index.aqi_category(aq_index.aqi_pm25(nc))[0]


def evaluate(sc: scenario.Scenario, messages: dict) -> dict:
    truth = sites(sc)
    err_all, err_dry, agree, total = [], [], 0, 0
    for spec in sc.nodes:
        site = truth[spec.id]
        for m in messages.get(spec.id, []):
            if not m.topic.endswith("/telemetry"):
                continue
            for r in json.loads(m.payload)["r"]:
                if "hour_pm25" not in r:
                    continue
                hour_end = (r["ts"] // 3600) * 3600 - sc.start_unix  # the hour it closed
                true = site.hourly_pm25(hour_end, 1)[0]
                e = abs(r["hour_pm25"] - true)
                err_all.append(e)
                if site.hourly_mean("rh", hour_end, 1)[0] < 70:
                    err_dry.append(e)
                if "aqi_cat" in r:
                    t = truth_category(site, hour_end)
                    if t is not None:
                        total += 1
                        agree += t == r["aqi_cat"]
    return {
        "hourly_pm25_mae": statistics.mean(err_all) if err_all else float("nan"),
        "hourly_pm25_median_abs_error": statistics.median(err_all) if err_all else float("nan"),
        "hourly_pm25_mae_dry": statistics.mean(err_dry) if err_dry else float("nan"),
        "hours": len(err_all),
        "aqi_category_agreement_pct": 100 * agree / total if total else float("nan"),
        "aqi_hours": total,
    }


def energy(board: str, sample_s: int, report_s: int, days: float = 3) -> dict:
    """mAh/day and laser-on hours per year of one PMS5003 node at this duty cycle."""
    sc = scenario.parse({"name": "air-energy", "hours": days * 24, "seed": 4, "start": "2026-01-05T00:00:00Z",
                         "nodes": [{"id": "air-1", "type": "air_quality", "board": board,
                                    "config": {"sample_s": sample_s, "report_s": report_s},
                                    "world": {"street": "residential"}}]})
    sim = engine.Simulation(sc)
    try:
        row = sim.run()[0]
    finally:
        sim.close()
    return {"mah_per_day": row["mah_per_day"], "laser_h_per_year": row["laser_on_s"] / 3600 * 365.25 / days,
            "battery_days": row["battery_days"]}
