"""The water world (simulator/mp/world_water.py): the truth the water-meter node's fake reed
switch counts. Deterministic from the seed whatever the query order, realistic daily volumes
per person, quiet nights, leaks, bursts and backflow at their rates, empty homes on holiday,
a flow that is exactly piecewise constant (volumes() is its integral, next_change_s() its
breakpoints), and the same numbers in the WASI MicroPython as under CPython."""

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
ww = importlib.import_module("world_water")

START = 1_780_000_000  # 2026-05-28 20:26:40 UTC, a Thursday
DAY = 86400
HOUR = 3600
QUIET = {"holiday_prob": 0}  # no random holidays: every day is a day at home


def segments(w, a, b):
    """[(start, end, flow_lps)] of the constant pieces of the flow between a and b."""
    out = []
    t = a
    while t < b:
        n = min(w.next_change_s(t), b)
        assert n > t
        out.append((t, n, w.flow_lps(t)))
        t = n
    return out


def truth_flow(w, t):
    """The flow at t as the sum of the truth lists: end uses + leaks + bursts - backflow."""
    f = 0.0
    for _, s, e, lps in w.events(t):
        if s <= t < e:
            f += lps
    for _, s, e, lph in w.leaks(t):
        if s <= t and (e is None or t < e):
            f += lph / 3600
    for s, e, lph in w.bursts(t):
        if s <= t < e:
            f += lph / 3600
    for s, e, lph in w.backflows(t):
        if s <= t < e:
            f -= lph / 3600
    return f


def local_midnight(w, t):
    _, h = w.weekday_hour(t)
    return t - h * HOUR


# ---- determinism ------------------------------------------------------------------------------
INCIDENTS = {"incidents": True, "garden": True,
             "incident_rates": {"toilet_leak": 0.05, "tap_leak": 0.05, "burst": 0.05, "backflow": 0.1}}


@pytest.mark.parametrize("params", [{}, INCIDENTS, {"kind": "district", "households": 4}])
def test_same_seed_same_history(params):
    a = ww.make(params, 11, START)
    b = ww.make(params, 11, START)
    times = [i * 0.37 * HOUR for i in range(21 * 65)]
    assert [a.flow_lps(t) for t in times] == [b.flow_lps(t) for t in times]
    assert a.events(21 * DAY) == b.events(21 * DAY) and a.events(21 * DAY)
    assert a.leaks(21 * DAY) == b.leaks(21 * DAY)
    assert a.volumes(0, 21 * DAY) == b.volumes(0, 21 * DAY)
    c = ww.make(params, 12, START)
    assert c.events(21 * DAY) != a.events(21 * DAY)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(-2**40, 2**40), times=st.lists(st.floats(-100, 40 * DAY), min_size=1, max_size=20),
       persons=st.integers(1, 5))
def test_query_order_does_not_matter(seed, times, persons):
    params = dict(INCIDENTS, persons=persons)
    forward = ww.Household(params, seed, START)
    want = {t: (forward.flow_lps(t), forward.next_change_s(t), forward.volumes(0, t)) for t in sorted(times)}
    backward = ww.Household(params, seed, START)
    backward.volumes(0, 40 * DAY)  # the far future first
    for t in sorted(times, reverse=True):
        assert (backward.flow_lps(t), backward.next_change_s(t), backward.volumes(0, t)) == want[t]
    assert backward.events(40 * DAY) == forward.events(40 * DAY)
    assert backward.leaks(40 * DAY) == forward.leaks(40 * DAY)
    assert backward.holidays(40 * DAY) == forward.holidays(40 * DAY)


def test_one_override_leaves_the_rest_of_the_household_alone():
    # Streams per purpose and person: watering the garden does not move a single shower.
    plain = ww.Household(dict(QUIET, persons=3), 5, START)
    green = ww.Household(dict(QUIET, persons=3, garden=True), 5, START)
    june = 20 * DAY
    indoor = [e for e in green.events(june) if e[0] != "garden"]
    assert indoor == plain.events(june)
    assert any(e[0] == "garden" for e in green.events(june))


