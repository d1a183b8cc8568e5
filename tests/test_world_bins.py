"""The bin world (simulator/mp/world_bins.py): the truth the fill-level node's fake sensors
measure. Deterministic from the seed whatever the query order, collections on schedule, fill
rates that follow the hour and weekday, incidents when scheduled, truth within its physical
bounds, and the same numbers in the WASI MicroPython as under CPython."""

from __future__ import annotations

import importlib
import math
import sys
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simulator.mp  # noqa: F401  (registers `simboard` under its bare name)
from simulator import profiles
from simulator.mp import simboard

MP_DIR = Path(__file__).resolve().parent.parent / "simulator" / "mp"
if str(MP_DIR) not in sys.path:
    sys.path.append(str(MP_DIR))
wb = importlib.import_module("world_bins")

START = 1_780_000_000  # 2026-05-28 20:26:40 UTC, a Thursday
DAY = 86400
HOUR = 3600
KEYS = ("distance_mm", "fill_pct", "air_c", "noise_mm", "spurious", "lost", "lid_open", "unplugged", "fire")


def grid(days, step_h=1.0):
    n = int(days * 24 / step_h)
    return [i * step_h * HOUR for i in range(n + 1)]


# ---- determinism ------------------------------------------------------------------------------
@pytest.mark.parametrize("use", ["home", "shop", "park"])
def test_same_seed_same_history(use):
    params = {"use": use, "incidents": True, "incident_rates": {"lid_open": 0.3, "fire": 0.05}}
    a = wb.Bin(params, 11, START)
    b = wb.Bin(params, 11, START)
    times = grid(21, 0.5)
    assert [a.state_at(t) for t in times] == [b.state_at(t) for t in times]
    assert a.collections(21 * DAY) == b.collections(21 * DAY) and a.collections(21 * DAY)
    assert a.incidents(21 * DAY) == b.incidents(21 * DAY)
    c = wb.Bin(params, 12, START)
    assert [c.state_at(t)["fill_pct"] for t in times] != [a.state_at(t)["fill_pct"] for t in times]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(-2**40, 2**40), times=st.lists(st.floats(0, 30 * DAY), min_size=1, max_size=25),
       use=st.sampled_from(["home", "shop", "park"]))
def test_query_order_does_not_matter(seed, times, use):
    params = {"use": use, "incidents": True, "incident_rates": {"lid_open": 0.2, "unplugged": 0.1, "fire": 0.05}}
    forward = wb.Bin(params, seed, START)
    want = {t: forward.state_at(t) for t in sorted(times)}
    backward = wb.Bin(params, seed, START)
    backward.state_at(30 * DAY)  # the far future first
    for t in sorted(times, reverse=True):
        assert backward.state_at(t) == want[t]
    assert backward.collections(30 * DAY) == forward.collections(30 * DAY)


def test_scene_reads_the_board_clock():
    b = wb.Bin({"use": "shop"}, 3, START)
    board = simboard.Board("w-1", {"boot_ms": 0}, "/nonexistent")
    board.clock.now_us = 5 * DAY * 1_000_000 + 1234
    assert b.scene(board) == b.state_at(5 * DAY + 0.001234)
    assert set(b.scene(board)) == set(KEYS)


# ---- collections ------------------------------------------------------------------------------
def test_collections_follow_the_weekly_schedule_and_empty_the_bin():
    b = wb.Bin({"use": "home", "collection": {"days": [1, 4], "hour": 7, "skip_prob": 0}}, 5, START)
    span = 28 * DAY
    cols = b.collections(span)
    # 28 days hold four Tuesdays and four Fridays
    assert len(cols) == 8
    for t, before in cols:
        wd, h = b.weekday_hour(t)
        assert wd in (1, 4)
        assert 7 <= h < 8, "within the hour (jitter_min 60)"
        assert before == pytest.approx(b.truth_fill_pct(t - 1e-3), abs=0.5)
        assert b.truth_fill_pct(t) <= 3.0, "back to the residue"
        assert b.truth_fill_pct(t + 60) <= 3.0 + 3.0, "stays low right after"
    assert b.skipped_collections(span) == []


