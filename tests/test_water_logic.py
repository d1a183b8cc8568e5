"""The water-meter node's logic (firmware/lib/nodes/water_logic.py), loaded as the node loads it:
flow from pulse counts and pulse times, 15-minute consumption intervals, the alarm state machines
(leak, burst, backflow, no_consumption, tamper) on household-like and random pulse sequences;
the state stays small integer JSON through any sequence; and the same run in real MicroPython
(the WASI build) gives the same events, intervals, flows and state as under CPython."""

from __future__ import annotations

import itertools
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

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

T0 = 1_780_012_800  # 2026-05-29 00:00 UTC (a multiple of 86400)
H = 3600
DAY = 86400
L_H = 1000  # 1 l/h in ml/h
RAISES = {"leak": "alarm", "burst": "alarm", "backflow": "alarm", "no_consumption": "warning", "tamper": "alarm"}


@pytest.fixture(scope="module")
def wl(tmp_path_factory):
    # Only the module under test on the board's flash: it needs nothing else.
    flash_dir = tmp_path_factory.mktemp("water") / "flash"
    env = NodeEnv(flash_dir, install=False)
    (flash_dir / "lib" / "nodes").mkdir(parents=True)
    for rel in ("nodes/__init__.py", "nodes/water_logic.py"):
        shutil.copyfile(FW_LIB / rel, flash_dir / "lib" / rel)
    return env.module("nodes.water_logic")


def names(events):
    return [e[0] for e in events]


# ---- a simulated meter -------------------------------------------------------------------------
class Meter:
    """A pulse meter on a pipe: integrates a flow (ml/h, set per minute) exactly in integers and
    gives the cumulative forward / reverse pulse counters a node would read."""

    def __init__(self, ml_per_pulse=1000):
        self.k = ml_per_pulse
        self.fwd_x = 0  # ml * 3600
        self.rev_x = 0

    def run(self, flow_ml_h, seconds, reverse=False):
        if reverse:
            self.rev_x += flow_ml_h * seconds
        else:
            self.fwd_x += flow_ml_h * seconds

    @property
    def fwd(self):
        return self.fwd_x // 3600 // self.k

    @property
    def rev(self):
        return self.rev_x // 3600 // self.k


class Node:
    """The node's wake loop over the logic: observe, roll intervals over, alarms, tamper."""

    def __init__(self, wl, cfg=None, t0=T0, meter=None):
        self.wl = wl
        self.cfg = cfg or {}
        self.state: dict = {}
        self.meter = meter or Meter(self.cfg.get("ml_per_pulse", 1000))
        self.t = t0
        self.events: list = []  # (t, name, level, data)
        self.intervals: list = []
        wl.observe(self.state, self.cfg, t0, self.meter.fwd, self.meter.rev)

    def wake(self, magnet=False, cut=False):
        wl, s, c = self.wl, self.state, self.cfg
        wl.observe(s, c, self.t, self.meter.fwd, self.meter.rev)
        self.intervals += wl.interval_rollover(s, c, self.t)
        ev = wl.alarms(s, c, self.t) + wl.tamper_step(s, c, magnet, cut)
        self.events += [(self.t,) + tuple(e) for e in ev]
        assert len(json.dumps(s)) < 400
        return ev

    def flow(self, flow_fn, until, obs_s=300, reverse_fn=None):
        """Run the meter with flow_fn(t) (ml/h, per minute) until `until`, waking every obs_s."""
        while self.t < until:
            nxt = min(self.t + obs_s, until)
            for m in range(self.t, nxt, 60):
                step = min(60, nxt - m)
                self.meter.run(flow_fn(m), step)
                if reverse_fn is not None:
                    self.meter.run(reverse_fn(m), step, reverse=True)
            self.t = nxt
            self.wake()

    def raised(self, name):
        return [e for e in self.events if e[1] == name]

    def names(self):
        return [e[1] for e in self.events]


def household(seed):
    """Flow of a household: a morning and an evening peak, toilets, taps, a shower, a washing
    machine; nothing at all between 23:00 and 06:00 local (UTC here)."""
    rnd = random.Random(seed)
    draws = {}  # minute -> ml/h
    for day in range(40):
        base = T0 + day * DAY
        for _ in range(rnd.randint(15, 30)):
            start = base + rnd.randint(6 * 60, 22 * 60 + 30) * 60
            kind = rnd.choice(["flush", "flush", "tap", "tap", "shower", "washer"])
            rate, mins = {"flush": (360 * L_H, 1), "tap": (300 * L_H, 2), "shower": (540 * L_H, 8),
                          "washer": (400 * L_H, 10)}[kind]
            for m in range(mins):
                draws[start + m * 60] = draws.get(start + m * 60, 0) + rate

    def f(t):
        return draws.get(t - t % 60, 0)
    return f


