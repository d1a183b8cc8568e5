"""The ultrasonic driver (firmware/lib/drivers/ultrasonic.py) against the fake JSN-SR04T /
HC-SR04 (simulator/mp/chip_ultrasonic.py) on a simulated board, in virtual time: distances
come back within a few mm at any temperature (and only because the driver corrects for it),
failed pings are None (blind zone, beyond range, unplugged, unpowered, lost echo), the supply
pin gates the sensor, and pings are never closer than the model's cycle time."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator.mp  # noqa: F401  (registers `simboard` under its bare name)
from tests.nodeenv import NodeEnv

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = ROOT / "firmware" / "lib" / "drivers"
MP_DIR = str(ROOT / "simulator" / "mp")
if MP_DIR not in sys.path:
    sys.path.append(MP_DIR)  # chips are imported by bare name, as simulator/worlds.py does
chip_ultrasonic = importlib.import_module("chip_ultrasonic")

TRIG, ECHO, PWR = 25, 34, 26  # the fill_level pins of the esp32 board profiles


class Rig:
    """One board with the fake sensor on it and the driver module as the node loads it."""

    def __init__(self, tmp: Path, model="jsn-sr04t", chip_power=None, seed=1, **scene):
        # Only the driver on the flash (lib/drivers/), whatever a node type's manifest lists.
        self.env = NodeEnv(tmp, install=False)
        (tmp / "lib" / "drivers").mkdir(parents=True)
        for name in ("__init__.py", "ultrasonic.py"):
            shutil.copyfile(DRIVERS / name, tmp / "lib" / "drivers" / name)
        self.board = self.env.board
        self.board.seed = seed
        self.scene = {"distance_mm": 1000.0, "air_c": 20.0}
        self.scene.update(scene)
        self.chip = chip_ultrasonic.Ultrasonic(self.board, TRIG, ECHO, lambda b: self.scene,
                                               model=model, power=chip_power)
        self.drv = self.env.module("drivers.ultrasonic")
        self.machine = self.env.module("machine")
        self.time = self.env.module("time")

    def sensor(self, model="jsn-sr04t", power=None, **kw):
        return self.drv.Ultrasonic(TRIG, ECHO, model, power, **kw)


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path / "flash")


# ---- distance and temperature -------------------------------------------------------------
@pytest.mark.parametrize("air_c", [-20.0, 0.0, 20.0, 35.0])
@pytest.mark.parametrize("mm", [300.0, 800.0, 1500.0, 2500.0])
def test_distance_in_distance_out(tmp_path, air_c, mm):
    r = Rig(tmp_path / "flash", distance_mm=mm, air_c=air_c)
    s = r.sensor()
    got = s.ping_mm(air_c)
    # The driver's linear speed of sound vs the chip's ideal-gas one: < 0.25 % apart here.
    assert isinstance(got, int)
    assert abs(got - mm) <= 2 + mm * 0.0025, (got, mm, air_c)


def test_temperature_correction_matters(tmp_path):
    r = Rig(tmp_path / "flash", distance_mm=2000.0, air_c=-15.0)
    s = r.sensor()
    right = s.ping_mm(-15)
    wrong = s.ping_mm(20)  # the same echo read as if the air were 20 deg C
    assert abs(right - 2000) <= 5
    assert wrong - 2000 > 100, "ignoring the temperature is off by ~7 %% at -15 deg C: %d" % wrong


def test_hc_sr04_reads_short_distances(tmp_path):
    r = Rig(tmp_path / "flash", model="hc-sr04", distance_mm=60.0)
    got = r.sensor("hc-sr04").ping_mm()
    assert got is not None and abs(got - 60) <= 2


def test_noise_stays_near_the_truth_and_varies(tmp_path):
    r = Rig(tmp_path / "flash", distance_mm=900.0, noise_mm=5.0)
    got = r.sensor().pings(20)
    assert all(v is not None and abs(v - 900) <= 40 for v in got)
    assert len(set(got)) > 3, "noise makes pings differ"


# ---- failed pings are None -------------------------------------------------------------------
@pytest.mark.parametrize("model,mm", [("jsn-sr04t", 120.0), ("jsn-sr04t", 10.0), ("hc-sr04", 8.0)])
def test_blind_zone_is_none(tmp_path, model, mm):
    r = Rig(tmp_path / "flash", model=model, distance_mm=mm)
    s = r.sensor(model)
    assert s.pings(5) == [None] * 5
    # The sensor did answer, with a short junk echo: the driver's blind zone rejected it.
    assert r.chip.last_reported_mm is not None and s.last_us > 0
    assert r.chip.pings == 5


def test_beyond_max_range_is_none(tmp_path):
    r = Rig(tmp_path / "flash", distance_mm=7000.0)
    s = r.sensor()
    assert s.ping_mm() is None
    assert r.chip.last_reported_mm is None, "no echo"
    assert s.last_us >= 60000, "the sensor's own no-echo pulse, not a distance"


def test_beyond_what_every_version_promises_is_none(tmp_path):
    # A V3 board hears 5 m; the driver accepts only the V2.0 range (to 4.5 m).
    r = Rig(tmp_path / "flash", distance_mm=5000.0)
    s = r.sensor()
    assert s.ping_mm() is None
    assert r.chip.last_reported_mm == pytest.approx(5000.0)
    r.scene["distance_mm"] = 4400.0
    assert abs(s.ping_mm() - 4400) <= 12


def test_unplugged_is_none_without_a_rising_edge(tmp_path):
    r = Rig(tmp_path / "flash", unplugged=True)
    s = r.sensor()
    t0 = r.board.clock.now_us
    assert s.ping_mm() is None
    assert s.last_us == -2
    assert r.chip.pings == 0
    assert r.board.clock.now_us - t0 >= 60000, "time_pulse_us waited its timeout"


def test_lost_echo_is_none_and_recovers(tmp_path):
    r = Rig(tmp_path / "flash", lost=1.0)
    s = r.sensor()
    assert s.pings(3) == [None] * 3
    r.scene["lost"] = 0.0
    assert abs(s.ping_mm() - 1000) <= 3


def test_lid_open_never_looks_like_a_full_bin(tmp_path):
    r = Rig(tmp_path / "flash", distance_mm=300.0, lid_open=True)
    got = r.sensor().pings(30)
    assert all(v is None or v >= 4000 for v in got)


def test_spurious_echoes_are_nearer_than_the_surface(tmp_path):
    r = Rig(tmp_path / "flash", distance_mm=1200.0, spurious=1.0)
    got = r.sensor().pings(20)
    assert all(v is None or v <= 1200 for v in got)
    assert sum(1 for v in got if v is not None and v < 1150) >= 10


def test_time_pulse_without_trigger_never_rises(rig):
    m = rig.machine
    t0 = rig.board.clock.now_us
    assert m.time_pulse_us(m.Pin(ECHO, m.Pin.IN), 1, 30000) == -2
    assert rig.board.clock.now_us - t0 == 30000


def test_a_short_trigger_starts_nothing(rig):
    m, t = rig.machine, rig.time
    trig = m.Pin(TRIG, m.Pin.OUT, value=0)
    trig.value(1)
    t.sleep_us(5)
    trig.value(0)
    assert m.time_pulse_us(m.Pin(ECHO, m.Pin.IN), 1, 70000) == -2
    assert rig.chip.short_triggers == 1 and rig.chip.pings == 0


def test_echo_pin_reads_high_during_the_pulse(rig):
    m, t = rig.machine, rig.time
    trig = m.Pin(TRIG, m.Pin.OUT, value=0)
    echo = m.Pin(ECHO, m.Pin.IN)
    trig.value(1)
    t.sleep_us(10)
    trig.value(0)
    assert echo.value() == 0
    t.sleep_us(chip_ultrasonic.BURST_US + 100)
    assert echo.value() == 1
    t.sleep_ms(10)  # 1 m at 20 deg C is ~5.8 ms of round trip
    assert echo.value() == 0


# ---- the supply pin ------------------------------------------------------------------------
def test_power_pin_gates_the_sensor(tmp_path):
    r = Rig(tmp_path / "flash", chip_power=PWR)
    s = r.sensor(power=PWR)
    assert r.board.pin_level(PWR) == 0, "the sensor stays off until the first ping"
    t0 = r.board.clock.now_us
    assert abs(s.ping_mm() - 1000) <= 3
    assert r.board.pin_level(PWR) == 1
    assert r.board.clock.now_us - t0 >= 100000, "waited the settle time"
    assert abs(s.ping_mm() - 1000) <= 3
    s.off()
    assert r.board.pin_level(PWR) == 0 and r.board.pin_level(TRIG) == 0
    assert r.chip.pings == 2


def test_nothing_answers_while_the_supply_is_off(tmp_path):
    r = Rig(tmp_path / "flash", chip_power=PWR)
    s = r.sensor()  # the driver does not know about the supply switch: it stays off
    assert s.ping_mm() is None and s.last_us == -2
    assert r.chip.pings == 0 and r.chip.ignored == 1


def test_pinging_before_the_sensor_has_booted_fails(tmp_path):
    r = Rig(tmp_path / "flash", chip_power=PWR)
    s = r.sensor(power=PWR, settle_ms=0)
    assert s.ping_mm() is None, "no settle time: the module is still booting"
    s.off()
    s2 = r.sensor(power=PWR)
    assert s2.ping_mm() is not None


def test_supply_off_mid_echo_ends_it(tmp_path):
    r = Rig(tmp_path / "flash", chip_power=PWR)
    m, t = r.machine, r.time
    pwr = m.Pin(PWR, m.Pin.OUT, value=1)
    t.sleep_ms(200)
    trig = m.Pin(TRIG, m.Pin.OUT, value=0)
    trig.value(1)
    t.sleep_us(12)
    trig.value(0)
    t.sleep_us(1000)
    assert m.Pin(ECHO, m.Pin.IN).value() == 1
    pwr.value(0)
    assert m.Pin(ECHO, m.Pin.IN).value() == 0


# ---- cycle time ------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["jsn-sr04t", "hc-sr04"])
def test_pings_respect_the_cycle_time(tmp_path, model):
    r = Rig(tmp_path / "flash", model=model, distance_mm=500.0)
    s = r.sensor(model)
    got = s.pings(6) + [s.ping_mm(), s.ping_mm()]
    assert all(v is not None and abs(v - 500) <= 3 for v in got)
    cycle_us = r.drv.MODELS[model][3] * 1000
    assert r.chip.pings == 8
    assert r.chip.min_gap_us >= cycle_us
    assert r.chip.min_gap_us <= cycle_us + 2000, "no needless waiting"
    assert r.chip.too_soon == 0


def test_cycle_time_holds_across_the_ticks_wrap(tmp_path):
    r = Rig(tmp_path / "flash", distance_mm=500.0)
    r.board.ticks_offset_ms = (1 << 30) - 150  # ticks_ms wraps during the pings
    s = r.sensor()
    assert all(v is not None for v in s.pings(5))
    assert r.chip.min_gap_us >= 70000 and r.chip.too_soon == 0


@settings(max_examples=40, deadline=None)
@given(phase_us=st.integers(0, 999), mm=st.floats(300, 3000), gap_ms=st.integers(0, 200),
       model=st.sampled_from(["jsn-sr04t", "hc-sr04"]))
def test_cycle_time_holds_at_any_phase_of_the_ms_tick(tmp_path_factory, phase_us, mm, gap_ms, model):
    # ticks_ms counts whole ms: a trigger late in one ms and an echo ending early in another
    # must not let the next ping come a fraction of a ms too soon.
    r = Rig(tmp_path_factory.mktemp("c") / "flash", model=model, distance_mm=mm)
    s = r.sensor(model)
    r.board.advance(phase_us)
    s.ping_mm()
    r.board.advance(gap_ms * 1000 + phase_us)
    s.pings(3)
    assert r.chip.too_soon == 0
    assert r.chip.min_gap_us >= r.drv.MODELS[model][3] * 1000


def test_the_fake_punishes_a_driver_that_pings_too_fast(rig):
    # Proof that the cycle-time test can fail: triggers 20 ms apart hear ghost echoes.
    m, t = rig.machine, rig.time
    trig = m.Pin(TRIG, m.Pin.OUT, value=0)
    echo = m.Pin(ECHO, m.Pin.IN)
    widths = []
    for _ in range(4):
        trig.value(1)
        t.sleep_us(10)
        trig.value(0)
        widths.append(m.time_pulse_us(echo, 1, 62000))
        t.sleep_ms(10)
    assert rig.chip.too_soon == 3 and rig.chip.min_gap_us < 60000
    assert all(w < 2000 for w in widths[1:]), "ghosts: short echoes instead of ~5.8 ms"


def test_pings_of_zero(rig):
    assert rig.sensor().pings(0) == []
    assert rig.chip.pings == 0


def test_unknown_model_is_refused(rig):
    with pytest.raises(ValueError):
        rig.sensor("srf05")


# ---- reproducible randomness -----------------------------------------------------------------
def _noisy(tmp, seed):
    r = Rig(tmp, seed=seed, distance_mm=1000.0, noise_mm=8.0, spurious=0.2, lost=0.2)
    return r.sensor().pings(25)


def test_same_seed_same_pings(tmp_path):
    a = _noisy(tmp_path / "a", 7)
    b = _noisy(tmp_path / "b", 7)
    c = _noisy(tmp_path / "c", 8)
    assert a == b
    assert a != c
    assert None in a and any(v is not None for v in a)


# ---- integer arithmetic ----------------------------------------------------------------------
@given(st.integers(0, 62000), st.integers(-400, 850))
def test_mm_from_us_matches_exact_arithmetic(tmp_path_factory, width, t10):
    drv = _drv(tmp_path_factory)
    air_c = t10 / 10
    exact = width * (331.3 + 0.606 * air_c) / 2000  # mm
    assert abs(drv.mm_from_us(width, air_c) - exact) <= 0.51


def test_integer_products_stay_small_ints(tmp_path):
    # MicroPython small ints end at 2**30: the driver's biggest products must stay below.
    drv = Rig(tmp_path / "flash").drv
    c_max = drv.sound_nm_per_us(85)
    assert 999 * c_max < 2 ** 30
    assert (62000 // 1000) * c_max < 2 ** 30
    assert drv.sound_nm_per_us(1000) == c_max, "temperatures are clamped"
    assert drv.sound_nm_per_us(None) == drv.sound_nm_per_us(float("nan")) == drv.sound_nm_per_us(20)


_DRV = {}


def _drv(factory):
    if "m" not in _DRV:
        _DRV["m"] = Rig(factory.mktemp("drv") / "flash").drv
    return _DRV["m"]


# ---- never raises, never out of bounds -------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(["jsn-sr04t", "hc-sr04"]),
       mm=st.floats(0, 8000), true_c=st.floats(-30, 50),
       told_c=st.one_of(st.none(), st.floats(allow_nan=True)),
       noise=st.floats(0, 50), spurious=st.floats(0, 1), lost=st.floats(0, 1),
       lid=st.booleans(), unplugged=st.booleans())
def test_ping_is_none_or_in_bounds(tmp_path_factory, model, mm, true_c, told_c, noise, spurious, lost,
                                   lid, unplugged):
    r = Rig(tmp_path_factory.mktemp("h") / "flash", model=model, distance_mm=mm, air_c=true_c,
            noise_mm=noise, spurious=spurious, lost=lost, lid_open=lid, unplugged=unplugged)
    s = r.sensor(model)
    lo, hi = r.drv.MODELS[model][0], r.drv.MODELS[model][1]
    for v in s.pings(3, told_c):
        assert v is None or (isinstance(v, int) and lo <= v <= hi)


@settings(max_examples=200, deadline=None)
@given(width=st.one_of(st.sampled_from([-2, -1, 0, 1]), st.integers(-5, 200000)),
       air_c=st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-1000, 1000)),
       model=st.sampled_from(["jsn-sr04t", "hc-sr04"]))
def test_any_echo_width_is_none_or_in_bounds(tmp_path_factory, width, air_c, model):
    # Whatever time_pulse_us returns (a pulse source that answers anything), no exception and
    # no number outside the model's window.
    drv = _drv(tmp_path_factory)
    board = drv.machine._board
    chip_source = board.pulse_sources[ECHO]
    board.pulse_sources[ECHO] = lambda b, level, timeout: (width, max(0, min(width, timeout)))
    try:
        s = drv.Ultrasonic(TRIG, ECHO, model)
        v = s.ping_mm(air_c)
    finally:
        board.pulse_sources[ECHO] = chip_source
    lo, hi = drv.MODELS[model][0], drv.MODELS[model][1]
    assert v is None or (isinstance(v, int) and lo <= v <= hi)
    if width <= 0:
        assert v is None


# ---- the same pings in real MicroPython ------------------------------------------------------
_MP_SCRIPT = r'''
import sys
import gc
gc.disable()
sys.path[:] = ['/sim', '/fw']
import simboard
import fake_machine
import fake_time
b = simboard.Board("w-1", {"boot_ms": 0}, "/nonexistent", seed=3)
fake_machine._attach(b)
fake_time._attach(b)
sys.modules["machine"] = fake_machine
sys.modules["time"] = fake_time
import chip_ultrasonic
scene = {"distance_mm": 1234.0, "air_c": -10.0, "noise_mm": 6.0, "spurious": 0.3, "lost": 0.2}
chip = chip_ultrasonic.Ultrasonic(b, 25, 34, lambda bb: scene, power=26)
from drivers import ultrasonic
s = ultrasonic.Ultrasonic(25, 34, "jsn-sr04t", 26)
got = s.pings(16, -10.5)
s.off()
scene["distance_mm"] = 100.0
got += s.pings(2, -10.5)
print(repr((got, chip.pings, chip.min_gap_us, chip.too_soon, b.clock.now_us)))
'''


def test_micropython_gives_the_same_pings(tmp_path):
    pytest.importorskip("wasmtime")
    from simulator import wasi
    from simulator.loader import NodeModules
    from simulator.mp import simboard

    out, _ = wasi.run_micropython(_MP_SCRIPT, {Path(MP_DIR): "/sim", DRIVERS.parent: "/fw"},
                                  heap_bytes=8 * 1024 * 1024)
    mp = eval(out.decode().strip().splitlines()[-1])

    (tmp_path / "lib").mkdir()
    shutil.copytree(DRIVERS, tmp_path / "lib" / "drivers")
    b = simboard.Board("w-1", {"boot_ms": 0}, str(tmp_path), seed=3)
    mods = NodeModules(b)
    scene = {"distance_mm": 1234.0, "air_c": -10.0, "noise_mm": 6.0, "spurious": 0.3, "lost": 0.2}
    chip = chip_ultrasonic.Ultrasonic(b, 25, 34, lambda bb: scene, power=26)
    drv = mods._import("drivers.ultrasonic", fromlist=("Ultrasonic",))
    s = drv.Ultrasonic(25, 34, "jsn-sr04t", 26)
    got = s.pings(16, -10.5)
    s.off()
    scene["distance_mm"] = 100.0
    got += s.pings(2, -10.5)
    cp = (got, chip.pings, chip.min_gap_us, chip.too_soon, b.clock.now_us)
    assert mp == cp
    assert None in got[:16] and any(v is not None and v < 1150 for v in got), "the faults showed up"
