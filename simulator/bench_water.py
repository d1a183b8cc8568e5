"""Water-meter figures for `make bench`. Printed, never asserted; targets in docs/bench.md."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from simulator import engine, scenario, worlds

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware" / "lib"))
from nodes import water_logic  # noqa: E402  (the firmware's own alarm rules: one definition)

START = 1780272000  # 2026-06-01, a Monday


def _run_logic(house, days: float, wake_s: int = 300, lpp: float = 1.0) -> list:
    """The node's alarm rules fed as the node feeds them: cumulative pulse counters of the
    world's exact volumes, observed every wake_s. Returns the events with their times."""
    st: dict = {}
    cfg = dict(water_logic.DEFAULTS, ml_per_pulse=int(lpp * 1000))
    out = []
    t = 0
    while t <= days * 86400:
        fwd, rev = house.volumes(0, t)
        water_logic.observe(st, cfg, START + t, int(fwd / lpp), int(rev / lpp))
        for ev in water_logic.alarms(st, cfg, START + t):
            out.append((t, ev))
        water_logic.interval_rollover(st, cfg, START + t)
        t += wake_s
    return out


def false_leaks(households: int = 40, days: int = 25) -> tuple[int, int]:
    world_water = worlds.load("water_meter")
    alarms = 0
    for h in range(households):
        house = world_water.Household({"persons": 1 + h % 5}, 1000 + h, START)
        alarms += sum(1 for _, ev in _run_logic(house, days) if ev[0] == "leak")
    return alarms, households * days


def leak_latency(households: int = 30) -> list[float]:
    """Hours from a leak's start (2-20 l/h, a random hour of day 2) to the leak alarm."""
    world_water = worlds.load("water_meter")
    out = []
    for h in range(households):
        start_h = 24 + (h * 7.3) % 24
        rate = 2 + (h * 37) % 19
        house = world_water.Household({"persons": 1 + h % 5,
                                       "leaks": [[start_h, None, rate]]}, 2000 + h, START)
        leak = [t for t, ev in _run_logic(house, 4) if ev[0] == "leak" and t >= start_h * 3600]
        out.append((leak[0] - start_h * 3600) / 3600 if leak else float("inf"))
    return out


def energy(board: str, days: float = 2) -> float:
    sc = scenario.parse({"name": "water-energy", "hours": days * 24, "seed": 3, "nodes": [
        {"id": "wm-1", "type": "water_meter", "board": board,
         "config": {"sample_s": 300, "report_s": 21600}, "world": {"persons": 3}}]})
    sim = engine.Simulation(sc)
    try:
        return sim.run()[0]["mah_per_day"]
    finally:
        sim.close()


def max_rates() -> dict:
    from tests.test_pulse import max_lossless_rate  # the search lives with the pulse tests

    return {"irq": max_lossless_rate("irq"), "counter": max_lossless_rate("counter")}


def summary() -> dict:
    lat = leak_latency()
    found = [x for x in lat if x != float("inf")]
    n_false, days = false_leaks()
    return {"leak_latency_median_h": statistics.median(found) if found else float("nan"),
            "leak_latency_max_h": max(found) if found else float("nan"), "leaks_missed": len(lat) - len(found),
            "false_leaks": n_false, "household_days": days}