# ---- flow --------------------------------------------------------------------------------------
def test_flow_from_pulse_times(wl):
    assert wl.flow_from_intervals([0, 3600], 1000) == 1000 * L_H  # one litre in one hour
    assert wl.flow_from_intervals([100, 2500, 4900, 7300], 1000) == 1_500_000  # 2.4 s per litre
    assert wl.flow_from_intervals([5], 1000) is None and wl.flow_from_intervals([], 1000) is None
    # ticks_ms wraps at 2**30: a pulse pair across the wrap is 2 s apart
    assert wl.flow_from_intervals([(1 << 30) - 1000, 1000], 500) == 900_000
    # a duplicate or out-of-order stamp is skipped, not turned into a huge or negative flow
    assert wl.flow_from_intervals([0, 2000, 2000, 4000], 1000) == 1_800_000
    assert wl.flow_from_intervals([4000, 2000], 1000) is None


@FAST
@given(st.integers(0, (1 << 30) - 1), st.lists(st.integers(1, 10**6), min_size=1, max_size=30),
       st.integers(1, 10_000))
def test_flow_from_pulse_times_is_volume_over_time(wl, start, gaps, k):
    ticks = [start]
    for g in gaps:
        ticks.append((ticks[-1] + g) % (1 << 30))
    q = wl.flow_from_intervals(ticks, k)
    assert isinstance(q, int)
    assert q == len(gaps) * k * 3_600_000 // sum(gaps)


def test_flow_from_counts_holds_then_decays(wl):
    cfg = {"ml_per_pulse": 1000}
    st_: dict = {}
    wl.observe(st_, cfg, T0, 0, 0)
    assert wl.flow_ml_h(st_) == 0
    # a pulse every 30 min, seen on 5-minute wakes: 2 l/h from the interval between pulses
    n = 0
    for i in range(1, 37):
        if i % 6 == 0:
            n += 1
        wl.observe(st_, cfg, T0 + 300 * i, n, 0)
        if i >= 12:
            assert wl.flow_ml_h(st_) == 2 * L_H, i
    # many pulses in one window: their count over the window
    wl.observe(st_, cfg, T0 + 300 * 37, n + 50, 0)
    assert wl.flow_ml_h(st_) == 50 * 1000 * 3600 // 300
    # then nothing: within one pulse interval it holds, then it falls as 1/elapsed, then 0
    got = []
    for i in range(38, 52):
        wl.observe(st_, cfg, T0 + 300 * i, n + 50, 0)
        got.append(wl.flow_ml_h(st_))
    assert got[0] == 1000 * 3600 // 300 and got[1] == 1000 * 3600 // 600
    assert all(a >= b for a, b in itertools.pairwise(got)) and got[-1] == 0
    assert got[11] == 0 and got[10] > 0  # zero once no pulse for leak_zero_s (3600 s)


def test_flow_from_pulse_times_given_by_the_node(wl):
    st_: dict = {}
    wl.observe(st_, {}, T0, 0, 0)
    wl.observe(st_, {}, T0 + 300, 3, 0, flow=wl.flow_from_intervals([10_000, 16_000, 22_000], 1000))
    assert wl.flow_ml_h(st_) == 600 * L_H
    wl.observe(st_, {}, T0 + 600, 4, 0, flow=None)  # one pulse: the count-based value again
    assert wl.flow_ml_h(st_) == 12 * L_H


# ---- consumption intervals ---------------------------------------------------------------------
def test_constant_flow_gives_equal_aligned_intervals(wl):
    node = Node(wl, t0=T0 + 7 * 60)  # starts mid-interval
    node.flow(lambda t: 600 * L_H, T0 + 3 * H, obs_s=240)
    iv = node.intervals
    assert [s for s, _, _ in iv] == [T0 + i * 900 for i in range(12)]
    assert iv[0] == (T0, 80_000, 0), "the first interval was watched for 8 minutes only"
    assert all(abs(f - 150_000) <= 1000 and r == 0 for _, f, r in iv[1:])  # 150 l, to a pulse
    assert sum(f for _, f, _ in iv) + node.state["af"] == node.meter.fwd * 1000


