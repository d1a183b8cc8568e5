"""The air-quality index logic (firmware/lib/nodes/aq_index.py), loaded as the node loads it:
US EPA AQI (2024 breakpoints) for PM2.5 and PM10 at every published boundary and against an
exact-fraction oracle, the EPA NowCast (the EPA's worked examples, the completeness rule, the
truncation), the EEA European Air Quality Index (2024 bands), the humidity flag and
corrections, the category-change state machine (alternating events, hysteresis, small JSON
state); and the same results in real MicroPython (the WASI build) as under CPython."""

from __future__ import annotations

import json
import math
import random
import shutil
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.nodeenv import NodeEnv

ROOT = Path(__file__).resolve().parent.parent
FW_LIB = ROOT / "firmware" / "lib"

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def aq(tmp_path_factory):
    # Only the module under test on the board's flash: it needs nothing else.
    flash_dir = tmp_path_factory.mktemp("aq") / "flash"
    env = NodeEnv(flash_dir, install=False)
    (flash_dir / "lib" / "nodes").mkdir(parents=True)
    for rel in ("nodes/__init__.py", "nodes/aq_index.py"):
        shutil.copyfile(FW_LIB / rel, flash_dir / "lib" / rel)
    return env.module("nodes.aq_index")


# ---- the published tables, typed in from the sources (not from the module) --------------------
# US EPA TAD (EPA-454/B-24-002, May 2024) Table 6: (C_lo, C_hi) in ug/m3 as printed, (I_lo, I_hi).
EPA_PM25 = [("0.0", "9.0", 0, 50), ("9.1", "35.4", 51, 100), ("35.5", "55.4", 101, 150),
            ("55.5", "125.4", 151, 200), ("125.5", "225.4", 201, 300), ("225.5", "325.4", 301, 500)]
EPA_PM10 = [("0", "54", 0, 50), ("55", "154", 51, 100), ("155", "254", 101, 150),
            ("255", "354", 151, 200), ("355", "424", 201, 300), ("425", "604", 301, 500)]
AQI_NAMES = ["Good", "Moderate", "Unhealthy for Sensitive Groups", "Unhealthy", "Very Unhealthy",
             "Hazardous"]
# EEA European Air Quality Index, 2024 bands: upper bounds of Good..Very poor (ug/m3, 1 h).
EEA = {"pm25": [5, 15, 50, 90, 140], "pm10": [15, 45, 120, 195, 270], "no2": [10, 25, 60, 100, 150],
       "o3": [60, 100, 120, 160, 180], "so2": [20, 40, 125, 190, 275]}
EAQI_NAMES = ["Good", "Fair", "Moderate", "Poor", "Very poor", "Extremely poor"]


def units(table, scale):
    """The table with concentrations in the function's input unit (scale 10: tenths)."""
    return [(int(Fraction(lo) * scale), int(Fraction(hi) * scale), ilo, ihi) for lo, hi, ilo, ihi in table]


PM25_X10 = units(EPA_PM25, 10)
PM10_1 = units(EPA_PM10, 1)


def aqi_oracle(table, c):
    """The EPA equation in exact fractions on an already truncated concentration c (input unit),
    rounded half up; the last segment continues above the table."""
    row = next((r for r in table if r[0] <= c <= r[1]), table[-1])
    lo, hi, ilo, ihi = row
    ip = Fraction(ihi - ilo, hi - lo) * (c - lo) + ilo
    return math.floor(ip + Fraction(1, 2))


def category_of(table, c):
    return next((k for k, r in enumerate(table) if r[0] <= c <= r[1]), len(table) - 1)


# ---- US EPA AQI -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["pm25", "pm10"])
def test_aqi_every_published_boundary(aq, kind):
    f, table = (aq.aqi_pm25, PM25_X10) if kind == "pm25" else (aq.aqi_pm10, PM10_1)
    for k, (lo, hi, ilo, ihi) in enumerate(table):
        assert f(lo) == ilo, (kind, lo)
        assert f(hi) == ihi, (kind, hi)
        assert aq.aqi_category(f(lo)) == (k, AQI_NAMES[k])
        assert aq.aqi_category(f(hi)) == (k, AQI_NAMES[k])
        if k + 1 < len(table):
            # one step (0.1 ug/m3 for PM2.5, 1 ug/m3 for PM10) above the top of a category is the
            # bottom of the next one, with the next category's low index
            assert table[k + 1][0] == hi + 1
            assert f(hi + 1) == table[k + 1][2]
            assert aq.aqi_category(f(hi + 1))[0] == k + 1


