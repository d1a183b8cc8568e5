"""The VL53L1X driver (firmware/lib/drivers/vl53l1x.py) against the register-level fake chip
(simulator/mp/chip_vl53l1x.py) on a simulated board, both run as the simulator runs them: the
driver through the node's module table (its `machine` and `time` are the fakes, in virtual
time), the chip imported by bare name as worlds import it.

Register facts the tests check independently of the driver's own constants come from ST's
VL53L1X Ultra Lite Driver (VL53L1X_api.c) and the VL53L1X datasheet."""

from __future__ import annotations

import errno
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator.mp  # noqa: F401  (registers `simboard` under its bare name)
from simulator.loader import NodeModules
from simulator.mp import simboard

ROOT = Path(__file__).resolve().parent.parent
MP_DIR = str(ROOT / "simulator" / "mp")
if MP_DIR not in sys.path:
    sys.path.append(MP_DIR)  # last, as simulator/worlds.py does: chips import by bare name

import chip_vl53l1x

DRIVER_FILES = ("drivers/__init__.py", "drivers/vl53l1x.py")

# ULD register facts (VL53L1X_api.c), spelled out here rather than taken from the driver
MODEL_ID_REG = 0x010F
BOOT_REG = 0x00E5
PHASECAL_CONFIG__TIMEOUT_MACROP = 0x004B  # 0x0A: long distance mode
RANGE_CONFIG__TIMEOUT_MACROP_A_HI = 0x005E  # 0x01CC: 100 ms in long mode
SYSTEM__INTERRUPT_CONFIG_GPIO = 0x0046  # 0x20: interrupt on a new sample
VHV_CONFIG__TIMEOUT_MACROP_LOOP_BOUND = 0x0008  # 0x09 after SensorInit
RAW_RANGE_COMPLETE = 9  # the only device status the ULD maps to 0 ("no error")


@pytest.fixture(scope="module")
def flash_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flash")
    for rel in DRIVER_FILES:
        dst = root / "lib" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "firmware" / "lib" / rel, dst)
    return root


class Rig:
    """One board, its `machine`, the driver module, and an I2C bus 0 on GPIO 22/21."""

    def __init__(self, flash_root: Path, seed: int = 1, node_id: str = "t-1"):
        self.board = simboard.Board(node_id, {"boot_ms": 0}, str(flash_root), seed=seed)
        self.mods = NodeModules(self.board)
        self.machine = self.mods._import("machine", fromlist=("__name__",))
        self.drv = self.mods._import("drivers.vl53l1x", fromlist=("__name__",))
        self.board.boot(simboard.PWRON_RESET)
        self.i2c = self.machine.I2C(0, scl=self.machine.Pin(22), sda=self.machine.Pin(21))

    def chip(self, scene, **kw):
        return chip_vl53l1x.VL53L1X(self.board, 0, scene, **kw)

    def sensor(self, **kw):
        return self.drv.VL53L1X(self.i2c, **kw)


def fixed(**scene):
    return lambda board: scene


# ---- init and ranging ----------------------------------------------------------------------------
@pytest.mark.parametrize("mm", [40, 250, 1234, 3999, 4000])
def test_init_then_ping_reports_the_distance(flash_root, mm):
    rig = Rig(flash_root)
    rig.chip(fixed(distance_mm=float(mm)))
    s = rig.sensor()
    s.init()
    assert s.ping_mm() == mm
    assert s.status == 0
    assert s.pings(4, 20) == [mm] * 4  # the node's call: (n, air temperature)


