"""The road world (simulator/mp/world_road.py): the truth the traffic-counter node's two fake
magnetometers see. Deterministic from the seed whatever the query order, arrival rates as
configured, headways never under the minimum, platoons behind a light, queues that crawl, one
bump per vehicle that sensor 1 sees spacing/speed later, baselines that parked cars shift and
temperature drifts, and the same numbers in the WASI MicroPython as under CPython."""

from __future__ import annotations

import importlib
import math
import sys
import time
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
wr = importlib.import_module("world_road")

START = 1_780_000_000  # 2026-05-28 20:26:40 UTC, a Thursday
DAY = 86400
HOUR = 3600
US = 1_000_000
QUIET = {"drift_ut_per_c": 0, "parking": False, "queues": False}  # clean field for shape tests


def dev(road, n, t):
    """|field - baseline| at sensor n, t seconds."""
    b = road.field(n, int(round(t * US)))
    z = road.baseline(n, round(t * US) / US)
    return math.sqrt(sum((b[a] - z[a]) ** 2 for a in range(3)))


def isolated(vs, gap):
    """The vehicles whose neighbours (any lane) are more than gap seconds away."""
    out = []
    for i, v in enumerate(vs):
        if 0 < i < len(vs) - 1 and v[0] - vs[i - 1][0] > gap and vs[i + 1][0] - v[0] > gap:
            out.append(v)
    return out


def bumps(values, thr):
    """Maximal runs above thr (leaving a run needs a drop below 0.7 thr)."""
    n, up = 0, False
    for v in values:
        if not up and v > thr:
            n, up = n + 1, True
        elif up and v < 0.7 * thr:
            up = False
    return n


# ---- determinism ------------------------------------------------------------------------------
def test_same_seed_same_vehicles_and_fields():
    params = {"vph": 900, "light": True}
    a = wr.Road(params, 11, START)
    b = wr.Road(params, 11, START)
    times = [i * 0.37 for i in range(0, 20000, 7)]
    va = a.vehicles(0, 3 * HOUR)
    assert va and va == b.vehicles(0, 3 * HOUR)
    fa = [a.field(i % 2, int(t * US)) for i, t in enumerate(times)]
    assert fa == [b.field(i % 2, int(t * US)) for i, t in enumerate(times)]
    assert a.parked(0, DAY) == b.parked(0, DAY) and a.queues(0, 7 * DAY) == b.queues(0, 7 * DAY)
    c = wr.Road(params, 12, START)
    assert c.vehicles(0, 3 * HOUR) != va
    assert [c.field(i % 2, int(t * US)) for i, t in enumerate(times)] != fa


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(-2**40, 2**40),
       times=st.lists(st.floats(0, 5 * HOUR), min_size=1, max_size=30),
       light=st.booleans())
def test_query_order_does_not_matter(seed, times, light):
    params = {"vph": 1200, "light": light, "queue": [[1, 0.3, 8]]}
    forward = wr.Road(params, seed, START)
    want = {t: (forward.field(0, int(t * US)), forward.field(1, int(t * US))) for t in sorted(times)}
    backward = wr.Road(params, seed, START)
    backward.field(1, 6 * HOUR * US)  # the far future first: the early chunks drop out of the cache
    for t in sorted(times, reverse=True):
        assert (backward.field(0, int(t * US)), backward.field(1, int(t * US))) == want[t]
    assert backward.vehicles(0, 5 * HOUR) == forward.vehicles(0, 5 * HOUR)
    assert backward.parked(0, 5 * HOUR) == forward.parked(0, 5 * HOUR)


def test_field_source_is_the_field():
    r = wr.Road({}, 3, START)
    src = r.field_source(1)
    assert src(None, 1234_567_890) == r.field(1, 1234_567_890)
    with pytest.raises(ValueError):
        r.field_source(2)
    assert wr.FIELD_UNIT == "uT"


