"""Water-meter pulse counting: the debouncer (firmware/lib/drivers/pulse.py Debouncer), the
fake PCNT (simulator/mp/fake_machine.py Counter/Encoder: glitch filter, quadrature, clock
gating in light sleep), the fake reed contacts (simulator/mp/chip_reed.py: flow integration,
bounce, RC, quadrature truth) and PulseInput against the reed in both modes, in virtual time.

`max_lossless_rate(mode)` finds the highest pulse rate the simulator counts without loss;
`python -m tests.test_pulse` prints it for each input configuration (docs/water_meter_counting.md
records the figures)."""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator.mp  # noqa: F401  (registers `simboard` under its bare name)
from simulator.mp import simboard
from tests.nodeenv import NodeEnv

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = ROOT / "firmware" / "lib" / "drivers"
MP_DIR = str(ROOT / "simulator" / "mp")
if MP_DIR not in sys.path:
    sys.path.append(MP_DIR)  # chips are imported by bare name, as simulator/worlds.py does
chip_reed = importlib.import_module("chip_reed")

PULSE, DIR = 27, 32  # the water_meter pins of the esp32 board profiles
TICKS = simboard.TICKS_PERIOD
S = 1_000_000  # us per s


def new_env(tmp: Path, ticks_offset_ms: int = 0) -> NodeEnv:
    """A board with only the drivers on its flash."""
    env = NodeEnv(tmp, install=False)
    (tmp / "lib" / "drivers").mkdir(parents=True)
    for name in ("__init__.py", "pulse.py"):
        shutil.copyfile(DRIVERS / name, tmp / "lib" / "drivers" / name)
    env.board.ticks_offset_ms = ticks_offset_ms
    return env


class Rig:
    """A board, the reed contacts on PULSE (and DIR when quad) and the driver module."""

    def __init__(self, tmp: Path, quad=True, lpp=1.0, bounce_ms=(0.5, 3.0), rc_us=0, seed=1,
                 ticks_offset_ms=0):
        self.env = new_env(tmp, ticks_offset_ms)
        self.board = self.env.board
        self.flow = 0.0
        self.quad = quad
        self.reed = chip_reed.Reed(self.board, PULSE, lambda b: self.flow, lpp,
                                   bounce_ms=bounce_ms, dir_pin=DIR if quad else None,
                                   seed=seed, rc_us=rc_us)
        self.drv = self.env.module("drivers.pulse")
        self.machine = self.env.module("machine")
        self.time = self.env.module("time")

    def set_flow(self, lps):
        self.flow = lps
        self.reed.flow_changed()

    def pulse_input(self, mode, **kw):
        kw.setdefault("low_power", mode == "irq")
        return self.drv.PulseInput(PULSE, DIR if self.quad else None, mode=mode, **kw)

    def truth(self):
        return self.reed.pulses_fwd, self.reed.pulses_rev


# ---- the debouncer ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pulse_mod(tmp_path_factory):
    return new_env(tmp_path_factory.mktemp("deb") / "flash").module("drivers.pulse")


def reference(events, min_ms, level):
    """What a lock-out debouncer does, in plain integers (no ticks wrap): returns per event."""
    out = []
    last = None
    for t, lv in events:
        if lv == level or (last is not None and t - last < min_ms):
            out.append(0)
            continue
        level, last = lv, t
        out.append(1 if lv == 0 else 0)
    return out


bounce_burst = st.lists(st.integers(0, 3), min_size=0, max_size=6).map(sorted)


@settings(max_examples=300, deadline=None)
@given(st.integers(5, 30), st.integers(0, 1),
       st.lists(st.tuples(st.integers(0, 200), bounce_burst), min_size=1, max_size=40))