def test_a_window_across_a_boundary_is_split_by_time(wl):
    st_: dict = {}
    wl.observe(st_, {}, T0 + 840, 0, 0)  # 00:14
    wl.observe(st_, {}, T0 + 960, 4, 1)  # 00:16: 4 l forward and 1 l back over 2 minutes
    assert wl.interval_rollover(st_, {}, T0 + 960) == [(T0, 2000, 500)]
    assert (st_["af"], st_["ar"]) == (2000, 500)
    assert wl.interval_rollover(st_, {}, T0 + 960) == []
    # a gap over several boundaries (within max_gap_s): every interval gets its share
    wl.observe(st_, {}, T0 + 960 + 2700, 4 + 45, 1)
    got = wl.interval_rollover(st_, {}, T0 + 3660)
    assert [s for s, _, _ in got] == [T0 + 900, T0 + 1800, T0 + 2700]
    assert [f for _, f, _ in got] == [2000 + 14_000, 15_000, 15_000] and st_["af"] == 1000


def test_a_clock_jump_keeps_the_volume_and_spreads_nothing(wl):
    st_: dict = {}
    wl.observe(st_, {}, 1000 + 60, 0, 0)  # clock never set: about 1970 + 1000 s
    wl.observe(st_, {}, 1000 + 400, 3, 0)
    q = wl.flow_ml_h(st_)
    assert q == 3 * 1000 * 3600 // 340
    wl.observe(st_, {}, T0 + 500, 10, 0)  # NTP set the clock: a jump of 56 years
    assert wl.flow_ml_h(st_) == q, "no window to measure over: the flow is left as it was"
    got = wl.interval_rollover(st_, {}, T0 + 500)
    assert got == [(900, 3000, 0)], "the interval in progress before the jump, as seen"
    assert st_["af"] == 7000, "the volume of the jump goes to the interval in progress now"
    assert wl.alarms(st_, {}, T0 + 500) == [], "no leak from 56 years without a zero hour"
    wl.observe(st_, {}, T0 + 900, 10, 0)
    assert wl.interval_rollover(st_, {}, T0 + 900) == [(T0, 7000, 0)]


def test_pending_intervals_stay_bounded_and_lose_nothing(wl):
    st_: dict = {}
    wl.observe(st_, {}, T0, 0, 0)
    n = 0
    for i in range(1, 200):  # never rolled over: 50 hours
        n += 17
        wl.observe(st_, {}, T0 + i * 900, n, 0)
        assert len(json.dumps(st_)) < 400
    got = wl.interval_rollover(st_, {}, T0 + 200 * 900)
    assert len(got) == 4 and got[0][0] == T0
    assert sum(f for _, f, _ in got) + st_["af"] == n * 1000


def test_counter_restart_counts_from_zero(wl):
    st_: dict = {}
    wl.observe(st_, {}, T0, 500, 7)
    wl.observe(st_, {}, T0 + 300, 510, 7)
    wl.observe(st_, {}, T0 + 600, 4, 0)  # the counter restarted: 4 came since
    assert st_["af"] == 14_000 and st_["pf"] == 4


wake_step = st.tuples(
    st.one_of(st.integers(0, 1200), st.integers(-4000, 10**7)),  # seconds to the next wake (jumps too)
    st.integers(0, 30), st.integers(0, 3),  # new forward / reverse pulses
    st.booleans())  # the counters restarted from 0


@FAST
@given(st.lists(wake_step, max_size=120), st.sampled_from([300, 900, 3600]), st.integers(-12, 14),
       st.integers(1, 5000))
def test_intervals_conserve_volume_and_align(wl, steps, iv, tz_h, k):
    cfg = {"interval_s": iv, "tz_s": tz_h * 3600 + (1800 if tz_h == 5 else 0), "ml_per_pulse": k}
    st_: dict = {}
    t = T0 + 123
    fwd = rev = 0
    wl.observe(st_, cfg, t, fwd, rev)
    total_f = total_r = 0
    out = []
    for dt, df, dr, restart in steps:
        t += dt
        if restart and fwd > df and rev > dr:  # a restart is seen only as a counter that fell
            fwd, rev = df, dr
        else:
            fwd, rev = fwd + df, rev + dr
        total_f += df * k
        total_r += dr * k
        wl.observe(st_, cfg, t, fwd, rev)
        got = wl.interval_rollover(st_, cfg, t)
        for s, f, r in got:
            assert s % iv == 0 and s + iv <= t and f >= 0 and r >= 0
            assert all(isinstance(x, int) for x in (s, f, r))
        out += got
    assert sum(f for _, f, _ in out) + st_["af"] + sum(st_.get("ci", [0, 0])[1::2]) == total_f
    assert sum(r for _, _, r in out) + st_["ar"] + sum(st_.get("ci", [0, 0, 0])[2::2]) == total_r
    if all(0 <= dt <= 3600 for dt, _, _, _ in steps):
        starts = [s for s, _, _ in out]
        assert starts == sorted(set(starts)), "a clock that never jumps: each interval once, in order"


