"""The BME280 driver (firmware/lib/drivers/bme280.py) and the register-level fake chip
(simulator/mp/chip_bme280.py) on a simulated board, both run as the simulator runs them: the
driver through the node's module table (its `machine` and `time` are the fakes, in virtual
time), the chip imported by bare name as worlds import it.

The expected numbers of the compensation come from the datasheets, not from the driver: the
worked example of the BMP280 datasheet (BST-BMP280-DS001 §3.12: same T/P compensation as the
BME280) and, for humidity, the BME280 datasheet's double-precision formulas (BST-BME280-DS002
§8.1), written out below. Register facts the tests check are spelled out here from the BME280
datasheet (memory map, §5.3-5.4) rather than taken from the driver's constants."""

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

import chip_bme280

DRIVER_FILES = ("drivers/__init__.py", "drivers/bme280.py")

# BME280 datasheet, memory map (§5.3 Table 18)
ADDR = 0x76
REG_ID = 0xD0
REG_RESET = 0xE0
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3  # bit 3 measuring, bit 0 im_update
REG_CTRL_MEAS = 0xF4
REG_CONFIG = 0xF5
REG_DATA = 0xF7  # press_msb .. hum_lsb
MEASURING = 0x08
IM_UPDATE = 0x01

# The worked example of the BMP280 datasheet (§3.12): trimming values, raw values and results.
EXAMPLE_TP = (27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
EXAMPLE_ADC_T = 519888
EXAMPLE_ADC_P = 415148
EXAMPLE_T_FINE = 128422
EXAMPLE_T_C = 25.08
EXAMPLE_P_PA = 100653.27
# The fake part's humidity trimming values (dig_H1..dig_H6)
EXAMPLE_H = (75, 362, 0, 313, 50, 30)
EXAMPLE_CAL = EXAMPLE_TP + EXAMPLE_H


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
        self.drv = self.mods._import("drivers.bme280", fromlist=("__name__",))
        self.board.boot(simboard.PWRON_RESET)
        self.i2c = self.machine.I2C(0, scl=self.machine.Pin(22), sda=self.machine.Pin(21))
        self.scene = {"temp_c": 21.5, "hpa": 1013.25, "rh": 45.0}

    def chip(self, **kw):
        return chip_bme280.BME280(self.board, 0, lambda b: self.scene, **kw)

    def sensor(self, **kw):
        return self.drv.BME280(self.i2c, **kw)

    def reg(self, reg, n=1, addr=ADDR):
        return self.i2c.readfrom_mem(addr, reg, n)


@pytest.fixture(scope="module")
def drv(flash_root):
    return Rig(flash_root).drv


# ---- the compensation against the datasheets --------------------------------------------------
def test_worked_example_temperature(drv):
    t_fine, t = drv.compensate_t(EXAMPLE_ADC_T, EXAMPLE_CAL)
    assert t_fine == EXAMPLE_T_FINE
    assert t == 2508  # 25.08 deg C in 0.01 deg C


def test_worked_example_pressure(drv):
    q8 = drv.compensate_p(EXAMPLE_ADC_P, EXAMPLE_T_FINE, EXAMPLE_CAL)
    # The table's 100653.27 Pa is the double formula's; the 64-bit integer one lands within a
    # small fraction of a Pa of it (Q24.8: Pa/256).
    assert isinstance(q8, int)
    assert abs(q8 / 256 - EXAMPLE_P_PA) < 0.05, q8 / 256


def test_worked_example_humidity(drv):
    # The BME280 double formula (§8.1) by hand, for adc_H = 30000 at the example's t_fine:
    #   var_H  = t_fine - 76800                                  = 51622
    #   offset = dig_H4·64 + dig_H5/16384·var_H = 20032 + 157.54 = 20189.5378
    #   gain   = dig_H2/65536 · (1 + dig_H6/67108864·var_H·(1 + dig_H3/67108864·var_H))
    #          = 0.0055236816 · 1.0230768                        = 0.0056511507
    #   var_H  = (30000 - 20189.5378) · gain = 9810.4622 · gain   = 55.440400
    #   var_H  = var_H · (1 - dig_H1·var_H/524288) = 55.4404 · 0.99206919 = 55.000713 %RH
    h = drv.compensate_h(30000, EXAMPLE_T_FINE, EXAMPLE_CAL)
    assert isinstance(h, int)
    assert abs(h / 1024 - 55.000713) < 0.01, h / 1024
    assert abs(_h_double(30000, EXAMPLE_T_FINE, EXAMPLE_CAL) - 55.000713) < 1e-5


# The datasheets' double-precision formulas (BME280 §8.1; BMP280 §8.1 for T and P), written out
# independently of the driver's integer ones.
def _t_double(adc, c):
    var1 = (adc / 16384.0 - c[0] / 1024.0) * c[1]
    var2 = (adc / 131072.0 - c[0] / 8192.0) * (adc / 131072.0 - c[0] / 8192.0) * c[2]
    return int(var1 + var2), (var1 + var2) / 5120.0


def _p_double(adc, t_fine, c):
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * c[8] / 32768.0
    var2 = var2 + var1 * c[7] * 2.0
    var2 = var2 / 4.0 + c[6] * 65536.0
    var1 = (c[5] * var1 * var1 / 524288.0 + c[4] * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * c[3]
    p = 1048576.0 - adc
    p = (p - var2 / 4096.0) * 6250.0 / var1
    var1 = c[11] * p * p / 2147483648.0
    var2 = p * c[10] / 32768.0
    return p + (var1 + var2 + c[9]) / 16.0


def _h_double(adc, t_fine, c):
    h1, h2, h3, h4, h5, h6 = c[12:]
    var_h = t_fine - 76800.0
    var_h = (adc - (h4 * 64.0 + h5 / 16384.0 * var_h)) * (
        h2 / 65536.0 * (1.0 + h6 / 67108864.0 * var_h * (1.0 + h3 / 67108864.0 * var_h)))
    var_h = var_h * (1.0 - h1 * var_h / 524288.0)
    return min(max(var_h, 0.0), 100.0)


@settings(max_examples=300, deadline=None)
@given(adc_t=st.integers(313000, 713000), adc_p=st.integers(280000, 850000),
       adc_h=st.integers(15000, 45000))
def test_integer_compensation_agrees_with_the_double_formulas(drv, adc_t, adc_p, adc_h):
    # Raw values spanning -40..85 deg C, 300..1100 hPa and 0..100 %RH for the example part.
    t_fine, t = drv.compensate_t(adc_t, EXAMPLE_CAL)
    tf_double, t_double = _t_double(adc_t, EXAMPLE_CAL)
    # The integer formula drops adc_T's low 3 (4) bits: up to 7·dig_T2/16384 = 11 counts.
    assert abs(t_fine - tf_double) <= 16
    assert abs(t / 100 - t_double) <= 0.0085  # rounding to 0.01 deg C and those counts
    p = drv.compensate_p(adc_p, t_fine, EXAMPLE_CAL)
    assert abs(p / 256 - _p_double(adc_p, t_fine, EXAMPLE_CAL)) < 0.05
    h = drv.compensate_h(adc_h, t_fine, EXAMPLE_CAL)
    assert 0 <= h <= 102400
    assert abs(h / 1024 - _h_double(adc_h, t_fine, EXAMPLE_CAL)) < 0.02


def test_humidity_clamps_at_0_and_100_percent(drv):
    assert drv.compensate_h(0, EXAMPLE_T_FINE, EXAMPLE_CAL) == 0
    assert drv.compensate_h(65535, EXAMPLE_T_FINE, EXAMPLE_CAL) == 102400


def test_pressure_with_a_zero_divisor_is_zero_not_an_exception(drv):
    cal = EXAMPLE_TP[:3] + (0,) + EXAMPLE_TP[4:] + EXAMPLE_H  # dig_P1 = 0
    assert drv.compensate_p(EXAMPLE_ADC_P, EXAMPLE_T_FINE, cal) == 0


# ---- the trimming parameters --------------------------------------------------------------------
def test_parse_calibration_by_hand(drv):
    c1 = bytes([0x70, 0x6B, 0x43, 0x67, 0x18, 0xFC,  # dig_T1 27504, dig_T2 26435, dig_T3 -1000
                0x7D, 0x8E, 0x43, 0xD6, 0xD0, 0x0B,  # dig_P1 36477, dig_P2 -10685, dig_P3 3024
                0x27, 0x0B, 0x8C, 0x00, 0xF9, 0xFF,  # dig_P4 2855, dig_P5 140, dig_P6 -7
                0x8C, 0x3C, 0xF8, 0xC6, 0x70, 0x17,  # dig_P7 15500, dig_P8 -14600, dig_P9 6000
                0x00, 0x4B])  # 0xA0 reserved, 0xA1 dig_H1 75
    # 0xE1..0xE7: dig_H2 = 362, dig_H3 = 0, 0xE4 = 0x13, 0xE5 = 0x21, 0xE6 = 0x03, dig_H6 = 30:
    # dig_H4 = 0x13 << 4 | 0x1 = 0x131 = 305, dig_H5 = 0x03 << 4 | 0x2 = 0x032 = 50
    c2 = bytes([0x6A, 0x01, 0x00, 0x13, 0x21, 0x03, 0x1E])
    assert drv.parse_calibration(c1, c2) == EXAMPLE_TP + (75, 362, 0, 305, 50, 30)


def test_parse_calibration_negative_12_bit_h4_h5_and_signed_h6(drv):
    # 0xE4 = 0xEC, 0xE5 = 0xF5, 0xE6 = 0xFE: dig_H4 = 0xEC5 = -315, dig_H5 = 0xFEF = -17 as
    # 12-bit two's complement; 0xE7 = 0x9C: dig_H6 = -100 (signed char); dig_H2 = 0x8001 = -32767
    c2 = bytes([0x01, 0x80, 0xFF, 0xEC, 0xF5, 0xFE, 0x9C])
    cal = drv.parse_calibration(bytes(26), c2)
    assert cal[12:] == (0, -32767, 255, -315, -17, -100)


cals = st.fixed_dictionaries({
    "T1": st.integers(0, 65535), "T2": st.integers(-32768, 32767), "T3": st.integers(-32768, 32767),
    "P1": st.integers(0, 65535), "P2": st.integers(-32768, 32767), "P3": st.integers(-32768, 32767),
    "P4": st.integers(-32768, 32767), "P5": st.integers(-32768, 32767),
    "P6": st.integers(-32768, 32767), "P7": st.integers(-32768, 32767),
    "P8": st.integers(-32768, 32767), "P9": st.integers(-32768, 32767),
    "H1": st.integers(0, 255), "H2": st.integers(-32768, 32767), "H3": st.integers(0, 255),
    "H4": st.integers(-2048, 2047), "H5": st.integers(-2048, 2047), "H6": st.integers(-128, 127)})
CAL_ORDER = ("T1", "T2", "T3", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9",
             "H1", "H2", "H3", "H4", "H5", "H6")


@settings(max_examples=200, deadline=None)
@given(cal=cals)
def test_parse_calibration_reads_back_the_fake_register_image(drv, cal):
    lo, hi = chip_bme280.calibration_bytes(cal)
    assert len(lo) == 26 and len(hi) == 7
    assert drv.parse_calibration(lo, hi) == tuple(cal[k] for k in CAL_ORDER)


# ---- driver and fake chip: the world's values come back ---------------------------------------
def test_measurement_time_follows_appendix_b(drv):
    # §9.1: max = 1.25 + 2.3·T + (2.3·P + 0.575) + (2.3·H + 0.575) ms; typ = 1 + 2·T + (2·P + 0.5)
    # + (2·H + 0.5) ms. The datasheet's example (T x1, P x4, H skipped) takes 11.5 ms typically.
    assert drv.measure_time_max_us(1, 1, 1) == 9300
    assert drv.measure_time_max_us(1, 4, 0) == 13325
    assert drv.measure_time_max_us(16, 16, 16) == 112800
    assert chip_bme280.measure_time_typ_us(1, 4, 0) == 11500
    assert chip_bme280.measure_time_typ_us(1, 1, 1) == 8000


def test_init_then_read(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip()
    s = rig.sensor()
    s.init()
    assert s.cal == EXAMPLE_CAL, "the fake's trimming parameters, read over the bus"
    t, p, h = s.read()
    assert all(isinstance(v, int) for v in (t, p, h))
    assert t == 2150 and abs(p - 101325) <= 1 and abs(h / 1024 - 45.0) <= 0.1
    assert chip.conversions == 1
    assert rig.reg(REG_CTRL_MEAS)[0] & 0x03 == 0, "forced mode ends in sleep mode"
    assert rig.reg(REG_CONFIG) == b"\x00", "IIR filter off"


@settings(max_examples=150, deadline=None)
@given(temp_c=st.floats(-40, 85), hpa=st.floats(300, 1100), rh=st.floats(0, 100))
def test_world_in_world_out(flash_root, temp_c, hpa, rh):
    rig = Rig(flash_root)
    rig.scene = {"temp_c": temp_c, "hpa": hpa, "rh": rh}
    rig.chip()
    t, p, h = rig.sensor().read()  # init() on the first read
    assert abs(t / 100 - temp_c) <= 0.01
    assert abs(p - hpa * 100) <= 1
    assert abs(h / 1024 - rh) <= 0.1


def test_readings_follow_the_scene(flash_root):
    rig = Rig(flash_root)
    rig.chip()
    s = rig.sensor()
    s.init()
    got = []
    for temp_c, hpa, rh in ((-12.34, 987.65, 88.8), (30.0, 1020.0, 20.0), (5.55, 850.5, 63.21)):
        rig.scene.update(temp_c=temp_c, hpa=hpa, rh=rh)
        got.append(s.read())
    assert [g[0] for g in got] == [-1234, 3000, 555]
    assert [abs(g[1] - e) <= 1 for g, e in zip(got, (98765, 102000, 85050))] == [True] * 3
    assert [round(g[2] / 1024, 1) for g in got] == [88.8, 20.0, 63.2]


@pytest.mark.parametrize("osrs_p,step", [(1, 16), (2, 8), (4, 4), (16, 1)])
def test_the_fake_quantises_pressure_as_the_oversampling_says(flash_root, osrs_p, step):
    # §3.4.2: without the IIR filter, 16 + (osrs_p - 1) bits of the 20-bit pressure value.
    rig = Rig(flash_root)
    chip = rig.chip()
    s = rig.sensor(osrs_p=osrs_p)
    for hpa in (1000.1, 1000.3, 1000.7, 1001.9):
        rig.scene["hpa"] = hpa
        _, p, _ = s.read()
        assert chip.last[1] % step == 0
        assert abs(p - hpa * 100) <= 0.5 + 0.164 * step  # 2.62 Pa per 16 counts at x1
    assert chip.last[0] % 16 == 0, "temperature at x1: 16 bits"


def test_iir_filter_gives_20_bits(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip()
    s = rig.sensor(osrs_p=1)
    s.init()
    rig.i2c.writeto_mem(ADDR, REG_CONFIG, b"\x04")  # filter coefficient 2
    lows = set()
    for i in range(8):
        rig.scene["hpa"] = 1000.0 + i * 0.37
        s.read()
        lows.add(chip.last[1] & 0x0F)
    assert lows != {0}


def test_bad_oversampling_is_refused(flash_root):
    rig = Rig(flash_root)
    with pytest.raises(ValueError):
        rig.sensor(osrs_p=3)


# ---- errors: wrong chip, missing chip, NVM copy, conversion timeout --------------------------
def test_a_bmp280_is_named_in_the_error(flash_root):
    rig = Rig(flash_root)
    rig.chip(chip_id=0x58)
    with pytest.raises(ValueError) as e:
        rig.sensor().init()
    msg = str(e.value)
    assert "0x58" in msg and "BMP280" in msg and "0x60" in msg and "0x76" in msg


def test_another_chip_id_is_reported(flash_root):
    rig = Rig(flash_root)
    rig.chip(chip_id=0x61)
    with pytest.raises(ValueError, match="chip id 0x61"):
        rig.sensor().read()


def test_missing_chip_raises_enodev(flash_root):
    rig = Rig(flash_root)
    with pytest.raises(OSError) as e:
        rig.sensor().init()
    assert e.value.errno == errno.ENODEV


def test_the_other_address(flash_root):
    rig = Rig(flash_root)
    chip_bme280.BME280(rig.board, 0, lambda b: rig.scene, addr=0x77)
    with pytest.raises(OSError) as e:
        rig.sensor().init()
    assert e.value.errno == errno.ENODEV
    s = rig.sensor(addr=0x77)
    s.init()
    assert s.read()[0] == 2150


def test_unplugged_raises_enodev_and_replugged_reads_again(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip()
    s = rig.sensor()
    s.init()
    rig.scene["unplugged"] = True
    with pytest.raises(OSError) as e:
        s.read()
    assert e.value.errno == errno.ENODEV
    rig.scene["unplugged"] = False
    rig.scene["temp_c"] = 3.0
    assert s.read()[0] == 300  # the chip powered up again; the driver writes every setting
    assert chip.conversions == 1


def test_the_driver_waits_for_the_nvm_copy(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip(nvm_us=7000)
    s = rig.sensor()
    t0 = rig.board.clock.now_us
    s.init()
    assert rig.board.clock.now_us - t0 >= 7000
    assert s.cal == EXAMPLE_CAL
    assert chip.conversions == 0


def test_the_fake_hides_trimming_data_during_the_nvm_copy(flash_root):
    # Proof that the test above can fail: straight after a reset the image registers read 0.
    rig = Rig(flash_root)
    rig.chip(nvm_us=7000)
    rig.board.advance(10000)
    assert rig.reg(0x88, 2) == b"\x70\x6b"
    rig.i2c.writeto_mem(ADDR, REG_RESET, b"\xb6")
    assert rig.reg(REG_STATUS)[0] & IM_UPDATE
    assert rig.reg(0x88, 2) == b"\x00\x00"
    assert rig.reg(REG_ID) == b"\x60"
    assert rig.reg(REG_RESET) == b"\x00", "reset reads 0"


def test_an_nvm_copy_that_never_ends_times_out(flash_root):
    rig = Rig(flash_root)
    rig.chip(nvm_us=10**9)
    with pytest.raises(OSError) as e:
        rig.sensor().init()
    assert e.value.errno == errno.ETIMEDOUT


def test_a_conversion_that_never_ends_times_out(flash_root):
    rig = Rig(flash_root)
    rig.chip(measure_us=10**9)
    with pytest.raises(OSError) as e:
        rig.sensor().read()
    assert e.value.errno == errno.ETIMEDOUT


# ---- the measuring bit and the order of the control writes ----------------------------------
def test_a_slow_conversion_is_waited_for(flash_root):
    # A part slower than the datasheet's maximum: the driver's poll of the measuring bit, not
    # its fixed wait, must bring the fresh result.
    rig = Rig(flash_root)
    chip = rig.chip(measure_us=45000)
    s = rig.sensor()
    s.init()
    assert s.read()[0] == 2150
    rig.scene["temp_c"] = -7.25
    t0 = rig.board.clock.now_us
    assert s.read()[0] == -725
    assert rig.board.clock.now_us - t0 >= 45000
    assert chip.early_reads == 0, "no data register read while measuring"


def test_the_fake_keeps_stale_data_until_the_conversion_ends(flash_root):
    # Proof that the test above can fail: a driver that reads straight after starting a
    # conversion gets the previous results.
    rig = Rig(flash_root)
    chip = rig.chip()
    s = rig.sensor()
    s.init()
    s.read()
    before = rig.reg(REG_DATA, 8)
    rig.scene["temp_c"] = 40.0
    rig.i2c.writeto_mem(ADDR, REG_CTRL_HUM, b"\x01")
    rig.i2c.writeto_mem(ADDR, REG_CTRL_MEAS, b"\x25")  # T x1, P x1, forced
    assert rig.reg(REG_STATUS)[0] & MEASURING
    assert rig.reg(REG_CTRL_MEAS)[0] & 0x03 == 0x01
    assert rig.reg(REG_DATA, 8) == before
    assert chip.early_reads == 8
    rig.board.advance(9300)
    assert not rig.reg(REG_STATUS)[0] & MEASURING
    after = rig.reg(REG_DATA, 8)
    adc_t = (after[3] << 12) | (after[4] << 4) | (after[5] >> 4)
    assert rig.drv.compensate_t(adc_t, s.cal)[1] == 4000


def test_ctrl_hum_is_written_before_ctrl_meas(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip()
    writes = []
    real = chip.i2c_write

    def spy(board, data):
        if len(data) == 2 and data[0] in (REG_CTRL_HUM, REG_CTRL_MEAS):
            writes.append(data[0])
        real(board, data)

    chip.i2c_write = spy
    s = rig.sensor()
    s.init()
    s.read()
    s.read()
    assert writes == [REG_CTRL_HUM, REG_CTRL_MEAS] * 2


def test_the_fake_latches_ctrl_hum_only_at_a_ctrl_meas_write(flash_root):
    # Proof for the test above: after a reset, ctrl_meas written before ctrl_hum measures no
    # humidity (output 0x8000, §5.4.3: ctrl_hum takes effect at the next ctrl_meas write).
    rig = Rig(flash_root)
    rig.chip()
    rig.board.advance(5000)
    rig.i2c.writeto_mem(ADDR, REG_CTRL_MEAS, b"\x25")
    rig.i2c.writeto_mem(ADDR, REG_CTRL_HUM, b"\x01")
    rig.board.advance(20000)
    assert rig.reg(0xFD, 2) == b"\x80\x00"
    rig.i2c.writeto_mem(ADDR, REG_CTRL_MEAS, b"\x25")
    rig.board.advance(20000)
    assert rig.reg(0xFD, 2) != b"\x80\x00"


def test_a_write_of_several_register_value_pairs(flash_root):
    # §6.2.1: in one write, (register, value) pairs; no auto-increment.
    rig = Rig(flash_root)
    rig.chip()
    rig.board.advance(5000)
    rig.i2c.writeto(ADDR, bytes([REG_CTRL_HUM, 0x01, REG_CONFIG, 0x08, REG_CTRL_MEAS, 0x25]))
    assert rig.reg(REG_CTRL_HUM) == b"\x01"
    assert rig.reg(REG_CONFIG) == b"\x08"
    assert rig.reg(REG_STATUS)[0] & MEASURING


def test_normal_mode_measures_every_cycle(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip()
    rig.board.advance(5000)
    rig.i2c.writeto_mem(ADDR, REG_CONFIG, b"\x20")  # t_sb = 62.5 ms
    rig.i2c.writeto_mem(ADDR, REG_CTRL_HUM, b"\x01")
    rig.i2c.writeto_mem(ADDR, REG_CTRL_MEAS, b"\x27")  # T x1, P x1, normal
    cycle = 8000 + 62500
    n = 0
    for k in range(5):
        rig.board.advance(cycle)
        rig.reg(REG_STATUS)
        n = chip.conversions
    assert n == 5
    assert rig.reg(REG_CTRL_MEAS)[0] & 0x03 == 0x03, "normal mode stays"
    rig.i2c.writeto_mem(ADDR, REG_CTRL_MEAS, b"\x24")  # sleep
    rig.board.advance(10 * cycle)
    rig.reg(REG_STATUS)
    assert chip.conversions == 5


# ---- power ---------------------------------------------------------------------------------------
def test_power_cut_resets_the_chip_but_deep_sleep_does_not(flash_root):
    rig = Rig(flash_root)
    rig.chip()
    rig.sensor().read()
    assert rig.reg(REG_CTRL_HUM) == b"\x01"
    rig.board.boot(simboard.DEEPSLEEP_RESET)
    assert rig.reg(REG_CTRL_HUM) == b"\x01"
    rig.board.boot(simboard.PWRON_RESET)
    assert rig.reg(REG_CTRL_HUM) == b"\x00"
    assert rig.reg(REG_DATA, 8) == b"\x80\x00\x00\x80\x00\x00\x80\x00", "reset state (Table 18)"


def test_charge_is_mostly_drawn_while_measuring(flash_root):
    rig = Rig(flash_root)
    chip = rig.chip()
    s = rig.sensor()
    s.init()
    c0 = chip.charge_ma_us()
    rig.board.advance(60_000_000)  # a minute asleep
    asleep = chip.charge_ma_us() - c0
    c1 = chip.charge_ma_us()
    s.read()
    reading = chip.charge_ma_us() - c1
    assert asleep == pytest.approx(60_000_000 * chip.SLEEP_MA)
    # one conversion at x1/x4/x1 takes 14 ms typically (§9.1): 14000 µs at 0.714 mA
    assert reading == pytest.approx(14000 * chip.MEASURING_MA, rel=0.1)


# ---- noise and seeds -----------------------------------------------------------------------------
def _noisy(flash_root, seed):
    rig = Rig(flash_root, seed=seed)
    rig.scene.update(noise_c=0.05, noise_hpa=0.3, noise_rh=1.0)
    rig.chip()
    s = rig.sensor()
    return [s.read() for _ in range(12)]


def test_same_seed_same_readings(flash_root):
    a = _noisy(flash_root, 5)
    b = _noisy(flash_root, 5)
    c = _noisy(flash_root, 6)
    assert a == b
    assert a != c
    assert len({r[0] for r in a}) > 3, "noise makes readings differ"
    mean_t = sum(r[0] for r in a) / len(a) / 100
    assert abs(mean_t - 21.5) < 0.1
    assert all(abs(r[1] - 101325) < 200 for r in a)


# ---- whatever the registers hold: ints or the documented errors -------------------------------
class Garbage:
    """A device whose id is 0x60 and status 0; every other read returns bytes hypothesis
    chooses; writes are accepted."""

    def __init__(self, data):
        self.data = data
        self.ptr = 0

    def i2c_write(self, board, data):
        self.ptr = data[0]

    def i2c_read(self, board, n):
        if self.ptr == REG_ID:
            return b"\x60"
        if self.ptr == REG_STATUS:
            return b"\x00"
        return self.data.draw(st.binary(min_size=n, max_size=n))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_arbitrary_register_contents_give_ints_or_documented_errors(flash_root, data):
    rig = Rig(flash_root)
    rig.board.i2c_devices[0] = {ADDR: Garbage(data)}
    s = rig.sensor()
    try:
        s.init()
    except OSError as e:
        assert e.errno == errno.EIO  # trimming words of 0
        return
    for _ in range(2):
        t, p, h = s.read()
        assert all(isinstance(v, int) for v in (t, p, h))
        assert 0 <= h <= 102400


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
import chip_bme280
from drivers import bme280
i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
scene = {"temp_c": -3.21, "hpa": 955.5, "rh": 71.3, "noise_c": 0.02, "noise_hpa": 0.2, "noise_rh": 0.5}
chip = chip_bme280.BME280(board, 0, lambda b: scene, measure_us=30000)
s = bme280.BME280(i2c)
s.init()
got = []
for k in range(6):
    scene["temp_c"] = -3.21 + 7.5 * k
    scene["hpa"] = 955.5 + 20.25 * k
    got.append(s.read())
print("READ", got, chip.conversions, chip.early_reads, board.clock.now_us)
other = chip_bme280.BME280(board, 0, lambda b: scene, addr=0x77, chip_id=0x58)
try:
    bme280.BME280(i2c, 0x77).init()
except ValueError as e:
    print("WRONG", e)
'''


def test_driver_and_chip_run_the_same_in_micropython(flash_root):
    pytest.importorskip("wasmtime")
    from simulator import wasi
    from simulator.loader import MP_DIR as SIM_DIR

    out, _ = wasi.run_micropython(WASI_SCRIPT, {str(flash_root): "/flash", str(SIM_DIR): "/sim"},
                                  heap_bytes=8 * 1024 * 1024)
    lines = out.decode().splitlines()
    rig = Rig(flash_root, seed=7)
    rig.scene = {"temp_c": -3.21, "hpa": 955.5, "rh": 71.3, "noise_c": 0.02, "noise_hpa": 0.2,
                 "noise_rh": 0.5}
    chip = rig.chip(measure_us=30000)
    s = rig.sensor()
    s.init()
    got = []
    for k in range(6):
        rig.scene["temp_c"] = -3.21 + 7.5 * k
        rig.scene["hpa"] = 955.5 + 20.25 * k
        got.append(s.read())
    want = "READ %s %d %d %d" % (got, chip.conversions, chip.early_reads, rig.board.clock.now_us)
    assert lines[0] == want
    assert lines[1] == ("WRONG not a BME280 at 0x77: chip id 0x58 (a BMP280: no humidity sensor),"
                        " expected 0x60")
    assert abs(got[5][0] / 100 - (-3.21 + 37.5)) < 0.2