def test_aqi_worked_examples(aq):
    # by hand from the 2024 table:
    # 35.9 -> 101 + 49/19.9 * 0.4 = 101.98 -> 102; 12.0 -> 51 + 49/26.3 * 2.9 = 56.40 -> 56
    assert aq.aqi_pm25(359) == 102 and aq.aqi_pm25(120) == 56
    # 9.05 is truncated to 9.0 (EPA): still Good; 9.1 is Moderate
    assert aq.aqi_pm25(90.5) == 50 and aq.aqi_pm25(91) == 51
    # 150.0 (a 2012-table "Unhealthy" top) is Very Unhealthy since 2024: 201 + 99/99.9 * 24.5 = 225.28
    assert aq.aqi_pm25(1500) == 225
    # PM10 100 -> 51 + 49/99 * 45 = 73.27 -> 73; 155.9 truncated to 155 -> 101
    assert aq.aqi_pm10(100) == 73 and aq.aqi_pm10(155.9) == 101
    assert aq.aqi_category(102) == (2, "Unhealthy for Sensitive Groups")


def test_aqi_is_the_nearest_integer_and_ties_never_happen(aq):
    """Rounding to the nearest integer: with the 2024 tables and truncated inputs the exact index
    is never k + 1/2 (so half-up and half-even agree), here or on the extrapolated segments."""
    for f, table, top in ((aq.aqi_pm25, PM25_X10, 8000), (aq.aqi_pm10, PM10_1, 1500)):
        for c in range(top):
            lo, hi, ilo, ihi = next((r for r in table if r[0] <= c <= r[1]), table[-1])
            exact = Fraction(ihi - ilo, hi - lo) * (c - lo) + ilo
            assert exact.denominator != 2
            assert abs(f(c) - exact) < Fraction(1, 2)


def test_aqi_beyond_the_index(aq):
    # above the top breakpoint: the last segment goes on ("Beyond the AQI"), category Hazardous
    assert aq.aqi_pm25(3255) == 500  # 325.5: 301 + 199/99.9 * 100.0 = 500.2 -> 500
    assert aq.aqi_pm25(3260) == 501
    assert aq.aqi_pm25(5000) == aqi_oracle(PM25_X10, 5000) == 848
    assert aq.aqi_pm10(605) == 501 and aq.aqi_pm10(1000) == aqi_oracle(PM10_1, 1000)
    assert aq.aqi_category(848) == (5, "Hazardous")
    # capped on request
    assert aq.aqi_pm25(5000, cap=True) == 500 and aq.aqi_pm10(10**6, cap=True) == 500
    assert aq.aqi_pm25(3254, cap=True) == 500 and aq.aqi_pm25(3000, cap=True) == aq.aqi_pm25(3000)


def test_aqi_missing_and_odd_inputs(aq):
    assert aq.aqi_pm25(None) is None and aq.aqi_pm10(None) is None
    assert aq.aqi_pm25(float("nan")) is None and aq.aqi_pm25(float("inf")) is None
    assert aq.aqi_pm25(-5) == 0 and aq.aqi_pm10(-1) == 0  # a negative offset reads as clean air
    assert aq.aqi_category(None) is None
    assert aq.aqi_category(0) == (0, "Good") and aq.aqi_category(50) == (0, "Good")
    assert [aq.aqi_category(v)[0] for v in (51, 100, 101, 150, 151, 200, 201, 300, 301, 500, 9999)] == \
        [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]


@FAST
@given(st.integers(0, 10**5), st.integers(0, 10**5))
def test_aqi_pm25_exact_and_monotone(aq, c1, c2):
    a, b = aq.aqi_pm25(min(c1, c2)), aq.aqi_pm25(max(c1, c2))
    assert isinstance(a, int) and 0 <= a <= b
    assert aq.aqi_pm25(c1) == aqi_oracle(PM25_X10, c1)
    # the category of the value is the category of the concentration's row
    assert aq.aqi_category(aq.aqi_pm25(c1))[0] == category_of(PM25_X10, c1)


