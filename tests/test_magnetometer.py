"""The QMC5883L and HMC5883L drivers (firmware/lib/drivers/qmc5883l.py, hmc5883l.py) and the
register-level fake magnetometers (simulator/mp/chip_magnetometer.py) on a simulated board, in
virtual time: the driver through the node's module table (its `machine` and `time` are the
fakes), the chip imported by bare name as worlds import it.

Register facts the tests check at register level are spelled out here from the datasheets
(QMC5883L datasheet §9; HMC5883L datasheet register tables), not taken from the drivers."""

from __future__ import annotations

import errno
import math
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

import chip_magnetometer

DRIVER_FILES = ("drivers/__init__.py", "drivers/qmc5883l.py", "drivers/hmc5883l.py")
QMC, HMC = "qmc5883l", "hmc5883l"

# QMC5883L datasheet §9 (chip id: Rev. B)
QMC_ADDR = 0x0D
QMC_STATUS = 0x06  # DRDY bit 0, OVL bit 1, DOR bit 2
QMC_CTRL1 = 0x09
QMC_CTRL2 = 0x0A  # SOFT_RST bit 7, ROL_PNT bit 6
QMC_LSB = {2: 12000, 8: 3000}  # LSB per gauss
# HMC5883L datasheet
HMC_ADDR = 0x1E
HMC_CRB = 0x01
HMC_MODE = 0x02
HMC_DATA = 0x03  # X MSB, X LSB, Z MSB, Z LSB, Y MSB, Y LSB
HMC_STATUS = 0x09  # RDY bit 0, LOCK bit 1
HMC_GAIN = {0.88: 1370, 1.3: 1090, 1.9: 820, 2.5: 660, 4.0: 440, 4.7: 390, 5.6: 330, 8.1: 230}


@pytest.fixture(scope="module")
def flash_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flash")
    for rel in DRIVER_FILES:
        dst = root / "lib" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "firmware" / "lib" / rel, dst)
    return root


class Rig:
    """One board, its `machine` and `time`, both driver modules, an I2C bus 0 on GPIO 22/21,
    and a field the tests set (uT)."""

    def __init__(self, flash_root: Path, seed: int = 1):
        self.board = simboard.Board("t-1", {"boot_ms": 0}, str(flash_root), seed=seed)
        self.mods = NodeModules(self.board)
        self.machine = self.mods._import("machine", fromlist=("__name__",))
        self.time = self.mods._import("time", fromlist=("__name__",))
        self.qmc = self.mods._import("drivers.qmc5883l", fromlist=("__name__",))
        self.hmc = self.mods._import("drivers.hmc5883l", fromlist=("__name__",))
        self.board.boot(simboard.PWRON_RESET)
        self.i2c = self.machine.I2C(0, scl=self.machine.Pin(22), sda=self.machine.Pin(21))
        self.b = (20.0, -5.0, 43.0)
        self.fn = None  # a field function of time, when set

    def field(self, board, t_us):
        return self.fn(t_us) if self.fn else self.b

    def chip(self, kind=QMC, **kw):
        kw.setdefault("noise_ut", 0.0)
        return chip_magnetometer.Magnetometer(self.board, 0, self.field, kind=kind, **kw)

    def sensor(self, kind=QMC, **kw):
        return (self.qmc.QMC5883L if kind == QMC else self.hmc.HMC5883L)(self.i2c, **kw)

    def reg(self, addr, reg, n=1):
        return self.i2c.readfrom_mem(addr, reg, n)

    def now(self):
        return self.board.clock.now_us

    def poll(self, s, seconds, every_ms=1, chip=None):
        """Poll ready() every `every_ms` for `seconds` of virtual time; read each sample.
        Returns [(ok, (x, y, z), sample time or None)]."""
        got = []
        buf = [0, 0, 0]
        end = self.now() + int(seconds * 1e6)
        while self.now() < end:
            if s.ready():
                ok = s.read_into(buf)
                got.append((ok, tuple(buf), chip.last_t_us if chip else None))
            else:
                self.time.sleep_ms(every_ms)
        return got


@pytest.fixture
def rig(flash_root):
    return Rig(flash_root)