def test_each_make_counts_once_through_its_bounce(pulse_mod, min_ms, start, segs):
    """Contact segments at least min_ms + 4 ms long, bounces within 3 ms (< min_ms) of each
    transition: every true make counts exactly once, every bounce back is rejected."""
    edges, makes, bounces_back = [], 0, 0
    t, level = 0, start
    for extra, burst in segs:
        t += min_ms + 4 + extra
        level = 1 - level
        makes += level == 0
        edges.append((t, level))
        lv = level
        for off in burst:
            lv = 1 - lv
            bounces_back += lv != level
            edges.append((t + off, lv))
        if lv != level:
            edges.append((t + 3, level))  # the contact settles in its new state
    d = pulse_mod.Debouncer(min_ms, start, 0)
    counted = sum(d.edge(tt, lv) for tt, lv in edges)
    assert counted == makes == d.makes
    assert d.rejected == bounces_back
    assert d.level == level


@settings(max_examples=300, deadline=None)
@given(st.integers(4, 30), st.integers(0, 1),
       st.lists(st.tuples(st.integers(1, 60), bounce_burst), min_size=1, max_size=40))
def test_never_more_counts_than_true_makes(pulse_mod, min_ms, start, segs):
    """Any segment lengths (also shorter than the hold-off, when pulses are lost), bounces
    shorter than min_ms: the count never exceeds the true makes."""
    edges, makes = [], 0
    t, level = 0, start
    times = []
    for seg, _ in segs:
        t += seg
        times.append(t)
    for i, (seg, burst) in enumerate(segs):
        level = 1 - level
        makes += level == 0
        at = times[i]
        nxt = times[i + 1] if i + 1 < len(times) else at + 1000
        edges.append((at, level))
        lv = level
        for off in burst:
            if at + off >= nxt:
                break  # the next true transition comes first
            lv = 1 - lv
            edges.append((at + off, lv))
        if lv != level and at + 3 < nxt:
            edges.append((at + 3, level))  # the contact settles in its new state
    d = pulse_mod.Debouncer(min_ms, start, 0)
    accepted = []
    for tt, lv in edges:
        before = d.level
        d.edge(tt, lv)
        if d.level != before:
            accepted.append(tt)
    assert d.makes <= makes
    assert all(b - a >= min_ms for a, b in zip(accepted, accepted[1:])), "hold-off respected"


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 50), st.integers(0, 1), st.integers(0, 10**7),
       st.lists(st.tuples(st.one_of(st.integers(0, 60), st.integers(0, (1 << 29) - 1)),
                          st.integers(0, 1)), max_size=60))
def test_same_counts_across_the_ticks_wrap(pulse_mod, min_ms, start, before_wrap, steps):
    """Fed ticks_ms values that wrap at 2**30 (the port's period), the debouncer decides exactly
    as a plain-integer lock-out on the true times (gaps below half the period)."""
    t = 0
    events = []
    for gap, lv in steps:
        t += gap
        events.append((t, lv))
    base = TICKS - before_wrap - 1
    d = pulse_mod.Debouncer(min_ms, start, 0)
    got = [d.edge((base + tt) % TICKS, lv) for tt, lv in events]
    assert got == reference(events, min_ms, start)


def test_holdoff_counts_down_and_ends(pulse_mod):
    d = pulse_mod.Debouncer(10, 1, 0)
    assert d.edge(TICKS - 3, 0) == 1
    assert d.holdoff(TICKS - 1) == 8
    assert d.holdoff(4) == 3, "across the wrap"
    assert d.edge(5, 1) == 0 and d.rejected == 1 and d.level == 0
    assert d.holdoff(7) == 0
    assert d.edge(7, 1) == 0 and d.level == 1, "a break is accepted but counts nothing"


# ---- the fake PCNT ---------------------------------------------------------------------------
@pytest.fixture
def hw(tmp_path):
    env = new_env(tmp_path / "flash")
    return env.board, env.module("machine")


def drive(board, pid, levels, step_us=100):
    """Drive pid through levels, one every step_us (sim time advances between)."""
    for lv in levels:
        board.pin_edge(pid, lv)
        board.advance(step_us)


