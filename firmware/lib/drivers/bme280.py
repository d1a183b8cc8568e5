# Bosch BME280 temperature, pressure and humidity sensor on I2C, at register level.
#
# Sources (docs/drivers/bme280.md lists them with the figures taken):
# - BME280 datasheet BST-BME280-DS002: memory map (§5.3, Table 18) and registers (§5.4),
#   trimming parameters (§4.2.2, Table 16), integer compensation (§4.2.3), measurement time
#   (§9.1, Appendix B), start-up time (Table 1), weather-monitoring settings (§3.5.1), pressure
#   and temperature resolution (§3.4.2, §3.4.3).
# - BMP280 datasheet BST-BMP280-DS001: the same T/P compensation (§3.11) and its worked example
#   (§3.12), chip ids 0x56/0x57/0x58 (§4.3.1).
#
# Forced mode only: each read() starts one conversion, waits for it, reads the eight data
# registers in one burst and compensates them with integers. Results: temperature in 0.01 deg C,
# pressure in Pa, relative humidity in 1/1024 %.
#
# Pressure uses the datasheet's 64-bit integer formula (§4.2.3, result in Pa/256), not the
# 32-bit alternative of §8.2. MicroPython's small ints end at 2**30 on the ESP32, so both
# variants spill into arbitrary-precision ints anyway (the 32-bit one already multiplies a 20-bit
# value by 3125); the 64-bit one costs a few more bigint operations (a few dozen per reading,
# not measured on a board; readings come once a minute or so), and gives the datasheet's "best
# possible calculation accuracy" rather than the 32-bit variant's 1 Pa (1 sigma).
import errno
import struct
import time
from micropython import const

ADDR = const(0x76)  # SDO to GND; 0x77 with SDO to VDDIO (§6.2)
CHIP_ID = const(0x60)  # §5.4.1

_REG_CALIB00 = const(0x88)  # calib00..calib25, 0x88..0xA1: dig_T1..dig_P9, dig_H1 at 0xA1
_CALIB00_LEN = const(26)
_REG_ID = const(0xD0)
_REG_RESET = const(0xE0)  # 0xB6: complete power-on-reset (§5.4.2)
_REG_CALIB26 = const(0xE1)  # 0xE1..0xE7: dig_H2..dig_H6
_CALIB26_LEN = const(7)
_REG_CTRL_HUM = const(0xF2)  # osrs_h[2:0]; takes effect at the next ctrl_meas write (§5.4.3)
_REG_STATUS = const(0xF3)  # bit 3 measuring, bit 0 im_update (§5.4.4)
_REG_CTRL_MEAS = const(0xF4)  # osrs_t[7:5], osrs_p[4:2], mode[1:0] (§5.4.5)
_REG_CONFIG = const(0xF5)  # t_sb[7:5], filter[4:2], spi3w_en[0] (§5.4.6)
_REG_DATA = const(0xF7)  # press_msb..hum_lsb, read in one burst (§4, data readout)
_DATA_LEN = const(8)

_MEASURING = const(0x08)
_IM_UPDATE = const(0x01)
_MODE_FORCED = const(0x01)
_STARTUP_MS = const(2)  # Table 1: t_startup, 2 ms max
_NVM_TIMEOUT_MS = const(20)
_MEAS_TIMEOUT_MS = const(100)  # polling, after the maximum measurement time has passed

_RESET_WORD = b"\xb6"
_CONFIG_OFF = b"\x00"  # filter off, as in the weather-monitoring use case (§3.5.1)

# oversampling factor -> osrs_x register code (§5.4.3, §5.4.5)
_OSRS = {1: 1, 2: 2, 4: 3, 8: 4, 16: 5}

# BMP280 ids (BMP280 datasheet §4.3.1): samples 0x56, 0x57, mass production 0x58
_BMP280_IDS = (0x56, 0x57, 0x58)


def measure_time_max_us(osrs_t, osrs_p, osrs_h):
    """The datasheet's maximum measurement time (Appendix B, §9.1), in µs, for oversampling
    factors (0: skipped): 1.25 + 2.3·T + (2.3·P + 0.575) + (2.3·H + 0.575) ms."""
    us = 1250 + 2300 * osrs_t
    if osrs_p:
        us += 2300 * osrs_p + 575
    if osrs_h:
        us += 2300 * osrs_h + 575
    return us