# ---- volumes and timing of use ----------------------------------------------------------------------
def test_daily_volume_per_person_is_in_the_documented_range():
    # water.md: the mean is about 120 l per person per day (BDEW 2023, Germany: 121 l); a
    # household's 30-day average lies within 85-155 l per person per day.
    means = []
    for seed in range(40):
        h = ww.Household(QUIET, seed, START)
        fwd, rev = h.volumes(0, 30 * DAY)
        assert rev == 0
        per = fwd / h.persons / 30
        assert 85 <= per <= 155, (seed, h.persons, per)
        means.append(per)
    assert 110 <= sum(means) / len(means) <= 130
    sizes = {ww.Household({}, s, START).persons for s in range(40)}
    assert sizes == {1, 2, 3, 4, 5}


@pytest.mark.parametrize("persons", [1, 3, 5])
def test_volume_scales_with_the_number_of_persons(persons):
    total = sum(ww.Household(dict(QUIET, persons=persons), s, START).volumes(0, 30 * DAY)[0] for s in range(8))
    assert total / 8 / 30 / persons == pytest.approx(120, rel=0.12)


def test_end_uses_have_realistic_rates_and_durations():
    h = ww.Household(dict(QUIET, persons=4, garden=True), 2, START)  # late May to July
    evs = h.events(60 * DAY)
    assert evs == sorted(evs, key=lambda e: (e[1], e[2], e[0]))
    kinds = {k: [e for e in evs if e[0] == k] for k in ("shower", "toilet", "tap", "washing_machine", "dishwasher", "garden")}
    assert all(kinds.values()), {k: len(v) for k, v in kinds.items()}
    for _, s, e, lps in kinds["shower"]:
        assert 8 / 60 - 1e-6 <= lps <= 12 / 60 + 1e-6 and 299 <= e - s <= 601
    for _, s, e, lps in kinds["toilet"]:
        assert 6 - 0.1 <= lps * (e - s) <= 9 + 0.1, "one cistern refill"
        assert lps == pytest.approx(h.refill_lpm / 60, abs=1e-6)
    for _, s, e, lps in kinds["tap"]:
        assert 4 / 60 - 1e-6 <= lps <= 8 / 60 + 1e-6 and 5 <= e - s <= 240
    for _, s, e, lps in kinds["garden"]:
        assert 15 / 60 - 1e-6 <= lps <= 20 / 60 + 1e-6 and 1199 <= e - s <= 3601
        assert 19 <= h.weekday_hour(s)[1] <= 21
    # showers never overlap (one bathroom), starting mornings or evenings
    sh = kinds["shower"]
    assert all(sh[i][2] < sh[i + 1][1] for i in range(len(sh) - 1))
    # a washing-machine load is 4-5 fills on one day: 40-65 l per load
    loads = {}
    for _, s, e, lps in kinds["washing_machine"]:
        d = int(local_midnight(h, s) // DAY)
        loads.setdefault(d, 0.0)
        loads[d] += lps * (e - s)
    assert all(35 <= v for v in loads.values())


def test_garden_watering_only_in_the_summer_half_of_the_year():
    winter = START - 160 * DAY  # mid-December 2025
    h = ww.Household(dict(QUIET, garden=True, garden_prob=1.0), 3, winter)
    by_month = {}
    for k, s, _, _ in h.events(365 * DAY):
        if k == "garden":
            m = int(s // (30 * DAY))
            by_month[m] = by_month.get(m, 0) + 1
    assert not any(m in by_month for m in (0, 1, 2, 10, 11)), by_month  # mid-Dec to mid-Mar, and Oct-Dec
    assert by_month.get(7, 0) > 20, "most evenings in high summer (mid-July to mid-August)"


def test_weekday_mornings_and_evenings_are_busy_and_nights_are_quiet():
    h = ww.Household(dict(QUIET, persons=2), 4, START)
    by_hour = [0.0] * 24
    for k, s, e, lps in h.events(56 * DAY):
        by_hour[int(h.weekday_hour(s)[1]) % 24] += lps * (e - s)
    night = sum(by_hour[h_] for h_ in (1, 2, 3, 4))
    morning = sum(by_hour[6:9])
    evening = sum(by_hour[18:22])
    assert morning > 10 * night and evening > 10 * night
    # when everybody is out at work or school, weekday daytime is quiet but for machines
    out = ww.Household(dict(QUIET, persons=3, away_share=1.0), 4, START)
    home = ww.Household(dict(QUIET, persons=3, away_share=0.0), 4, START)
    for w, want in ((out, 0), (home, 100)):
        day_l = 0.0
        for k, s, e, lps in w.events(56 * DAY):
            wd, hr = w.weekday_hour(s)
            if wd < 5 and 10 <= hr < 16 and k in ("shower", "toilet", "tap"):
                day_l += lps * (e - s)
        assert day_l == 0 if want == 0 else day_l > want


def test_normal_households_have_a_zero_flow_hour_every_night():
    # What meters' leak rules rely on (Kamstrup: a leak is 24 h without an hour of no flow).
    for seed in range(12):
        h = ww.Household(dict(QUIET, dishwasher=True), seed, START)
        for d in range(1, 30):
            mid = local_midnight(h, d * DAY)
            quiet = [b - a for a, b, f in segments(h, mid - 2 * HOUR, mid + 8 * HOUR) if f == 0]
            assert max(quiet) >= HOUR, (seed, d)
        # and every day has use
        for d in range(30):
            assert h.volumes(d * DAY, (d + 1) * DAY)[0] > 10


# ---- leaks, bursts, backflow, holidays -----------------------------------------------------------------
def test_a_leak_adds_its_rate_continuously():
    base = dict(QUIET, persons=2)
    plain = ww.Household(base, 6, START)
    leaky = ww.Household(dict(base, leaks=[[24, 48, 5.0], [100, None, 0.3]]), 6, START)
    for t in [i * 97.0 for i in range(int(8 * DAY / 97))]:
        extra = (5.0 if 24 * HOUR <= t < 72 * HOUR else 0.0) + (0.3 if t >= 100 * HOUR else 0.0)
        assert leaky.flow_lps(t) - plain.flow_lps(t) == pytest.approx(extra / 3600, abs=1e-12)
    dv = leaky.volumes(0, 8 * DAY)[0] - plain.volumes(0, 8 * DAY)[0]
    assert dv == pytest.approx(5.0 * 48 + 0.3 * (8 * 24 - 100), rel=1e-9)
    assert leaky.leaks(8 * DAY) == [("leak", 24 * HOUR, 72 * HOUR, 5.0), ("leak", 100 * HOUR, None, 0.3)]
    # a never-fixed drip leaves no hour of zero flow any more
    mid = local_midnight(leaky, 6 * DAY)
    assert all(f > 0 for _, _, f in segments(leaky, mid, mid + 8 * HOUR))


def test_holidays_have_zero_flow():
    h = ww.Household(dict(persons=4, holidays=[[30, 24 * 7]], holiday_prob=0.05), 8, START)
    hols = h.holidays(120 * DAY)
    assert hols[0] == (30 * HOUR, (30 + 24 * 7) * HOUR)
    assert len(hols) >= 3, "random ones too"
    assert all(hols[i][1] <= hols[i + 1][0] for i in range(len(hols) - 1)), "a holiday starts at home"
    for s, e in hols:
        assert e - s >= 2 * DAY
        assert all(f == 0 for _, _, f in segments(h, s, min(e, 120 * DAY)))
        assert h.volumes(s, min(e, 120 * DAY)) == (0.0, 0.0)
        assert not [x for x in h.events(120 * DAY) if x[1] < e and x[2] > s]
    # leaks go on while nobody is home
    leaky = ww.Household({"holidays": [[30, 100]], "leaks": [[0, None, 2.0]], "holiday_prob": 0}, 8, START)
    assert leaky.volumes(40 * HOUR, 120 * HOUR) == (pytest.approx(160.0), 0.0)


def test_bursts_and_backflow_at_their_rates():
    h = ww.Household({"persons": 0, "bursts": [[10, 2, 1800]], "backflow": [[20, 0.5, 36]]}, 1, START)
    assert h.flow_lps(11 * HOUR) == pytest.approx(0.5)
    assert h.flow_lps(20.2 * HOUR) == pytest.approx(-0.01)
    assert h.flow_lps(9 * HOUR) == 0 and h.flow_lps(13 * HOUR) == 0 and h.flow_lps(21 * HOUR) == 0
    assert h.volumes(0, DAY) == (pytest.approx(3600.0), pytest.approx(18.0))
    assert h.volume_l(0, DAY) == pytest.approx(3582.0) and h.volume_l(DAY, 0) == pytest.approx(-3582.0)
    assert h.bursts(DAY) == [(10 * HOUR, 12 * HOUR, 1800.0)]
    assert h.backflows(DAY) == [(20 * HOUR, 20.5 * HOUR, 36.0)]
    # backflow against a running tap: the meter sees the net flow
    busy = ww.Household(dict(QUIET, persons=3, backflow=[[0, 24 * 20, 3.6]]), 1, START)
    fwd, rev = busy.volumes(0, 20 * DAY)
    assert rev == pytest.approx(sum(b - a for a, b, f in segments(busy, 0, 20 * DAY) if f < 0) * 0.001)
    used = sum(lps * (min(e, 20 * DAY) - s) for _, s, e, lps in busy.events(20 * DAY))
    assert fwd - rev == pytest.approx(used - 3.6 * 480, rel=1e-9)


def test_random_incidents_at_their_daily_rates():
    h = ww.Household(dict(QUIET, **INCIDENTS), 21, START)
    span = 300 * DAY
    leaks = h.leaks(span)
    n = {k: sum(1 for x in leaks if x[0] == k) for k in ("toilet_leak", "tap_leak")}
    assert 5 <= n["toilet_leak"] <= 28 and 5 <= n["tap_leak"] <= 28
    for kind, s, e, lph in leaks:
        lo, hi = (1.0, 30.0) if kind == "toilet_leak" else (0.3, 3.0)
        assert lo - 1e-3 <= lph <= hi + 1e-3 and e > s
    bursts = h.bursts(span)
    assert 5 <= len(bursts) <= 28 and all(300 - 1e-3 <= r <= 3000 + 1e-3 for _, _, r in bursts)
    assert 15 <= len(h.backflows(span)) <= 50
    for s, e, r in bursts:
        assert h.flow_lps((s + e) / 2) >= r / 3600 - 1e-9
    default = ww.Household(dict(QUIET, incidents=True), 21, START)
    assert len(default.leaks(span)) + len(default.bursts(span)) < 8
    assert ww.Household(QUIET, 21, START).leaks(span) == []


# ---- exactness ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [INCIDENTS, {"kind": "district", "households": 6, "backflow": [[30, 2, 500]]}])
def test_flow_is_the_sum_of_the_truth(params):
    w = ww.make(params, 3, START)
    for t in [i * 0.29 * HOUR + 0.5 for i in range(14 * 83)]:
        assert w.flow_lps(t) == pytest.approx(truth_flow(w, t), abs=1e-9)


def test_volumes_equal_the_integral_of_the_flow():
    w = ww.Household(dict(INCIDENTS, backflow=[[50, 3, 40]], leaks=[[7, None, 1.25]]), 17, START)
    for a, b in ((0, 14 * DAY), (1234.5, 2 * DAY + 0.25), (49 * HOUR, 54 * HOUR)):
        fwd = rev = 0.0
        for s, e, f in segments(w, a, b):
            mid = (s + e) / 2
            assert w.flow_lps(mid) == f
            if f > 0:
                fwd += f * (e - s)
            else:
                rev -= f * (e - s)
        got = w.volumes(a, b)
        assert got[0] == pytest.approx(fwd, rel=1e-9, abs=1e-9) and got[1] == pytest.approx(rev, rel=1e-9, abs=1e-9)
        assert w.volume_l(a, b) == pytest.approx(fwd - rev, rel=1e-9, abs=1e-9)
    # and a plain midpoint sum on a 1 s grid agrees (breakpoints fall on whole seconds here)
    a = 2 * DAY
    riemann = sum(w.flow_lps(a + i + 0.5) for i in range(6 * HOUR))
    assert riemann == pytest.approx(w.volume_l(a, a + 6 * HOUR), rel=1e-9, abs=1e-9)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), t=st.floats(0, 20 * DAY), fracs=st.lists(st.floats(0, 1, exclude_max=True), max_size=8),
       kind=st.sampled_from(["household", "district"]))