def test_every_n_days_schedule():
    b = wb.Bin({"use": "park", "collection": {"every_days": 3, "hour": 9.5, "jitter_min": 0, "skip_prob": 0}}, 2, START)
    cols = b.collections(30 * DAY)
    gaps = [cols[i + 1][0] - cols[i][0] for i in range(len(cols) - 1)]
    assert gaps and all(g == pytest.approx(3 * DAY) for g in gaps)
    assert all(b.weekday_hour(t)[1] == pytest.approx(9.5) for t, _ in cols)


def test_skipped_collections_let_the_bin_overflow():
    b = wb.Bin({"use": "home", "collection": {"days": [1, 4], "hour": 7, "skip_prob": 1.0}}, 8, START)
    span = 21 * DAY
    assert b.collections(span) == []
    assert len(b.skipped_collections(span)) == 6
    s = b.state_at(span)
    assert s["fill_pct"] > 100, "overfilled"
    assert s["distance_mm"] == pytest.approx(b.overflow_mm, abs=1.0), "heaped up to the rim"
    deps = b.deposits(span)
    assert any(acc < litres for _, litres, acc in deps), "bags that no longer fit are refused"


def test_some_collections_are_skipped_at_the_default_rate():
    skipped = 0
    for seed in range(30):
        b = wb.Bin({"use": "shop"}, seed, START)
        skipped += len(b.skipped_collections(70 * DAY))
    # 30 bins x 10 weeks x 3 collections x 2 %: about 18
    assert 5 <= skipped <= 40


# ---- fill rates -------------------------------------------------------------------------------
def test_home_bin_collected_twice_a_week_is_mostly_full_at_collection():
    fills = []
    for seed in range(30):
        b = wb.Bin({"use": "home"}, seed, START)
        fills += [f for _, f in b.collections(42 * DAY)[1:]]  # the first starts from a random fill
    mean = sum(fills) / len(fills)
    assert 60 <= mean <= 100, mean


def test_shop_fills_in_business_hours_on_weekdays_not_at_night():
    b = wb.Bin({"use": "shop", "collection": {"days": []}, "capacity_l": 1e7}, 4, START)
    span = 56 * DAY
    day_l = night_l = sunday_l = 0.0
    for t, litres, _ in b.deposits(span):
        wd, h = b.weekday_hour(t)
        if wd < 5 and 9 <= h < 18:
            day_l += litres
        elif 0 <= h < 5:
            night_l += litres
        if wd == 6:
            sunday_l += litres
    # per hour: 8 weeks x 5 days x 9 h against 8 weeks x 7 days x 5 h
    assert day_l / 360 > 10 * night_l / 280
    assert sunday_l < day_l / 50
    # and the truth shows it: the level rises over weekday business hours, hardly at night
    rise_day = rise_night = 0.0
    for d in range(56):
        t0 = d * DAY
        wd, h = b.weekday_hour(t0)
        base = t0 - h * HOUR  # local midnight
        if base < 0 or wd >= 5:
            continue
        rise_day += b.truth_fill_pct(base + 18 * HOUR) - b.truth_fill_pct(base + 9 * HOUR)
        rise_night += b.truth_fill_pct(base + 5 * HOUR) - b.truth_fill_pct(base)
    assert rise_day > 5 * max(rise_night, 0.01)


def test_home_fills_more_at_weekends():
    wkend = wkday = 0.0
    for seed in range(10):
        b = wb.Bin({"use": "home"}, seed, START)
        for t, litres, _ in b.deposits(56 * DAY):
            if b.weekday_hour(t)[0] >= 5:
                wkend += litres / 2
            else:
                wkday += litres / 5
    assert wkend > 1.15 * wkday