def first_sample(rig, s, timeout_s=3.0):
    buf = [0, 0, 0]
    end = rig.now() + int(timeout_s * 1e6)
    while not s.ready():
        assert rig.now() < end, "no data ready"
        rig.time.sleep_ms(1)
    ok = s.read_into(buf)
    return ok, tuple(buf)


def s16(lo, hi):
    v = lo | (hi << 8)
    return v - 65536 if v & 0x8000 else v


# ---- a known field comes back within quantisation ------------------------------------------------
FIELDS = [(20.0, -5.0, 43.0), (0.0, 0.0, 0.0), (-48.7, 12.3, -0.4), (150.0, -150.0, 99.9)]


@pytest.mark.parametrize("range_g", [2, 8])
@pytest.mark.parametrize("b", FIELDS)
def test_qmc_reads_the_field(flash_root, range_g, b):
    r = Rig(flash_root)
    r.b = b
    r.chip(QMC)
    s = r.sensor(QMC, range_g=range_g)
    s.init()
    ok, raw = first_sample(r, s)
    assert ok
    lsb = QMC_LSB[range_g]
    assert s.lsb_per_g == lsb
    for got, want in zip(raw, b):
        assert isinstance(got, int)
        assert abs(got * 100.0 / lsb - want) <= 0.5 * 100.0 / lsb + 1e-9, (raw, b)


@pytest.mark.parametrize("range_g", sorted(HMC_GAIN))
@pytest.mark.parametrize("b", [(20.0, -5.0, 43.0), (-8.8, 60.1, -30.0), (0.0, 0.0, 0.0)])
def test_hmc_reads_the_field(flash_root, range_g, b):
    r = Rig(flash_root)
    r.b = b
    r.chip(HMC)
    s = r.sensor(HMC, range_g=range_g)
    s.init()
    ok, raw = first_sample(r, s)
    assert ok
    lsb = HMC_GAIN[range_g]
    assert s.lsb_per_g == lsb
    for got, want in zip(raw, b):
        assert abs(got * 100.0 / lsb - want) <= 0.5 * 100.0 / lsb + 1e-9, (raw, b, range_g)


@pytest.mark.parametrize("asked,used", [(0.5, 0.88), (1, 1.3), (2, 2.5), (8, 8.1), (4.0, 4.0)])
def test_hmc_range_is_the_smallest_that_covers_it(rig, asked, used):
    s = rig.sensor(HMC, range_g=asked)
    assert s.range_g == used and s.lsb_per_g == HMC_GAIN[used]


def test_noise_averages_out_and_varies(flash_root):
    r = Rig(flash_root)
    r.b = (20.0, -5.0, 43.0)
    r.chip(QMC, noise_ut=0.5)
    s = r.sensor(QMC, range_g=2)
    s.init()
    got = r.poll(s, 1.0)
    assert len(got) >= 99
    xs = [g[1][0] * 100.0 / 12000 for g in got]
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
    assert abs(mean - 20.0) < 0.2
    assert 0.3 < sd < 0.7, sd
    assert len(set(xs)) > 20


def test_hmc_registers_hold_x_z_y_msb_first(rig):
    # Register level, against the datasheet: 0x03-0x08 = X, Z, Y, each MSB first.
    rig.b = (10.0, -20.0, 30.0)  # 109, -218, 327 counts at the default 1090 LSB/G
    rig.chip(HMC)
    rig.i2c.writeto_mem(HMC_ADDR, HMC_MODE, b"\x00")
    rig.time.sleep_ms(140)  # the default 15 Hz: the first set 2/fDO = 133 ms later
    assert rig.reg(HMC_ADDR, HMC_STATUS)[0] & 1, "RDY"
    d = rig.reg(HMC_ADDR, HMC_DATA, 6)
    words = [((d[i] << 8) | d[i + 1]) for i in (0, 2, 4)]
    words = [w - 65536 if w & 0x8000 else w for w in words]
    assert words == [109, 327, -218]  # X, Z, Y
    s = rig.sensor(HMC)
    s.init()
    assert first_sample(rig, s) == (True, (109, -218, 327))