@FAST
@given(st.integers(0, 10**5), st.integers(0, 10**5))
def test_aqi_pm10_exact_and_monotone(aq, c1, c2):
    a, b = aq.aqi_pm10(min(c1, c2)), aq.aqi_pm10(max(c1, c2))
    assert isinstance(a, int) and 0 <= a <= b
    assert aq.aqi_pm10(c1) == aqi_oracle(PM10_1, c1)
    assert aq.aqi_category(aq.aqi_pm10(c1))[0] == category_of(PM10_1, c1)


@FAST
@given(st.integers(min_value=0), st.booleans())
def test_aqi_never_raises_for_any_non_negative_int(aq, c, cap):
    for f in (aq.aqi_pm25, aq.aqi_pm10):
        v = f(c, cap)
        assert isinstance(v, int) and v >= 0
        assert not cap or v <= 500
        idx, name = aq.aqi_category(v)
        assert name == AQI_NAMES[idx]


@FAST
@given(st.floats(0, 1e5, allow_nan=False))
def test_aqi_truncates_floats_like_the_epa(aq, x):
    assert aq.aqi_pm25(x) == aq.aqi_pm25(int(x))
    assert aq.aqi_pm10(x) == aq.aqi_pm10(int(x))


# ---- NowCast ----------------------------------------------------------------------------------
def nowcast_oracle(hourly):
    h = [(i, max(0, v)) for i, v in enumerate(hourly[:12]) if v is not None]
    if sum(1 for i, _ in h if i < 3) < 2:
        return None
    cmax = max(v for _, v in h)
    if cmax == 0:
        return 0
    w = max(Fraction(min(v for _, v in h), cmax), Fraction(1, 2))
    return math.floor(sum(w ** i * v for i, v in h) / sum(w ** i for i, _ in h))


def test_nowcast_epa_worked_example(aq):
    # EPA "Computing the NowCast" example, 12 hourly PM2.5 means oldest first:
    # 50 80 75 90 82 53 64 74 21 10 16 13 -> range 80, w = 1 - 80/90 < .5 -> .5 -> 17.4 ug/m3
    oldest_first = [50, 80, 75, 90, 82, 53, 64, 74, 21, 10, 16, 13]
    recent_first = oldest_first[::-1]
    assert aq.nowcast([10 * c for c in recent_first]) == 174  # tenths: 17.4
    assert aq.nowcast(recent_first) == 17  # whole ug/m3 (the PM10 truncation)


def test_nowcast_aqi_of_the_worked_example(aq):
    # 17.4 ug/m3: 51 + (100 - 51) / (35.4 - 9.1) * (17.4 - 9.1) = 51 + 15.46 = 66.46 -> 66
    assert aq.aqi_pm25(aq.nowcast([130, 160, 100, 210, 740, 640, 530, 820, 900, 750, 800, 500])) == 66


def test_nowcast_airnow_example_with_a_missing_hour(aq):
    # AirNow Tech forum "The NowCast for PM2.5 and PM10" example (oldest first, one hour missing):
    # 34.9 43 50 64.9 69.2 66.2 53.7 48.6 49.2 35 -- 21 -> 28.4098 -> truncated 28.4
    oldest_first = [349, 430, 500, 649, 692, 662, 537, 486, 492, 350, None, 210]
    assert aq.nowcast(oldest_first[::-1]) == 284
    # the missing hour is left out of both sums, keeping the others' "hours ago"
    assert nowcast_oracle(oldest_first[::-1]) == 284


def test_nowcast_weight_above_one_half(aq):
    # cmin/cmax = 80/100 = 0.8 > 0.5: w = 0.8; by the definition in exact fractions
    h = [100, 90, 80, 85, 95, 100, 90, 80, 85, 95, 100, 90]
    w = Fraction(8, 10)
    want = sum(w ** i * c for i, c in enumerate(h)) / sum(w ** i for i in range(12))
    assert aq.nowcast(h) == math.floor(want) == 91  # 91.11 truncated
    # steady air: w = 1, the plain 12-hour mean, truncated
    assert aq.nowcast([123] * 12) == 123
    assert aq.nowcast([10, 11] * 6) == 10  # w = 10/11: 10.476 (the plain mean would be 10.5)