def test_mean_rate_is_litres_per_day():
    b = wb.Bin({"use": "home", "litres_per_day": 40, "collection": {"days": []}, "capacity_l": 1e7}, 9, START)
    days = 140
    litres = sum(x[1] for x in b.deposits(days * DAY))
    assert litres / days == pytest.approx(40, rel=0.1)


def test_settling_lowers_the_level_between_deposits():
    b = wb.Bin({"use": "home", "settle": 0.3, "collection": {"days": []}, "capacity_l": 1e7}, 1, START)
    deps = b.deposits(10 * DAY)
    gaps = [(deps[i][0], deps[i + 1][0]) for i in range(len(deps) - 1) if deps[i + 1][0] - deps[i][0] > 6 * HOUR]
    assert gaps
    for a, z in gaps:
        assert b.truth_fill_pct(z - 1) < b.truth_fill_pct(a + 1)


# ---- air and incidents ------------------------------------------------------------------------
def test_daily_temperature_cycle():
    b = wb.Bin({"use": "home"}, 6, START)
    afternoon = night = 0.0
    for d in range(1, 15):
        t = d * DAY
        _, h = b.weekday_hour(t)
        midnight = t - h * HOUR
        afternoon += b.air_c(midnight + 15 * HOUR)
        night += b.air_c(midnight + 3 * HOUR)
    assert afternoon / 14 - night / 14 == pytest.approx(14, abs=3)
    for t in grid(14, 0.25):
        assert 8 - 2 - 1e-9 <= b.state_at(t)["air_c"] <= 22 + 2 + 1e-9


def test_scheduled_incidents_appear_when_scheduled():
    params = {"use": "park", "lid_open": [[5, 2]], "unplugged": [[30, 10]], "fire": [[50, 1]]}
    b = wb.Bin(params, 3, START)

    def at(h):
        return b.state_at(h * HOUR)

    assert not at(4.9)["lid_open"] and at(5.1)["lid_open"] and at(6.9)["lid_open"] and not at(7.1)["lid_open"]
    assert not at(29.9)["unplugged"] and at(35)["unplugged"] and not at(40.1)["unplugged"]
    assert not at(49.9)["fire"] and at(50.5)["fire"] and not at(51.1)["fire"]
    before = at(49.99)["air_c"]
    assert before < 30
    assert at(50 + 10 / 60)["air_c"] > 60, "a fire heats the bin within minutes"
    assert 70 <= at(50.99)["air_c"] <= 90
    assert at(54)["air_c"] < before + 5, "and it cools once the fire is out"
    assert [k for k, _, _ in b.incidents(100 * HOUR)] == ["lid_open", "unplugged", "fire"]
    quiet = wb.Bin({"use": "park"}, 3, START)
    assert quiet.incidents(60 * DAY) == []
    assert not any(quiet.state_at(t)[k] for t in grid(5, 0.5) for k in ("lid_open", "unplugged", "fire"))


def test_random_incidents_at_their_daily_rates():
    b = wb.Bin({"use": "home", "incidents": True, "incident_rates": {"lid_open": 0.5, "fire": 0.1, "unplugged": 0.2}}, 21, START)
    inc = b.incidents(200 * DAY)
    n = {k: sum(1 for x in inc if x[0] == k) for k in ("lid_open", "fire", "unplugged")}
    assert 70 <= n["lid_open"] <= 130 and 8 <= n["fire"] <= 35 and 20 <= n["unplugged"] <= 65
    for kind, s, e in inc:
        assert s < e
        assert b.state_at((s + e) / 2)[kind]
        if kind == "fire":
            assert b.state_at(min(e - 1, s + 900))["air_c"] > 55
    default = wb.Bin({"use": "home", "incidents": True}, 21, START)
    assert len(default.incidents(200 * DAY)) < len(inc) / 3