def test_init_writes_the_uld_default_configuration_and_vhv_settings(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip(fixed(distance_mm=800.0))
    rig.sensor().init()
    r = chip.regs
    assert r[PHASECAL_CONFIG__TIMEOUT_MACROP] == 0x0A
    assert (r[RANGE_CONFIG__TIMEOUT_MACROP_A_HI] << 8) | r[RANGE_CONFIG__TIMEOUT_MACROP_A_HI + 1] == 0x01CC
    assert r[SYSTEM__INTERRUPT_CONFIG_GPIO] == 0x20
    assert r[0x0030] == 0x01  # interrupt active high
    assert r[VHV_CONFIG__TIMEOUT_MACROP_LOOP_BOUND] == 0x09
    # the first-range sequence ran: one result, then ranging stopped and the interrupt cleared
    assert chip.measurements == 1
    assert chip.ranging == 0 and not chip.ready
    # FIRMWARE__SYSTEM_STATUS: booted (bit 0) and a range done (bit 1)
    assert rig.i2c.readfrom_mem(0x29, BOOT_REG, 1, addrsize=16) == b"\x03"


def test_results_come_once_per_timing_budget_and_follow_the_scene(flash_root):
    rig = Rig(flash_root)
    scene = {"distance_mm": 900.0}
    chip = rig.chip(lambda board: scene)
    s = rig.sensor()
    s.init()
    t0 = rig.board.clock.now_us
    got = []
    for d in (900.0, 850.0, 600.0, 1500.0):
        scene["distance_mm"] = d
        got.append(s.ping_mm())
    assert got == [900, 850, 600, 1500]
    # four fresh results at 100 ms each (default long mode budget): no result read twice
    assert chip.measurements == 1 + 4
    assert rig.board.clock.now_us - t0 >= 4 * 100_000


def test_off_stops_ranging_and_the_next_ping_restarts_it(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip(fixed(distance_mm=700.0))
    s = rig.sensor()
    s.init()
    assert s.ping_mm() == 700
    assert chip.ranging
    s.off()
    assert chip.ranging == 0
    n = chip.measurements
    rig.board.advance(5_000_000)
    rig.i2c.readfrom_mem(0x29, 0x0031, 1, addrsize=16)  # the chip looks at the time
    assert chip.measurements == n  # nothing ranged while off
    assert s.ping_mm() == 700
    assert chip.measurements == n + 1


def test_ping_gives_none_when_no_result_arrives_in_time(flash_root):
    rig = Rig(flash_root)
    rig.chip(fixed(distance_mm=700.0))
    s = rig.sensor()
    s.init()
    assert s.ping_mm(timeout_ms=30) is None  # a result takes the 100 ms timing budget
    assert s.status == 255
    assert s.ping_mm() == 700  # ranging went on: the next one arrives


def test_slow_boot_is_waited_for(flash_root):
    rig = Rig(flash_root)
    rig.chip(fixed(distance_mm=300.0), boot_us=80_000)
    s = rig.sensor()
    s.init()
    assert rig.board.clock.now_us >= 80_000
    assert s.ping_mm() == 300


# ---- errors at init ------------------------------------------------------------------------------
def test_wrong_model_id_raises_a_clear_error(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip(fixed(distance_mm=300.0))
    chip.regs[MODEL_ID_REG] = 0xEE
    chip.regs[MODEL_ID_REG + 1] = 0xAA
    with pytest.raises(ValueError) as e:
        rig.sensor().init()
    assert "0xeeaa" in str(e.value) and "0xeacc" in str(e.value)
    assert chip.regs[PHASECAL_CONFIG__TIMEOUT_MACROP] == 0  # nothing was configured


def test_wrong_chip_that_never_boots_still_names_its_id(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip(fixed(distance_mm=300.0), boot_us=None)
    chip.regs[MODEL_ID_REG] = 0x12
    chip.regs[MODEL_ID_REG + 1] = 0x34
    with pytest.raises(ValueError, match="0x1234"):
        rig.sensor().init()


def test_missing_chip_raises_enodev(flash_root):
    rig = Rig(flash_root)
    s = rig.sensor()
    with pytest.raises(OSError) as e:
        s.init()
    assert e.value.errno == errno.ENODEV


def test_chip_at_another_address_is_missing_at_the_default_one(flash_root):
    rig = Rig(flash_root)
    rig.chip(fixed(distance_mm=500.0), addr=0x30)
    with pytest.raises(OSError) as e:
        rig.sensor().init()
    assert e.value.errno == errno.ENODEV
    s = rig.sensor(addr=0x30)
    s.init()
    assert s.ping_mm() == 500


def test_chip_that_never_boots_times_out(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip(fixed(distance_mm=300.0), boot_us=None)
    with pytest.raises(OSError) as e:
        rig.sensor().init()
    assert e.value.errno == errno.ETIMEDOUT
    assert chip.regs[PHASECAL_CONFIG__TIMEOUT_MACROP] == 0  # no config written to a dead chip


def test_unplugged_chip_raises_enodev_and_comes_back_after_replug(flash_root):
    rig = Rig(flash_root)
    scene = {"distance_mm": 640.0}
    chip = rig.chip(lambda board: scene)
    s = rig.sensor()
    s.init()
    assert s.ping_mm() == 640
    scene["unplugged"] = True
    with pytest.raises(OSError) as e:
        s.ping_mm()
    assert e.value.errno == errno.ENODEV
    scene["unplugged"] = False
    # plugged back in: a fresh power-up, booting, with the configuration gone until init()
    assert rig.i2c.readfrom_mem(0x29, BOOT_REG, 1, addrsize=16) == b"\x00"
    assert chip.regs[PHASECAL_CONFIG__TIMEOUT_MACROP] == 0
    s2 = rig.sensor()
    s2.init()
    assert chip.regs[PHASECAL_CONFIG__TIMEOUT_MACROP] == 0x0A
    assert s2.ping_mm() == 640


# ---- range status --------------------------------------------------------------------------------
@pytest.mark.parametrize("scene, uld_status", [
    ({"distance_mm": 900.0, "lost": 1.0}, 2),  # signal fail
    ({"distance_mm": 900.0, "lid_open": True}, 4),  # out of bounds
    ({"distance_mm": 5200.0}, 2),  # beyond 4 m: no target
    ({"distance_mm": 15.0}, 3),  # nearer than 4 cm: min range clipped
    ({"distance_mm": 900.0, "max_mm": 600}, 2),  # bright light shortens the range
])
def test_invalid_range_status_gives_none(flash_root, scene, uld_status):
    rig = Rig(flash_root)
    rig.chip(fixed(**scene))
    s = rig.sensor()
    s.init()
    assert s.ping_mm() is None
    assert s.status == uld_status


@pytest.mark.parametrize("raw", range(32))
def test_only_the_range_complete_device_status_gives_a_distance(flash_root, raw):
    rig = Rig(flash_root)
    chip = rig.chip(fixed(distance_mm=1000.0))
    s = rig.sensor()
    s.init()
    chip._measure = lambda sc: (raw, 1000)  # the device reports this status with 1000 mm
    got = s.ping_mm()
    if raw == RAW_RANGE_COMPLETE:
        assert got == 1000 and s.status == 0
    else:
        assert got is None and s.status != 0


def test_uld_status_table(flash_root):
    rig = Rig(flash_root)
    rs = rig.drv.range_status
    # VL53L1X_api.c status_rtn: raw 4 -> signal fail 2, 5 -> out of bounds 4, 6 -> sigma fail 1,
    # 7 -> wrap-around 7, 8 -> min range clipped 3, 9 -> valid 0; the high bits are ignored.
    assert [rs(r) for r in (4, 5, 6, 7, 8, 9)] == [2, 4, 1, 7, 3, 0]
    assert rs(0xE9) == 0
    assert rs(24) == 255 and rs(0) == 255


def test_lost_and_spurious_readings_follow_their_probabilities(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip(fixed(distance_mm=2000.0, lost=0.3, spurious=0.2))
    s = rig.sensor()
    s.init()
    got = s.pings(200)
    nones = sum(1 for g in got if g is None)
    short = sum(1 for g in got if g is not None and g < 2000)
    exact = sum(1 for g in got if g == 2000)
    assert nones + short + exact == 200
    assert 35 <= nones <= 85  # ~60 expected
    assert 20 <= short <= 65  # ~40 expected, each between 4 cm and the truth
    assert all(40 <= g <= 2000 for g in got if g is not None)
    assert chip.measurements >= 200


# ---- determinism and noise -----------------------------------------------------------------------
def _noisy_run(flash_root, seed, node_id="t-1"):
    rig = Rig(flash_root, seed=seed, node_id=node_id)
    rig.chip(fixed(distance_mm=1500.0, noise_mm=25.0))
    s = rig.sensor()
    s.init()
    return s.pings(40)


def test_same_seed_same_readings_and_noise_is_centred(flash_root):
    a = _noisy_run(flash_root, 7)
    assert a == _noisy_run(flash_root, 7)
    assert a != _noisy_run(flash_root, 8)
    assert a != _noisy_run(flash_root, 7, node_id="t-2")
    assert all(g is not None for g in a)
    assert len(set(a)) > 10  # noisy
    mean = sum(a) / len(a)
    assert 1480 <= mean <= 1520
    assert all(1350 <= g <= 1650 for g in a)  # 6 sigma: the Irwin-Hall sum is bounded there


# ---- the chip follows the board's power ----------------------------------------------------------
def test_power_cut_resets_the_chip_but_deep_sleep_does_not(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip(fixed(distance_mm=500.0))
    rig.sensor().init()
    assert chip.regs[PHASECAL_CONFIG__TIMEOUT_MACROP] == 0x0A
    rig.board.boot(simboard.DEEPSLEEP_RESET)
    assert chip.regs[PHASECAL_CONFIG__TIMEOUT_MACROP] == 0x0A  # the sensor stayed powered
    rig.board.boot(simboard.PWRON_RESET)
    assert chip.regs[PHASECAL_CONFIG__TIMEOUT_MACROP] == 0
    assert rig.i2c.readfrom_mem(0x29, BOOT_REG, 1, addrsize=16) == b"\x00"  # booting again
    rig.board.advance(2_000)
    assert rig.i2c.readfrom_mem(0x29, BOOT_REG, 1, addrsize=16) == b"\x01"
    assert rig.i2c.readfrom_mem(0x29, MODEL_ID_REG, 2, addrsize=16) == b"\xea\xcc"


# ---- property tests: nothing but the documented errors ------------------------------------------
class Garbage:
    """An I2C device whose every read returns bytes hypothesis chooses; writes are accepted."""

    def __init__(self, data):
        self.data = data

    def i2c_write(self, board, data):
        pass

    def i2c_read(self, board, n):
        return self.data.draw(st.binary(min_size=n, max_size=n))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_arbitrary_register_contents_never_break_the_driver(flash_root, data):
    rig = Rig(flash_root)
    rig.board.i2c_devices[0] = {0x29: Garbage(data)}
    s = rig.sensor()
    try:
        s.init(boot_timeout_ms=20)
    except (ValueError, OSError):
        pass
    for _ in range(3):
        got = s.ping_mm(timeout_ms=20)
        assert got is None or (isinstance(got, int) and 0 <= got <= 4000)
    assert all(g is None or 0 <= g <= 4000 for g in s.pings(2, 20, timeout_ms=20))


scenes = st.fixed_dictionaries(
    {"distance_mm": st.floats(min_value=-1e4, max_value=1e6, allow_nan=False)},
    optional={
        "noise_mm": st.floats(min_value=0, max_value=3000),
        "spurious": st.floats(min_value=0, max_value=1),
        "lost": st.floats(min_value=0, max_value=1),
        "lid_open": st.booleans(),
        "max_mm": st.integers(min_value=0, max_value=70000),
    })


@settings(max_examples=60, deadline=None)
@given(scenes, st.integers(min_value=0, max_value=2**31))
def test_arbitrary_scenes_give_none_or_a_distance_within_range(flash_root, scene, seed):
    rig = Rig(flash_root, seed=seed)
    rig.chip(fixed(**scene))
    s = rig.sensor()
    s.init()
    for got in s.pings(5):
        assert got is None or (isinstance(got, int) and 0 <= got <= 4000)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=40, max_value=4000))
def test_distance_in_distance_out(flash_root, mm):
    rig = Rig(flash_root)
    rig.chip(fixed(distance_mm=float(mm)))
    s = rig.sensor()
    s.init()
    assert s.ping_mm() == mm


# ---- the same in real MicroPython -----------------------------------------------------------------
WASI_SCRIPT = r'''
import sys
sys.path[:] = ['/sim']
import simboard
board = simboard.Board("t-1", {"boot_ms": 0}, "/flash", seed=7)
for name, mod in (("machine", "fake_machine"), ("time", "fake_time"), ("micropython", "fake_micropython")):
    m = __import__(mod)
    m._attach(board)
    sys.modules[name] = m
board.boot(simboard.PWRON_RESET)
sys.path[:] = ["/flash", "/flash/lib", "/sim"]
import machine
import chip_vl53l1x
from drivers import vl53l1x
i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
chip_vl53l1x.VL53L1X(board, 0, lambda b: {"distance_mm": 1500.0, "noise_mm": 25.0, "lost": 0.1})
s = vl53l1x.VL53L1X(i2c)
s.init()
print("PINGS", s.pings(12), board.clock.now_us)
other = chip_vl53l1x.VL53L1X(board, 0, lambda b: {"distance_mm": 1.0}, addr=0x31)
other.regs[0x10F] = 0x11
try:
    vl53l1x.VL53L1X(i2c, 0x31).init()
except ValueError as e:
    print("WRONG", e)
'''


def test_driver_and_chip_run_the_same_in_micropython(flash_root):
    from simulator import wasi
    from simulator.loader import MP_DIR as SIM_DIR

    out, _ = wasi.run_micropython(WASI_SCRIPT, {str(flash_root): "/flash", str(SIM_DIR): "/sim"},
                                  heap_bytes=8 * 1024 * 1024)
    lines = out.decode().splitlines()
    rig = Rig(flash_root, seed=7)
    rig.chip(fixed(distance_mm=1500.0, noise_mm=25.0, lost=0.1))
    s = rig.sensor()
    s.init()
    want = "PINGS %s %d" % (s.pings(12), rig.board.clock.now_us)
    assert lines[0] == want
    assert lines[1] == "WRONG not a VL53L1X at 0x31: model id 0x11cc, expected 0xeacc"