def test_qmc_registers_hold_x_y_z_lsb_first(rig):
    rig.b = (10.0, -20.0, 30.0)  # 300, -600, 900 counts at 8 G (3000 LSB/G)
    rig.chip(QMC)
    rig.i2c.writeto_mem(QMC_ADDR, QMC_CTRL1, b"\x11")  # 8 G, 10 Hz, continuous
    rig.time.sleep_ms(120)
    d = rig.reg(QMC_ADDR, 0x00, 7)
    assert [s16(d[0], d[1]), s16(d[2], d[3]), s16(d[4], d[5])] == [300, -600, 900]
    assert d[6] & 1 == 0, "reading the data registers cleared DRDY"


# ---- identification -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [QMC, HMC])
def test_missing_chip_is_an_oserror_from_the_bus(rig, kind):
    with pytest.raises(OSError) as e:
        rig.sensor(kind).init()
    assert e.value.errno == errno.ENODEV


def test_qmc_wrong_id_is_a_value_error(rig):
    rig.chip(HMC, addr=QMC_ADDR)  # something else answering at 0x0D: its 0x0D reads 0
    with pytest.raises(ValueError, match="not a QMC5883L at 0x0d: chip id 0x00, expected 0xff"):
        rig.sensor(QMC).init()


def test_hmc_wrong_id_is_a_value_error(rig):
    rig.chip(QMC, addr=HMC_ADDR)
    with pytest.raises(ValueError, match="not an HMC5883L at 0x1e"):
        rig.sensor(HMC).init()


def test_ids_at_register_level(rig):
    rig.chip(QMC)
    rig.chip(HMC)
    assert rig.reg(QMC_ADDR, 0x0D) == b"\xff"
    assert rig.reg(HMC_ADDR, 0x0A, 3) == b"H43"


@pytest.mark.parametrize("kind", [QMC, HMC])
def test_unplugged_is_an_oserror_and_plugging_back_needs_init(rig, kind):
    chip = rig.chip(kind)
    s = rig.sensor(kind)
    s.init()
    assert first_sample(rig, s)[0]
    chip.unplugged = True
    with pytest.raises(OSError) as e:
        s.ready()
    assert e.value.errno == errno.ENODEV
    chip.unplugged = False
    rig.time.sleep_ms(200)
    if kind == QMC:
        assert not s.ready(), "powered up afresh: standby until configured"
    s.init()
    assert first_sample(rig, s)[0]


def test_power_cut_puts_the_qmc_back_in_standby(rig):
    chip = rig.chip(QMC)
    s = rig.sensor(QMC)
    s.init()
    assert first_sample(rig, s)[0]
    rig.board.boot(simboard.PWRON_RESET)
    rig.time.sleep_ms(100)
    assert not s.ready()
    assert rig.reg(QMC_ADDR, QMC_CTRL1) == b"\x00"
    n = chip.samples_made
    rig.time.sleep_ms(100)
    s.ready()
    assert chip.samples_made == n


@pytest.mark.parametrize("kind,kw", [(QMC, {"odr_hz": 75}), (QMC, {"range_g": 4}), (QMC, {"osr": 100}),
                                     (HMC, {"odr_hz": 100}), (HMC, {"range_g": 9}), (HMC, {"avg": 3})])
def test_bad_settings_are_refused(rig, kind, kw):
    with pytest.raises(ValueError):
        rig.sensor(kind, **kw)


def test_hmc_refusal_says_75_hz_is_the_most(rig):
    with pytest.raises(ValueError, match="75 Hz"):
        rig.sensor(HMC, odr_hz=100)


# ---- overflow -------------------------------------------------------------------------------------------
def test_qmc_overflow_saturates_and_is_reported(rig):
    chip = rig.chip(QMC)
    s = rig.sensor(QMC, range_g=2)
    s.init()
    rig.b = (300.0, -5.0, 0.0)  # 3 G: 36000 counts at 12000 LSB/G, beyond the 16-bit output
    assert first_sample(rig, s) == (False, (32767, -600, 0))
    assert s.overflow == 1 and chip.overflows == 1
    assert rig.reg(QMC_ADDR, QMC_STATUS)[0] & 2, "OVL stays with the data"
    rig.b = (-300.0, 0.0, 0.0)
    assert first_sample(rig, s) == (False, (-32768, 0, 0))
    rig.b = (100.0, 0.0, 0.0)
    assert first_sample(rig, s) == (True, (12000, 0, 0)), "OVL clears with the next measurement"
    assert s.overflow == 2