def test_next_change_is_exact(seed, t, fracs, kind):
    w = ww.make({"kind": kind, "households": 3, "incidents": True, "garden": True}, seed, START)
    n = w.next_change_s(t)
    assert n > t
    f = w.flow_lps(t)
    for x in fracs:
        at = t + x * (n - t)
        if at < n:  # (rounding can land on n itself)
            assert w.flow_lps(at) == f
    assert w.flow_lps(math.nextafter(n, 0)) == f
    if n < t + 32 * DAY:
        assert w.flow_lps(n) != f, "a real change"
    fwd, rev = w.volumes(t, n)
    assert (fwd if f >= 0 else -rev) == pytest.approx(f * (n - t), rel=1e-9, abs=1e-9)


def test_steps_that_cancel_are_no_change():
    # one leak ends when another of the same rate starts: the flow does not change then
    h = ww.Household({"persons": 0, "leaks": [[1, 1, 5], [2, 1, 5]], "backflow": [[4, 1, 7]], "bursts": [[4, 1, 7]]},
                     1, START)
    assert h.next_change_s(0) == 1 * HOUR
    assert h.next_change_s(1.5 * HOUR) == 3 * HOUR
    assert h.next_change_s(3.5 * HOUR) == 3.5 * HOUR + 32 * DAY, "a burst cancelled by backflow: no change"