def test_counter_counts_the_chosen_edges(hw):
    b, m = hw
    rising = m.Counter(0, m.Pin(4, m.Pin.IN))
    falling = m.Counter(1, m.Pin(5, m.Pin.IN), edge=m.Counter.FALLING, direction=m.Counter.DOWN)
    drive(b, 4, [1, 0] * 7)
    drive(b, 5, [1, 0] * 3)
    assert rising.value() == 7
    assert falling.value() == -3
    assert rising.value(100) == 7 and rising.value() == 100, "value(v) returns, then sets"
    both = m.Counter(2, m.Pin(4), edge=m.Counter.RISING | m.Counter.FALLING)
    drive(b, 4, [1, 0])
    assert both.value() == 2 and rising.value() == 101


def test_counter_is_one_unit_per_id(hw):
    b, m = hw
    c = m.Counter(0, m.Pin(4, m.Pin.IN))
    drive(b, 4, [1, 0, 1, 0])
    assert m.Counter(0).value() == 2, "Counter(id) alone returns the unit as it is"
    m.Counter(0, m.Pin(4))  # arguments: reconfigured and zeroed
    assert c.value() == 0
    with pytest.raises(ValueError):
        m.Encoder(0, m.Pin(4), m.Pin(5))
    with pytest.raises(ValueError):
        m.Counter(8, m.Pin(4))
    c.deinit()
    drive(b, 4, [1, 0])
    with pytest.raises(RuntimeError):
        c.value()
    with pytest.raises(TypeError):
        m.Counter(3)  # never configured: needs src


@pytest.mark.parametrize("width_us,counted", [(5, 0), (12, 0), (13, 1), (50, 1)])
def test_glitch_filter_drops_pulses_narrower_than_filter_ns(hw, width_us, counted):
    """filter_ns=13000 becomes the port's longest filter, 1023 APB cycles = 12.79 us."""
    b, m = hw
    c = m.Counter(0, m.Pin(4, m.Pin.IN), filter_ns=13000)
    b.pin_edge(4, 1)
    b.advance(width_us)
    b.pin_edge(4, 0)
    b.advance(1000)
    assert c.value() == counted


def test_glitch_filter_cannot_stop_contact_bounce(hw):
    """Bounces of a few hundred us are far beyond the 12.8 us filter: each counts."""
    b, m = hw
    c = m.Counter(0, m.Pin(4, m.Pin.IN), filter_ns=1_000_000)
    drive(b, 4, [1, 0, 1, 0, 1], step_us=300)
    assert c.value() == 3


def test_pcnt_counts_nothing_in_light_sleep_and_keeps_its_count(hw):
    b, m = hw
    m.Pin(4, m.Pin.IN)
    c = m.Counter(0, 4)
    for k in range(10):  # a pulse every 10 ms for 100 ms, from the timeline
        b.call_at(b.now_us() + k * 10_000 + 1000, lambda bb: bb.pin_edge(4, 1))
        b.call_at(b.now_us() + k * 10_000 + 6000, lambda bb: bb.pin_edge(4, 0))
    m.lightsleep(50)
    assert c.value() == 0, "clock-gated: the first five pulses went unseen"
    b.advance(50_000)
    assert c.value() == 5, "awake again: counting, nothing lost from before"


def test_pcnt_ends_with_a_reset(hw):
    b, m = hw
    c = m.Counter(0, m.Pin(4, m.Pin.IN))
    drive(b, 4, [1, 0])
    b.boot(simboard.DEEPSLEEP_RESET)
    drive(b, 4, [1, 0])
    with pytest.raises(RuntimeError):
        c.value()
    assert m.Counter(0, m.Pin(4)).value() == 0


def quadrature(cycles):
    """(a, b) levels of a quadrature pair stepping forward (cycles > 0) or back, as the reed
    contacts make them: (1,1) -> (0,1) -> (0,0) -> (1,0) -> (1,1) forward."""
    seq = [(0, 1), (0, 0), (1, 0), (1, 1)]
    out = []
    if cycles >= 0:
        for _ in range(cycles):
            out += seq
    else:
        for _ in range(-cycles):
            out += [(1, 0), (0, 0), (0, 1), (1, 1)]
    return out


