"""The traffic node's lane logic over days of the road world, without the board around it.

A node-level run (engine, fake I2C, MQTT) costs about 4 s of wall time per virtual minute at
50 Hz: a week would take eleven hours. The replay feeds the firmware's own modules
(nodes/traffic_lane.py with traffic_detect.py and traffic_stats.py, loaded by the node's module
loader from the installed flash image, so the very files a board runs) with the samples the
two fake magnetometers would produce: the road world's field at the chip's output data rate,
the chip's noise figure (chip_magnetometer's default 0.2 uT per axis, Gaussian) and its
quantisation (QMC5883L at 8 G: 3000 LSB/G, rounded). What it leaves out is the board: I2C
timing, the app's polling loop, MQTT. tests/test_traffic_replay.py checks that a node in the
engine and the replay count the same vehicles over the same stretch of road.

replay(...) -> dict with "vehicles" (t_on_s, t_off_s, direction, speed_kmh or None, length_m
or None, in virtual seconds), "intervals" (the readings, one per interval_s, with "t_s" the
interval's end) and "truth" (Road.vehicles over the span). Long spans: run_days() splits a
week into days, each replayed in its own process after a warm-up.
"""

from __future__ import annotations

import math
import random
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from simulator import flash, profiles, scenario, worlds
from simulator.loader import NodeModules
from simulator.mp import simboard

START_UNIX = scenario.parse({"name": "x", "hours": 1, "nodes": []}).start_unix  # the scenario default
QMC_LSB_PER_G_8G = 3000  # QMC5883L datasheet, sensitivity at RNG = 8 G (drivers/qmc5883l.py)
_WRAP = 1 << 30  # time.ticks_ms() period on the port
WARM_S = 120  # replayed before t0_s and thrown away: the baseline settles, parked cars appear


def _firmware(tmp: Path, node_cfg: dict):
    """The traffic firmware's modules and the node section with its defaults filled in, loaded
    as a board loads them."""
    profile = profiles.load("esp32-devkitc")
    flash.install(tmp, "traffic", {"node_id": "replay", "type": "traffic", "node": node_cfg}, profile)
    board = simboard.Board("replay", profile, str(tmp), seed=1)
    mods = NodeModules(board)
    schema = mods._import("nodes.traffic_config", fromlist=("__name__",)).SCHEMA
    n = {k: spec[2] for k, spec in schema.items()}
    n.update(node_cfg)
    return mods._import("nodes.traffic_lane", fromlist=("__name__",)), n