def test_next_change_gives_up_after_32_days_of_nothing():
    h = ww.Household({"persons": 0, "leaks": [[0, None, 2.0]]}, 1, START)
    assert h.next_change_s(5.0) == 5.0 + 32 * DAY
    assert h.flow_lps(20 * DAY) == pytest.approx(2.0 / 3600)


# ---- district -----------------------------------------------------------------------------------------
def test_a_district_sums_its_households():
    d = ww.District({"kind": "district", "households": 30, "leaks": [[0, None, 100]]}, 5, START)
    assert len(d.households) == 30
    fwd, _ = d.volumes(0, 14 * DAY)
    persons = sum(h.persons for h in d.households)
    assert 1.8 <= persons / 30 <= 3.0, "Eurostat household sizes: 2.3 on average"
    use = fwd - 100 * 14 * 24
    # minus the holidays, about 120 l per person per day
    assert 90 <= use / persons / 14 <= 135
    assert d.leaks(DAY) == [("leak", 0.0, None, 100.0)]
    with pytest.raises(ValueError):
        d.households[0].flow_lps(5.0)  # its history belongs to the district


# ---- tamper and the board -------------------------------------------------------------------------------
class _FakeReed:
    def __init__(self, *args, **kw):
        self.args = args
        self.kw = kw