@pytest.mark.parametrize("phases", [1, 2, 4])
def test_encoder_decodes_quadrature(hw, phases):
    b, m = hw
    b.pin_edge(4, 1)
    b.pin_edge(5, 1)
    e = m.Encoder(0, m.Pin(4, m.Pin.IN), m.Pin(5, m.Pin.IN), phases=phases)
    assert e.phases() == phases
    for a, bb in quadrature(5) + quadrature(-2):
        b.pin_edge(4, a)
        b.pin_edge(5, bb)
        b.advance(100)
    assert e.value() == 3 * phases


def test_encoder_bounce_on_one_phase_nets_out(hw):
    """A bouncing make of phase A while B is steady: fall +1, rise -1, fall +1 = +1."""
    b, m = hw
    b.pin_edge(4, 1)
    b.pin_edge(5, 1)
    e = m.Encoder(0, m.Pin(4, m.Pin.IN), m.Pin(5, m.Pin.IN))
    drive(b, 4, [0, 1, 0, 1, 0], step_us=200)
    assert e.value() == 1
    drive(b, 4, [1, 0, 1], step_us=200)  # a bouncing break with B high: one step back
    assert e.value() == 0


# ---- the reed contacts -----------------------------------------------------------------------
def watch_edges(board, pid):
    """Record (us, level) of every change the node would see on pid."""
    seen = []
    board.pin(pid)["watch"] = lambda b, q, lv: seen.append((b.now_us(), lv))
    return seen


@pytest.mark.parametrize("lps", [0.05, 0.7, 9.0])
def test_reed_pulses_follow_the_volume(tmp_path, lps):
    r = Rig(tmp_path / "flash", lpp=0.5)
    r.board.pins[PULSE]["pull"] = 2
    r.set_flow(lps)
    r.board.advance(200 * S)
    litres = lps * 200
    assert abs(r.reed.litres() - litres) < 1e-6 * litres + 1e-9
    assert abs(r.reed.pulses_fwd - litres / 0.5) <= 1 and r.reed.pulses_rev == 0
    r.set_flow(-lps)
    r.board.advance(100 * S)
    assert abs(r.reed.pulses_rev - lps * 100 / 0.5) <= 1
    assert abs((r.reed.pulses_fwd - r.reed.pulses_rev) * 0.5 - r.reed.litres()) <= 0.5


def test_reed_bounces_within_the_window(tmp_path):
    r = Rig(tmp_path / "flash", quad=False, bounce_ms=(0.5, 3.0), seed=7)
    r.board.pins[PULSE]["pull"] = 2  # the node's pull-up holds the open contact high
    seen = watch_edges(r.board, PULSE)
    r.set_flow(1.0)  # one pulse per second
    r.board.advance(30 * S)
    bursts = []
    for t, lv in seen:
        if bursts and t - bursts[-1][0] <= 3000:
            bursts[-1][1].append((t, lv))
        else:
            bursts.append((t, [(t, lv)]))
    assert len(bursts) == 2 * r.reed.pulses_fwd, "one burst per make and per break"
    for start, burst in bursts:
        n = len(burst)
        assert n in (3, 5, 7), "the transition and 1-3 pairs of bounces"
        assert burst[-1][0] - start <= 3000 and burst[-1][1] == burst[0][1]
        assert all(b[0] - a[0] >= 20 for a, b in zip(burst, burst[1:]))