def replay(world: dict, seed: int, t0_s: float, t1_s: float, node_cfg: dict | None = None,
           start_unix: int = START_UNIX, noise_ut: float = 0.2, warm_s: float = WARM_S) -> dict:
    """Replay [t0_s, t1_s) of the road world (params `world`, the engine's world seed) through
    the node's lane logic. Vehicles and intervals count from t0_s (the warm-up before it is
    replayed and dropped); the pairs still open at t1_s are settled a few seconds later."""
    with tempfile.TemporaryDirectory(prefix="townsense-replay-") as tmp:
        lane_mod, n = _firmware(Path(tmp) / "flash", dict(node_cfg or {}))
    road = worlds.load("traffic").Road(dict(world), seed, start_unix)
    lane = lane_mod.Lane(n)
    out_vehicles: list = []
    t_now = [0]  # ms, virtual, of the sample being fed (to unwrap the ticks of a vehicle)

    def unwrap(ticks: int) -> float:
        d = (t_now[0] - ticks) % _WRAP
        return (t_now[0] - d) / 1000.0

    def on_vehicle(v) -> None:
        t_on = unwrap(v[0])
        if t_on >= t0_s:
            out_vehicles.append((t_on, unwrap(v[1]), v[2], None if v[3] is None else v[3] * 0.0036,
                                 None if v[4] is None else v[4] / 1000.0))

    lane.on_vehicle = on_vehicle
    rate = n["rate_hz"]
    if n["sensor"] != "qmc5883l" or rate not in (50, 100):
        raise ValueError("the replay models a QMC5883L at 50 or 100 Hz")
    scale = QMC_LSB_PER_G_8G / 100.0  # counts per uT
    sd = noise_ut * scale
    rng = random.Random(seed * 7919 + int(t0_s))
    gauss = rng.gauss
    floor = math.floor
    field = road.field
    d0, d1 = lane.dets
    feed0, feed1 = d0.feed, d1.feed
    interval_ms = n["interval_s"] * 1000
    period_ms = 1000 // rate
    k_start = int(math.floor((t0_s - warm_s) * rate))
    k_end = int(math.ceil((t1_s + 10) * rate))
    k_t1 = int(math.ceil(t1_s * rate))
    next_close = int(t0_s * 1000) + interval_ms
    intervals = []
    for k in range(k_start, k_end):
        t_ms = k * period_ms
        t_now[0] = t_ms
        tick = t_ms % _WRAP
        t_us = t_ms * 1000
        f = field(0, t_us)
        if feed0(floor(f[0] * scale + sd * gauss(0.0, 1.0) + 0.5), floor(f[1] * scale + sd * gauss(0.0, 1.0) + 0.5),
                 floor(f[2] * scale + sd * gauss(0.0, 1.0) + 0.5), tick):
            lane.detected(0)
        f = field(1, t_us)
        if feed1(floor(f[0] * scale + sd * gauss(0.0, 1.0) + 0.5), floor(f[1] * scale + sd * gauss(0.0, 1.0) + 0.5),
                 floor(f[2] * scale + sd * gauss(0.0, 1.0) + 0.5), tick):
            lane.detected(1)
        if t_ms == int(t0_s * 1000):
            lane.flush(tick)
            lane.close(interval_ms)  # the warm-up's vehicles are not counted
        elif t_ms >= next_close and k <= k_t1:
            lane.flush(tick)
            r = lane.close(interval_ms)
            r["t_s"] = t_ms / 1000.0
            intervals.append(r)
            next_close += interval_ms
    lane.flush((k_end * period_ms + 60000) % _WRAP)
    out_vehicles = [v for v in out_vehicles if v[0] < t1_s]
    out_vehicles.sort()
    return {"vehicles": out_vehicles, "intervals": intervals, "truth": road.vehicles(t0_s, t1_s),
            "rate_hz": rate, "node": n}


def _day(args: tuple) -> dict:
    world, seed, t0, t1, node_cfg = args
    return replay(world, seed, t0, t1, node_cfg)


def run_days(world: dict, seed: int, days: int = 7, node_cfg: dict | None = None, workers: int = 2,
             day_s: int = 86400) -> list:
    """Replay `days` consecutive days (each after its own warm-up) in `workers` processes; one
    replay() result per day."""
    jobs = [(dict(world), seed, d * day_s, (d + 1) * day_s, dict(node_cfg or {})) for d in range(days)]
    if workers <= 1:
        return [_day(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(_day, jobs))


def match(vehicles: list, truth: list, before_s: float = 0.9, after_s: float = 0.3) -> dict:
    """Each true vehicle (front at sensor 0 at t) to at most one detection whose t_on lies in
    [t - before_s, t + after_s] (the field reaches the sensor before the front does), in time
    order, the earliest free one first. Returns counts of matched, missed and false, and the
    matched pairs (truth, vehicle)."""
    pairs = []
    missed = []
    j = 0
    used = [False] * len(vehicles)
    for tv in truth:
        t = tv[0]
        while j < len(vehicles) and vehicles[j][0] < t - before_s:
            j += 1
        i = j
        hit = None
        while i < len(vehicles) and vehicles[i][0] <= t + after_s:
            if not used[i]:
                hit = i
                break
            i += 1
        if hit is None:
            missed.append(tv)
        else:
            used[hit] = True
            pairs.append((tv, vehicles[hit]))
    false = [vehicles[i] for i in range(len(vehicles)) if not used[i]]
    return {"matched": len(pairs), "missed": missed, "false": false, "pairs": pairs}