def _board():
    return simboard.Board("wm-1", profiles.load("lolin-d32"), "/nonexistent")


def test_attach_wires_the_reed_switch(monkeypatch):
    monkeypatch.setitem(sys.modules, "chip_reed", types.SimpleNamespace(Reed=_FakeReed))
    board = _board()
    w = ww.attach(board, {"persons": 2, "litres_per_pulse": 10, "bounce_ms": [1, 2], "pullup": True}, 7, START)
    assert board.extra["world"] is w and isinstance(w, ww.Household)
    chip = w.chip
    assert chip.args[:2] == (board, 27) and chip.args[2] == w.flow_source and chip.args[3] == 10.0
    assert chip.kw["dir_pin"] == 32 and chip.kw["bounce_ms"] == (1.0, 2.0) and isinstance(chip.kw["seed"], int)
    assert chip.kw["pullup"] is True and chip.kw["rc_us"] == 0 and chip.kw["poll_s"] == 3600
    board.clock.now_us = 3 * DAY * 1_000_000 + 1234
    assert w.flow_source(board) == w.flow_lps(3 * DAY + 0.001234)
    default = ww.attach(_board(), None, 7, START)
    assert default.chip.args[3] == 1.0 and default.chip.kw["bounce_ms"] == (0.5, 3.0)
    assert default.chip.kw["pullup"] is False
    assert 27 not in default.chip.args[0].pin_inputs, "no tamper scheduled: the chip alone drives the pulse line"
    dist = ww.attach(_board(), {"kind": "district", "households": 2}, 7, START)
    assert isinstance(dist, ww.District)