def test_qmc_8g_holds_what_2g_cannot(rig):
    rig.chip(QMC)
    s = rig.sensor(QMC, range_g=8)
    s.init()
    rig.b = (300.0, -5.0, 0.0)
    assert first_sample(rig, s) == (True, (9000, -150, 0))


def test_hmc_overflow_reads_minus_4096(rig):
    chip = rig.chip(HMC)
    s = rig.sensor(HMC)  # 1.3 G: 1090 LSB/G, output -2048..2047
    s.init()
    rig.b = (10.0, 190.0, 0.0)  # y: 2071 counts
    assert first_sample(rig, s) == (False, (109, -4096, 0))
    assert s.overflow == 1 and chip.overflows == 1
    rig.b = (10.0, 180.0, 0.0)  # 1962 counts: back in range
    assert first_sample(rig, s) == (True, (109, 1962, 0))


# ---- data ready, output data rate, overruns -------------------------------------------------------
@pytest.mark.parametrize("kind,odr", [(QMC, 10), (QMC, 50), (QMC, 100), (QMC, 200), (HMC, 15), (HMC, 30), (HMC, 75)])
def test_polling_fast_enough_reads_every_sample_once(flash_root, kind, odr):
    r = Rig(flash_root)
    chip = r.chip(kind)
    s = r.sensor(kind, odr_hz=odr)
    s.init()
    first_sample(r, s)
    seconds = 3
    got = r.poll(s, seconds, every_ms=1, chip=chip)
    # exactly ODR samples per second, each read once, none missed
    assert abs(len(got) - odr * seconds) <= 1, len(got)
    times = [g[2] for g in got]
    gaps = {b - a for a, b in zip(times, times[1:])}
    period = 1e6 / odr
    assert all(abs(g - period) <= 1 for g in gaps), gaps
    assert chip.overruns == 0 and s.skipped == 0
    assert chip.samples_read == chip.samples_made or chip.samples_read == chip.samples_made - 1
    assert all(ok for ok, _, _ in got)


def test_qmc_polled_too_slowly_counts_overruns(flash_root):
    r = Rig(flash_root)
    chip = r.chip(QMC)
    s = r.sensor(QMC, odr_hz=100)
    s.init()
    got = r.poll(s, 2.0, every_ms=25, chip=chip)
    assert 60 <= len(got) <= 90  # one read per 25-26 ms poll
    assert chip.overruns >= chip.samples_made - chip.samples_read - 1 > 100
    # DOR at every read but the few that come right after one (a sample landed meanwhile)
    assert s.skipped >= len(got) - 5
    # each read still returns the latest sample: the field moves on, the reads follow it
    r.fn = lambda t: (t / 1e5, 0.0, 0.0)
    _, raw = first_sample(r, s)
    assert abs(raw[0] * 100.0 / 3000 - chip.last_t_us / 1e5) < 0.05


def test_skipped_counts_once_per_unread_sample(rig):
    rig.chip(QMC)
    s = rig.sensor(QMC, odr_hz=100)
    s.init()
    rig.time.sleep_ms(35)  # three samples, two replaced unread
    assert s.ready() and s.ready() and s.ready()
    assert s.skipped == 1
    s.read_into([0, 0, 0])
    assert not s.ready() and s.skipped == 1


def test_hmc_polled_too_slowly_loses_samples_unseen(flash_root):
    r = Rig(flash_root)
    chip = r.chip(HMC)
    s = r.sensor(HMC, odr_hz=75)
    s.init()
    got = r.poll(s, 2.0, every_ms=30, chip=chip)
    assert len(got) < 75
    assert chip.overruns > 60
    assert s.skipped == 0, "the HMC5883L has no overrun flag"


def test_fast_clock_gives_more_samples_and_the_driver_keeps_up(flash_root):
    r = Rig(flash_root)
    chip = r.chip(QMC, clock_ppm=20000)  # 2 % fast
    s = r.sensor(QMC, odr_hz=50)
    s.init()
    got = r.poll(s, 5.0, chip=chip)
    assert abs(len(got) - 255) <= 1
    assert chip.overruns == 0


