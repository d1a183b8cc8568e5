"""The traffic-counter node's logic (firmware/lib/nodes/traffic_detect.py and traffic_stats.py),
loaded as the node loads it: vehicle detection on magnetometer signals made from a model
(vehicles as chains of magnetic dipoles passing over the sensor, on a drifting background,
with noise), parked vehicles and the baseline, pairing two sensors for speed, length and
direction, the interval statistics and the sensor fault rule; and in real MicroPython (the WASI
build) the same detections as under CPython, with no allocation per sample."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.nodeenv import NodeEnv

ROOT = Path(__file__).resolve().parent.parent
FW_LIB = ROOT / "firmware" / "lib"

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much, HealthCheck.too_slow])
WRAP = 1 << 30  # ticks_ms period
BG = (600, -300, 1200)  # the road's field, raw counts (about 0.45 G at 3000 LSB/G)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    # Only the modules under test on the board's flash: they need nothing else.
    flash_dir = tmp_path_factory.mktemp("traffic") / "flash"
    env = NodeEnv(flash_dir, install=False)
    (flash_dir / "lib" / "nodes").mkdir(parents=True)
    for rel in ("nodes/__init__.py", "nodes/traffic_detect.py", "nodes/traffic_stats.py"):
        shutil.copyfile(FW_LIB / rel, flash_dir / "lib" / rel)
    return env


@pytest.fixture(scope="module")
def td(env):
    return env.module("nodes.traffic_detect")


@pytest.fixture(scope="module")
def ts(env):
    return env.module("nodes.traffic_stats")


# ---- the signal model -------------------------------------------------------------------------
def dipole(m, rx, ry, rz):
    """Field of a magnetic dipole m at offset r from the sensor (arbitrary units)."""
    r2 = rx * rx + ry * ry + rz * rz
    mr = m[0] * rx + m[1] * ry + m[2] * rz
    k = 1.0 / (r2 * r2 * math.sqrt(r2))
    return (3 * mr * rx - m[0] * r2) * k, (3 * mr * ry - m[1] * r2) * k, (3 * mr * rz - m[2] * r2) * k


class Vehicle:
    """Dipoles [(mm behind the front, moment)] at height h above the sensor, lat to its side.
    The front is over x = 0 at t0 ms and moves at v mm/s (negative: the other way). stop:
    (x_mm, ms): the front halts at x_mm for ms. The sensor sits at x_sensor along the lane."""

    def __init__(self, dipoles, t0, v, lat, h, stop=None):
        self.d = dipoles
        self.t0 = t0
        self.v = v
        self.lat = lat
        self.h = h
        self.stop = stop
        self.scale = 1.0

    def front(self, t):
        s = (t - self.t0) / 1000.0
        if self.stop is not None:
            ts = self.stop[0] / self.v
            if s > ts:
                s = max(ts, s - self.stop[1] / 1000.0)
        return self.v * s

    def field(self, t, x_sensor=0.0):
        f = self.front(t) - x_sensor
        sgn = 1.0 if self.v >= 0 else -1.0
        bx = by = bz = 0.0
        for off, m in self.d:
            px = f - sgn * off
            if abs(px) > 25000:
                continue
            b = dipole(m, px, self.lat, self.h)
            bx += b[0]
            by += b[1]
            bz += b[2]
        return bx * self.scale, by * self.scale, bz * self.scale

    def peak(self):
        """Largest L1 field over the whole pass, at scale 1 (20 mm steps)."""
        save = self.scale, self.stop, self.t0, self.v
        self.scale, self.stop, self.t0, self.v = 1.0, None, 0, 1000.0
        best = 0.0
        for i in range(-800, 1500):
            best = max(best, l1(self.field(i * 20.0)))
        self.scale, self.stop, self.t0, self.v = save
        return best


def l1(b):
    return abs(b[0]) + abs(b[1]) + abs(b[2])


def moment(rnd, s):
    a = rnd.uniform(0, 2 * math.pi)
    tilt = rnd.uniform(0, 0.6)
    return (s * math.sin(tilt) * math.cos(a), s * math.sin(tilt) * math.sin(a), s * math.cos(tilt) * rnd.choice((1, -1)))


# Where the iron is: engine, body, axles. Lengths: car 4.5 m, truck 12 m, motorcycle 2 m.
def layout(kind, rnd):
    if kind == "car":
        return [(800, moment(rnd, 1.0)), (2200, moment(rnd, rnd.uniform(0.2, 0.6))), (3700, moment(rnd, rnd.uniform(0.4, 0.9)))]
    if kind == "truck":
        return [(off, moment(rnd, rnd.uniform(0.4, 1.0))) for off in range(700, 12000, 1100)]
    if kind == "artic":  # a cab, a gap, a trailer: the field falls to nothing over the gap
        return [(off, moment(rnd, rnd.uniform(0.6, 1.0))) for off in (700, 1800, 2900)] + \
               [(off, moment(rnd, rnd.uniform(0.6, 1.0))) for off in range(5600, 15000, 1000)]
    return [(700, moment(rnd, 1.0)), (1500, moment(rnd, 0.4))]  # motorcycle


def vehicle(kind, rnd, t0, v, amp, lat=None, h=None, stop=None):
    veh = Vehicle(layout(kind, rnd), t0, v, rnd.uniform(-500, 500) if lat is None else lat,
                  rnd.uniform(250, 500) if h is None else h, stop)
    veh.scale = amp / veh.peak()
    return veh


def kmh(v_kmh):
    return v_kmh * 1e6 / 3600.0  # mm/s


def synth(vehicles, rate, dur_ms, noise=0, drift=None, seed=0, t0=0, x_sensor=0.0, bg=BG):
    """Samples (x, y, z, t_ms) as a magnetometer at x_sensor reads them (ints, t wrapping like
    ticks_ms from t0), and D: the noiseless L1 deviation the vehicles cause at each sample.
    drift: per axis (amplitude, period_s, phase) of a slow temperature-like drift."""
    rnd = random.Random(seed)
    out, dev = [], []
    n = int(dur_ms * rate // 1000)
    for i in range(n):
        t = i * 1000.0 / rate
        bx = by = bz = 0.0
        for veh in vehicles:
            f = veh.field(t, x_sensor)
            bx += f[0]
            by += f[1]
            bz += f[2]
        dev.append(abs(bx) + abs(by) + abs(bz))
        b = [bg[0] + bx, bg[1] + by, bg[2] + bz]
        if drift:
            for a in range(3):
                amp, per, ph = drift[a]
                b[a] += amp * math.sin(2 * math.pi * t / 1000.0 / per + ph)
        out.append((int(round(b[0])) + rnd.randint(-noise, noise), int(round(b[1])) + rnd.randint(-noise, noise),
                    int(round(b[2])) + rnd.randint(-noise, noise), (t0 + int(round(t))) % WRAP))
    return out, dev


def run(det, samples):
    """Feed every sample; [(index, code, t_on, t_off, peak, area, t_mid)] for each nonzero return."""
    got = []
    for i, (x, y, z, t) in enumerate(samples):
        r = det.feed(x, y, z, t)
        if r:
            got.append((i, r) + tuple(det.last))
    return got


def drift_lag(det, slope, frozen_s=0.0):
    """Bound on how far (per axis, counts) the baseline trails a background that moves at most
    `slope` counts/s: the ring's delay plus the exponential mean's, plus time frozen."""
    block_s = det.blk / det.rate
    return slope * ((det.guard + (1 << det.k) + 2) * block_s + frozen_s)


def margin(det, noise, lag=0.0):
    """Bound on |measured deviation - D|: the sample's noise, the baseline's noise, rounding
    and block-mean flooring (< 2 per axis), and the drift lag."""
    return 3 * noise + 3 * (noise + 2 + lag)


def expected(det, dev, rate, m):
    """The number of vehicles the detector must report on this noiseless deviation, whatever
    the noise within margin m does; None when the signal leaves it open (a dip near min_gap,
    a peak near a threshold...). Samples are sure-high if D >= thr_off + m, sure-low if
    D + m < thr_off, maybe-on if D + m >= thr_on, sure-on if D >= thr_on + m."""
    on, off, gap, min_on = det.thr_on, det.thr_off, det.min_gap, det.min_on
    period = 1000.0 / rate
    sure = [i for i, d in enumerate(dev) if d >= off + m]
    maybe_on = [i for i, d in enumerate(dev) if d + m >= on]
    clusters = []
    for i in sure:  # sure-high samples closer than min_gap: one vehicle, whatever between
        if clusters and (i - clusters[-1][-1]) * period < gap:
            clusters[-1].append(i)
        else:
            clusters.append([i])
    spans = [(c[0], c[-1]) for c in clusters]
    for i in maybe_on:  # a vehicle can start only inside a cluster
        if not any(a <= i <= b for a, b in spans):
            return None
    for a, b in spans:
        first_on = next((i for i in range(a, b + 1) if dev[i] >= on + m), None)
        if first_on is None or (b - first_on) * period < min_on:
            return None
    # Between clusters and after the last: a run of sure-low samples spanning min_gap after the
    # last sample that might be high, so the vehicle surely ends there.
    ends = [b for _, b in spans]
    starts = [a for a, _ in spans][1:] + [len(dev)]
    for b, nxt in zip(ends, starts):
        run_from = None
        ok = False
        for i in range(b + 1, nxt):
            if dev[i] + m < off:
                if run_from is None:
                    run_from = i
                if (i - run_from + 1) * period >= gap + period:
                    ok = True
                    break
            else:
                run_from = None
        if not ok:
            return None
    return len(clusters)


DEF_CFG: dict = {}


# ---- single vehicles --------------------------------------------------------------------------
@SLOW
@given(kind=st.sampled_from(["car", "truck", "moto", "artic"]), v_kmh=st.floats(5, 130), rev=st.booleans(),
       amp=st.floats(0, 1), rate=st.sampled_from([50, 100]), noise=st.integers(0, 3), seed=st.integers(0, 10**6),
       t0=st.sampled_from([0, WRAP - 20_000]), drift_amp=st.floats(0, 30))
def test_one_vehicle_is_one_count(td, kind, v_kmh, rev, amp, rate, noise, seed, t0, drift_amp):
    rnd = random.Random(seed)
    # amplitudes: a motorcycle just above the threshold, cars and trucks well above
    lo, hi = {"moto": (150, 400), "car": (250, 2000), "truck": (600, 4000), "artic": (600, 4000)}[kind]
    v = kmh(v_kmh) * (-1 if rev else 1)
    veh = vehicle(kind, rnd, 15_000, v, lo + (hi - lo) * amp)
    pass_ms = (16_000 + 30_000) / abs(v) * 1000
    dur = 15_000 + pass_ms + 3000
    drift = [(drift_amp, 900 + 600 * a, rnd.uniform(0, 6)) for a in range(3)]
    samples, dev = synth([veh], rate, dur, noise, drift, seed, t0)
    det = td.Detector(rate, DEF_CFG)
    slope = 2 * math.pi * drift_amp / 900
    m = margin(det, noise, drift_lag(det, slope, pass_ms / 1000 + det.guard * det.blk / rate))
    n = expected(det, dev, rate, m)
    assume(n == 1)
    got = run(det, samples)
    assert [g[1] for g in got] == [td.PASSED], got
    assert det.count == 1 and det.n_parked == 0
    i, _, t_on, t_off, peak, area, t_mid = got[0]
    assert 0 <= td.tdiff(t_mid, t_on) <= td.tdiff(t_off, t_on) + det.min_gap
    times = [s[3] for s in samples]
    # t_on: a sample at or above thr_off before the first sure-high one; t_off: the last one
    # at or above thr_off; the count comes min_gap after t_off.
    sure = [j for j, d in enumerate(dev) if d >= det.thr_off + m]
    maybe = [j for j, d in enumerate(dev) if d + m >= det.thr_off]
    j_on, j_off = times.index(t_on), times.index(t_off)
    assert maybe[0] <= j_on <= sure[0] and sure[-1] <= j_off <= maybe[-1]
    assert td.tdiff(times[i], t_off) >= det.min_gap and td.tdiff(times[i - 1], t_off) < det.min_gap
    assert peak >= det.thr_on and area >= peak


def test_a_truck_with_many_peaks_is_one_vehicle(td):
    rnd = random.Random(5)
    veh = vehicle("truck", rnd, 5000, kmh(15), 1500, lat=100, h=350)
    samples, dev = synth([veh], 50, 5000 + 25_000 / kmh(15) * 1000 + 2000, noise=2, seed=1)
    det = td.Detector(50)
    # Many peaks: local maxima separated by dips of at least a third of the peak.
    peaks = [i for i in range(1, len(dev) - 1) if dev[i - 1] < dev[i] >= dev[i + 1] and dev[i] > 300]
    deep = [p for p, q in zip(peaks, peaks[1:]) if min(dev[p:q]) < min(dev[p], dev[q]) * 2 / 3]
    assert len(deep) >= 4, "the model truck has several distinct peaks"
    assert expected(det, dev, 50, margin(det, 2)) == 1
    got = run(det, samples)
    assert [g[1] for g in got] == [td.PASSED]


def test_the_hold_over_bridges_a_trailer_gap(td):
    """A cab and a trailer with a gap: the field drops below thr_off for a while shorter than
    min_gap (hold-over), one vehicle; at a crawl the same gap lasts longer than min_gap and
    the detector must see two (the documented limit of a time hold-over)."""
    rnd = random.Random(2)
    veh = vehicle("artic", rnd, 5000, kmh(30), 1500, lat=0, h=350)
    samples, dev = synth([veh], 100, 5000 + 25_000 / kmh(30) * 1000, seed=3)
    det = td.Detector(100)
    lo = [i for i in range(len(dev)) if dev[i] < det.thr_off and 0 < i and dev[:i] and max(dev[:i]) > 500 and max(dev[i:]) > 500]
    assert 3 <= len(lo) < det.min_gap / 10, "the gap is below thr_off for a while, shorter than min_gap"
    assert expected(det, dev, 100, margin(det, 0)) == 1
    assert [g[1] for g in run(det, samples)] == [td.PASSED]
    slow = vehicle("artic", random.Random(2), 5000, kmh(3), 1500, lat=0, h=350)
    samples, dev = synth([slow], 100, 5000 + 25_000 / kmh(3) * 1000, seed=3)
    det = td.Detector(100)
    assert expected(det, dev, 100, margin(det, 0)) == 2
    assert [g[1] for g in run(det, samples)] == [td.PASSED, td.PASSED]


def test_a_small_motorcycle_above_the_threshold_counts(td):
    # (a fast one needs the faster rate: at 120 km/h and 50 Hz its pass is two samples long)
    for v, rate in ((20, 50), (60, 50), (90, 100), (110, 100)):
        veh = vehicle("moto", random.Random(v), 3000, kmh(v), 140, lat=200, h=400)
        samples, dev = synth([veh], rate, 3000 + 30_000 / kmh(v) * 1000, noise=2, seed=v)
        det = td.Detector(rate)
        assert max(dev) < 2 * det.thr_on
        assert expected(det, dev, rate, margin(det, 2)) == 1
        assert [g[1] for g in run(det, samples)] == [td.PASSED], v


def test_a_spike_is_not_a_vehicle(td):
    det = td.Detector(50)
    t = 0
    for i in range(500):
        t += 20
        x = BG[0] + (900 if i == 300 else 0)  # one sample, as from a glitch
        assert det.feed(x, BG[1], BG[2], t) == 0
    assert det.count == 0 and det.n_spikes == 1


# ---- several vehicles -------------------------------------------------------------------------
@SLOW
@given(k1=st.sampled_from(["car", "truck", "moto"]), k2=st.sampled_from(["car", "truck", "moto"]),
       v1=st.floats(8, 100), v2=st.floats(8, 100), gap_s=st.floats(0.2, 3), rate=st.sampled_from([50, 100]),
       noise=st.integers(0, 3), seed=st.integers(0, 10**6))
def test_two_vehicles_apart_are_two_counts(td, k1, k2, v1, v2, gap_s, rate, noise, seed):
    """The second vehicle's front reaches the sensor gap_s after the first one's rear has gone
    past: whenever the field between them is below thr_off for longer than min_gap (checked on
    the signal), they count as two."""
    rnd = random.Random(seed)
    amp = {"car": 800, "truck": 1500, "moto": 200}
    a = vehicle(k1, rnd, 8000, kmh(v1), amp[k1])
    length1 = {"car": 4500, "truck": 12000, "moto": 2000}[k1]
    t2 = 8000 + length1 / kmh(v1) * 1000 + gap_s * 1000
    b = vehicle(k2, rnd, t2, kmh(v2), amp[k2])
    samples, dev = synth([a, b], rate, t2 + 30_000 / kmh(v2) * 1000, noise, seed=seed)
    det = td.Detector(rate)
    assume(expected(det, dev, rate, margin(det, noise)) == 2)
    got = run(det, samples)
    assert [g[1] for g in got] == [td.PASSED, td.PASSED]
    assert td.tdiff(got[1][2], got[0][3]) >= det.min_gap  # the second starts after the gap


@SLOW
@given(n=st.integers(3, 12), seed=st.integers(0, 10**6), rate=st.sampled_from([50, 100]), noise=st.integers(0, 2))
def test_a_platoon_counts_each_vehicle_once(td, n, seed, rate, noise):
    """Vehicles at random speeds and headways (some close): the count equals the number of
    vehicles the signal separates (by the model's check), never more, never fewer."""
    rnd = random.Random(seed)
    vehs, t = [], 5000.0
    for _ in range(n):
        kind = rnd.choice(["car", "car", "car", "truck", "moto"])
        v = kmh(rnd.uniform(10, 70))
        vehs.append(vehicle(kind, rnd, t, v, {"car": 900, "truck": 1800, "moto": 250}[kind]))
        t += ({"car": 4500, "truck": 12000, "moto": 2000}[kind] / v + rnd.uniform(0.3, 4)) * 1000
    samples, dev = synth(vehs, rate, t + 4000, noise, seed=seed)
    det = td.Detector(rate)
    want = expected(det, dev, rate, margin(det, noise))
    assume(want is not None)
    got = run(det, samples)
    assert len(got) == want and all(g[1] == td.PASSED for g in got)
    ons = [g[2] for g in got]
    assert all(td.tdiff(b, a) > 0 for a, b in zip(ons, ons[1:]))


# ---- parked vehicles and the baseline ---------------------------------------------------------
PARK = {"absorb_s": 30}


@SLOW
@given(kind=st.sampled_from(["car", "truck"]), stop_x=st.integers(500, 3000), park_s=st.floats(40, 120),
       rate=st.sampled_from([50, 100]), noise=st.integers(0, 3), seed=st.integers(0, 10**6))
def test_a_parked_vehicle_counts_once_and_its_departure_is_not_a_vehicle(td, kind, stop_x, park_s, rate, noise, seed):
    """A vehicle stops over the sensor for longer than absorb_s: one count (PARKED) about
    absorb_s after it stopped, the baseline takes its field, its departure brings the field
    back to the road's and is not counted; then nothing more."""
    rnd = random.Random(seed)
    v = kmh(15)
    veh = vehicle(kind, rnd, 5000, v, 1200, stop=(stop_x, park_s * 1000), lat=rnd.uniform(-300, 300), h=350)
    t_stop = 5000 + stop_x / v * 1000
    dur = t_stop + park_s * 1000 + 25_000 / v * 1000 + 60_000
    samples, dev = synth([veh], rate, dur, noise, seed=seed)
    det = td.Detector(rate, PARK)
    m = margin(det, noise)
    stopped = dev[int((t_stop + 1000) * rate / 1000)]
    assume(stopped >= det.thr_on + m)  # the parked vehicle is seen
    got, left = [], None
    for j, (x, y, z, t) in enumerate(samples):
        r = det.feed(x, y, z, t)
        if r:
            got.append((j, r) + tuple(det.last))
        if got and left is None and not det.parked:
            left = t
    assert [g[1] for g in got] == [td.PARKED], got
    # The departure is known as soon as the field has been back at the road's for the guard
    # time (not absorb_s later).
    gone = max(j for j, d in enumerate(dev) if d >= m) * 1000 / rate
    assert t_stop + park_s * 1000 < left <= gone + det.guard * det.blk * 1000 / rate + 300
    i, _, t_on, t_off, peak, _, _ = got[0]
    t_parked = samples[i][3]
    # steady from when it stopped (give or take a block or two), then absorb_s
    assert t_stop + 30_000 - 300 <= t_parked <= t_stop + 30_000 + 300
    assert t_on < t_stop and t_off == t_parked
    assert det.count == 1 and det.n_parked == 1 and det.n_departed == 1 and det.parked == 0
    # the baseline is the road's again
    assert abs(det.bx - BG[0]) + abs(det.by - BG[1]) + abs(det.bz - BG[2]) <= 3 * (noise + 2)


def test_a_departure_after_drift_is_not_a_vehicle(td):
    """The road's field drifts while a vehicle is parked: when it leaves, the field does not
    come back to the old baseline; the level shift lasts absorb_s and is taken as the
    departure (documented rule), not as a second vehicle."""
    v = kmh(15)
    veh = vehicle("car", random.Random(4), 5000, v, 1200, stop=(900, 200_000), lat=0, h=350)
    samples, dev = synth([veh], 50, 5000 + 200_000 + 40_000 / v * 1000 + 60_000, noise=2, seed=4)
    # a ramp of 150 counts on x while it is parked (the baseline is frozen to its field)
    samples = [(x + min(150, max(0, (t - 20_000) * 150 // 150_000)), y, z, t) for x, y, z, t in samples]
    det = td.Detector(50, PARK)
    got = run(det, samples)
    assert [g[1] for g in got] == [td.PARKED]
    assert det.count == 1 and det.n_departed == 1 and det.parked == 0


def test_a_queue_stop_shorter_than_absorb_is_one_vehicle(td):
    """Stopped over the sensor at a red light for 60 s (absorb_s 180): the baseline stays
    frozen, so the vehicle is still there when it drives off: one count, its occupancy the
    whole stop."""
    v = kmh(20)
    veh = vehicle("car", random.Random(8), 5000, v, 900, stop=(1200, 60_000), lat=0, h=350)
    samples, dev = synth([veh], 50, 5000 + 60_000 + 20_000 / v * 1000 + 5000, noise=2, seed=8,
                         drift=[(20, 1200, 0), (20, 1500, 1), (20, 1800, 2)])
    det = td.Detector(50)
    got = run(det, samples)
    assert [g[1] for g in got] == [td.PASSED]
    _, _, t_on, t_off, _, _, _ = got[0]
    assert 60_000 <= t_off - t_on <= 60_000 + 8000 / v * 1000


@settings(SLOW, max_examples=20)
@given(amps=st.lists(st.floats(0, 400), min_size=3, max_size=3), periods=st.lists(st.floats(600, 7200), min_size=3, max_size=3),
       phases=st.lists(st.floats(0, 6.3), min_size=3, max_size=3), noise=st.integers(0, 3), rate=st.sampled_from([50, 100]),
       seed=st.integers(0, 10**6))
def test_slow_drift_is_never_a_vehicle(td, amps, periods, phases, noise, rate, seed):
    """Temperature-like drift of the background, up to 400 counts: the baseline follows it;
    as long as the drift's lag bound stays under the margin, no count and no spike."""
    det = td.Detector(rate)
    slopes = [2 * math.pi * a / p for a, p in zip(amps, periods)]
    lag_l1 = sum(drift_lag(det, s) for s in slopes)
    assume(3 * noise + 3 * (noise + 2) + lag_l1 < det.thr_on)
    samples, _ = synth([], rate, 10 * 60_000, noise, list(zip(amps, periods, phases)), seed)
    assert run(det, samples) == []
    assert det.count == 0 and det.n_spikes == 0


# ---- anything at all ---------------------------------------------------------------------------
@SLOW
@given(seed=st.integers(0, 2**32), rate=st.sampled_from([10, 25, 50, 100]), n=st.integers(0, 8),
       noise=st.integers(0, 40), junk=st.floats(0, 0.05), jitter=st.booleans(), t0=st.integers(0, WRAP - 1),
       cfg=st.fixed_dictionaries({}, optional={"absorb_s": st.integers(1, 60), "min_gap_ms": st.integers(0, 2000),
                                               "thr_on": st.integers(2, 500), "guard_ms": st.integers(0, 5000),
                                               "base_tau_s": st.integers(0, 600), "min_on_ms": st.integers(0, 500),
                                               "rel_pct": st.integers(0, 99), "smooth": st.integers(0, 4),
                                               "warm_s": st.integers(0, 20)}))
def test_any_signal_keeps_the_detector_sane(td, seed, rate, n, noise, junk, jitter, t0, cfg):
    """Overlapping and stopping vehicles, large drift and noise, garbage samples (full int16
    range), irregular and wrapping timestamps: no exception, counts only grow and add up, every
    report is a well-formed vehicle, and all state stays small ints (no big-int allocation in
    MicroPython)."""
    rnd = random.Random(seed)
    cfg = dict(cfg)
    cfg["thr_off"] = max(1, cfg.get("thr_on", 90) // 2)
    det = td.Detector(rate, cfg)
    vehs = []
    for _ in range(n):
        kind = rnd.choice(["car", "truck", "moto", "artic"])
        stop = (rnd.uniform(-3000, 3000), rnd.uniform(0, 90_000)) if rnd.random() < 0.3 else None
        v = kmh(rnd.uniform(2, 150)) * rnd.choice((1, -1))
        if stop is not None:
            stop = (abs(stop[0]) * (1 if v > 0 else -1) or 1.0, stop[1])
        vehs.append(vehicle(kind, rnd, rnd.uniform(0, 120_000), v, rnd.uniform(20, 30_000), stop=stop))
    drift = [(rnd.uniform(0, 3000), rnd.uniform(10, 3000), rnd.uniform(0, 6)) for _ in range(3)]
    samples, _ = synth(vehs, rate, 150_000 if rate <= 50 else 90_000, noise, drift, seed, t0)
    t = t0
    count = 0
    for x, y, z, _ in samples:
        t = (t + (rnd.choice((0, 1, 5, 1000, -3)) if jitter and rnd.random() < 0.01 else 1000 // rate)) % WRAP
        if rnd.random() < junk:
            x, y, z = (rnd.choice((-32768, 32767, 0, rnd.randint(-32768, 32767))) for _ in range(3))
        r = det.feed(max(-32768, min(32767, x)), max(-32768, min(32767, y)), max(-32768, min(32767, z)), t)
        assert r in (0, td.PASSED, td.PARKED)
        if r:
            count += 1
            t_on, t_off, peak, area, t_mid = det.last
            assert 0 <= td.tdiff(t_mid, t_on) and 0 <= t_mid < WRAP
            assert 0 <= td.tdiff(t_off, t_on) and peak >= det.thr_on and area >= peak
            if r == td.PASSED:
                assert td.tdiff(t_off, t_on) >= det.min_on
    assert det.count == count and det.n_parked <= count and det.n_departed <= det.n_parked
    assert det.n_spikes >= 0
    for k, val in vars(det).items():
        if isinstance(val, int):
            assert -2**30 <= val < 2**30, (k, val)
        else:
            assert all(-2**31 <= a < 2**31 for a in val), k


def test_bad_config_is_refused(td):
    with pytest.raises(ValueError):
        td.Detector(50, {"thr_on": 40, "thr_off": 40})
    with pytest.raises(ValueError):
        td.Detector(0)


def test_stuck_readings_are_timed(td):
    det = td.Detector(50)
    for i in range(100):
        det.feed(1, 2, 3, i * 20)
    assert det.stuck_ms() == 99 * 20
    det.feed(1, 2, 4, 2000)
    assert det.stuck_ms() == 0


# ---- two sensors: speed, length, direction ----------------------------------------------------
def test_pair_match_examples(td):
    # 4 m apart, 200 ms between the edges: 20 m/s = 72 km/h; 500 ms occupancy: 10 m of detection
    # minus the 1 m zone.
    assert td.pair_match(1000, 1200, 1500, 1700, 4000) == (20000, 9000, 1)
    assert td.pair_match(1200, 1000, 1700, 1500, 4000) == (20000, 9000, -1)
    # the edges disagree a little (200 and 220 ms): their mean
    assert td.pair_match(1000, 1200, 1500, 1720, 4200, {"zone_mm": 0}) == (20000, 10200, 1)
    # across the ticks wrap
    assert td.pair_match(WRAP - 100, 100, 400, 600, 4000) == (20000, 9000, 1)
    assert td.pair_match(1000, 1200, 1150, 1350, 4000) == (20000, 2000, 1)
    assert td.pair_match(1000, 1200, 1040, 1240, 4000) == (20000, 0, 1)  # shorter than the zone
    assert td.pair_match(1000, 1010, 1100, 1110, 4000) is None  # 1440 km/h
    assert td.pair_match(0, 3000, 500, 3500, 4000) is None  # 4.8 km/h: too slow
    assert td.pair_match(0, 2800, 500, 3300, 4000) is not None  # 5.1 km/h
    assert td.pair_match(0, 200, 500, 400, 4000) is None  # the rear edges say the other way
    assert td.pair_match(0, 200, 500, 1000, 4000) is None  # 200 vs 500 ms: not one vehicle
    assert td.pair_match(0, 0, 500, 500, 4000) is None
    assert td.pair_match(500, 700, 400, 600, 4000) is None  # off before on


def two_sensors(td, vehs, rate, spacing, dur, noise=0, seed=0, cfg=None):
    """Detections of sensor A (x = 0) and B (x = spacing), merged in the order they complete:
    [(sample index, sensor, t_on, t_off)]."""
    out = []
    devs = []
    for s, x in ((0, 0.0), (1, float(spacing))):
        samples, dev = synth(vehs, rate, dur, noise, seed=seed + s, x_sensor=x)
        devs.append(dev)
        det = td.Detector(rate, cfg)
        out += [(g[0], s, g[2], g[3]) for g in run(det, samples) if g[1] == td.PASSED]
    out.sort()
    return out, devs


@SLOW
@given(kind=st.sampled_from(["car", "truck", "moto"]), v_kmh=st.floats(10, 90), rev=st.booleans(),
       spacing=st.integers(3000, 6000), seed=st.integers(0, 10**6))
def test_a_pair_recovers_speed_and_direction(td, kind, v_kmh, rev, spacing, seed):
    """Clean signals at 100 Hz: the speed is within the sampling bound (one sample period over
    the lag between the sensors, at most 3.3 % here) of the truth, the direction right."""
    rnd = random.Random(seed)
    v = kmh(v_kmh) * (-1 if rev else 1)
    t0 = 5000 if not rev else 5000 + spacing / abs(v) * 1000  # the front reaches A at t0
    veh = vehicle(kind, rnd, t0, v, {"car": 900, "truck": 1800, "moto": 250}[kind])
    dur = t0 + (spacing + 30_000) / abs(v) * 1000
    dets, devs = two_sensors(td, [veh], 100, spacing, dur)
    det = td.Detector(100)
    assume(all(expected(det, d, 100, margin(det, 0)) == 1 for d in devs))
    pm = td.PairMatcher(spacing)
    got = []
    for _, s, on, off in dets:
        got += pm.add(s, on, off)
    assert len(got) == 1
    t_on, t_off, direction, speed, length = got[0]
    assert direction == (-1 if rev else 1)
    lag_ms = spacing / abs(v) * 1000
    assert abs(speed - abs(v)) <= abs(v) * (10 / lag_ms) + 1
    assert length >= 0
    assert pm.flush(t_off + 10**6) == []


def test_lengths_fall_in_their_classes_after_calibration(td, ts):
    """Calibrate zone_mm with a car of known length (4.5 m) at 50 km/h, as the docs say; then
    other vehicles at other speeds get lengths in their classes."""
    spacing = 4000
    cfg = {"zone_mm": 0}

    def measure(kind, v_kmh, seed):
        veh = vehicle(kind, random.Random(seed), 5000, kmh(v_kmh), {"car": 900, "truck": 1800, "moto": 250}[kind], lat=0, h=350)
        dets, _ = two_sensors(td, [veh], 100, spacing, 5000 + 40_000 / kmh(v_kmh) * 1000, cfg=cfg)
        pm = td.PairMatcher(spacing, cfg)
        got = []
        for _, s, on, off in dets:
            got += pm.add(s, on, off)
        assert len(got) == 1 and got[0][2] == 1
        return got[0][4]

    zone = measure("car", 50, 1) - 4500  # the model car's iron is shorter than its body: < 0
    assert -2000 < zone < 3000
    cfg["zone_mm"] = zone
    for kind, v, cls in (("car", 30, 1), ("car", 80, 1), ("moto", 40, 0), ("truck", 25, 3), ("truck", 70, 3)):
        assert ts.length_class(measure(kind, v, v)) == cls, (kind, v)


def settle(pm, events):
    out = []
    for s, on, off in events:
        out += pm.add(s, on, off)
    return out + pm.flush(events[-1][2] + 10**6) if events else out


@FAST
@given(st.data())
def test_the_matcher_pairs_a_platoon_in_order(td, data):
    """Detections as the two detectors report them (ordered by their rear edge): a dense
    platoon (headways shorter than the lag between the sensors) pairs one to one, in order;
    when vehicles are far apart, ones that a sensor missed come out alone; every detection is
    in exactly one vehicle."""
    spacing = data.draw(st.integers(2000, 8000))
    n = data.draw(st.integers(1, 25))
    sparse = data.draw(st.booleans())
    rev = data.draw(st.booleans())
    pm = td.PairMatcher(spacing)
    t = data.draw(st.integers(0, WRAP - 1))
    vehs, events = [], []
    rear_b = None  # when the previous vehicle's rear passed B (no overtaking between the sensors)
    for i in range(n):
        v = data.draw(st.integers(int(kmh(8)) + 1, int(kmh(150))))
        occ = (data.draw(st.integers(1500, 20_000)) + 1000) * 1000 // v  # length + zone, over the speed
        lag = spacing * 1000 // v
        if rear_b is not None and td.tdiff(rear_b, (t + lag) % WRAP) >= 0:
            t = (rear_b - lag + 40) % WRAP
        rear_b = (t + lag + occ + 10) % WRAP
        j1, j2, j3, j4 = (data.draw(st.integers(0, 10)) for _ in range(4))
        a = ((t + j1) % WRAP, (t + occ + j2) % WRAP)
        b = ((t + lag + j3) % WRAP, (t + lag + occ + j4) % WRAP)
        if rev:
            a, b = b, a
        miss = data.draw(st.sampled_from([None, None, None, 0, 1])) if sparse else None
        vehs.append((a, b, v, miss))
        for s, (on, off) in ((0, a), (1, b)):
            if s != miss:
                events.append((s, on, off))
        # next front: close behind (dense: less than the lag) or far (sparse)
        t = (t + (data.draw(st.integers(3 * pm.max_lag, 20_000)) if sparse else data.draw(st.integers(occ + 40, occ + 2000)))) % WRAP
    base = events[0][2]
    events.sort(key=lambda e: (td.tdiff(e[2], base), e[0]))
    got = settle(pm, events)
    # every detection once
    seen = sorted([(g[0], g[1]) for g in got])
    assert len(got) == n and sum(1 for v in vehs if v[3] is None) == sum(1 for g in got if g[2] != 0)
    for (a, b, v, miss), g in zip(vehs, sorted(got, key=lambda g: td.tdiff(g[0], base))):
        if miss is None:
            first = b if rev else a
            assert (g[0], g[1]) == first and g[2] == (-1 if rev else 1)
            assert abs(g[3] - v) <= v * 25 // 1000 + v * v * 20 // (spacing * 1000) + 2
        else:
            assert g[2] == 0 and g[3] is None and (g[0], g[1]) == (a if miss == 1 else b)
    assert len(seen) == len(set(seen))


def test_the_matcher_queue_is_bounded(td):
    pm = td.PairMatcher(4000)
    got = []
    for i in range(20):
        got += pm.add(0, i * 100, i * 100 + 50)  # A only, faster than the lag expires them
    assert len(pm.q[0]) <= pm.QUEUE
    assert len(got) + len(pm.q[0]) == 20 and all(g[2] == 0 for g in got)


# ---- interval statistics ----------------------------------------------------------------------
def test_interval_hand_checked(ts):
    iv = ts.Interval(300)
    iv.add(1000, 1500, 1, 13889, 4300)  # 50.0 km/h, a car
    iv.add(4000, 4800, 1, 11111, 6000)  # 40.0 km/h, a van; headway 3.0 s
    iv.add(5500, 5700, -1, 25000, 1900)  # 90.0 km/h, a motorcycle; headway 1.5 s
    iv.add(9500, 11500, 0, None, None)  # one sensor only; headway 4.0 s
    iv.add(20000, 21000, 1, 8333, 12000)  # 30.0 km/h, a bus; headway 10.5 s
    out = iv.close()
    assert out == {
        "n": 5, "n_fwd": 3, "n_rev": 1,
        "occ_pm": 15,  # 4500 ms of 300 s = 15 per mille
        "spd_kmh10": 525,  # (50.0 + 40.0 + 90.0 + 30.0) / 4 = 52.5 km/h (58333 mm/s * 36 / 4000 = 524.998)
        "n_spd": 4,
        "hw_mean_s10": 48,  # (3.0 + 1.5 + 4.0 + 10.5) / 4 = 4.75 s -> 47.5 -> 48
        "hw_min_s10": 15,
        "n_2w": 1, "n_car": 1, "n_van": 1, "n_hgv": 1, "n_unk": 1,
    }
    # the next interval: empty, but the headway runs on from the last vehicle
    assert iv.close(60_000) == {"n": 0, "n_fwd": 0, "n_rev": 0, "occ_pm": 0, "spd_kmh10": None, "n_spd": 0,
                                "hw_mean_s10": None, "hw_min_s10": None, "n_2w": 0, "n_car": 0, "n_van": 0,
                                "n_hgv": 0, "n_unk": 0}
    iv.add(WRAP - 1000, 500, 1, None, 2500)  # across the ticks wrap
    out = iv.close(60_000)
    assert out["occ_pm"] == 25 and out["n_car"] == 1  # 1500 ms of 60 s; 2.5 m is a car
    assert out["hw_min_s10"] is None  # the clock wrapped far back from the last: no headway


def test_length_class_boundaries(ts):
    assert [ts.length_class(x) for x in (0, 2499, 2500, 5499, 5500, 7499, 7500, 25000)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert ts.length_class(None) is None and ts.length_class(-1) is None


vehicle_st = st.tuples(st.integers(0, WRAP - 1), st.integers(-1000, 600_000), st.sampled_from([1, -1, 0, None]),
                       st.one_of(st.none(), st.integers(-10, 80_000)), st.one_of(st.none(), st.integers(-100, 30_000)))


@FAST
@given(st.lists(vehicle_st, max_size=60), st.integers(1, 3600), st.one_of(st.none(), st.integers(1, 10**7)))
def test_interval_fields_add_up_and_are_never_negative(ts, vehs, interval_s, length_ms):
    iv = ts.Interval(interval_s)
    for t_on, occ, d, spd, ln in vehs:
        iv.add(t_on, (t_on + occ) % WRAP, d, spd, ln)
    out = iv.close(length_ms)
    json.dumps(out)
    assert all(v is None or (isinstance(v, int) and v >= 0) for v in out.values())
    assert out["n"] == len(vehs) and out["n_fwd"] + out["n_rev"] <= out["n"]
    assert out["n_2w"] + out["n_car"] + out["n_van"] + out["n_hgv"] + out["n_unk"] == out["n"]
    assert out["occ_pm"] <= 1000
    if out["hw_min_s10"] is not None:
        assert out["hw_min_s10"] <= out["hw_mean_s10"]
    speeds = [s for _, _, _, s, _ in vehs if s is not None and s > 0]
    assert out["n_spd"] == len(speeds)
    if speeds:
        assert min(speeds) * 36 // 1000 <= out["spd_kmh10"] <= -(-max(speeds) * 36 // 1000)


# ---- sensor faults ----------------------------------------------------------------------------
def names(ev):
    return [e[0] for e in ev]


def test_fault_no_data_overflow_and_recovery(td):
    state: dict = {}
    cfg = {"fault_s": 3, "ok_s": 2}
    seq = [  # (n_ok, n_bad, n_ovf, stuck_ms) per second
        (50, 0, 0, 0), (0, 50, 0, 0), (0, 50, 0, 0), (0, 50, 0, 0),  # no data for 3 s: fault
        (0, 50, 0, 0), (50, 0, 0, 0), (50, 0, 0, 0),  # clean for 2 s: ok
        (20, 0, 30, 0), (25, 0, 25, 0), (49, 0, 1, 0), (10, 0, 40, 0), (10, 0, 40, 0), (10, 0, 40, 0),  # overflow, a break
        (50, 0, 0, 0), (0, 0, 0, 0), (50, 0, 0, 0), (50, 0, 0, 0),
    ]
    out = [td.fault_check(state, cfg, 1000, *s) for s in seq]
    got = [(i, e) for i, evs in enumerate(out) for e in evs]
    assert got == [(3, ("sensor_fault", "warning", {"cause": "no_data", "s": 3})),
                   (6, ("sensor_ok", "info", {"cause": "no_data"})),
                   (12, ("sensor_fault", "warning", {"cause": "overflow", "s": 3})),
                   (16, ("sensor_ok", "info", {"cause": "overflow"}))]
    json.dumps(state)


def test_fault_stuck_sensor(td):
    state: dict = {}
    det = td.Detector(50)
    events = []
    t = 0
    for sec in range(70):
        for _ in range(50):
            t += 20
            det.feed(700, -300, 1200, t)  # a frozen register: identical readings
        events += td.fault_check(state, {}, 1000, 50, 0, 0, det.stuck_ms())
    assert events == [("sensor_fault", "warning", {"cause": "stuck", "s": 60})]
    for sec in range(10):
        for i in range(50):
            t += 20
            det.feed(700 + i % 3, -300, 1200, t)
        events += td.fault_check(state, {}, 1000, 50, 0, 0, det.stuck_ms())
    assert names(events) == ["sensor_fault", "sensor_ok"]


@FAST
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 100), st.integers(0, 100), st.integers(0, 100),
                          st.integers(0, 200_000)), max_size=80))
def test_fault_events_alternate(td, seq):
    state: dict = {}
    raised = False
    for dt, ok, bad, ovf, stuck in seq:
        for name, level, data in td.fault_check(state, {}, dt, ok, bad, ovf, stuck):
            assert name == ("sensor_ok" if raised else "sensor_fault")
            assert level == ("info" if raised else "warning")
            assert data["cause"] in ("stuck", "no_data", "overflow")
            raised = not raised
    assert len(json.dumps(state)) < 100


# ---- the node's rules: smoothed deviation, relative end, tail, warm-up ------------------------
NODE = {"thr_on": 22, "thr_off": 15, "min_gap_ms": 200, "rel_pct": 30, "smooth": 2, "warm_s": 5}
KERB = 1800  # mm: the node's defaults are for a kerb-side sensor this far from the lane's centre


def kerb_vehicle(kind, rnd, t0, v, amp, lat=KERB):
    """A vehicle magnetised mostly by the Earth's field, as the road world models it
    (simulator/mp/world_road.py): every part's moment points roughly the same way (the
    generic vehicle() flips parts at random, a harsher case that suits a sensor under the
    vehicle; 1.8 m to the side, neighbouring opposite parts cancel into deep dips)."""
    veh = vehicle(kind, rnd, t0, v, amp, lat=lat, h=400)
    veh.d = [(off, (m[0], m[1], abs(m[2]))) for off, m in veh.d]
    veh.scale = 1.0
    veh.scale = amp / veh.peak()
    return veh


@SLOW
@given(kind=st.sampled_from(["car", "truck", "moto"]), v_kmh=st.floats(20, 130), amp=st.floats(0, 1),
       rate=st.sampled_from([50, 100]), noise=st.integers(0, 6), seed=st.integers(0, 10**6))
def test_node_rules_one_vehicle_is_one_count(td, kind, v_kmh, amp, rate, noise, seed):
    """With the node's defaults (nodes/traffic_config.py), at the kerb, a lone car, truck or
    motorcycle at 20-130 km/h is exactly one vehicle: its own dips (between axles, between dipoles) are
    bridged, its tail never starts a second one. Amplitudes from a faint motorcycle (3x thr_on)
    up."""
    rnd = random.Random(seed)
    lo, hi = {"moto": (66, 400), "car": (150, 2000), "truck": (600, 4000)}[kind]
    veh = kerb_vehicle(kind, rnd, 15_000, kmh(v_kmh), lo + (hi - lo) * amp, lat=KERB + rnd.uniform(-400, 400))
    dur = 15_000 + (16_000 + 30_000) / kmh(v_kmh) * 1000 + 3000
    samples, _ = synth([veh], rate, dur, noise, seed=seed)
    det = td.Detector(rate, NODE)
    got = run(det, samples)
    assert [g[1] for g in got] == [td.PASSED], got
    assert det.n_spikes == 0


@SLOW
@given(v=st.floats(25, 60), headway_s=st.floats(0.9, 2.5), amp1=st.floats(300, 2000), amp2=st.floats(300, 2000),
       rate=st.sampled_from([50, 100]), noise=st.integers(0, 4), seed=st.integers(0, 10**6))
def test_node_rules_split_close_followers(td, v, headway_s, amp1, amp2, rate, noise, seed):
    """Two cars at the same speed, front to front 0.9-2.5 s apart (a queue discharging, a
    platoon): wherever the deviation between them falls below rel_pct of the first one's peak
    for min_gap, they are two vehicles, in order; never more than two. (The fixed thresholds
    merge them: their fields overlap well above thr_off.)"""
    rnd = random.Random(seed)
    a = kerb_vehicle("car", rnd, 8000, kmh(v), amp1)
    b = kerb_vehicle("car", rnd, 8000 + headway_s * 1000, kmh(v), amp2)
    samples, dev = synth([a, b], rate, 8000 + headway_s * 1000 + 30_000 / kmh(v) * 1000, noise, seed=seed)
    _, dev_a = synth([a], rate, 8000 + headway_s * 1000 + 30_000 / kmh(v) * 1000, 0)
    _, dev_b = synth([b], rate, 8000 + headway_s * 1000 + 30_000 / kmh(v) * 1000, 0)
    # On the noiseless signal: the longest run between the two peaks below a quarter of the
    # first one's peak (rel_pct 30, less a margin for noise and smoothing) must outlast
    # min_gap plus the smoothing's lag, and the second must rise thr_on out of the valley.
    pa = max(range(len(dev_a)), key=lambda i: dev_a[i])
    pb = max(range(len(dev_b)), key=lambda i: dev_b[i])
    assume(pa < pb)
    p1 = max(dev[:pa + 1])
    run_len = best = 0
    for d in dev[pa:pb]:
        run_len = run_len + 1 if d < 0.25 * p1 else 0
        best = max(best, run_len)
    assume(best * 1000 / rate >= NODE["min_gap_ms"] + 8 * 1000 / rate + 40)
    assume(min(dev[pa:pb]) + 22 + 6 * noise + 12 < dev[pb])
    det = td.Detector(rate, NODE)
    got = run(det, samples)
    assert [g[1] for g in got] == [td.PASSED, td.PASSED], got
    assert td.tdiff(got[1][2], got[0][3]) > 0


def test_node_rules_tail_does_not_restart(td):
    """A vehicle that ends on the relative rule leaves its tail above thr_on: the tail decays
    without starting a second vehicle (the next one must rise thr_on out of the valley)."""
    veh = kerb_vehicle("car", random.Random(4), 5000, kmh(30), 3000)
    samples, dev = synth([veh], 50, 20_000, 2, seed=4)
    det = td.Detector(50, NODE)
    got = run(det, samples)
    assert len(got) == 1
    end = [i for i, s in enumerate(samples) if s[3] == got[0][3]][0]
    assert max(dev[end + 8:end + 40]) >= det.thr_on  # the tail was there, above thr_on


def test_node_rules_warm_up_under_a_vehicle_finds_the_road(td):
    """A node that boots while a long queue rolls past: the first block is a vehicle's field,
    not the road's. The steadiest block of warm_s is the road, so the baseline is right and the
    vehicles after the warm-up are counted one by one (with the first block as the baseline the
    whole stream would read as one endless vehicle)."""
    rnd = random.Random(9)
    vehs, t = [], -300.0
    for _ in range(12):
        vehs.append(kerb_vehicle("car", rnd, t, kmh(30), 1200))
        t += 2200
    samples, dev = synth(vehs, 50, t + 4000, 2, seed=9)
    first = td.Detector(50, dict(NODE, warm_s=0))
    assert dev[0] > 10 * NODE["thr_on"]  # the sensor starts under a vehicle
    node = td.Detector(50, NODE)
    got = run(node, samples)
    assert abs(node.bx - BG[0]) + abs(node.by - BG[1]) + abs(node.bz - BG[2]) < NODE["thr_off"]
    after = sum(1 for v in vehs if v.t0 > 6000)
    assert len(got) >= after and len(got) <= len(vehs)
    assert len(run(first, samples)) < len(got)


# ---- the same in real MicroPython --------------------------------------------------------------
MP_SCRIPT = r'''
import gc
gc.disable()  # this build's collector must not run inside a call (simulator/wasi.py)
import sys, json, time, micropython
sys.path[:] = ["/lib"]
from array import array
from nodes import traffic_detect as td
with open("/work/in.json") as f:
    inp = json.loads(f.read())
a = array("i", inp["samples"])
n = len(a) // 4
res = array("i", [0] * (7 * 200))
det = td.Detector(inp["rate"], inp["cfg"])

def run(lo, hi, k):
    # results go to a preallocated array: the loop itself allocates nothing
    for i in range(lo, hi):
        j = 4 * i
        r = det.feed(a[j], a[j + 1], a[j + 2], a[j + 3])
        if r:
            last = det.last
            o = 7 * k
            res[o] = i
            res[o + 1] = r
            res[o + 2] = last[0]
            res[o + 3] = last[1]
            res[o + 4] = last[2]
            res[o + 5] = last[3]
            res[o + 6] = last[4]
            k += 1
    return k

warm = inp["warm"]
k = run(0, warm, 0)
m0 = micropython.mem_total()
run(n, n, 0)  # the cost of the call itself: its frame and its range object
fixed = micropython.mem_total() - m0
m0 = micropython.mem_total()
u0 = gc.mem_alloc()
t0 = time.ticks_us()
k = run(warm, n, k)
us = time.ticks_diff(time.ticks_us(), t0)
m1 = micropython.mem_total()
u1 = gc.mem_alloc()
out = {"det": [list(res[7 * i:7 * i + 7]) for i in range(k)], "total": m1 - m0, "fixed": fixed, "used": u1 - u0, "us": us,
       "n": n - warm, "count": det.count, "parked": det.n_parked, "departed": det.n_departed}
from nodes import traffic_stats as ts
iv = ts.Interval(60)
pm = td.PairMatcher(3000)
for i in range(k):
    o = 7 * i
    iv.add(res[o + 2], res[o + 3], 1, 10000 + 997 * i, 1500 + 731 * i)
    for s in (0, 1):  # as if a second sensor 3 m on saw it 150 ms later
        for v in pm.add(s, (res[o + 2] + 150 * s) % (1 << 30), (res[o + 3] + 150 * s) % (1 << 30),
                        (res[o + 6] + 150 * s) % (1 << 30)):
            iv.add(*v)
out["interval"] = iv.close(120000)
with open("/work/out.json", "w") as f:
    f.write(json.dumps(out))
'''


# The library's defaults (absolute thresholds, raw samples, first block as baseline) and the
# node's (smoothed deviation, relative end and tail rule, steadiest-block warm-up:
# nodes/traffic_config.py).
NODE_RULES = {"thr_on": 22, "thr_off": 15, "min_gap_ms": 200, "rel_pct": 30, "smooth": 2, "warm_s": 3}


@pytest.mark.parametrize("rules", [{}, NODE_RULES], ids=["library", "node"])
def test_micropython_detects_the_same_and_allocates_nothing_per_sample(td, ts, tmp_path, rules):
    """A stream with cars, trucks, motorcycles, a queue stop and a parked car that leaves, at
    50 Hz: the WASI MicroPython reports the same vehicles as CPython; over the whole stream
    after the first 4 s (the warm-up) it allocates nothing at all (micropython.mem_total counts every
    allocation, even a frame freed at once), so the per-sample path is allocation-free."""
    from simulator import wasi

    rnd = random.Random(21)
    rate = 50
    vehs, t = [], 5000.0
    for i in range(14):
        kind = ["car", "truck", "moto", "car", "artic"][i % 5]
        v = kmh(rnd.uniform(10, 90))
        stop = None
        if i == 6:
            stop = (1500, 40_000)  # parked: longer than absorb_s
        elif i == 9:
            stop = (1500, 12_000)  # a queue stop: shorter
        vehs.append(vehicle(kind, rnd, t, v, {"car": 900, "truck": 1800, "moto": 250, "artic": 1500}[kind], stop=stop))
        t += ({"car": 4500, "truck": 12000, "moto": 2000, "artic": 15000}[kind] / v + rnd.uniform(1, 5)) * 1000
        t += stop[1] if stop else 0
    samples, _ = synth(vehs, rate, t + 5000, noise=3, seed=5, t0=WRAP - 60_000,
                       drift=[(40, 1200, 0), (30, 1500, 1), (20, 1800, 2)])
    cfg = dict(rules, absorb_s=20)
    det = td.Detector(rate, cfg)
    want = [list(g) for g in run(det, samples)]
    assert sum(1 for g in want if g[1] == td.PARKED) == 1 and det.n_departed == 1
    assert len(want) >= 12
    warm = 4 * rate  # the first 4 s, before the first vehicle: the detector is set up
    assert all(g[0] >= warm for g in want)
    (tmp_path / "in.json").write_text(json.dumps({"samples": [v for s in samples for v in s], "rate": rate, "cfg": cfg,
                                                  "warm": warm}))
    wasi.run_micropython(MP_SCRIPT, {FW_LIB: "/lib", tmp_path: "/work"}, 64 << 20)
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["det"] == want
    iv = ts.Interval(60)
    pm = td.PairMatcher(3000)
    for i, g in enumerate(want):
        iv.add(g[2], g[3], 1, 10000 + 997 * i, 1500 + 731 * i)
        for s in (0, 1):
            for v in pm.add(s, (g[2] + 150 * s) % WRAP, (g[3] + 150 * s) % WRAP, (g[6] + 150 * s) % WRAP):
                iv.add(*v)
    stats = iv.close(120_000)
    assert got["interval"] == stats and stats["n"] == stats["n_fwd"] == 2 * len(want) and stats["n_spd"] == stats["n"]
    assert (got["count"], got["parked"], got["departed"]) == (det.count, det.n_parked, det.n_departed)
    # The measured call allocates exactly what a call over no sample at all does (its frame
    # and its range object): nothing per sample, on the vehicle paths neither.
    assert got["n"] > 5000 and 0 < got["fixed"] < 200
    assert got["total"] == got["fixed"], got
    assert got["used"] <= got["fixed"], got
    print("\nWASI MicroPython: %d samples, %.2f us per sample, %d bytes allocated in all"
          % (got["n"], got["us"] / got["n"], got["total"]))
