"""The fill-level node's logic (firmware/lib/nodes/fill_logic.py), loaded as the node loads it:
robust echo selection, distance to fill, the event state machine (bin_full with hysteresis,
bin_emptied, fire_risk, sensor_fault/sensor_ok), the fill-rate forecast, adaptive sampling;
the state stays small JSON through any sequence; and the same run in real MicroPython (the WASI
build) gives the same events, state and forecasts as under CPython."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.nodeenv import NodeEnv

ROOT = Path(__file__).resolve().parent.parent
FW_LIB = ROOT / "firmware" / "lib"

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def fl(tmp_path_factory):
    # Only the module under test on the board's flash: it needs nothing else.
    flash_dir = tmp_path_factory.mktemp("fill") / "flash"
    env = NodeEnv(flash_dir, install=False)
    (flash_dir / "lib" / "nodes").mkdir(parents=True)
    for rel in ("nodes/__init__.py", "nodes/fill_logic.py"):
        shutil.copyfile(FW_LIB / rel, flash_dir / "lib" / rel)
    return env.module("nodes.fill_logic")


def names(events):
    return [e[0] for e in events]


# ---- robust ------------------------------------------------------------------------------------
def test_robust_keeps_the_cluster_and_drops_junk(fl):
    # a side-wall echo (shorter), a double bounce (longer), failed pings, one out of the window
    assert fl.robust([800, 803, 310, None, 797, 1650, 801, 799, 40], 250, 4500) == (800, 55)
    assert fl.robust([500, 502, None, 498, 120, 501], 200, 1500) == (500, 66)
    assert fl.robust([600, 600, 600], 200, 1500) == (600, 100)


def test_robust_needs_three_and_half_agreeing(fl):
    assert fl.robust([500, None, None, None, 500], 200, 1500) is None  # 2 agree
    assert fl.robust([500, 501, 502, None, None, None, None], 200, 1500) is None  # 3 of 7
    assert fl.robust([500, 501, 502, None, None, None], 200, 1500) == (501, 50)  # 3 of 6
    assert fl.robust([], 200, 1500) is None
    assert fl.robust([None] * 5, 200, 1500) is None
    assert fl.robust([100, 101, 102], 200, 1500) is None  # all below the window
    # two clusters too far apart for either to be a majority
    assert fl.robust([400, 401, 900, 901, 1300, 1301], 200, 1500) is None


def test_robust_even_split_prefers_the_farther_surface(fl):
    # spurious echoes are shorter than the true surface: a tie goes to the farther cluster
    assert fl.robust([400, 400, 401, 900, 902, 901], 200, 1500) == (901, 50)


def test_robust_spread_limit(fl):
    pings = [500, 520, 540, 560, 580]
    assert fl.robust(pings, 200, 1500, max_spread_mm=20) is None  # only 520..560 within 10 of 540
    assert fl.robust(pings, 200, 1500, max_spread_mm=40) == (540, 60)
    assert fl.robust(pings, 200, 1500, max_spread_mm=80) == (540, 100)


ping = st.one_of(st.none(), st.integers(-10**6, 10**6))


@FAST
@given(st.lists(ping, max_size=40), st.integers(-1000, 5000), st.integers(-1000, 5000),
       st.integers(-10, 500))
def test_robust_never_fails_and_stays_in_window(fl, pings, lo, hi, spread):
    r = fl.robust(pings, lo, hi, spread)
    if r is not None:
        mm, q = r
        assert isinstance(mm, int) and isinstance(q, int)
        assert lo <= mm <= hi and 0 <= q <= 100


@FAST
@given(st.integers(300, 4000), st.integers(4, 200), st.data())
def test_robust_majority_wins_over_any_minority_junk(fl, centre, spread, data):
    lo, hi = 250, 4500
    half = spread // 4  # the consistent pings fit in a band of width spread / 2
    k = data.draw(st.integers(3, 15))
    good = data.draw(st.lists(st.integers(centre - half, centre + half), min_size=k, max_size=k))
    junk = data.draw(st.lists(ping, max_size=k - 1))
    pings = good + junk
    pings = data.draw(st.permutations(pings))
    r = fl.robust(pings, lo, hi, spread)
    assert r is not None
    mm, q = r
    assert min(good) <= mm <= max(good)
    assert q >= k * 100 // len(pings)


# ---- fill_pct ----------------------------------------------------------------------------------
def test_fill_pct_examples(fl):
    f = lambda d: fl.fill_pct(d, 1000, 200)  # noqa: E731
    assert [f(1000), f(200), f(600), f(1200), f(100), f(992), f(996)] == [0, 100, 50, 0, 100, 1, 1]


def test_fill_pct_rejects_a_nonsense_calibration(fl):
    for empty, full in ((500, 500), (500, 900), (1000, -5)):
        with pytest.raises(ValueError, match="full_mm"):
            fl.fill_pct(300, empty, full)


@FAST
@given(st.integers(-5000, 10000), st.integers(-5000, 10000), st.integers(1, 5000), st.integers(0, 5000))
def test_fill_pct_monotone_and_clamped(fl, d1, d2, span, full):
    empty = full + span
    a, b = fl.fill_pct(min(d1, d2), empty, full), fl.fill_pct(max(d1, d2), empty, full)
    assert 0 <= b <= a <= 100
    assert fl.fill_pct(empty, empty, full) == 0 and fl.fill_pct(full, empty, full) == 100


# ---- bin_full / bin_emptied --------------------------------------------------------------------
def run(fl, fills, cfg=None, dt=1800, temps=None, t0=1_000_000):
    state: dict = {}
    out = []
    for i, f in enumerate(fills):
        out.append(fl.step(state, cfg or {}, t0 + i * dt, f, None if temps is None else temps[i]))
    return state, out


def test_bin_full_does_not_flap_around_the_threshold(fl):
    fills = [60, 79, 81, 78, 82, 79, 80, 75, 85, 71, 90]
    state, out = run(fl, fills)
    assert [names(e) for e in out].count(["bin_full"]) == 1 and out[2] == [("bin_full", "alarm", {"fill": 81})]
    _, out = run(fl, fills + [69, 79, 80])
    assert names(sum(out, [])) == ["bin_full", "bin_full"], "re-armed below 80 - 10"
    assert out[-1] == [("bin_full", "alarm", {"fill": 80})]


def test_bin_emptied_from_a_full_bin(fl):
    state, out = run(fl, [70, 85, 90, 4, 6])
    assert out[3] == [("bin_emptied", "info", {"from": 90, "to": 4})]
    assert state["ne"] == 1 and state["bf"] == 0 and state["h"] == [[0, 4], [1800, 6]]
    _, out = run(fl, [70, 85, 90, 4, 6, 85])
    assert names(out[-1]) == ["bin_full"], "the collection re-armed bin_full"


def test_small_drops_and_low_bins_are_not_collections(fl):
    _, out = run(fl, [85, 60, 56])  # compaction, a bag pulled out: 25 and 4 points
    assert names(sum(out, [])) == ["bin_full"]
    _, out = run(fl, [35, 3])  # at low fill one bag under the sensor moves the reading a lot
    assert sum(out, []) == []
    _, out = run(fl, [40, 10])  # the boundaries: from 40, by 30
    assert names(sum(out, [])) == ["bin_emptied"]


def test_an_emptying_is_not_a_sensor_fault(fl):
    """The bin is tipped into the truck: two samples without an echo, then an empty bin. One
    bin_emptied event, no sensor_fault (fault_after 3)."""
    state: dict = {}
    cfg = {"fault_after": 3}
    events = []
    t = 0
    for fill in [75, 80, 86, None, None, 2, 3, None, 4]:
        t += 900
        events += fl.fault_step(state, cfg, fill is not None)
        events += fl.step(state, cfg, t, fill, 210)
    assert names(events) == ["bin_full", "bin_emptied"]
    assert events[1][2] == {"from": 86, "to": 2}


def test_fill_none_keeps_the_last_good_fill(fl):
    state, out = run(fl, [88, None, None, 12])
    assert names(sum(out, [])) == ["bin_full", "bin_emptied"] and state["f"] == 12


fills = st.lists(st.one_of(st.none(), st.integers(0, 100)), max_size=200)


@FAST
@given(fills, st.integers(20, 100), st.integers(0, 30))
def test_bin_full_alternates_with_rearming(fl, seq, full, hyst):
    """Model: a bin_full exactly when armed and fill >= full_pct; re-armed exactly when the
    fill falls below full_pct - hyst; so never two bin_full without such a fall between."""
    cfg = {"full_pct": full, "full_hyst_pct": hyst}
    state: dict = {}
    armed = True
    for i, f in enumerate(seq):
        ev = [e for e in fl.step(state, cfg, 1000 + 600 * i, f, None) if e[0] == "bin_full"]
        if f is None:
            assert ev == []
            continue
        if armed and f >= full:
            assert ev == [("bin_full", "alarm", {"fill": f})]
            armed = False
        else:
            assert ev == []
            if f < full - hyst:
                armed = True


# ---- fire_risk ---------------------------------------------------------------------------------
def test_fire_risk_absolute_with_hysteresis(fl):
    temps = [250, 610, 650, 560, 520, 450, 470, 620]  # tenths of °C
    _, out = run(fl, [10] * len(temps), temps=temps, dt=1800)
    assert [i for i, e in enumerate(out) if names(e) == ["fire_risk"]] == [1, 7]
    assert out[1][0][1] == "alarm" and out[1][0][2]["rule"] == "abs" and out[1][0][2]["c10"] == 610


def test_fire_risk_on_a_fast_rise(fl):
    _, out = run(fl, [10, 10], temps=[250, 300], dt=300)  # 5 °C in 5 min: 1 °C/min
    assert out[1] == [("fire_risk", "alarm", {"c10": 300, "c10_min": 10, "rule": "rate"})]
    _, out = run(fl, [10, 10], temps=[250, 260], dt=60)  # 1 °C/min but only 1 °C: noise
    assert out[1] == []
    _, out = run(fl, [10, 10], temps=[250, 350], dt=3600)  # the sun on a lid: slow
    assert out[1] == []
    _, out = run(fl, [10, 10, 10], temps=[250, None, 300], dt=300)  # a missing reading breaks the pair
    assert sum(out, []) == []


def test_fire_risk_once_while_the_rise_goes_on(fl):
    temps = [250, 300, 350, 400, 400, 400, 450]  # every 5 min: a smouldering bin, then cooling, rising again
    _, out = run(fl, [10] * len(temps), temps=temps, dt=300)
    assert [i for i, e in enumerate(out) if e] == [1, 6], "re-armed only once the rise stopped"


def test_fire_rule_needs_no_distance(fl):
    _, out = run(fl, [None, None], temps=[300, 700])
    assert names(out[1]) == ["fire_risk"]


# ---- sensor_fault ------------------------------------------------------------------------------
def test_sensor_fault_after_n_failures_and_ok_once(fl):
    state: dict = {}
    cfg = {"fault_after": 3}
    seq = [False, False, True, False, False, False, False, False, True, True, False, False, False]
    out = [fl.fault_step(state, cfg, ok) for ok in seq]
    got = [(i, e[0], e[1], e[2]) for i, evs in enumerate(out) for e in evs]
    assert got == [(5, "sensor_fault", "warning", {"n": 3}), (8, "sensor_ok", "info", {"n": 5}),
                   (12, "sensor_fault", "warning", {"n": 3})]


# ---- state size --------------------------------------------------------------------------------
def random_inputs(rnd, n):
    """(now_s, fill or None, temp_c10 or None) for n wakes: a filling bin with jumps, failed
    samples, missing temperatures, long gaps and a clock that sometimes goes back."""
    now = rnd.choice([0, 800_000_000, 1_780_000_000])
    fill = rnd.randint(0, 100)
    out = []
    for _ in range(n):
        now += rnd.choice([60, 300, 900, 900, 3600, 86400, 10**6, -3600])
        r = rnd.random()
        if r < 0.05:
            fill = rnd.randint(0, 100)
        elif r < 0.1:
            fill = None
        else:
            fill = min(100, max(0, (fill or 0) + rnd.randint(-3, 6)))
        temp = None if rnd.random() < 0.1 else rnd.randint(-200, 900)
        out.append((now, fill, temp))
    return out


def wake(fl, state, cfg, now, fill, temp):
    return fl.fault_step(state, cfg, fill is not None) + fl.step(state, cfg, now, fill, temp)


def test_state_stays_small_json_over_10000_steps(fl):
    state: dict = {}
    cfg = dict(fl.DEFAULTS)
    biggest = 0
    kinds = set()
    for now, fill, temp in random_inputs(random.Random(7), 10_000):
        ev = wake(fl, state, cfg, now, fill, temp)
        json.dumps(ev)  # events are publishable
        kinds.update(names(ev))
        s = json.dumps(state)
        biggest = max(biggest, len(s))
        assert len(s) < 400, s
        assert len(state["h"]) <= 8
        eta = fl.eta_full_s(state, now, 80)
        assert eta is None or eta >= 0
        fl.rate_pct_per_day(state)
        fl.next_sample_s(cfg, state.get("f"))
    assert biggest > 150  # the history was exercised
    assert kinds == {"bin_full", "bin_emptied", "fire_risk", "sensor_fault", "sensor_ok"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**32))
def test_state_survives_rtc_round_trips(fl, seed):
    """Each wake the state comes back from JSON in RTC memory: stepping a reloaded state gives
    the same events and forecasts as stepping a live one."""
    live: dict = {}
    stored = "{}"
    for now, fill, temp in random_inputs(random.Random(seed), 300):
        ev_live = wake(fl, live, {}, now, fill, temp)
        st2 = json.loads(stored)
        ev_rtc = wake(fl, st2, {}, now, fill, temp)
        stored = json.dumps(st2)
        assert ev_rtc == ev_live
        assert json.loads(stored) == json.loads(json.dumps(live))
        assert fl.eta_full_s(st2, now, 80) == fl.eta_full_s(live, now, 80)


# ---- forecast ----------------------------------------------------------------------------------
def linear_bin(fl, state, t0, start, per_h, hours, every_s=1800, cfg=None):
    """A bin filling at per_h % per hour, sampled every every_s, fill rounded to whole %."""
    t = t0
    for i in range(int(hours * 3600 // every_s) + 1):
        t = t0 + i * every_s
        fl.step(state, cfg or {}, t, int(start + per_h * (t - t0) / 3600 + 0.5), None)
    return t


@pytest.mark.parametrize("per_h,every_s", [(1.0, 1800), (0.25, 3600), (2.5, 900), (0.1, 3600)])
def test_linear_fill_gives_the_right_eta(fl, per_h, every_s):
    state: dict = {}
    hours = 40 / per_h * 0.8  # up to about 37 %
    t = linear_bin(fl, state, 1_780_000_000, 5, per_h, hours, every_s)
    fill_now = 5 + per_h * hours
    want = (80 - fill_now) / per_h * 3600
    got = fl.eta_full_s(state, t, 80)
    assert got is not None and abs(got - want) <= 0.04 * want, (got, want)
    assert abs(fl.rate_pct_per_day(state) - per_h * 24) <= 0.03 * per_h * 24
    # asked later without a new sample: the ETA counts down
    assert abs(fl.eta_full_s(state, t + 3600, 80) - (got - 3600)) <= 1
    assert len(state["h"]) <= 8 and state["h"][0] == [0, 5], "the history spans the whole cycle"


def test_emptying_resets_the_forecast(fl):
    state: dict = {}
    t = linear_bin(fl, state, 0, 10, 3.0, 20)  # fast: 72 %/day, to 70 %
    assert 65 <= fl.rate_pct_per_day(state) <= 75
    t += 1800
    ev = fl.step(state, {}, t, 3, None)
    assert names(ev) == ["bin_emptied"]
    assert state["h"] == [[0, 3]]
    assert fl.rate_pct_per_day(state) is None and fl.eta_full_s(state, t, 80) is None
    linear_bin(fl, state, t + 1800, 4, 0.5, 30)  # the next cycle is slow: 12 %/day
    assert 11 <= fl.rate_pct_per_day(state) <= 13


def test_no_forecast_without_a_rise_or_enough_history(fl):
    state: dict = {}
    assert fl.eta_full_s(state, 0, 80) is None and fl.rate_pct_per_day(state) is None
    for i in range(3):
        fl.step(state, {}, i * 1000, 20 + i, None)
    assert fl.rate_pct_per_day(state) is None, "three points but only 2000 s"
    state = {}
    for i in range(30):
        fl.step(state, {}, i * 1800, 40, None)
    assert fl.rate_pct_per_day(state) == 0 and fl.eta_full_s(state, 30 * 1800, 80) is None
    state = {}
    for i in range(30):
        fl.step(state, {}, i * 1800, 60 - i // 3, None)  # settling
    assert fl.rate_pct_per_day(state) < 0 and fl.eta_full_s(state, 30 * 1800, 80) is None
    fl.step(state, {}, 31 * 1800, 82, None)
    assert fl.eta_full_s(state, 31 * 1800, 80) == 0, "already full"


# ---- adaptive sampling -------------------------------------------------------------------------
def test_next_sample_examples(fl):
    cfg = {"sample_s": 3600, "full_pct": 80, "min_sample_s": 300}
    assert [fl.next_sample_s(cfg, f) for f in (None, 0, 60, 61, 74, 75, 100)] == [3600, 3600, 3600, 1800, 1800, 900, 900]
    cfg["sample_s"] = 1000
    assert [fl.next_sample_s(cfg, f) for f in (10, 70, 90)] == [1000, 500, 300]
    cfg["sample_s"] = 120  # below the floor: used as is, never shortened
    assert [fl.next_sample_s(cfg, f) for f in (10, 90)] == [120, 120]
    assert fl.next_sample_s({}, 90) == fl.DEFAULTS["sample_s"] // 4


@FAST
@given(st.integers(1, 10**6), st.integers(1, 10**5), st.integers(1, 100), st.integers(0, 100), st.integers(0, 100))
def test_next_sample_bounded_and_monotone(fl, base, floor, full, f1, f2):
    cfg = {"sample_s": base, "min_sample_s": floor, "full_pct": full}
    a, b = fl.next_sample_s(cfg, min(f1, f2)), fl.next_sample_s(cfg, max(f1, f2))
    assert min(base, floor) <= b <= a <= base


# ---- the same logic in real MicroPython --------------------------------------------------------
MP_SCRIPT = r'''
import sys
sys.path[:] = ["/lib"]
import json
from nodes import fill_logic as fl
with open("/work/in.json") as f:
    inp = json.loads(f.read())
out = []
for pings, lo, hi in inp["pings"]:
    out.append(fl.robust(pings, lo, hi))
st = {}
for now, fill, temp in inp["wakes"]:
    ev = fl.fault_step(st, {}, fill is not None) + fl.step(st, {}, now, fill, temp)
    r = fl.rate_pct_per_day(st)
    out.append([ev, json.loads(json.dumps(st)), fl.eta_full_s(st, now, 80),
                None if r is None else int(r * 10 + (0.5 if r >= 0 else -0.5)), fl.next_sample_s({}, st.get("f"))])
with open("/work/out.json", "w") as f:
    f.write(json.dumps(out))
'''


def test_micropython_runs_like_cpython(fl, tmp_path):
    """Integer division, sorting, dict.pop, big ints of epoch-squared sums and the float of the
    rate: the WASI MicroPython gives the same results as CPython for the same inputs."""
    from simulator import wasi

    rnd = random.Random(11)
    pings = []
    for _ in range(200):
        c = rnd.randint(300, 4000)
        p = [c + rnd.randint(-8, 8) for _ in range(rnd.randint(0, 9))]
        p += [rnd.choice([None, rnd.randint(0, 6000)]) for _ in range(rnd.randint(0, 6))]
        rnd.shuffle(p)
        pings.append([p, 250, 4500])
    wakes = random_inputs(rnd, 1500)
    (tmp_path / "in.json").write_text(json.dumps({"pings": pings, "wakes": wakes}))
    wasi.run_micropython(MP_SCRIPT, {FW_LIB: "/lib", tmp_path: "/work"}, 8 << 20)
    got = json.loads((tmp_path / "out.json").read_text())

    want: list = [fl.robust(p, lo, hi) for p, lo, hi in pings]
    state: dict = {}
    for now, fill, temp in wakes:
        ev = wake(fl, state, {}, now, fill, temp)
        r = fl.rate_pct_per_day(state)
        want.append([ev, json.loads(json.dumps(state)), fl.eta_full_s(state, now, 80),
                     None if r is None else int(r * 10 + (0.5 if r >= 0 else -0.5)),
                     fl.next_sample_s({}, state.get("f"))])
    want = json.loads(json.dumps(want))
    assert len(got) == len(want)
    diffs = [(i, w, g) for i, (w, g) in enumerate(zip(want, got)) if w != g]
    assert not diffs, diffs[:3]
    assert sum(1 for x in want[:200] if x is not None) > 50
    assert sum(1 for x in want[200:] if x[2] not in (None, 0)) > 50  # forecasts were compared