# ---- arrivals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate,hours", [(200, 40), (800, 12), (1800, 6)])
def test_arrival_rate_matches_the_configured_rate(rate, hours):
    r = wr.Road({"rate_vph": rate}, 5, START)
    vs = r.vehicles(0, hours * HOUR)
    for lane in (0, 1):
        n = sum(1 for v in vs if v[1] == lane)
        want = rate * hours
        # headways h0 + exponential: the count's sd is below sqrt(want)
        assert abs(n - want) < 4 * math.sqrt(want), (rate, lane, n, want)
        ts = [v[0] for v in vs if v[1] == lane]
        mean_h = (ts[-1] - ts[0]) / (len(ts) - 1)
        assert mean_h == pytest.approx(3600 / rate, rel=0.05)


def test_the_rate_follows_the_day_and_the_week():
    r = wr.Road({"vph": 600, "queues": False}, 8, START)
    days = 14
    vs = r.vehicles(0, days * DAY)
    # the count is the integral of the demand (queues and lights only delay)
    integral = sum(r.rate_vph(lane, i * 60 + 30) for lane in (0, 1) for i in range(days * 1440)) / 60
    assert len(vs) == pytest.approx(integral, rel=0.02)
    rush = night = sunday = 0
    for t, *_ in vs:
        wd, h = r.weekday_hour(t)
        if wd < 5 and 7.5 <= h < 9.5:
            rush += 1
        if wd < 5 and 2 <= h < 4:
            night += 1
        if wd == 6 and 7.5 <= h < 9.5:
            sunday += 1
    # per weekday: 2 h of rush, 2 h of night; 10 weekdays against 2 Sundays
    assert rush > 15 * night
    assert sunday / 2 < 0.4 * rush / 10
    assert rush / (10 * 2 * 2) == pytest.approx(600 * 0.93, rel=0.1), "the peak is vph"
    assert max(r.rate_vph(0, i * 60) for i in range(7 * 1440)) == pytest.approx(600, rel=1e-3)


@pytest.mark.parametrize("params", [
    {"rate_vph": 1800},
    {"rate_vph": 1500, "min_headway_s": 2.0},
    {"vph": 900, "light": True},
    {"vph": 1200, "queue": [[0.5, 1, 6]], "jam_gap_m": 3},
    {"rate_vph": 1000, "mix": {"truck": 1}, "speed_limit_kmh": 30},
])
def test_headways_never_below_the_minimum(params):
    r = wr.Road(params, 2, START)
    h0 = params.get("min_headway_s", 1.0)
    gap = params.get("jam_gap_m", 2.0)
    vs = r.vehicles(0, 3 * HOUR)
    assert len(vs) > 500
    for lane in (0, 1):
        mine = [v for v in vs if v[1] == lane]
        for a, b in zip(mine, mine[1:]):
            h = b[0] - a[0]
            assert h >= h0 - 1e-9
            # the leader's rear is at least jam_gap_m past the sensor when the follower's front comes
            assert h * a[5] / 3.6 - a[4] >= gap - 1e-6
    assert all(v[5] >= 3.6 - 1e-9 for v in vs)


def test_vehicle_types_lengths_and_speeds():
    r = wr.Road({"rate_vph": 900, "lanes": [{"direction": 1, "speed_limit_kmh": 50}]}, 4, START)
    vs = r.vehicles(0, 10 * HOUR)
    share = {k: sum(1 for v in vs if v[3] == k) / len(vs) for k in wr.TYPES}
    assert share["car"] == pytest.approx(0.8, abs=0.03) and share["truck"] == pytest.approx(0.05, abs=0.015)
    lengths = {"two_wheeler": (1.8, 2.2), "car": (4.0, 5.0), "van": (5.8, 7.2), "truck": (10.0, 14.0)}
    for _, lane, d, kind, ln, kmh in vs:
        assert lane == 0 and d == 1
        assert lengths[kind][0] <= ln <= lengths[kind][1]
        assert 3.6 <= kmh <= 75 + 1e-9
    mean = sum(v[5] for v in vs) / len(vs)
    assert 40 <= mean <= 50, "about 95 % of the limit, a little less in platoons"
    trucks = [v[5] for v in vs if v[3] == "truck"]
    assert sum(trucks) / len(trucks) < mean