def test_reed_without_bounce_or_with_rc_makes_clean_edges(tmp_path):
    clean = Rig(tmp_path / "a", quad=False, bounce_ms=(0, 0))
    rc = Rig(tmp_path / "b", quad=False, rc_us=4000, seed=3)
    for r in (clean, rc):
        r.board.pins[PULSE]["pull"] = 2
        r.seen = watch_edges(r.board, PULSE)
        r.set_flow(2.0)
        r.board.advance(20 * S)
        assert len(r.seen) == 2 * r.reed.pulses_fwd == 80
        assert [lv for _, lv in r.seen] == [0, 1] * 40
    assert rc.reed.contact_edges > 3 * len(rc.seen), "the contact bounced; the RC hid it"


def test_reed_same_seed_same_bounces(tmp_path):
    runs = []
    for i in range(2):
        r = Rig(tmp_path / str(i), quad=True, seed=11)
        r.board.pins[PULSE]["pull"] = 2
        seen = watch_edges(r.board, PULSE)
        r.set_flow(0.8)
        r.board.advance(10 * S)
        runs.append(seen)
    assert runs[0] == runs[1] and len(runs[0]) > 20


def test_reed_turning_back_inside_a_bounce_settles_where_the_wheel_is(tmp_path):
    """The wheel crosses a make boundary and turns back while the contact is bouncing open:
    the contact must end open (the wheel is back before the boundary), not closed."""
    r = Rig(tmp_path / "flash", bounce_ms=(2.5, 3.0), seed=2)
    r.board.pins[PULSE]["pull"] = 2
    r.set_flow(1.0)
    while r.reed.pulses_fwd == 0:
        r.board.advance(10)
    while r.board.pin_level(PULSE) == 0:  # into the make's bounce, at a moment it is open
        r.board.advance(10)
    r.set_flow(-50.0)  # back over the boundary within microseconds
    r.board.advance(200)
    r.set_flow(0.0)
    r.board.advance(10_000)
    assert r.truth() == (1, 1)
    assert r.board.pin_level(PULSE) == 1 and r.reed._q % 4 == 3


def test_reed_stays_cheap_over_45_days(tmp_path):
    """A household's day (showers, taps, toilet) for 45 days, the flow read only at events:
    a few events per pulse plus one per minute, never per millisecond."""
    day = [(6.5, 6.6, 0.15), (7.0, 7.05, 0.1), (12.2, 12.25, 0.08), (19.0, 19.2, 0.12),
           (22.0, 22.02, 0.1)]

    def household(b):
        h = (b.now_us() / 3.6e9) % 24
        for start, end, lps in day:
            if start <= h < end:
                return lps
        return 0.0

    env = new_env(tmp_path / "flash")
    reed = chip_reed.Reed(env.board, PULSE, household, 1.0, dir_pin=DIR)
    env.board.advance(45 * 86400 * S)
    litres = 45 * sum((e - s) * 3600 * q for s, e, q in day)
    assert abs(reed.pulses_fwd - litres) <= 0.03 * litres, "flow integrated between events"
    assert reed.events <= 45 * 1440 + 4 * reed.pulses_fwd + 45 * 2 * len(day)


# ---- PulseInput against the reed -------------------------------------------------------------
def run_flows(rig, pi, flows, step_ms=1000):
    """flows: [(litres per second, seconds)]; the node waits in step_ms slices. Then the flow
    stops and the node waits 20 ms more, so that a contact bouncing at the end has settled
    (the truth counts a pulse at its first contact, the PCNT's net count swings with the
    bounce until then)."""
    for lps, secs in flows:
        rig.set_flow(lps)
        left = int(secs * 1000)
        while left > 0:
            pi.wait(min(step_ms, left))
            left -= step_ms
    rig.set_flow(0.0)
    pi.wait(20)
    return pi.count()


@pytest.mark.parametrize("mode,quad,rc_us", [("irq", False, 0), ("irq", True, 0),
                                             ("counter", True, 0), ("counter", False, 4000)])