def test_nowcast_completeness_rule(aq):
    full = [100] * 12
    assert aq.nowcast(full) == 100
    for missing in ([0, 1], [0, 2], [1, 2], [0, 1, 2]):
        h = list(full)
        for i in missing:
            h[i] = None
        assert aq.nowcast(h) is None, missing
    for missing in ([0], [1], [2], [3, 4, 5, 6, 7, 8, 9, 10, 11]):
        h = list(full)
        for i in missing:
            h[i] = None
        assert aq.nowcast(h) == 100, missing
    # the EPA rule is 2 of the last 3: two hours are enough ("short-term" NowCast)
    assert aq.nowcast([50, 70]) == nowcast_oracle([50, 70]) == 58  # w = 5/7: (50 + 50) / (12/7) = 58.3
    assert aq.nowcast([50]) is None and aq.nowcast([]) is None and aq.nowcast([None] * 12) is None
    # only 12 hours count
    assert aq.nowcast([100] * 12 + [10**6] * 5) == 100


def test_nowcast_edge_values(aq):
    assert aq.nowcast([0] * 12) == 0
    assert aq.nowcast([0, 0, 50]) == nowcast_oracle([0, 0, 50]) == 7  # w = .5: 50*.25 / 1.75 = 7.1
    assert aq.nowcast([-5, 10, 10]) == aq.nowcast([0, 10, 10])  # negatives count as 0
    assert aq.nowcast([float("nan"), 10, 10]) == 10  # NaN is a missing hour


hour = st.one_of(st.none(), st.integers(0, 20000))


@FAST
@given(st.lists(hour, max_size=14))
def test_nowcast_matches_the_definition(aq, hourly):
    got = aq.nowcast(hourly)
    assert got == nowcast_oracle(hourly)
    if got is not None:
        present = [v for v in hourly[:12] if v is not None]
        assert isinstance(got, int) and min(present) <= got <= max(present)
        # the rule: None exactly when fewer than 2 of the 3 most recent hours are present
    assert (got is None) == (sum(1 for v in hourly[:3] if v is not None) < 2)


@FAST
@given(st.lists(st.integers(0, 5000), min_size=12, max_size=12), st.integers(1, 5000))
def test_nowcast_rises_with_the_latest_hour(aq, hourly, bump):
    """More smoke in the hour just ended never lowers the NowCast."""
    up = [hourly[0] + bump] + hourly[1:]
    assert aq.nowcast(up) >= aq.nowcast(hourly)


# ---- European Air Quality Index ---------------------------------------------------------------
def test_eaqi_every_band_boundary(aq):
    for pol, bounds in EEA.items():
        assert aq.eaqi_level(pol, 0) == 0
        for i, b in enumerate(bounds):
            assert aq.eaqi_level(pol, b) == i, (pol, b)  # the bound itself is in the lower band
            assert aq.eaqi_level(pol, b + 1) == i + 1  # whole ug/m3
            assert aq.eaqi_level(pol, b * 10 + 1, per=10) == i + 1  # one tenth above
            assert aq.eaqi_level(pol, b * 10, per=10) == i
            assert aq.eaqi_level(pol, b + 1e-6) == i + 1  # any float above
        assert aq.eaqi_level(pol, 10**9) == 5
    assert aq.eaqi_pm25(5) == 0 and aq.eaqi_pm25(5.1) == 1 and aq.eaqi_pm25(141) == 5
    assert aq.eaqi_pm10(15) == 0 and aq.eaqi_pm10(271) == 5 and aq.eaqi_pm10(1205, per=10) == 3


def test_eaqi_overall_is_the_worst(aq):
    assert aq.eaqi_band(aq.eaqi_pm25(16), aq.eaqi_pm10(10)) == (2, "Moderate")
    assert aq.eaqi_band(0, 4, 1) == (4, "Very poor")
    assert aq.eaqi_band(None, 3) == (3, "Poor")
    assert aq.eaqi_band() is None and aq.eaqi_band(None, None) is None
    assert aq.eaqi_band(5) == (5, "Extremely poor")
    assert aq.eaqi_pm25(None) is None and aq.eaqi_pm10(float("nan")) is None
    assert aq.eaqi_pm25(-3) == 0