def _s8(b):
    return b - 256 if b > 127 else b


def parse_calibration(c1, c2):
    """The trimming parameters from the 26 bytes at 0x88..0xA1 and the 7 bytes at 0xE1..0xE7
    (§4.2.2, Table 16), as a tuple: (dig_T1, dig_T2, dig_T3, dig_P1, ..., dig_P9, dig_H1,
    dig_H2, dig_H3, dig_H4, dig_H5, dig_H6). Words are little-endian; dig_H4 and dig_H5 are
    signed 12-bit values that share 0xE5: H4 = 0xE4[7:0] << 4 | 0xE5[3:0],
    H5 = 0xE6[7:0] << 4 | 0xE5[7:4], the upper byte carrying the sign."""
    tp = struct.unpack_from("<HhhHhhhhhhhh", c1, 0)
    h4 = (_s8(c2[3]) << 4) | (c2[4] & 0x0F)
    h5 = (_s8(c2[5]) << 4) | (c2[4] >> 4)
    return tp + (c1[25], struct.unpack_from("<h", c2, 0)[0], c2[2], h4, h5, _s8(c2[6]))


def compensate_t(adc_t, cal):
    """§4.2.3 BME280_compensate_T_int32: (t_fine, temperature in 0.01 deg C)."""
    t1 = cal[0]
    var1 = (((adc_t >> 3) - (t1 << 1)) * cal[1]) >> 11
    x = (adc_t >> 4) - t1
    var2 = (((x * x) >> 12) * cal[2]) >> 14
    t_fine = var1 + var2
    return t_fine, (t_fine * 5 + 128) >> 8


def _cdiv(n, d):
    # C's integer division truncates toward zero; Python's // floors.
    q = (n if n >= 0 else -n) // (d if d >= 0 else -d)
    return q if (n < 0) == (d < 0) else -q