@pytest.mark.parametrize("hz", [0.3, 4.0, 25.0])
def test_counts_exactly_the_truth(tmp_path, mode, quad, rc_us, hz):
    r = Rig(tmp_path / "flash", quad=quad, rc_us=rc_us, seed=int(hz * 10))
    pi = r.pulse_input(mode)
    assert pi.mode == mode
    flows = [(hz, 40 / hz)]
    if quad:
        flows += [(-hz, 20 / hz), (hz, 5 / hz)]
    net = run_flows(r, pi, flows)
    f, v = r.truth()
    assert f >= 40 and net == f - v
    if mode == "irq" or not quad:
        assert (pi.fwd, pi.rev) == (f, v)
    if mode == "irq" and rc_us == 0:
        assert pi.bounces_rejected > 0, "the contact did bounce"


def test_irq_mode_sleeps_through_the_wait(tmp_path):
    r = Rig(tmp_path / "flash")
    pi = r.pulse_input("irq")
    r.set_flow(0.5)
    t0 = r.board.now_us()
    pi.wait(60_000)
    spent = r.board.now_us() - t0
    assert 60 * S <= spent < 60 * S + 1000, "to the ms (ticks_ms)"
    assert r.board.energy_us[simboard.LIGHT_SLEEP] == spent, "asleep between pulses"
    assert pi.count() == r.reed.pulses_fwd >= 29
    assert pi.edges_seen >= 4 * r.reed.pulses_fwd, "each edge, bounces too, woke the CPU"


def test_counter_mode_stays_awake(tmp_path):
    r = Rig(tmp_path / "flash")
    pi = r.pulse_input("counter")
    r.set_flow(0.5)
    pi.wait(20_000)
    assert r.board.energy_us[simboard.LIGHT_SLEEP] == 0
    assert pi.count() == r.reed.pulses_fwd


def test_auto_mode_picks_by_power(tmp_path):
    r = Rig(tmp_path / "flash")
    assert r.drv.PulseInput(PULSE, DIR).mode == "irq", "battery: the PCNT would miss pulses"
    assert r.drv.PulseInput(PULSE, DIR, unit=1, low_power=False).mode == "counter"


@pytest.mark.parametrize("mode", ["irq", "counter"])
def test_reverse_flow_and_dither_count_as_reverse(tmp_path, mode):
    """The wheel rocking back and forth over a pulse boundary (pressure swings at no draw):
    the net stays right and, in irq mode, every crossing is booked in its direction."""
    r = Rig(tmp_path / "flash", lpp=1.0)
    pi = r.pulse_input(mode)
    flows = [(0.5, 3.0)]  # to just past a make (quarter 0)
    for _ in range(6):
        flows += [(-0.4, 0.5), (0.4, 0.5)]  # back over the boundary and forward again
    flows += [(-0.5, 6.0)]
    net = run_flows(r, pi, flows, step_ms=250)
    f, v = r.truth()
    assert v >= 6 and net == f - v
    if mode == "irq":
        assert (pi.fwd, pi.rev) == (f, v)


def test_counts_across_the_ticks_wrap(tmp_path):
    r = Rig(tmp_path / "flash", ticks_offset_ms=TICKS - 7000)
    pi = r.pulse_input("irq")
    net = run_flows(r, pi, [(3.0, 15.0)])
    assert r.time.ticks_ms() < 10_000, "the tick counter wrapped during the run"
    assert net == r.reed.pulses_fwd >= 44


def test_counts_while_awake_through_the_pin_irq(tmp_path):
    r = Rig(tmp_path / "flash")
    pi = r.pulse_input("irq")
    r.set_flow(2.0)
    for _ in range(5000):  # an awake app: 5 s in short blocking steps
        r.time.sleep_ms(1)
    assert pi.count() == r.reed.pulses_fwd >= 9
    assert r.board.energy_us[simboard.LIGHT_SLEEP] == 0


def test_wait_returns_after_max_pulses(tmp_path):
    r = Rig(tmp_path / "flash")
    pi = r.pulse_input("irq")
    r.set_flow(1.0)
    n = pi.wait(600_000, max_pulses=5)
    assert n == 5 and pi.count() == 5 == r.reed.pulses_fwd
    assert r.board.now_us() < 10 * S
    assert pi.take() == (5, 0) and pi.take() == (0, 0)