@FAST
@given(st.sampled_from(sorted(EEA)), st.integers(-100, 20000), st.integers(-100, 20000))
def test_eaqi_monotone_and_named(aq, pol, c1, c2):
    a, b = aq.eaqi_level(pol, min(c1, c2), per=10), aq.eaqi_level(pol, max(c1, c2), per=10)
    assert 0 <= a <= b <= 5
    want = next((i for i, bd in enumerate(EEA[pol]) if Fraction(c1, 10) <= bd), 5)
    assert aq.eaqi_level(pol, c1, per=10) == want
    assert aq.eaqi_band(a) == (a, EAQI_NAMES[a])


# ---- humidity ---------------------------------------------------------------------------------
def test_humidity_flag(aq):
    assert aq.humidity_flag(85) is False and aq.humidity_flag(85.1) is True
    assert aq.humidity_flag(99, 95) is True and aq.humidity_flag(60, 70) is False
    assert aq.humidity_flag(None) is False and aq.humidity_flag(float("nan")) is False


def test_rh_correct_none_means_no_correction(aq):
    assert aq.rh_correct(123, 95) == 123 and aq.rh_correct(123, None) == 123
    assert aq.rh_correct(123.9, 50, None) == 123 and aq.rh_correct(-4, 50) == 0
    assert aq.rh_correct(None, 50, aq.BARKJOHN) is None
    assert aq.rh_correct(100, None, aq.BARKJOHN) is None
    with pytest.raises(ValueError, match="unknown method"):
        aq.rh_correct(100, 50, "magic")


def test_rh_correct_barkjohn_examples(aq):
    # PM2.5 = 0.524 * PA_cf1 - 0.0862 * RH + 5.75
    # 30.0 ug/m3 at 50 %: 15.72 - 4.31 + 5.75 = 17.16 -> 17.2
    assert aq.rh_correct(300, 50, aq.BARKJOHN) == 172
    # 100.0 at 80 %: 52.4 - 6.896 + 5.75 = 51.254 -> 51.3
    assert aq.rh_correct(1000, 80, aq.BARKJOHN) == 513
    # 0 at 40 %: 5.75 - 3.448 = 2.302 -> 2.3;  0 at 90 %: negative -> 0
    assert aq.rh_correct(0, 40, aq.BARKJOHN) == 23 and aq.rh_correct(0, 90, aq.BARKJOHN) == 0
    assert aq.rh_correct(300, 50.0, aq.BARKJOHN) == 172 and aq.rh_correct(300, 55.5, aq.BARKJOHN) == 167


@FAST
@given(st.integers(0, 50000), st.integers(0, 100))
def test_rh_correct_barkjohn_exact(aq, pm_x10, rh):
    want = Fraction(524, 1000) * Fraction(pm_x10, 10) - Fraction(862, 10000) * rh + Fraction(575, 100)
    want = max(0, math.floor(want * 10 + Fraction(1, 2)))
    assert aq.rh_correct(pm_x10, rh, aq.BARKJOHN) == want


def test_rh_correct_kohler_examples(aq):
    # kappa 0.62, RH 90 %: C = 1 + (0.62 / 1.65) / (1/0.9 - 1) = 4.3818; 30.0 / C = 6.85 -> 6.8
    assert aq.rh_correct(300, 90, aq.KOHLER, 62) == 68
    # kappa 0.3, RH 50 %: C = 1 + 0.1818 = 1.1818; 30.0 / C = 25.38 -> 25.4
    assert aq.rh_correct(300, 50, aq.KOHLER, 30) == 254
    assert aq.rh_correct(300, 0, aq.KOHLER, 62) == 300  # dry air: no growth
    assert aq.rh_correct(300, 80, aq.KOHLER, 0) == 300  # kappa 0 (soot, dust): no growth
    assert aq.rh_correct(300, 100, aq.KOHLER, 62) == aq.rh_correct(300, 99, aq.KOHLER, 62)  # capped
    with pytest.raises(ValueError, match="kappa"):
        aq.rh_correct(300, 80, aq.KOHLER)