def _run_to(board, t_s):
    board.advance(int(t_s * 1_000_000) - board.clock.now_us)


def test_magnet_and_cut_wire_in_the_scene_and_on_the_lines(monkeypatch):
    monkeypatch.setitem(sys.modules, "chip_reed", types.SimpleNamespace(Reed=_FakeReed))
    board = _board()
    w = ww.attach(board, {"magnet": [[2, 1]], "wire_cut": [[2.5, 2]]}, 7, START)
    for pid in (27, 32, 33):
        board.pin(pid)["pull"] = 2  # the node's Pin(pid, Pin.IN, Pin.PULL_UP)
    board.pin_edge(27, None)  # the reed contact open
    edges = []
    board.pin(27)["watch"] = lambda b, pid, level: edges.append((b.clock.now_us, level))
    seen = []
    for h in (1.0, 2.2, 2.7, 3.5, 4.6, 6.0):
        _run_to(board, h * HOUR)
        s = w.scene(board)
        seen.append((s["magnet"], s["wire_cut"], board.pin_level(33), board.pin_level(27)))
        assert s["flow_lps"] == w.flow_lps(h * HOUR) and s["tamper"] == (s["magnet"] or s["wire_cut"])
    # tamper loop (docs/water_meter_alarms.md): 0 while intact, released (pull-up: 1) when cut,
    # a magnet leaves it alone; the pulse line: held closed (0) by the magnet, released by the cut
    assert seen == [(False, False, 0, 1), (True, False, 0, 0), (True, True, 1, 1), (False, True, 1, 1),
                    (False, False, 0, 1), (False, False, 0, 1)]
    assert edges == [(2 * HOUR * 1_000_000, 0), (int(2.5 * HOUR) * 1_000_000, 1)], "edges the node can count"
    board.pin_edge(27, 0)  # the chip closes the contact: seen again once the tamper is over
    assert board.pin_level(27) == 0
    assert w.tampers(DAY) == [("magnet", 2 * HOUR, 3 * HOUR), ("wire_cut", 2.5 * HOUR, 4.5 * HOUR)]


def _real_reed():
    try:
        return importlib.import_module("chip_reed")
    except ImportError:
        pytest.skip("chip_reed is not written yet")


def test_the_real_reed_switch_counts_the_world_volume():
    _real_reed()
    board = _board()
    w = ww.attach(board, dict(QUIET, persons=3, litres_per_pulse=1.0, bounce_ms=[0, 0],
                              backflow=[[20, 1, 30]], leaks=[[3, None, 0.5]]), 7, START)
    assert board.extra["world"] is w and w.chip is not None
    for h in range(1, 49):
        _run_to(board, h * HOUR)
        net = w.volume_l(0, h * HOUR)
        assert w.chip.litres() == pytest.approx(net, abs=1e-3), h
        assert w.chip.pulses_fwd - w.chip.pulses_rev in (math.floor(net), math.floor(net) + 1)
    assert w.chip.pulses_rev > 0, "backflow turns the wheel backwards"