def compensate_p(adc_p, t_fine, cal):
    """§4.2.3 BME280_compensate_P_int64: pressure in Pa/256 (Q24.8); 0 when the calibration
    would divide by zero."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * cal[8]  # dig_P6
    var2 += (var1 * cal[7]) << 17  # dig_P5
    var2 += cal[6] << 35  # dig_P4
    var1 = ((var1 * var1 * cal[5]) >> 8) + ((var1 * cal[4]) << 12)  # dig_P3, dig_P2
    var1 = (((1 << 47) + var1) * cal[3]) >> 33  # dig_P1
    if var1 == 0:
        return 0
    p = 1048576 - adc_p
    p = _cdiv(((p << 31) - var2) * 3125, var1)
    var1 = (cal[11] * (p >> 13) * (p >> 13)) >> 25  # dig_P9
    var2 = (cal[10] * p) >> 19  # dig_P8
    return ((p + var1 + var2) >> 8) + (cal[9] << 4)  # dig_P7


def compensate_h(adc_h, t_fine, cal):
    """§4.2.3 bme280_compensate_H_int32: relative humidity in 1/1024 % (0..102400)."""
    v = t_fine - 76800
    a = ((adc_h << 14) - (cal[15] << 20) - cal[16] * v + 16384) >> 15  # dig_H4, dig_H5
    b = (((((((v * cal[17]) >> 10) * (((v * cal[14]) >> 11) + 32768)) >> 10) + 2097152)
          * cal[13] + 8192) >> 14)  # dig_H6, dig_H3, dig_H2
    v = a * b
    v -= ((((v >> 15) * (v >> 15)) >> 7) * cal[12]) >> 4  # dig_H1
    if v < 0:
        v = 0
    if v > 419430400:
        v = 419430400
    return v >> 12


class BME280:
    """i2c: a machine.I2C (or SoftI2C); addr: 0x76 or 0x77. osrs_t/osrs_p/osrs_h: oversampling
    factors (1, 2, 4, 8, 16). The default x1 / x4 / x1 is the weather-monitoring setting of
    §3.5.1 with pressure raised to x4: without the IIR filter the pressure resolution is
    16 + (osrs_p - 1) bits (§3.4.2), 2.62 Pa at x1 and 0.66 Pa at x4 (BMP280 Table 4), for
    16.2 ms of conversion instead of 9.3 ms. Call init() once; then read()."""

    def __init__(self, i2c, addr=ADDR, osrs_t=1, osrs_p=4, osrs_h=1):
        if osrs_t not in _OSRS or osrs_p not in _OSRS or osrs_h not in _OSRS:
            raise ValueError("oversampling must be 1, 2, 4, 8 or 16")
        self.i2c = i2c
        self.addr = addr
        self.cal = None  # the trimming parameters, read once by init()
        self.meas_us = measure_time_max_us(osrs_t, osrs_p, osrs_h)
        self._hum = bytes((_OSRS[osrs_h],))
        self._meas = bytes(((_OSRS[osrs_t] << 5) | (_OSRS[osrs_p] << 2) | _MODE_FORCED,))
        self._b1 = bytearray(1)
        self._data = bytearray(_DATA_LEN)

    def _reg(self, reg):
        b = self._b1
        self.i2c.readfrom_mem_into(self.addr, reg, b)
        return b[0]

    def chip_id(self):
        return self._reg(_REG_ID)

    def init(self):
        """Check the chip id, soft-reset, wait for the NVM copy, read the trimming parameters.
        Raises OSError from the bus (ENODEV: nothing answers at the address), ValueError naming
        the id read when another chip answers (a BMP280 has no humidity), OSError(ETIMEDOUT)
        when the NVM copy does not finish and OSError(EIO) for trimming words that read 0."""
        cid = self.chip_id()
        if cid != CHIP_ID:
            what = " (a BMP280: no humidity sensor)" if cid in _BMP280_IDS else ""
            raise ValueError("not a BME280 at 0x%02x: chip id 0x%02x%s, expected 0x%02x"
                             % (self.addr, cid, what, CHIP_ID))
        self.cal = None
        self.i2c.writeto_mem(self.addr, _REG_RESET, _RESET_WORD)
        time.sleep_ms(_STARTUP_MS)
        t0 = time.ticks_ms()
        while self._reg(_REG_STATUS) & _IM_UPDATE:  # trimming data still being copied
            if time.ticks_diff(time.ticks_ms(), t0) >= _NVM_TIMEOUT_MS:
                raise OSError(errno.ETIMEDOUT, "BME280 NVM copy did not finish")
            time.sleep_ms(1)
        c1 = self.i2c.readfrom_mem(self.addr, _REG_CALIB00, _CALIB00_LEN)
        c2 = self.i2c.readfrom_mem(self.addr, _REG_CALIB26, _CALIB26_LEN)
        cal = parse_calibration(c1, c2)
        if cal[0] == 0 or cal[3] == 0:  # dig_T1 and dig_P1 are never 0 on a trimmed part
            raise OSError(errno.EIO, "BME280 trimming parameters read as 0")
        # After the reset the chip sleeps, when config writes are never ignored (§5.4.6).
        self.i2c.writeto_mem(self.addr, _REG_CONFIG, _CONFIG_OFF)
        self.cal = cal

    def read(self):
        """One forced-mode conversion: (temperature in 0.01 deg C, pressure in Pa, relative
        humidity in 1/1024 %), all ints. Calls init() first if it has not run. Raises OSError
        from the bus, or OSError(ETIMEDOUT) when the conversion never ends."""
        if self.cal is None:
            self.init()
        i2c = self.i2c
        a = self.addr
        # ctrl_hum first: it only takes effect with the ctrl_meas write that follows (§5.4.3).
        i2c.writeto_mem(a, _REG_CTRL_HUM, self._hum)
        i2c.writeto_mem(a, _REG_CTRL_MEAS, self._meas)  # forced: one conversion, then sleep
        time.sleep_ms((self.meas_us + 999) // 1000)  # §9.1: the maximum measurement time
        t0 = time.ticks_ms()
        while self._reg(_REG_STATUS) & _MEASURING:  # results not yet in the data registers
            if time.ticks_diff(time.ticks_ms(), t0) >= _MEAS_TIMEOUT_MS:
                raise OSError(errno.ETIMEDOUT, "BME280 conversion did not finish")
            time.sleep_ms(1)
        d = self._data
        i2c.readfrom_mem_into(a, _REG_DATA, d)  # one burst: the chip shadows the registers
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        cal = self.cal
        t_fine, t = compensate_t(adc_t, cal)
        p = compensate_p(adc_p, t_fine, cal)
        return t, (p + 128) >> 8, compensate_h(adc_h, t_fine, cal)