@FAST
@given(st.integers(0, 50000), st.integers(0, 99), st.integers(0, 99), st.integers(0, 150))
def test_rh_correct_kohler_exact_and_monotone(aq, pm_x10, rh1, rh2, k100):
    aw = Fraction(rh1, 100)
    c = 1 + (Fraction(k100, 100) / Fraction(165, 100)) / (-1 + 1 / aw) if rh1 else Fraction(1)
    want = math.floor(Fraction(pm_x10) / c + Fraction(1, 2))
    assert aq.rh_correct(pm_x10, rh1, aq.KOHLER, k100) == want
    lo, hi = min(rh1, rh2), max(rh1, rh2)
    assert aq.rh_correct(pm_x10, hi, aq.KOHLER, k100) <= aq.rh_correct(pm_x10, lo, aq.KOHLER, k100) <= pm_x10


# ---- category changes -> events ---------------------------------------------------------------
def run(aq, cats, cfg=None, kind="aqi"):
    state: dict = {}
    out = []
    for c in cats:
        out.append(aq.aq_step(state, cfg or {}, kind, c, None if c is None else c * 60))
    return state, out


def test_alert_raised_once_and_cleared_after_two_hours(aq):
    state, out = run(aq, [0, 1, 2, 3, 4, 5, 2, 2, 1])
    assert out[:3] == [[], [], []]
    assert out[3] == [("air_quality", "alarm", {"index": "aqi", "category": 3, "name": "Unhealthy",
                                                 "value": 180, "alert": True})]
    assert out[4] == out[5] == out[6] == []  # worse again: no new event; one hour below: not yet
    assert out[7] == [("air_quality", "info", {"index": "aqi", "category": 2,
                                                "name": "Unhealthy for Sensitive Groups",
                                                "value": 120, "alert": False})]
    assert out[8] == []
    assert state == {"a": 0, "b": 0}


def test_no_flapping_around_the_level(aq):
    _, out = run(aq, [2, 3, 2, 3, 2, 3, 2, 2, 3, 2, 2])
    ev = [e for o in out for e in o]
    assert [e[1] for e in ev] == ["alarm", "info", "alarm", "info"]
    assert [i for i, o in enumerate(out) if o] == [1, 7, 8, 10]


def test_missing_hours_restart_the_all_clear(aq):
    _, out = run(aq, [4, 1, None, 1, None, 1, 1])
    assert [i for i, o in enumerate(out) if o] == [0, 6]
    _, out = run(aq, [None, None, 3])  # a missing hour never raises; data comes first
    assert [i for i, o in enumerate(out) if o] == [2]


def test_configured_level_hours_and_eaqi_names(aq):
    _, out = run(aq, [3, 4, 3, 3, 3, 5, 1], {"alert_category": 4, "recover_hours": 3}, "eaqi")
    ev = [e for o in out for e in o]
    assert [(e[1], e[2]["category"], e[2]["name"]) for e in ev] == [
        ("alarm", 4, "Very poor"), ("info", 3, "Poor"), ("alarm", 5, "Extremely poor")]
    assert all(e[2]["index"] == "eaqi" for e in ev)
    _, out = run(aq, [3, 2], {"recover_hours": 1})
    assert [len(o) for o in out] == [1, 1]
    with pytest.raises(ValueError, match="index_kind"):
        aq.aq_step({}, {}, "caqi", 2)


@FAST
@given(st.lists(st.one_of(st.none(), st.integers(0, 5)), max_size=200), st.integers(1, 5),
       st.integers(1, 6), st.sampled_from(["aqi", "eaqi"]))
def test_events_alternate_and_never_flap(aq, cats, level, hours, kind):
    cfg = {"alert_category": level, "recover_hours": hours}
    names = AQI_NAMES if kind == "aqi" else EAQI_NAMES
    state: dict = {}
    stored = "{}"
    raised = False
    below_run = 0  # consecutive present hours below the level
    for c in cats:
        ev = aq.aq_step(state, cfg, kind, c, c)
        # the state is small JSON and survives a trip through RTC memory
        again = json.loads(stored)
        assert aq.aq_step(again, cfg, kind, c, c) == ev and again == state
        stored = json.dumps(state)
        assert len(stored) <= 20
        json.dumps(ev)  # publishable
        below_run = below_run + 1 if c is not None and c < level else 0
        assert len(ev) <= 1
        if not ev:
            # silence is right: not raising while clear means below the level (or no data);
            # not clearing while raised means fewer than `hours` good hours in a row
            assert (c is None or c < level) if not raised else below_run < hours or c is None or c >= level
            continue
        name, lvl, data = ev[0]
        assert name == "air_quality"
        assert data["category"] == c and data["name"] == names[c] and data["index"] == kind
        if not raised:
            assert lvl == "alarm" and data["alert"] is True and c >= level
        else:
            assert lvl == "info" and data["alert"] is False and below_run >= hours
            below_run = 0
        raised = not raised