# ---- bounds over parameters and seeds ------------------------------------------------------------
@st.composite
def bin_params(draw):
    depth = draw(st.integers(200, 4000))
    full = draw(st.integers(0, depth - 50))
    p = {"use": draw(st.sampled_from(["home", "shop", "park"])), "depth_mm": depth, "full_mm": full,
         "capacity_l": draw(st.floats(5, 5000)), "litres_per_day": draw(st.floats(0, 3000)),
         "settle": draw(st.floats(0, 0.9)), "incidents": draw(st.booleans()),
         "sensor": draw(st.sampled_from(["jsn-sr04t", "hc-sr04", "vl53l1x"])),
         "start_pct": draw(st.one_of(st.none(), st.floats(0, 200)))}
    if draw(st.booleans()):
        p["collection"] = {"days": draw(st.lists(st.integers(0, 6), max_size=7)), "hour": draw(st.floats(0, 23)),
                           "skip_prob": draw(st.floats(0, 1))}
    else:
        p["collection"] = {"every_days": draw(st.integers(1, 30)), "hour": draw(st.floats(0, 23))}
    if draw(st.booleans()):
        lo = draw(st.floats(0.05, 50))
        p["bag_l"] = [lo, lo + draw(st.floats(0, 100))]
    if draw(st.booleans()):
        p["fire"] = [[draw(st.floats(0, 200)), draw(st.floats(0, 10))]]
    return p


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=bin_params(), seed=st.integers(0, 2**32), start=st.integers(0, 2_000_000_000),
       times=st.lists(st.floats(-10, 20 * DAY), max_size=30))
def test_truth_stays_physical(params, seed, start, times):
    b = wb.Bin(params, seed, start)
    depth = params["depth_mm"]
    for t in times + grid(20, 6):
        s = b.state_at(t)
        assert set(s) == set(KEYS)
        assert 0.0 <= s["fill_pct"] <= 130.0 + 1e-9
        assert 0.0 <= s["distance_mm"] <= depth
        assert s["distance_mm"] == pytest.approx(depth - s["fill_pct"] / 100 * (depth - params["full_mm"]), abs=1e-6)
        assert -10 < s["air_c"] < 95
    for t, f in b.collections(20 * DAY):
        assert 0 <= t <= 20 * DAY and 0 <= f <= 130.0 + 1e-9


def test_bad_params_are_refused():
    for p in ({"use": "office"}, {"depth_mm": 300, "full_mm": 300}, {"sensor": "sonar"},
              {"hour_weights": [1, 2]}, {"bag_l": [0, 5]}, {"collection": {"every_days": 0}}):
        with pytest.raises(ValueError):
            wb.Bin(p, 1, START)


# ---- on a board -----------------------------------------------------------------------------------
class _FakeChip:
    def __init__(self, *args, **kw):
        self.args = args
        self.kw = kw


def _board():
    return simboard.Board("bin-1", profiles.load("lolin-d32"), "/nonexistent")


def test_attach_wires_an_ultrasonic_chip_and_the_tmp36(monkeypatch):
    monkeypatch.setitem(sys.modules, "chip_ultrasonic", types.SimpleNamespace(Ultrasonic=_FakeChip))
    board = _board()
    b = wb.attach(board, {"use": "home", "sensor": "hc-sr04"}, 7, START)
    assert board.extra["world"] is b
    chip = b.chip
    assert chip.args[:3] == (board, 25, 34) and chip.args[3] == b.scene
    assert chip.kw == {"model": "hc-sr04", "power": 26}
    assert 27 in board.adc_sources
    default = wb.attach(_board(), None, 7, START)
    assert default.chip.kw["model"] == "jsn-sr04t"


def test_attach_wires_a_vl53l1x(monkeypatch):
    monkeypatch.setitem(sys.modules, "chip_vl53l1x", types.SimpleNamespace(VL53L1X=_FakeChip))
    board = _board()
    b = wb.attach(board, {"sensor": "vl53l1x"}, 7, START)
    assert b.chip.args[:2] == (board, 0) and b.chip.args[2] == b.scene and b.chip.kw == {"addr": 0x29}