def test_single_pcnt_channel_counts_every_bounce(tmp_path):
    """The known limit: one raw reed contact on the PCNT overcounts (its glitch filter is
    12.8 us at most); an RC across the contact or the quadrature Encoder is needed."""
    r = Rig(tmp_path / "flash", quad=False, seed=4)
    pi = r.pulse_input("counter")
    net = run_flows(r, pi, [(2.0, 10.0)])
    assert net > 2 * r.reed.pulses_fwd


flow_plan = st.lists(st.tuples(st.floats(-12.0, 12.0).filter(lambda x: abs(x) > 0.05),
                               st.floats(0.2, 3.0)), min_size=1, max_size=6)


@settings(max_examples=25, deadline=None)
@given(flow_plan, st.integers(1, 10**6), st.sampled_from(["irq", "counter"]))
def test_any_flow_below_the_limit_counts_exactly(tmp_path_factory, plan, seed, mode):
    r = Rig(tmp_path_factory.mktemp("q") / "flash", seed=seed)
    pi = r.pulse_input(mode)
    net = run_flows(r, pi, plan, step_ms=700)
    f, v = r.truth()
    assert net == f - v
    if mode == "irq":
        assert (pi.fwd, pi.rev) == (f, v)


# ---- the highest rate counted without loss ---------------------------------------------------
CONFIGS = {
    # name: (mode, quadrature, rc_us across the contacts)
    "irq": ("irq", True, 0),
    "irq-single": ("irq", False, 0),
    "counter": ("counter", True, 0),
    "counter-single-rc": ("counter", False, 4000),
}


def lossless_at(mode, hz, quad=True, rc_us=0, seeds=(1, 2, 3), pulses=60):
    """True when PulseInput counts every pulse of `pulses` forward (and pulses/2 back, with
    the direction contact) at hz pulses per second, for each seed."""
    for seed in seeds:
        with tempfile.TemporaryDirectory() as d:
            r = Rig(Path(d) / "flash", quad=quad, rc_us=rc_us, seed=seed)
            pi = r.pulse_input(mode)
            flows = [(hz, pulses / hz)] + ([(-hz, pulses / 2 / hz)] if quad else [])
            net = run_flows(r, pi, flows, step_ms=500)
            f, v = r.truth()
            if net != f - v or (mode == "irq" and (pi.fwd, pi.rev) != (f, v)):
                return False
    return True


def max_lossless_rate(mode="irq", quad=None, rc_us=None, resolution_hz=0.5):
    """Highest pulse rate (Hz) counted without loss under the simulator's timing model (no
    light-sleep wake latency, no interpreter time: only ticks_ms granularity, the debounce
    hold-off, the bounce and the quadrature phase limit it). mode: a CONFIGS name, or "irq" /
    "counter" with quad/rc_us given. Doubling from 1 Hz to the first loss, then bisection;
    the answer is checked at eight rates below it too (lowered if one of them loses)."""
    if mode in CONFIGS and quad is None:
        mode, quad, rc_us = CONFIGS[mode]
    quad = True if quad is None else quad
    rc_us = rc_us or 0
    lo, hi = 0.0, 1.0
    while lossless_at(mode, hi, quad, rc_us):
        lo, hi = hi, hi * 2
        if hi > 4096:
            return lo
    while hi - lo > resolution_hz:
        mid = (lo + hi) / 2
        if lossless_at(mode, mid, quad, rc_us):
            lo = mid
        else:
            hi = mid
    for k in range(1, 9):
        rate = lo * k / 9
        if not lossless_at(mode, rate, quad, rc_us):
            return rate * 0.9
    return lo