def test_a_light_upstream_releases_platoons():
    cycle, green = 90.0, 40.0
    r = wr.Road({"rate_vph": 500, "lanes": 1, "light": {"cycle_s": cycle, "green_s": green}}, 6, START)
    vs = r.vehicles(0, 4 * HOUR)
    assert len(vs) / 4 == pytest.approx(500, rel=0.1), "the light delays, it does not remove"
    bins = [0] * 9
    for v in vs:
        bins[int((v[0] % cycle) // 10)] += 1
    # arrivals come within about the green time (plus spread) of each cycle: 40 s of the 90 are
    # nearly empty, where a steady stream would put 44 % of the vehicles
    quiet = sorted(bins)[:4]
    assert sum(quiet) < 0.08 * len(vs)
    steady = wr.Road({"rate_vph": 500, "lanes": 1}, 6, START).vehicles(0, 4 * HOUR)
    sbins = [0] * 9
    for v in steady:
        sbins[int((v[0] % cycle) // 10)] += 1
    assert sum(sorted(sbins)[:4]) > 0.35 * len(steady)


def test_queues_crawl_past_the_sensor():
    r = wr.Road({"rate_vph": 700, "queue": [[1, 0.5, 10]], "queues": False}, 9, START)
    assert r.queues(0, 3 * HOUR) == [(0, HOUR, 1.5 * HOUR, 10.0), (1, HOUR, 1.5 * HOUR, 10.0)]
    vs = r.vehicles(0, 3 * HOUR)
    inside = [v for v in vs if HOUR + 60 <= v[0] < 1.5 * HOUR]
    outside = [v for v in vs if v[0] < HOUR - 300 or v[0] > 1.5 * HOUR + 900]
    assert inside and all(v[5] <= 12.0 + 1e-9 for v in inside)
    assert min(v[5] for v in outside) > 20
    # crawling at 10 km/h they follow closely: most gaps are short in space
    gaps = []
    for lane in (0, 1):
        mine = [v for v in inside if v[1] == lane]
        gaps += [(b[0] - a[0]) * a[5] / 3.6 - a[4] for a, b in zip(mine, mine[1:])]
    assert sorted(gaps)[len(gaps) // 2] < 20


def test_random_queues_come_at_weekday_rush_hours():
    r = wr.Road({"queues": {"prob": 0.5}}, 10, START)
    eps = r.queues(0, 14 * DAY)
    assert 8 <= len(eps) <= 36  # 10 weekdays x 2 peaks x 2 lanes x 0.5: 20
    for lane, s, e, kmh in eps:
        wd, h = r.weekday_hour((s + e) / 2)
        assert wd < 5 and (7 <= h <= 9 or 16.5 <= h <= 18.5)
        assert 5 * 60 - 1e-6 <= e - s <= 30 * 60 + 1e-6 and 5 <= kmh <= 20
        slow = [v for v in r.vehicles(s + 60, e) if v[1] == lane]
        assert all(v[5] <= 1.2 * kmh + 1e-9 for v in slow)
    assert wr.Road({"rate_vph": 600}, 10, START).queues(0, 28 * DAY) == [], "benchmarks: none"


# ---- the field -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2])
def test_one_bump_per_vehicle_and_baseline_between(seed):
    params = dict(QUIET, rate_vph=60, lanes=[{"direction": 1, "offset_m": 1.8}])
    r = wr.Road(params, seed, START)
    vs = r.vehicles(0, 6 * HOUR)
    alone = isolated(vs, 25)
    assert len(alone) > 100
    for t, _, _, kind, ln, kmh in alone:
        v = kmh / 3.6
        seq = [dev(r, 0, t - 5 + i * 0.01) for i in range(int((10 + ln / v) / 0.01))]
        assert bumps(seq, 0.05) == 1, (kind, max(seq))
        peak = max(seq)
        assert peak > {"two_wheeler": 0.2, "car": 1.0, "van": 1.0, "truck": 5.0}[kind]
        # the bump is where the vehicle is: within its length (plus a little) of sensor 0
        i = seq.index(peak)
        assert -0.5 < (i * 0.01 - 5) * v < ln + 0.5
    # between well-separated vehicles the field is the baseline exactly, at both sensors
    quiet = [(a[0] + b[0]) / 2 for a, b in zip(vs, vs[1:]) if b[0] - a[0] > 30]
    assert len(quiet) > 50
    for t in quiet:
        for n in (0, 1):
            assert r.field(n, int(t * US)) == r.baseline(n, int(t * US) / US)


def test_trucks_are_big_two_wheelers_small_and_the_far_lane_weaker():
    params = dict(QUIET, rate_vph=60)
    peaks = {}
    for seed in range(3):
        r = wr.Road(params, seed, START)
        for t, lane, _, kind, ln, kmh in isolated(r.vehicles(0, 4 * HOUR), 25):
            seq = [dev(r, 0, t - 3 + i * 0.02) for i in range(int((6 + ln / (kmh / 3.6)) / 0.02))]
            peaks.setdefault((lane, kind), []).append(max(seq))

    def med(k):
        v = sorted(peaks[k])
        return v[len(v) // 2]

    assert med((0, "truck")) > 2 * med((0, "car")) > 8 * med((0, "two_wheeler"))
    assert med((0, "car")) > 5 * med((1, "car"))
    assert med((1, "car")) > 0.2, "the far lane is still above the chip's 0.2 uT noise"


def test_a_truck_shows_its_axles():
    r = wr.Road(dict(QUIET, rate_vph=40, lanes=[{"direction": 1, "offset_m": 1.5}], mix={"truck": 1}), 3, START)
    multi = 0
    trucks = isolated(r.vehicles(0, 3 * HOUR), 30)
    for t, _, _, _, ln, kmh in trucks:
        seq = [dev(r, 0, t - 2 + i * 0.01) for i in range(int((4 + ln / (kmh / 3.6)) / 0.01))]
        peak = max(seq)
        multi += bumps(seq, 0.35 * peak) > 1
        assert bumps(seq, 0.05) == 1
    assert multi >= len(trucks) // 5, "several axle peaks in one bump"


@pytest.mark.parametrize("direction", [1, -1])
def test_sensor_1_sees_each_vehicle_spacing_over_speed_later(direction):
    spacing_mm = 1500
    params = dict(QUIET, rate_vph=60, spacing_mm=spacing_mm, baseline_spread_ut=0,
                  lanes=[{"direction": direction, "offset_m": 2.0}])
    r = wr.Road(params, 7, START)
    alone = isolated(r.vehicles(0, 2 * HOUR), 25)
    assert len(alone) > 30
    for t, _, d, _, ln, kmh in alone:
        assert d == direction
        lag = direction * spacing_mm / 1000 / (kmh / 3.6)
        for i in range(40):
            t0 = t - 1 + i * (2 + ln / (kmh / 3.6)) / 40
            f0 = r.field(0, int(t0 * US))
            f1 = r.field(1, int(t0 * US + lag * US))
            b0 = r.baseline(0, int(t0 * US) / US)
            b1 = r.baseline(1, int(t0 * US + lag * US) / US)
            for a in range(3):
                # the same vehicle field, shifted by spacing/speed (to the microsecond rounding)
                assert f1[a] - b1[a] == pytest.approx(f0[a] - b0[a], abs=2e-3 * max(1.0, abs(f0[a] - b0[a])))
        peak0 = max(range(400), key=lambda i: dev(r, 0, t - 2 + i * 0.01))
        peak1 = max(range(400), key=lambda i: dev(r, 1, t - 2 + i * 0.01))
        assert (peak1 - peak0) * 0.01 == pytest.approx(lag, abs=0.012)


def test_parked_cars_shift_the_baseline_while_present():
    params = {"rate_vph": 0, "drift_ut_per_c": 0, "parking": {"free_min": 30, "stay_min": [20, 90]}}
    r = wr.Road(params, 12, START)
    stays = r.parked(0, DAY)
    assert len(stays) > 10
    assert all(20 * 60 - 1e-6 <= b - a <= 90 * 60 + 1e-6 and kind in ("car", "van") for a, b, kind, _ in stays)
    assert all(stays[i][1] <= stays[i + 1][0] for i in range(len(stays) - 1)), "one spot"
    assert r.vehicles(0, DAY) == []
    shifted = 0
    alone = [s for i, s in enumerate(stays)
             if 0 < i < len(stays) - 1 and s[0] - stays[i - 1][1] > 120 and stays[i + 1][0] - s[1] > 120]
    assert len(alone) > 5
    for a, b, _, _ in alone:
        for n in (0, 1):
            base = r.baseline(n, a)
            # (the car before has gone 230 m by a + 60, the next one is 350 m off at b - 60)
            s1 = [r.field(n, int(x * US))[k] - base[k] for x in (a + 60, b - 60) for k in range(3)]
            assert s1[:3] == pytest.approx(s1[3:], abs=1e-12), "constant while parked"
            shifted += max(abs(x) for x in s1[:3]) > 0.5
        s0 = r.field(0, int((a + b) / 2 * US))  # not the same shift at both sensors
        s1 = r.field(1, int((a + b) / 2 * US))
        assert s0 != s1
    assert shifted > len(alone), "a parked car shifts both sensors by far more than the noise"
    # with the spot empty (well after one left, well before the next came) the baseline is back
    for (a, b, _, _), (c, _, _, _) in zip(stays, stays[1:]):
        if c - b > 300:
            t = (b + c) / 2
            assert r.field(0, int(t * US)) == r.baseline(0, int(t * US) / US)


def test_the_baseline_drifts_slowly_with_temperature():
    r = wr.Road(dict(QUIET, rate_vph=0, drift_ut_per_c=0.05), 13, START)
    xs = [i * 60.0 for i in range(3 * 1440)]
    b0 = [r.baseline(0, t) for t in xs]
    swing = max(max(b[a] for b in b0) - min(b[a] for b in b0) for a in range(3))
    assert 0.05 < swing < 0.05 * 20, "hundredths to tenths of a uT over a day"
    steps = max(abs(b0[i + 1][a] - b0[i][a]) for i in range(len(b0) - 1) for a in range(3))
    assert steps < 0.005, "slow: under 5 nT a minute"
    # the field is the baseline here (no traffic), and follows the temperature
    assert r.field(0, 5 * HOUR * US) == r.baseline(0, 5 * HOUR)
    warm = cold = 0.0
    for d in range(1, 4):
        _, h = r.weekday_hour(d * DAY)
        midnight = d * DAY - h * HOUR
        warm += r.temperature_c(midnight + 15 * HOUR)
        cold += r.temperature_c(midnight + 3 * HOUR)
    assert (warm - cold) / 3 == pytest.approx(14, abs=3)
    still = wr.Road(dict(QUIET, rate_vph=0, drift_ut_per_c=0), 13, START)
    assert still.baseline(1, 0) == still.baseline(1, 12 * HOUR) == still.field(1, 7 * HOUR * US)
    e = still.baseline(0, 0)
    assert math.sqrt(sum(x * x for x in e)) == pytest.approx(math.hypot(20, 45), abs=2), "Earth's field"


def test_performance_of_the_field():
    r = wr.Road({"rate_vph": 800}, 1, START)
    r.vehicles(0, HOUR)
    t = time.perf_counter()
    for i in range(360_000):
        r.field(0, i * 10_000)
    one = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(360_000):
        r.field(1, i * 10_000)
    two = time.perf_counter() - t
    print("\nroad field, 800 veh/h/lane x 2 lanes, 100 Hz for one virtual hour: sensor 0 %.2f s, "
          "sensor 1 %.2f s (CPython)" % (one, two))


# ---- bounds over parameters and seeds -----------------------------------------------------------
@st.composite
def road_params(draw):
    p = {"spacing_mm": draw(st.integers(100, 10_000)), "min_headway_s": draw(st.floats(0.5, 3)),
         "drift_ut_per_c": draw(st.floats(0, 0.5)), "moment_scale": draw(st.floats(0, 3)),
         "speed_limit_kmh": draw(st.floats(10, 130)), "tz_h": draw(st.integers(-12, 12)),
         "sensor_height_m": draw(st.floats(0, 1.5)), "jam_gap_m": draw(st.floats(0, 5))}
    cap = min(0.95 * 3600 / p["min_headway_s"], 2000)
    if draw(st.booleans()):
        p["rate_vph"] = draw(st.floats(0, cap))
    else:
        p["vph"] = draw(st.floats(0, cap))
    if draw(st.booleans()):
        p["lanes"] = draw(st.integers(1, 2))
    else:
        p["lanes"] = [{"direction": draw(st.sampled_from([1, -1])), "offset_m": draw(st.floats(0.3, 12))}
                      for _ in range(draw(st.integers(1, 3)))]
    if draw(st.booleans()):
        g = draw(st.floats(5, 80))
        p["light"] = {"cycle_s": g + draw(st.floats(0, 80)), "green_s": g, "distance_m": draw(st.floats(0, 400))}
    p["parking"] = draw(st.one_of(st.booleans(), st.just({"x_m": draw(st.floats(-20, 20)),
                                                          "stay_min": [1, draw(st.floats(1, 600))]})))
    p["queues"] = draw(st.booleans())
    if draw(st.booleans()):
        p["queue"] = [[draw(st.floats(0, 3)), draw(st.floats(0, 1)), draw(st.floats(1, 40))]]
    if draw(st.booleans()):
        p["mix"] = {k: draw(st.floats(0, 1)) for k in wr.TYPES}
        p["mix"]["car"] += 0.01
    return p


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=road_params(), seed=st.integers(0, 2**40), start=st.integers(0, 2_000_000_000),
       times=st.lists(st.floats(-600, 2 * HOUR), max_size=40))
def test_any_road_gives_finite_fields_and_sane_vehicles(params, seed, start, times):
    r = wr.Road(params, seed, start)
    for i, t in enumerate(times + [j * 97.3 for j in range(75)]):
        f = r.field(i % 2, int(t * US))
        assert len(f) == 3 and all(math.isfinite(x) for x in f)
        assert all(abs(x) < 1e5 for x in f)
    vs = r.vehicles(0, 2 * HOUR)
    assert vs == sorted(vs)
    for t, lane, d, kind, ln, kmh in vs:
        assert 0 <= t < 2 * HOUR and 0 <= lane < len(r.lanes) and d in (1, -1) and kind in wr.TYPES
        assert ln > 0 and 3.6 - 1e-9 <= kmh <= 1.5 * params["speed_limit_kmh"] + 1e-6
    for a, b, kind, ln in r.parked(0, 2 * HOUR):
        assert a < b and kind in ("car", "van")


def test_bad_params_are_refused():
    for p in ({"lanes": 3}, {"lanes": [{"direction": 0}]}, {"lanes": [{"offset_m": 0}]}, {"spacing_mm": 0},
              {"spacing_mm": 20_000}, {"mix": {"tram": 1}}, {"mix": {"car": 0}}, {"rate_vph": 4000},
              {"vph": -1}, {"light": {"cycle_s": 30, "green_s": 40}}, {"light": {"amber_s": 3}},
              {"profile": {"weekday": [1, 2]}}, {"earth_ut": [0, 0, 0]}, {"parking": {"stay_min": [0, 5]}},
              {"queue": [[1]]}, {"min_headway_s": 0}):
        with pytest.raises(ValueError):
            wr.Road(p, 1, START)


# ---- on a board -----------------------------------------------------------------------------------
class _FakeChip:
    def __init__(self, board, bus, field, **kw):
        self.board, self.bus, self.field, self.kw = board, bus, field, kw
        self.temp_c = None


def _board():
    return simboard.Board("road-1", profiles.load("lolin-d32"), "/nonexistent")


def test_attach_puts_two_magnetometers_on_the_two_buses(monkeypatch):
    monkeypatch.setitem(sys.modules, "chip_magnetometer", types.SimpleNamespace(Magnetometer=_FakeChip))
    board = _board()
    r = wr.attach(board, {"sensor": "hmc5883l", "noise_ut": 0.1}, 7, START)
    assert board.extra["world"] is r and len(r.chips) == 2
    pins = board.profile["pins"]["traffic"]
    assert [c.bus for c in r.chips] == [pins["i2c_id"], pins["i2c2_id"]] == [0, 1]
    assert all(c.kw == {"kind": "hmc5883l", "noise_ut": 0.1} for c in r.chips)
    for n, c in enumerate(r.chips):
        assert c.field(board, 3_600_000_000) == r.field(n, 3_600_000_000)
        assert c.temp_c == pytest.approx(r.temperature_c(3600))
    default = wr.attach(_board(), None, 7, START)
    assert default.chips[0].kw == {"kind": "qmc5883l"}


def test_a_qmc5883l_reads_the_road_through_machine_i2c(tmp_path):
    try:
        importlib.import_module("chip_magnetometer")
    except ImportError:
        pytest.skip("chip_magnetometer is not written yet")
    from tests.nodeenv import NodeEnv

    env = NodeEnv(tmp_path / "flash")
    r = wr.attach(env.board, {"rate_vph": 600, "noise_ut": 0}, 7, START)
    machine = env.module("machine")
    pins = env.profile["pins"]["traffic"]
    checked = 0
    for n, (bus, scl, sda) in enumerate(((pins["i2c_id"], pins["i2c_scl"], pins["i2c_sda"]),
                                         (pins["i2c2_id"], pins["i2c2_scl"], pins["i2c2_sda"]))):
        i2c = machine.I2C(bus, scl=machine.Pin(scl), sda=machine.Pin(sda))
        i2c.writeto_mem(0x0D, 0x0B, b"\x01")  # SET/RESET period (datasheet: write 0x01)
        i2c.writeto_mem(0x0D, 0x09, bytes([0x19]))  # continuous, 100 Hz, 8 G, OSR 512
        for _ in range(20):
            env.board.advance(50_000)
            raw = i2c.readfrom_mem(0x0D, 0x00, 6)
            xyz = [int.from_bytes(raw[i:i + 2], "little", signed=True) for i in (0, 2, 4)]
            chip = r.chips[n]
            f = r.field(n, chip.last_t_us)
            assert xyz == [int(math.floor(f[a] / 100 * 3000 + 0.5)) for a in range(3)]  # 3000 LSB/G at 8 G
            checked += 1
    assert checked == 40


# ---- the same numbers in MicroPython -----------------------------------------------------------------
MP_PARAMS = {"vph": 1500, "light": True, "queue": [[0.2, 0.1, 9]], "parking": {"free_min": 10}}
MP_SEED = 424243
MP_TIMES = [0, 12.5, 777.77, 1900.01, 1200.3, 3333.3, 2500.0]


def test_micropython_gives_the_same_world():
    from simulator import wasi

    code = """
import sys
sys.path[:] = ['/sim']
import world_road
r = world_road.Road(%r, %d, %d)
for t in %r:
    for n in (0, 1):
        f = r.field(n, int(t * 1000000))
        print('F %%.17g %%.17g %%.17g' %% f)
for v in r.vehicles(600, 1300):
    print('V %%.17g %%d %%d %%s %%.17g %%.17g' %% v)
for p in r.parked(0, 3600):
    print('P %%.17g %%.17g %%s %%.17g' %% p)
""" % (MP_PARAMS, MP_SEED, START, MP_TIMES)
    out, _ = wasi.run_micropython(code, {str(MP_DIR): "/sim"}, 64 << 20)
    fields, vehicles, parked = [], [], []
    for line in out.decode().splitlines():
        parts = line.split()
        if parts[0] == "F":
            fields.append([float(x) for x in parts[1:]])
        elif parts[0] == "V":
            vehicles.append((float(parts[1]), int(parts[2]), int(parts[3]), parts[4], float(parts[5]), float(parts[6])))
        elif parts[0] == "P":
            parked.append((float(parts[1]), float(parts[2]), parts[3], float(parts[4])))
    r = wr.Road(MP_PARAMS, MP_SEED, START)
    want = [list(r.field(n, int(t * 1_000_000))) for t in MP_TIMES for n in (0, 1)]
    assert len(fields) == len(want)
    for got, w in zip(fields, want):
        for g, x in zip(got, w):
            assert math.isclose(g, x, rel_tol=1e-6, abs_tol=1e-9), (got, w)
    wv = r.vehicles(600, 1300)
    assert len(vehicles) == len(wv) > 20
    for got, w in zip(vehicles, wv):
        assert got[1:4] == w[1:4]
        for g, x in zip(got[:1] + got[4:], w[:1] + w[4:]):
            assert math.isclose(g, x, rel_tol=1e-9)
    wp = r.parked(0, 3600)
    assert len(parked) == len(wp) > 0
    for got, w in zip(parked, wp):
        assert got[2] == w[2] and all(math.isclose(g, x, rel_tol=1e-9) for g, x in zip(got[:2] + got[3:], w[:2] + w[3:]))