def test_tmp36_reads_the_bin_air_through_machine_adc(tmp_path, monkeypatch):
    from tests.nodeenv import NodeEnv

    monkeypatch.setitem(sys.modules, "chip_ultrasonic", types.SimpleNamespace(Ultrasonic=_FakeChip))
    env = NodeEnv(tmp_path / "flash")
    b = wb.attach(env.board, {"use": "home", "fire": [[3, 1]]}, 7, START)
    machine = env.module("machine")
    pin = env.profile["pins"]["fill_level"]["temp_sensor"]
    for h in (1.0, 2.5, 3.5, 6.0):
        env.board.clock.now_us = int(h * HOUR * 1_000_000)
        uv = machine.ADC(machine.Pin(pin), atten=machine.ADC.ATTN_11DB).read_uv()
        # the node's formula (nodes/fill_level.py): TMP36 10 mV/degC, 500 mV at 0 degC
        assert (uv - 500_000) / 10_000 == pytest.approx(b.air_c(h * HOUR), abs=0.15)


def test_attach_with_the_real_chip_modules():
    try:
        importlib.import_module("chip_ultrasonic")
        importlib.import_module("chip_vl53l1x")
    except ImportError:
        pytest.skip("the chip modules are not written yet")
    from simulator import worlds

    for sensor in ("jsn-sr04t", "hc-sr04", "vl53l1x"):
        board = _board()
        b = worlds.attach(board, "fill_level", {"sensor": sensor}, 7, START)  # the engine's path
        assert board.extra["world"] is b and b.sensor == sensor
        assert b.chip.scene == b.scene
        assert board.adc_sources[27] == b.tmp36_uv


# ---- the same numbers in MicroPython -----------------------------------------------------------------
MP_PARAMS = {"use": "park", "incidents": True, "incident_rates": {"lid_open": 0.3, "fire": 0.1}, "fire": [[20, 1]]}
MP_TIMES = [0, 1234.5, 20.2 * HOUR, 3 * DAY + 17, 9.5 * DAY, 2 * DAY, 13 * DAY + 0.25]
MP_SEED = 123457


def _dump(b):
    rows = []
    for t in MP_TIMES:
        s = b.state_at(t)
        rows.append([float(s[k]) if not isinstance(s[k], bool) else s[k] for k in KEYS])
    return rows, [list(c) for c in b.collections(14 * DAY)]


def test_micropython_gives_the_same_world():
    from simulator import wasi

    code = """
import sys
sys.path[:] = ['/sim']
import world_bins
b = world_bins.Bin(%r, %d, %d)
keys = %r
for t in %r:
    s = b.state_at(t)
    print('S ' + ' '.join(('%%.17g' %% s[k]) if not isinstance(s[k], bool) else str(s[k]) for k in keys))
for t, f in b.collections(%d):
    print('C %%.17g %%.17g' %% (t, f))
""" % (MP_PARAMS, MP_SEED, START, KEYS, MP_TIMES, 14 * DAY)
    out, _ = wasi.run_micropython(code, {str(MP_DIR): "/sim"}, 64 << 20)
    states, cols = [], []
    for line in out.decode().splitlines():
        parts = line.split()
        if parts[0] == "S":
            states.append([p == "True" if p in ("True", "False") else float(p) for p in parts[1:]])
        elif parts[0] == "C":
            cols.append([float(parts[1]), float(parts[2])])
    want_states, want_cols = _dump(wb.Bin(MP_PARAMS, MP_SEED, START))
    assert len(states) == len(MP_TIMES) and len(cols) == len(want_cols) > 0
    for got, want in zip(states + cols, want_states + want_cols):
        for g, w in zip(got, want):
            if isinstance(w, bool):
                assert g == w
            else:
                assert math.isclose(g, w, rel_tol=1e-6, abs_tol=1e-9), (got, want)