@pytest.mark.parametrize("name,at_least", [("irq", 20.0), ("counter", 40.0)])
def test_max_lossless_rate_is_a_real_limit(name, at_least):
    mode, quad, rc_us = CONFIGS[name]
    rate = max_lossless_rate(name, resolution_hz=2.0)
    assert rate >= at_least, "%s counts only up to %.1f Hz" % (name, rate)
    assert lossless_at(mode, rate, quad, rc_us)
    assert not lossless_at(mode, rate * 1.5, quad, rc_us), "above it pulses are lost"


# ---- the same counts in real MicroPython -----------------------------------------------------
_MP_SCRIPT = r'''
import sys
import gc
gc.disable()
sys.path[:] = ['/sim', '/fw']
import simboard
import fake_machine
import fake_time
b = simboard.Board("w-1", {"boot_ms": 0}, "/nonexistent", seed=5)
b.ticks_offset_ms = (1 << 30) - 4000
fake_machine._attach(b)
fake_time._attach(b)
sys.modules["machine"] = fake_machine
sys.modules["time"] = fake_time
import chip_reed
FLOWS = %r
cur = [0.0]
reed = chip_reed.Reed(b, 27, lambda bb: cur[0], 0.5, dir_pin=32)
from drivers import pulse
out = []
for mode in ("irq", "counter"):
    pi = pulse.PulseInput(27, 32, mode=mode, low_power=(mode == "irq"), unit=0)
    for lps, secs in FLOWS:
        cur[0] = lps
        reed.flow_changed()
        pi.wait(int(secs * 1000))
    out.append((pi.fwd, pi.rev, pi.count(), pi.edges_seen, pi.bounces_rejected,
                reed.pulses_fwd, reed.pulses_rev))
    pi.deinit()
print(repr((out, reed.contact_edges, reed.events, b.clock.now_us)))
'''
_MP_FLOWS = [(3.0, 4.0), (-1.5, 2.5), (0.4, 3.0), (7.5, 2.0), (-0.3, 4.0)]


def test_micropython_counts_the_same(tmp_path):
    pytest.importorskip("wasmtime")
    from simulator import wasi
    from simulator.loader import NodeModules

    out, _ = wasi.run_micropython(_MP_SCRIPT % (_MP_FLOWS,),
                                  {Path(MP_DIR): "/sim", DRIVERS.parent: "/fw"},
                                  heap_bytes=16 * 1024 * 1024)
    mp = eval(out.decode().strip().splitlines()[-1])

    (tmp_path / "lib").mkdir()
    shutil.copytree(DRIVERS, tmp_path / "lib" / "drivers")
    b = simboard.Board("w-1", {"boot_ms": 0}, str(tmp_path), seed=5)
    b.ticks_offset_ms = TICKS - 4000
    mods = NodeModules(b)
    cur = [0.0]
    reed = chip_reed.Reed(b, 27, lambda bb: cur[0], 0.5, dir_pin=32)
    drv = mods._import("drivers.pulse", fromlist=("PulseInput",))
    res = []
    for mode in ("irq", "counter"):
        pi = drv.PulseInput(27, 32, mode=mode, low_power=(mode == "irq"), unit=0)
        for lps, secs in _MP_FLOWS:
            cur[0] = lps
            reed.flow_changed()
            pi.wait(int(secs * 1000))
        res.append((pi.fwd, pi.rev, pi.count(), pi.edges_seen, pi.bounces_rejected,
                    reed.pulses_fwd, reed.pulses_rev))
        pi.deinit()
    cp = (res, reed.contact_edges, reed.events, b.clock.now_us)
    assert mp == cp
    irq, ctr = res
    assert irq[:2] == irq[5:] and irq[1] > 0, "irq mode: every pulse, in its direction"
    assert ctr[2] == (ctr[5] - irq[5]) - (ctr[6] - irq[6]), "counter mode: the net"


if __name__ == "__main__":
    for cfg in CONFIGS:
        print("%-18s %6.1f Hz  highest pulse rate counted without loss under the simulator's "
              "timing model" % (cfg, max_lossless_rate(cfg)))