# ---- register-level behaviour of the fake, against the datasheets ---------------------------------
def test_qmc_drdy_and_dor_clear_on_a_data_read(rig):
    rig.chip(QMC)
    rig.i2c.writeto_mem(QMC_ADDR, QMC_CTRL1, b"\x19")  # 8 G, 100 Hz, continuous
    assert rig.reg(QMC_ADDR, QMC_STATUS)[0] == 0
    rig.time.sleep_ms(25)  # two samples: the first replaced unread
    assert rig.reg(QMC_ADDR, QMC_STATUS)[0] == 0b101  # DOR | DRDY
    rig.reg(QMC_ADDR, 0x04)  # any data register
    assert rig.reg(QMC_ADDR, QMC_STATUS)[0] == 0


def test_qmc_soft_reset_restores_defaults(rig):
    chip = rig.chip(QMC)
    rig.i2c.writeto_mem(QMC_ADDR, QMC_CTRL1, b"\x1d")
    rig.i2c.writeto_mem(QMC_ADDR, 0x0B, b"\x01")
    rig.i2c.writeto_mem(QMC_ADDR, QMC_CTRL2, b"\x80")
    assert rig.reg(QMC_ADDR, QMC_CTRL1, 3) == b"\x00\x00\x00"
    assert rig.reg(QMC_ADDR, 0x0D) == b"\xff"
    assert chip.soft_resets == 1
    rig.time.sleep_ms(100)
    assert rig.reg(QMC_ADDR, QMC_STATUS)[0] == 0, "standby: no samples"


def test_qmc_pointer_roll_over(rig):
    rig.b = (10.0, 0.0, 0.0)  # X = 300 = 0x012c
    rig.chip(QMC, temp_c=25.0)  # temperature 2500 = 0x09c4
    rig.i2c.writeto_mem(QMC_ADDR, QMC_CTRL1, b"\x19")
    rig.time.sleep_ms(15)
    d = rig.reg(QMC_ADDR, 0x00, 8)
    assert d[0:2] == b"\x2c\x01" and d[7] == 0xC4, "no roll-over: on to 0x07"
    rig.i2c.writeto_mem(QMC_ADDR, QMC_CTRL2, b"\x40")  # ROL_PNT
    d = rig.reg(QMC_ADDR, 0x00, 9)
    assert d[0:2] == b"\x2c\x01" and d[7:9] == b"\x2c\x01", "rolls from 0x06 back to 0x00"


def test_qmc_temperature(rig):
    chip = rig.chip(QMC, temp_c=31.5)
    s = rig.sensor(QMC)
    s.init()
    first_sample(rig, s)
    assert s.temperature_raw() == 3150
    chip.temp_c = -12.25
    first_sample(rig, s)
    assert s.temperature_raw() == -1225
    assert rig.sensor(HMC).temperature_raw() is None


def test_hmc_first_set_after_two_periods(rig):
    rig.chip(HMC)
    rig.i2c.writeto_mem(HMC_ADDR, 0x00, b"\x18")  # 75 Hz
    rig.reg(HMC_ADDR, HMC_DATA, 6)  # the power-up single measurement, read away
    rig.i2c.writeto_mem(HMC_ADDR, HMC_MODE, b"\x00")
    t0 = rig.now()
    while not rig.reg(HMC_ADDR, HMC_STATUS)[0] & 1:
        rig.time.sleep_us(100)
    assert abs((rig.now() - t0) - 2e6 / 75) < 400  # 2/fDO, to within the polling


def test_hmc_power_up_single_measurement_then_idle(rig):
    chip = rig.chip(HMC)
    assert rig.reg(HMC_ADDR, HMC_STATUS)[0] & 1 == 0
    rig.time.sleep_ms(10)
    assert rig.reg(HMC_ADDR, HMC_STATUS)[0] & 1 == 1
    assert chip.samples_made == 1
    rig.time.sleep_ms(500)
    assert chip.samples_made == 1, "idle after the single measurement"