# ---- the same logic in real MicroPython --------------------------------------------------------
MP_SCRIPT = r'''
import sys
sys.path[:] = ["/lib"]
import json
from nodes import aq_index as aq
with open("/work/in.json") as f:
    inp = json.loads(f.read())
out = []
for c in inp["conc"]:
    out.append([aq.aqi_pm25(c), aq.aqi_pm10(c), aq.aqi_pm25(c, True), aq.aqi_category(aq.aqi_pm25(c)),
                aq.eaqi_band(aq.eaqi_pm25(c, 10), aq.eaqi_pm10(c // 10))])
for h in inp["hours"]:
    out.append(aq.nowcast(h))
for pm, rh, k in inp["rh"]:
    out.append([aq.rh_correct(pm, rh, aq.BARKJOHN), aq.rh_correct(pm, rh, aq.KOHLER, k), aq.humidity_flag(rh)])
st = {}
for c in inp["cats"]:
    out.append([aq.aq_step(st, {"recover_hours": 3}, "eaqi", c, c), dict(st)])
with open("/work/out.json", "w") as f:
    f.write(json.dumps(out))
'''


def test_micropython_runs_like_cpython(aq, tmp_path):
    """Big-int NowCast weights (cmax**11), floor division and the tables: the WASI MicroPython
    gives the same results as CPython for the same inputs."""
    from simulator import wasi

    rnd = random.Random(5)
    conc = [rnd.choice([rnd.randint(0, 400), rnd.randint(0, 8000), rnd.randint(0, 10**6)]) for _ in range(400)]
    hours = []
    for _ in range(300):
        base = rnd.randint(0, 3000)
        h = [rnd.choice([None] * 1 + [max(0, base + rnd.randint(-base // 2 - 1, base))] * 5)
             for _ in range(rnd.randint(0, 13))]
        hours.append(h)
    rh = [[rnd.randint(0, 20000), rnd.randint(0, 100), rnd.randint(0, 120)] for _ in range(300)]
    cats = [rnd.choice([None, 0, 1, 2, 3, 3, 4, 5]) for _ in range(500)]
    (tmp_path / "in.json").write_text(json.dumps({"conc": conc, "hours": hours, "rh": rh, "cats": cats}))
    wasi.run_micropython(MP_SCRIPT, {FW_LIB: "/lib", tmp_path: "/work"}, 8 << 20)
    got = json.loads((tmp_path / "out.json").read_text())

    want: list = []
    for c in conc:
        want.append([aq.aqi_pm25(c), aq.aqi_pm10(c), aq.aqi_pm25(c, True), aq.aqi_category(aq.aqi_pm25(c)),
                     aq.eaqi_band(aq.eaqi_pm25(c, 10), aq.eaqi_pm10(c // 10))])
    want += [aq.nowcast(h) for h in hours]
    want += [[aq.rh_correct(p, r, aq.BARKJOHN), aq.rh_correct(p, r, aq.KOHLER, k), aq.humidity_flag(r)]
             for p, r, k in rh]
    state: dict = {}
    for c in cats:
        want.append([aq.aq_step(state, {"recover_hours": 3}, "eaqi", c, c), dict(state)])
    want = json.loads(json.dumps(want))
    assert len(got) == len(want)
    diffs = [(i, w, g) for i, (w, g) in enumerate(zip(want, got)) if w != g]
    assert not diffs, diffs[:3]
    assert sum(1 for x in want[400:700] if x is not None) > 150  # NowCasts were compared
    assert any(x for x in want[1000:] if x[0])  # events were compared