def test_minimum_night_flow_counts_whole_night_hours_in_local_time(wl):
    cfg = {"tz_s": -5 * H}  # local = UTC - 5 h
    night0 = T0 + 5 * H  # local midnight
    per_hour = {0: 1, 1: 3, 2: 2, 3: 5, 4: 4}  # l/h in the night's local hours; 7 l/h by day

    def f(t):
        return per_hour.get((t - night0) // H % 24, 7) * L_H if t < night0 + DAY else 6 * L_H
    node = Node(wl, cfg, t0=night0 + 30 * 60)  # from 00:30: the first night hour is half seen
    node.flow(f, night0 + 6 * H)
    assert node.state["nm"] == 2000, "02:00-03:00; the half-seen hour (0.5 l) is no measured hour"
    node.flow(f, night0 + DAY + 3600)
    assert node.state["nm"] == 6000, "a new night replaces the last one's minimum"
    node.flow(f, night0 + DAY + 5 * H)
    assert node.state["nm"] == 6000


# ---- leak --------------------------------------------------------------------------------------
def test_household_with_nightly_zero_flow_has_no_leak(wl):
    node = Node(wl)
    node.flow(household(1), T0 + 10 * DAY)
    assert node.events == []
    assert node.state.get("nm") == 0, "the minimum night flow of a tight house"
    assert sum(f for _, f, _ in node.intervals) > 1_000_000  # it did use water: over 1 m3


@pytest.mark.parametrize("obs_s", [60, 300, 900])
def test_a_trickle_gives_one_leak_within_the_window(wl, obs_s):
    use = household(2)
    start = T0 + 3 * DAY + 10 * H + 7 * 60  # the toilet cistern starts running at 10:07 on day 3
    stop = T0 + 6 * DAY + 14 * H
    node = Node(wl)
    node.flow(lambda t: use(t) + (2 * L_H if start <= t < stop else 0), T0 + 9 * DAY, obs_s=obs_s)
    leaks = node.raised("leak")
    assert len(leaks) == 1
    t, _, level, data = leaks[0]
    assert level == "alarm" and start < t <= start + DAY + obs_s
    # the last zero hour ended before the cistern's first pulse (2 l/h: within 30 minutes)
    assert data["window_s"] == DAY and start - 8 * H <= data["since_ts"] <= start + 1800 + obs_s
    assert data["flow_ml_h"] > 0
    assert data["mnf_ml_h"] == 2000, "the night before the alarm: 2 l in every hour"
    cleared = node.raised("leak_cleared")
    assert len(cleared) == 1 and stop < cleared[0][0] <= T0 + 7 * DAY + 5 * H + obs_s
    assert cleared[0][3]["since_ts"] == data["since_ts"]
    assert node.names() == ["leak", "leak_cleared"]


def test_leak_window_is_configurable_and_counts_from_the_first_observation(wl):
    """Nothing is known from before the first observation: it counts as the end of a zero
    period, so a leak needs window - zero of observed flow (here 5.5 h of a 6 h window)."""
    cfg = {"leak_window_s": 6 * H, "leak_zero_s": 1800}
    node = Node(wl, cfg)
    node.flow(lambda t: 3 * L_H, T0 + 5 * H)  # a pulse every 20 min: never 30 min without flow
    assert node.events == []
    node.flow(lambda t: 3 * L_H, T0 + 6 * H)
    assert node.names() == ["leak"] and node.events[0][0] == T0 + 5 * H + 35 * 60
    assert node.events[0][3]["since_ts"] == T0
    node.flow(lambda t: 0, T0 + 8 * H)
    assert node.names() == ["leak", "leak_cleared"]
    assert node.raised("leak_cleared")[0][0] == T0 + 6 * H + 1800, "30 min after the last pulse (at 6:00)"


# ---- burst -------------------------------------------------------------------------------------
def test_a_burst_of_1500_l_h_for_40_min(wl):
    pipe = T0 + 2 * DAY + 14 * H
    use = household(3)
    node = Node(wl)
    node.flow(lambda t: use(t) + (1500 * L_H if pipe <= t < pipe + 40 * 60 else 0), T0 + 3 * DAY)
    b = node.raised("burst")
    assert len(b) == 1
    t, _, level, data = b[0]
    assert level == "alarm" and pipe + 1800 <= t <= pipe + 1800 + 300
    assert 1_400_000 <= data["peak_ml_h"] <= 1_600_000 and 1800 <= data["duration_s"] <= 1800 + 300
    c = node.raised("burst_cleared")
    assert len(c) == 1 and pipe + 2400 <= c[0][0] <= pipe + 2400 + 300
    assert node.names() == ["burst", "burst_cleared"]


def test_a_shorter_or_smaller_flow_is_no_burst(wl):
    node = Node(wl)
    node.flow(lambda t: 1500 * L_H if t < T0 + 25 * 60 else 0, T0 + 2 * H)  # 25 minutes
    node.flow(lambda t: 900 * L_H, T0 + 6 * H)  # a garden hose for 4 hours: under the limit
    assert node.names() == []


def test_burst_does_not_flap_around_the_limit(wl):
    node = Node(wl)
    flows = [1200, 1100, 950, 1050, 1200, 900, 1150, 1000, 850, 1300, 700, 1100]  # l/h, 20 min each
    for i, f in enumerate(flows):
        node.flow(lambda t, f=f: f * L_H, T0 + (i + 1) * 1200)
    # above 1000 from the start; 950/900/1000/850 dip under the limit but not under 800 (20 %)
    assert node.names() == ["burst", "burst_cleared"]
    assert node.raised("burst_cleared")[0][0] == T0 + 11 * 1200 - 1200 + 300


# ---- backflow ----------------------------------------------------------------------------------
def test_reverse_flow_gives_backflow(wl):
    node = Node(wl)
    valve = T0 + 10 * H
    node.flow(lambda t: 0, T0 + DAY, reverse_fn=lambda t: 30 * L_H if valve <= t < valve + 6 * 60 else 0)
    b = node.raised("backflow")
    assert len(b) == 1 and b[0][2] == "alarm" and b[0][3] == {"rev_ml": 2000, "window_s": 3600}  # the first wake over 1 l
    assert valve < b[0][0] <= valve + 600
    c = node.raised("backflow_cleared")
    assert len(c) == 1 and valve + 3600 <= c[0][0] <= valve + 5400 + 600
    assert sum(r for _, _, r in node.intervals) == 3000


def test_backflow_stays_raised_while_any_water_goes_back(wl):
    node = Node(wl)
    valve = T0 + 10 * H

    def back(t):
        if valve <= t < valve + 6 * 60:
            return 30 * L_H  # 3 l back
        if t < valve + 4 * H:
            return 1500  # then a drip back: 1 l every 40 min, under the limit on its own
        return 0
    node.flow(lambda t: 0, T0 + DAY, reverse_fn=back)
    assert node.names() == ["backflow", "backflow_cleared"]
    assert valve + 5 * H <= node.raised("backflow_cleared")[0][0] <= valve + 5.5 * H + 300


def test_one_reverse_pulse_or_a_slow_drip_back_is_no_backflow(wl):
    node = Node(wl)
    # 1 l back every 100 min: never more than 1 l in an hour (and 1 l is not above 1 l)
    node.flow(lambda t: 0, T0 + DAY, reverse_fn=lambda t: 600)
    assert node.meter.rev >= 14 and node.names() == []


def test_a_wobbling_pointer_is_no_flow_and_no_backflow(wl):
    """A pointer magnet resting on the edge of the reed, shaken by water hammer, counts forward
    and back in turn: no flow, so no leak and no backflow; the intervals keep both counts."""
    node = Node(wl)
    for i in range(1, 30 * 12 + 1):  # 30 hours of 5-minute wakes, 3 wobbles in each
        node.t += 300
        node.meter.fwd_x += 3 * 3600 * 1000
        node.meter.rev_x += 3 * 3600 * 1000
        node.wake()
        assert wl.flow_ml_h(node.state) == 0
    assert node.events == []
    assert sum(f for _, f, _ in node.intervals) == sum(r for _, _, r in node.intervals) > 300_000


# ---- no consumption ----------------------------------------------------------------------------
def test_eight_days_of_nothing_gives_no_consumption(wl):
    node = Node(wl)
    node.flow(lambda t: 300 * L_H if t < T0 + 10 * 60 else 0, T0 + 8 * DAY, obs_s=900)
    nc = node.raised("no_consumption")
    assert len(nc) == 1
    t, _, level, data = nc[0]
    assert level == "warning" and t == T0 + 7 * DAY + 900
    assert data == {"since_ts": T0 + 900, "idle_s": 7 * DAY}
    assert node.names() == ["no_consumption"]
    node.flow(lambda t: 300 * L_H, T0 + 8 * DAY + 1800, obs_s=900)
    assert node.names() == ["no_consumption", "no_consumption_cleared"]
    assert node.events[-1][3]["since_ts"] == T0 + 900 and node.events[-1][0] == T0 + 8 * DAY + 900


# ---- tamper ------------------------------------------------------------------------------------
def test_a_magnet_held_gives_tamper_and_a_pulse_does_not(wl):
    cfg = {"tamper_hold_s": 60, "tamper_clear_s": 600}
    st_: dict = {}
    wl.observe(st_, cfg, T0, 0, 0)
    # a pulse wake: the level is active at the wake, the next wake it is idle
    assert wl.tamper_step(st_, cfg, True, False) == []
    wl.observe(st_, cfg, T0 + 300, 0, 0)
    assert wl.tamper_step(st_, cfg, False, False) == []
    # active at two wakes but a pulse was counted between: it moved, no magnet
    wl.observe(st_, cfg, T0 + 310, 1, 0)
    assert wl.tamper_step(st_, cfg, True, False) == []
    wl.observe(st_, cfg, T0 + 400, 2, 0)
    assert wl.tamper_step(st_, cfg, True, False) == []
    # now held with no edge for 60 s: a magnet
    wl.observe(st_, cfg, T0 + 430, 2, 0)
    assert wl.tamper_step(st_, cfg, True, False) == []
    wl.observe(st_, cfg, T0 + 460, 2, 0)
    assert wl.tamper_step(st_, cfg, True, False) == [("tamper", "alarm", {"magnet": True, "wire_cut": False, "held_s": 60})]
    for i in range(10):  # still there: raised once
        wl.observe(st_, cfg, T0 + 500 + 60 * i, 2, 0)
        assert wl.tamper_step(st_, cfg, True, False) == []
    ev = []
    for i in range(15):  # removed: cleared after 600 s of normal inputs
        wl.observe(st_, cfg, T0 + 1200 + 60 * i, 2, 0)
        ev += [(i, e) for e in wl.tamper_step(st_, cfg, False, False)]
    assert ev == [(10, ("tamper_cleared", "info", {"clean_s": 600}))]
    assert "mh" not in st_ and "tr" not in st_ and "tc" not in st_


def test_a_cut_wire_gives_tamper_at_once_and_a_loose_one_does_not_flap(wl):
    cfg = {"tamper_clear_s": 600}
    st_: dict = {}
    wl.observe(st_, cfg, T0, 0, 0)
    seq = [False, True, False, True, True, False, False, False, False, False, True, False] + [False] * 12
    got = []
    for i, cut in enumerate(seq):
        t = T0 + 120 * (i + 1)
        wl.observe(st_, cfg, t, 0, 0)
        got += [(i, e[0]) for e in wl.tamper_step(st_, cfg, False, cut)]
    assert got == [(1, "tamper"), (16, "tamper_cleared")]  # 600 s after the last cut reading


def test_tamper_hold_survives_a_clock_jump_and_uses_now_when_given(wl):
    st_: dict = {}
    wl.observe(st_, {}, 5000, 0, 0)
    assert wl.tamper_step(st_, {}, True, False, now_s=5000) == []
    wl.observe(st_, {}, T0, 0, 0)  # the clock was set: no time is taken as passed
    assert wl.tamper_step(st_, {}, True, False, now_s=T0) == []
    assert names(wl.tamper_step(st_, {}, True, False, now_s=T0 + 60)) == ["tamper"]


# ---- every state machine on random sequences ---------------------------------------------------
def random_wakes(rnd, n, k=1000):
    """(dt, fwd_pulses, rev_pulses, magnet, cut) for n wakes: flows from nothing to bursts,
    reverse flow, a stuck magnet, cut wires, counter restarts, clock jumps both ways."""
    fwd = rev = 0
    mode = "idle"
    out = []
    for _ in range(n):
        if rnd.random() < 0.03:
            mode = rnd.choice(["idle", "idle", "trickle", "house", "burst", "reverse", "magnet", "cut"])
        dt = rnd.choice([60, 300, 300, 300, 900, 900, 1800, 3000])
        r = rnd.random()
        if r < 0.003:
            dt = rnd.choice([-3600, -5, 10**6, 8 * DAY, 0])
        if mode == "trickle":
            fwd += 1 if rnd.random() < dt / 1800 else 0
        elif mode == "house":
            fwd += rnd.choice([0, 0, 0, 1, 3, 8, 20])
        elif mode == "burst":
            fwd += max(0, dt * rnd.randint(300, 700) // 1000)
        elif mode == "reverse":
            rev += rnd.choice([0, 1, 2])
        if rnd.random() < 0.002:
            fwd, rev = rnd.randint(0, 3), 0
        out.append((dt, fwd, rev, mode == "magnet" and rnd.random() < 0.95,
                    mode == "cut" and rnd.random() < 0.8))
    return out


def play(wl, state, cfg, t, wake):
    dt, fwd, rev, magnet, cut = wake
    t += dt
    wl.observe(state, cfg, t, fwd, rev)
    iv = wl.interval_rollover(state, cfg, t)
    ev = wl.alarms(state, cfg, t) + wl.tamper_step(state, cfg, magnet, cut)
    return t, ev, iv


def check_alternation(history, ev):
    for name, level, data in ev:
        base = name.removesuffix("_cleared")
        assert base in RAISES, name
        was = history.get(base, False)
        if name == base:
            assert not was, f"two raises of {name} in a row"
            assert level == RAISES[base]
        else:
            assert was, f"{name} without a raise"
            assert level == "info"
        history[base] = name == base
        assert isinstance(data, dict)
        for k, v in data.items():
            assert v is None or isinstance(v, (int, bool)), (name, k, v)


def all_ints(x):
    if isinstance(x, dict):
        return all(all_ints(v) for v in x.values())
    if isinstance(x, list):
        return all(all_ints(v) for v in x)
    return isinstance(x, int) and not isinstance(x, bool)


def test_ten_thousand_random_wakes(wl):
    state: dict = {}
    cfg = dict(wl.DEFAULTS)
    cfg["dry_days"] = 1  # idle spells in these sequences last hours to days, not weeks
    t = T0
    wl.observe(state, cfg, t, 0, 0)
    history: dict = {}
    kinds = set()
    keys = set()
    for wake in random_wakes(random.Random(5), 10_000):
        t, ev, _iv = play(wl, state, cfg, t, wake)
        check_alternation(history, ev)
        kinds.update(names(ev))
        json.dumps(ev)
        s = json.dumps(state)
        keys.update(state)
        assert len(s) < 400, s
        assert all_ints(state), state
        assert isinstance(wl.flow_ml_h(state), int) and wl.flow_ml_h(state) >= 0
    assert kinds == {n for b in RAISES for n in (b, b + "_cleared")}, kinds
    assert keys >= {"ci", "rw", "bs", "bp", "mh", "tc", "lr", "br", "bb", "dr", "tr", "nm"}, "every part was exercised"


@SLOW
@given(st.integers(0, 2**32), st.sampled_from([None, {"leak_window_s": 4 * H, "leak_zero_s": 1200, "burst_s": 600,
                                                      "burst_ml_h": 200_000, "dry_days": 1, "backflow_ml": 0,
                                                      "backflow_window_s": 600, "tamper_hold_s": 1,
                                                      "tamper_clear_s": 0, "ml_per_pulse": 7}]))
def test_alarms_alternate_and_state_stays_small_json(wl, seed, cfg):
    state: dict = {}
    t = T0
    wl.observe(state, cfg, t, 0, 0)
    history: dict = {}
    stored = json.dumps(state)
    for wake in random_wakes(random.Random(seed), 600):
        # the state comes back from RTC memory (JSON) at every wake: same behaviour
        live_t = t
        reloaded = json.loads(stored)
        t, ev, iv = play(wl, state, cfg, live_t, wake)
        _, ev2, iv2 = play(wl, reloaded, cfg, live_t, wake)
        assert ev2 == ev and iv2 == iv
        stored = json.dumps(reloaded)
        assert json.loads(stored) == json.loads(json.dumps(state))
        check_alternation(history, ev)
        assert len(stored) < 400 and all_ints(state)


@FAST
@given(st.lists(st.tuples(st.sampled_from([60, 300, 600, 900]), st.integers(0, 3)), max_size=300),
       st.sampled_from([(86400, 3600), (6 * 3600, 1800), (7200, 600)]))
def test_leak_matches_its_definition(wl, steps, wz):
    """Model: zero-flow periods are the spans between observations that saw forward pulses;
    a leak is raised once the last zero period of leak_zero_s ended (or the first observation
    was) more than window - zero ago, and cleared by the next zero period of leak_zero_s."""
    w, z = wz
    cfg = {"leak_window_s": w, "leak_zero_s": z, "dry_days": 10**6}
    state: dict = {}
    t = T0
    wl.observe(state, cfg, t, 0, 0)
    last_pulse = zero_end = t
    raised = False
    n = 0
    for dt, df in steps:
        t += dt
        n += df
        wl.observe(state, cfg, t, n, 0)
        ev = [e for e in wl.alarms(state, cfg, t) if e[0].startswith("leak")]
        if df:
            last_pulse = t
        elif t - last_pulse >= z:
            zero_end = t
        want = []
        if raised and zero_end == t:
            want, raised = ["leak_cleared"], False
        elif not raised and t - zero_end > w - z:
            want, raised = ["leak"], True
        assert names(ev) == want
        if want == ["leak"]:
            assert ev[0][2]["since_ts"] == zero_end


@FAST
@given(st.lists(st.tuples(st.sampled_from([300, 900, 3600]), st.integers(0, 1)), max_size=400))
def test_no_consumption_matches_its_definition(wl, steps):
    cfg = {"dry_days": 1}
    state: dict = {}
    t = T0
    wl.observe(state, cfg, t, 0, 0)
    last = t
    raised = False
    n = 0
    for dt, df in steps:
        t += dt
        n += df
        wl.observe(state, cfg, t, n, 0)
        ev = [e for e in wl.alarms(state, cfg, t) if e[0].startswith("no_consumption")]
        if df:
            last = t
        want = []
        if raised and df:
            want, raised = ["no_consumption_cleared"], False
        elif not raised and t - last >= DAY:
            want, raised = ["no_consumption"], True
        assert names(ev) == want


@FAST
@given(st.lists(st.tuples(st.sampled_from([60, 300]), st.integers(0, 200)), max_size=300))
def test_burst_matches_its_definition(wl, steps):
    """Model: a burst once the flow of every observation since the first one above burst_ml_h
    has stayed above it for burst_s; cleared at an observation below 80 % of the limit."""
    cfg = {"burst_ml_h": 600 * L_H, "burst_s": 1200, "ml_per_pulse": 1000}
    state: dict = {}
    t = T0
    wl.observe(state, cfg, t, 0, 0)
    run_start = None
    raised = False
    n = 0
    for dt, df in steps:
        t += dt
        n += df
        wl.observe(state, cfg, t, n, 0)
        q = wl.flow_ml_h(state)
        ev = [e for e in wl.alarms(state, cfg, t) if e[0].startswith("burst")]
        if q > 600 * L_H:
            run_start = t if run_start is None else run_start
        else:
            run_start = None
        want = []
        if raised and q < 480 * L_H:
            want, raised = ["burst_cleared"], False
        elif not raised and run_start is not None and t - run_start >= 1200:
            want, raised = ["burst"], True
        assert names(ev) == want


# ---- the same logic in real MicroPython --------------------------------------------------------
MP_SCRIPT = r'''
import sys
sys.path[:] = ["/lib"]
import json
from nodes import water_logic as wl
with open("/work/in.json") as f:
    inp = json.loads(f.read())
out = []
for ticks, k in inp["ticks"]:
    out.append(wl.flow_from_intervals(ticks, k))
cfg = inp["cfg"]
st = {}
t = inp["t0"]
wl.observe(st, cfg, t, 0, 0)
for dt, fwd, rev, magnet, cut in inp["wakes"]:
    t += dt
    wl.observe(st, cfg, t, fwd, rev)
    iv = wl.interval_rollover(st, cfg, t)
    ev = wl.alarms(st, cfg, t) + wl.tamper_step(st, cfg, magnet, cut)
    out.append([ev, iv, wl.flow_ml_h(st), json.loads(json.dumps(st))])
with open("/work/out.json", "w") as f:
    f.write(json.dumps(out))
'''


def test_micropython_runs_like_cpython(wl, tmp_path):
    """Big-integer products (ml x 3600 x pulses), floor division and modulo of negative values
    (time zones west of UTC), list slicing of the ring and the interval queue: the WASI
    MicroPython gives the same events, intervals, flows and state as CPython."""
    from simulator import wasi

    rnd = random.Random(12)
    ticks = []
    for _ in range(100):
        t0 = rnd.randint(0, (1 << 30) - 1)
        tk = [t0]
        for _ in range(rnd.randint(0, 8)):
            tk.append((tk[-1] + rnd.choice([0, 1, 2400, 60_000, 10**7])) % (1 << 30))
        ticks.append([tk, rnd.choice([1, 10, 1000, 10_000])])
    cfg = {"tz_s": -5 * H, "ml_per_pulse": 1000, "night_from_h": 23, "night_to_h": 5}
    wakes = random_wakes(rnd, 3000)
    (tmp_path / "in.json").write_text(json.dumps({"ticks": ticks, "cfg": cfg, "t0": T0, "wakes": wakes}))
    wasi.run_micropython(MP_SCRIPT, {FW_LIB: "/lib", tmp_path: "/work"}, 8 << 20)
    got = json.loads((tmp_path / "out.json").read_text())

    want: list = [wl.flow_from_intervals(tk, k) for tk, k in ticks]
    state: dict = {}
    t = T0
    wl.observe(state, cfg, t, 0, 0)
    for wake in wakes:
        t, ev, iv = play(wl, state, cfg, t, wake)
        want.append([ev, iv, wl.flow_ml_h(state), json.loads(json.dumps(state))])
    want = json.loads(json.dumps(want))
    assert len(got) == len(want)
    diffs = [(i, w, g) for i, (w, g) in enumerate(zip(want, got)) if w != g]
    assert not diffs, diffs[:3]
    assert sum(1 for x in want[:100] if x is not None) > 50
    assert sum(len(x[0]) for x in want[100:]) > 20  # events were compared
    assert sum(len(x[1]) for x in want[100:]) > 500  # and intervals