def test_hmc_lock_holds_new_data_until_all_six_are_read(rig):
    chip = rig.chip(HMC)
    rig.i2c.writeto_mem(HMC_ADDR, 0x00, b"\x18")
    rig.i2c.writeto_mem(HMC_ADDR, HMC_MODE, b"\x00")
    rig.reg(HMC_ADDR, HMC_DATA, 6)
    rig.time.sleep_ms(30)
    rig.b = (1.0, 2.0, 3.0)
    rig.reg(HMC_ADDR, HMC_DATA, 2)  # X only
    assert rig.reg(HMC_ADDR, HMC_STATUS)[0] & 2, "LOCK"
    made, lost = chip.samples_made, chip.overruns
    rig.time.sleep_ms(60)
    rig.reg(HMC_ADDR, HMC_STATUS)
    assert chip.samples_made > made and chip.overruns - lost == chip.samples_made - made
    rig.reg(HMC_ADDR, 0x05, 4)  # Z and Y: all six read
    assert rig.reg(HMC_ADDR, HMC_STATUS)[0] == 0
    rig.time.sleep_ms(15)
    d = rig.reg(HMC_ADDR, HMC_DATA, 6)
    assert (d[0] << 8 | d[1]) == 11, "new data placed again (1 uT = 10.9 counts)"


def test_hmc_pointer_rolls_back_to_x(rig):
    rig.chip(HMC)
    rig.time.sleep_ms(10)
    d = rig.reg(HMC_ADDR, HMC_DATA, 8)
    assert d[6:8] == d[0:2], "from 0x08 back to 0x03"
    assert rig.reg(HMC_ADDR, 0x0C, 2) == b"3\x10", "from 0x0C to 0x00 (CRA default 0x10)"


def test_hmc_first_set_after_a_gain_change_has_the_old_gain(rig):
    rig.b = (10.0, 0.0, 0.0)
    rig.chip(HMC)
    rig.i2c.writeto_mem(HMC_ADDR, 0x00, b"\x18")
    rig.i2c.writeto_mem(HMC_ADDR, HMC_MODE, b"\x00")
    rig.time.sleep_ms(30)
    d = rig.reg(HMC_ADDR, HMC_DATA, 6)
    assert (d[0] << 8 | d[1]) == 109  # 1090 LSB/G
    rig.i2c.writeto_mem(HMC_ADDR, HMC_CRB, b"\xe0")  # 230 LSB/G
    seen = []
    for _ in range(3):
        while not rig.reg(HMC_ADDR, HMC_STATUS)[0] & 1:
            rig.time.sleep_ms(1)
        d = rig.reg(HMC_ADDR, HMC_DATA, 6)
        seen.append(d[0] << 8 | d[1])
    assert seen == [109, 23, 23]


# ---- reproducible noise ----------------------------------------------------------------------------
def _noisy(flash_root, seed, every_ms):
    r = Rig(flash_root, seed=seed)
    chip = r.chip(QMC, noise_ut=1.0)
    s = r.sensor(QMC, odr_hz=50, range_g=2)
    s.init()
    return {t: raw for ok, raw, t in r.poll(s, 1.0, every_ms=every_ms, chip=chip)}


def test_noise_depends_on_the_seed_not_on_the_polling(flash_root):
    a = _noisy(flash_root, 5, 1)
    b = _noisy(flash_root, 5, 30)  # a slow driver sees fewer samples, the same values
    c = _noisy(flash_root, 6, 1)
    common = set(a) & set(b)
    assert len(common) > 10
    assert all(a[t] == b[t] for t in common)
    assert a != c


# ---- never raises anything but documented errors -------------------------------------------------
class Garbage:
    """Answers anything: a broken part, a different chip, noise on the bus."""

    def __init__(self, data):
        self.data = data
        self.i = 0

    def i2c_write(self, board, data):
        pass

    def i2c_read(self, board, n):
        out = bytearray(n)
        for k in range(n):
            out[k] = self.data[self.i % len(self.data)]
            self.i += 1
        return bytes(out)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from([QMC, HMC]), data=st.binary(min_size=1, max_size=64))
def test_any_register_contents_give_ints_or_documented_errors(flash_root, kind, data):
    r = Rig(flash_root)
    addr = QMC_ADDR if kind == QMC else HMC_ADDR
    r.board.i2c_devices[0] = {addr: Garbage(data)}
    s = r.sensor(kind)
    try:
        s.init()
    except ValueError:
        pass
    except OSError as e:
        assert e.errno == errno.EIO  # the configuration did not read back
    buf = [0, 0, 0]
    for _ in range(4):
        assert s.ready() in (True, False)
        ok = s.read_into(buf)
        assert ok in (True, False)
        assert all(isinstance(v, int) and -32768 <= v <= 32767 for v in buf)
        if kind == HMC:
            assert ok == (-4096 not in buf)
    assert s.overflow >= 0 and s.skipped >= 0