def test_a_magnet_hides_the_pulses_from_the_node():
    _real_reed()
    board = _board()
    w = ww.attach(board, {"persons": 0, "holiday_prob": 0, "leaks": [[0, None, 360]], "magnet": [[1, 1]],
                          "bounce_ms": [0, 0]}, 7, START)  # 0.1 l/s: a pulse every 10 s
    board.pin(27)["pull"] = 2
    falls = []
    board.pin(27)["watch"] = lambda b, pid, level: falls.append(b.clock.now_us / 1e6) if level == 0 else None
    _run_to(board, 3 * HOUR)
    per_hour = [sum(1 for t in falls if a * HOUR <= t < (a + 1) * HOUR) for a in range(3)]
    assert per_hour[0] == pytest.approx(360, abs=1) and per_hour[2] == pytest.approx(360, abs=1)
    assert per_hour[1] <= 1, "held closed: at most the fall when the magnet arrives"
    assert w.chip.pulses_fwd == pytest.approx(1080, abs=1), "the wheel kept turning"


def test_bad_params_are_refused():
    for p in ({"kind": "village"}, {"persons": 11}, {"litres_per_pulse": 0}, {"leaks": [[1, 2]]},
              {"bursts": [[1, None, 500]]}, {"backflow": [[1, 1, -3]]}, {"holidays": [[1, -2]]},
              {"incident_rates": {"flood": 0.1}}, {"holiday_days": [0, 3]}, {"shower_lpm": 0},
              {"kind": "district", "households": 0}, {"bounce_ms": [3, 1]}):
        with pytest.raises(ValueError):
            ww.make(p, 1, START)


# ---- the same numbers in MicroPython -----------------------------------------------------------------
MP_PARAMS = {"persons": 3, "garden": True, "incidents": True, "leaks": [[5, None, 2.5]], "backflow": [[30, 1, 20]],
             "incident_rates": {"burst": 0.2, "backflow": 0.3, "tap_leak": 0.3}}
MP_TIMES = [0, 1234.5, 20.2 * HOUR, 30.5 * HOUR, 3 * DAY + 17, 9.5 * DAY, 2 * DAY, 13 * DAY + 0.25]
MP_SEED = 123457


def _dump(w):
    rows = [[w.flow_lps(t), w.next_change_s(t)] for t in MP_TIMES]
    rows.append(list(w.volumes(0, 14 * DAY)))
    rows.append([len(w.events(14 * DAY)), sum(x[3] * (x[2] - x[1]) for x in w.events(14 * DAY))])
    return rows


def test_micropython_gives_the_same_world():
    from simulator import wasi

    code = """
import sys
sys.path[:] = ['/sim']
import world_water
for params in (%r, {'kind': 'district', 'households': 3}):
    w = world_water.make(params, %d, %d)
    for t in %r:
        print('R %%.17g %%.17g' %% (w.flow_lps(t), w.next_change_s(t)))
    print('R %%.17g %%.17g' %% w.volumes(0, %d))
    evs = w.events(%d)
    print('R %%d %%.17g' %% (len(evs), sum(x[3] * (x[2] - x[1]) for x in evs)))
""" % (MP_PARAMS, MP_SEED, START, MP_TIMES, 14 * DAY, 14 * DAY)
    out, _ = wasi.run_micropython(code, {str(MP_DIR): "/sim"}, 64 << 20)
    got = [[float(x) for x in line.split()[1:]] for line in out.decode().splitlines() if line.startswith("R ")]
    want = _dump(ww.make(MP_PARAMS, MP_SEED, START)) + _dump(ww.make({"kind": "district", "households": 3}, MP_SEED, START))
    assert len(got) == len(want) == 2 * (len(MP_TIMES) + 2)
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (got, want)