finite = st.floats(-2000, 2000, allow_nan=False)
anything = st.one_of(finite, st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**9, 10**9))


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from([QMC, HMC]), field=st.tuples(anything, anything, anything),
       noise=st.sampled_from([0.0, 0.2, 50.0]), range_g=st.sampled_from([2, 8]))
def test_any_field_reads_or_overflows(flash_root, kind, field, noise, range_g):
    r = Rig(flash_root)
    r.b = field
    r.chip(kind, noise_ut=noise)
    s = r.sensor(kind, range_g=range_g)
    s.init()
    ok, raw = first_sample(r, s)
    assert all(isinstance(v, int) and -32768 <= v <= 32767 for v in raw)
    lsb = s.lsb_per_g
    limit = 32767 if kind == QMC else 2047
    if ok and noise == 0.0:
        for got, b in zip(raw, field):
            assert abs(got - float(b) / 100 * lsb) <= 0.5 + 1e-6
    if not ok:
        assert s.overflow == 1
        margin = 1 + 6 * noise / 100 * lsb  # six standard deviations of the noise
        assert any(not math.isfinite(float(b)) or abs(float(b) / 100 * lsb) > limit - margin for b in field)


# ---- the same in real MicroPython, and the cost of a sample there ---------------------------------
WASI_SCRIPT = r'''
import sys
import gc
gc.disable()
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
import time
import chip_magnetometer
from drivers import qmc5883l, hmc5883l


def field(b, t):
    # a car passing: piecewise linear (no libm: the same bits in both runtimes)
    k = (t % 2000000) / 2000000.0
    bump = 30.0 * (1.0 - abs(k - 0.5) * 2.0)
    return (21.5 + bump, -4.25 - bump / 3.0, 40.0 + bump * 1.5)


i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
cq = chip_magnetometer.Magnetometer(board, 0, field, seed=3)
ch = chip_magnetometer.Magnetometer(board, 0, field, kind="hmc5883l", seed=3, noise_ut=0.5)
q = qmc5883l.QMC5883L(i2c, odr_hz=50, range_g=2)
h = hmc5883l.HMC5883L(i2c, odr_hz=30, range_g=1.9)
q.init()
h.init()
buf = [0, 0, 0]
out = []
for step in range(600):
    for s, tag in ((q, "q"), (h, "h")):
        if s.ready():
            ok = s.read_into(buf)
            out.append((tag, ok, buf[0], buf[1], buf[2]))
    time.sleep_ms(7 if step < 400 else 45)
print("MAG", repr((out, q.skipped, q.overflow, h.overflow, q.temperature_raw(), cq.samples_made,
                   cq.samples_read, cq.overruns, ch.samples_made, ch.samples_read, ch.overruns,
                   board.clock.now_us)))
'''


def _cpython_run(flash_root):
    board = simboard.Board("t-1", {"boot_ms": 0}, str(flash_root), seed=7)
    mods = NodeModules(board)
    machine = mods._import("machine", fromlist=("__name__",))
    time = mods._import("time", fromlist=("__name__",))
    qmc5883l = mods._import("drivers.qmc5883l", fromlist=("__name__",))
    hmc5883l = mods._import("drivers.hmc5883l", fromlist=("__name__",))
    board.boot(simboard.PWRON_RESET)

    def field(b, t):
        k = (t % 2000000) / 2000000.0
        bump = 30.0 * (1.0 - abs(k - 0.5) * 2.0)
        return (21.5 + bump, -4.25 - bump / 3.0, 40.0 + bump * 1.5)

    i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
    cq = chip_magnetometer.Magnetometer(board, 0, field, seed=3)
    ch = chip_magnetometer.Magnetometer(board, 0, field, kind="hmc5883l", seed=3, noise_ut=0.5)
    q = qmc5883l.QMC5883L(i2c, odr_hz=50, range_g=2)
    h = hmc5883l.HMC5883L(i2c, odr_hz=30, range_g=1.9)
    q.init()
    h.init()
    buf = [0, 0, 0]
    out = []
    for step in range(600):
        for s, tag in ((q, "q"), (h, "h")):
            if s.ready():
                ok = s.read_into(buf)
                out.append((tag, ok, buf[0], buf[1], buf[2]))
        time.sleep_ms(7 if step < 400 else 45)
    return (out, q.skipped, q.overflow, h.overflow, q.temperature_raw(), cq.samples_made,
            cq.samples_read, cq.overruns, ch.samples_made, ch.samples_read, ch.overruns,
            board.clock.now_us)


def test_driver_and_chip_run_the_same_in_micropython(flash_root):
    pytest.importorskip("wasmtime")
    from simulator import wasi

    out, _ = wasi.run_micropython(WASI_SCRIPT, {str(flash_root): "/flash", MP_DIR: "/sim"},
                                  heap_bytes=16 * 1024 * 1024)
    line = [ln for ln in out.decode().splitlines() if ln.startswith("MAG ")][0]
    mp = eval(line[4:], {"__builtins__": {}})
    cp = _cpython_run(flash_root)
    assert mp == cp
    reads = cp[0]
    assert len({r[2] for r in reads if r[0] == "q"}) > 50, "the field and the noise showed up"
    assert cp[1] > 0 and cp[7] > 0, "the slow polling at the end overran the QMC5883L"


ALLOC_SCRIPT = r'''
import sys
import gc
import array
import micropython
gc.disable()
sys.path[:] = ['/fw']
from drivers import qmc5883l, hmc5883l


class Bus:
    # a do-nothing bus with fixed contents: status DRDY|OVL|DOR, words of every sign
    def __init__(self, data):
        self.data = data

    def readfrom_mem_into(self, addr, reg, buf):
        d = self.data
        for i in range(len(buf)):
            buf[i] = d[i]

    def writeto_mem(self, addr, reg, buf):
        pass


def extra_bytes(d, bus, out):
    # in a function: the measurement's own variables are locals, not new globals (a dict that
    # grows would allocate in the middle of the count)
    for i in range(20):
        d.read_into(out)
        d.ready()
    m0 = micropython.mem_total()
    for i in range(500):
        bus.readfrom_mem_into(0, 0, out)
    m1 = micropython.mem_total()
    for i in range(500):
        d.read_into(out)
        d.ready()
    m2 = micropython.mem_total()
    return (m2 - m1) - (m1 - m0) * 2


res = []
for make in (qmc5883l.QMC5883L, hmc5883l.HMC5883L):
    for data in (b"\x07\x80\xff\x7f\x00\x00\x07", b"\xf0\x00\x12\x34\xff\xff\x00"):
        bus = Bus(data)
        d = make(bus)
        for out in (array.array('h', [0, 0, 0]), [0, 0, 0]):
            res.append((make.__name__, extra_bytes(d, bus, out)))
print("ALLOC", repr(res))
'''


def test_a_sample_allocates_nothing_in_micropython():
    # read_into() and ready() 500 times each, in real MicroPython, against a bus object whose
    # own calls are subtracted: not one byte from the heap (the frame of a function with too
    # many locals would come from the heap: py/objfun.c VM_MAX_STATE_ON_STACK).
    pytest.importorskip("wasmtime")
    from simulator import wasi

    out, _ = wasi.run_micropython(ALLOC_SCRIPT, {ROOT / "firmware" / "lib": "/fw"}, heap_bytes=4 * 1024 * 1024)
    line = [ln for ln in out.decode().splitlines() if ln.startswith("ALLOC ")][0]
    res = eval(line[6:], {"__builtins__": {}})
    assert len(res) == 8
    assert all(extra == 0 for _, extra in res), res


def test_the_cost_figure_comes_from_micropython():
    pytest.importorskip("wasmtime")
    from simulator import bench_traffic_cost

    for kind in (QMC, HMC):
        r = bench_traffic_cost.measure(kind, n=300)
        assert r["kind"] == kind and r["n"] == 300
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("driver_us", "null_call_us", "sim_read_into_us"))
        assert r["driver_alloc_bytes"] < 1.0, "nothing allocated per call"
    assert bench_traffic_cost.read_into_cost_us(QMC, n=100) > 0
