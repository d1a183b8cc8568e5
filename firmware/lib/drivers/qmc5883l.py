# QST QMC5883L three-axis magnetometer on I2C, at register level.
#
# Sources (docs/drivers/magnetometers.md lists them with the figures taken):
# - QMC5883L datasheet v1.0 (QST, 2016): register map (§9.1 Table 13), output data (§9.2.1),
#   status DRDY/OVL/DOR (§9.2.2), temperature (§9.2.3), control registers 1 and 2 (§9.2.4,
#   Tables 18-19), SET/RESET period (§9.2.5), sensitivity 12000 LSB/G at RNG = 2 G and
#   3000 LSB/G at 8 G (specifications table).
# - QMC5883L datasheet Rev. B: 0DH is the chip id register and reads 0xFF (v1.0 calls it
#   "reserved"; ArduPilot, Betaflight and other drivers check the same value).
#
# Continuous mode only: the chip measures at its output data rate (10/50/100/200 Hz) and the
# driver polls. One sample costs two I2C transactions: ready() reads the status register (1
# byte), read_into() reads 0x00..0x06 in one burst (X, Y, Z little-endian, then the status again
# for OVL). read_into() allocates nothing: the burst lands in a preallocated bytearray and the
# words are assembled with shifts (small ints only), so it can run 100 times a second without
# feeding the garbage collector.
import errno
import time
from micropython import const

ADDR = const(0x0D)  # 7-bit address, fixed (datasheet, I2C interface)
CHIP_ID = const(0xFF)  # 0DH, Rev. B register map

_REG_DATA = const(0x00)  # XOUT LSB, MSB, YOUT LSB, MSB, ZOUT LSB, MSB (§9.2.1)
_REG_STATUS = const(0x06)  # bit 0 DRDY, bit 1 OVL, bit 2 DOR (§9.2.2)
_REG_TOUT = const(0x07)  # temperature, LSB first (§9.2.3)
_REG_CTRL1 = const(0x09)  # OSR[7:6] RNG[5:4] ODR[3:2] MODE[1:0] (Table 18)
_REG_CTRL2 = const(0x0A)  # SOFT_RST bit 7, ROL_PNT bit 6, INT_ENB bit 0 (Table 19)
_REG_SET_RESET = const(0x0B)  # "recommended that the register 0BH is written by 0x01" (§9.2.5)
_REG_CHIP_ID = const(0x0D)

_DRDY = const(0x01)
_OVL = const(0x02)
_DOR = const(0x04)
_MODE_CONT = const(0x01)
_RNG_8G = const(0x10)
_SOFT_RST = const(0x80)
# The datasheet gives no time for the soft reset; 10 ms is ample (other drivers wait as long).
_RESET_MS = const(10)

_B_RESET = b"\x80"
_B_SET_RESET = b"\x01"
_B_CTRL2 = b"\x00"  # interrupt pin enabled (INT_ENB = 0), no pointer roll-over, no reset
_B_STANDBY = b"\x00"

# CTRL1 fields (Table 18): output data rate and over-sample ratio codes
_ODR = {10: 0x00, 50: 0x04, 100: 0x08, 200: 0x0C}
_OSR = {512: 0x00, 256: 0x40, 128: 0x80, 64: 0xC0}
# Sensitivity (specifications table): LSB per gauss for each full-scale range
LSB_PER_G = {2: 12000, 8: 3000}


class QMC5883L:
    """i2c: a machine.I2C (or SoftI2C); addr: 0x0D. odr_hz: 10, 50, 100 or 200; range_g: 2 or 8
    (full scale, gauss); osr: 512, 256, 128 or 64 (over-sample ratio: larger is less noise, more
    current). Call init() once; then poll ready() and read_into() a preallocated buffer.

    Counters: overflow (samples read with OVL set), skipped (times ready() saw DOR: at least
    one sample was replaced before it was read, i.e. the driver polled too slowly)."""

    def __init__(self, i2c, addr=ADDR, odr_hz=100, range_g=8, osr=512):
        if odr_hz not in _ODR:
            raise ValueError("QMC5883L odr_hz must be 10, 50, 100 or 200, not %s" % (odr_hz,))
        if range_g not in LSB_PER_G:
            raise ValueError("QMC5883L range_g must be 2 or 8, not %s" % (range_g,))
        if osr not in _OSR:
            raise ValueError("QMC5883L osr must be 512, 256, 128 or 64, not %s" % (osr,))
        self.i2c = i2c
        self.addr = addr
        self.odr_hz = odr_hz
        self.range_g = range_g
        self.lsb_per_g = LSB_PER_G[range_g]
        self._ctrl1 = _OSR[osr] | (_RNG_8G if range_g == 8 else 0) | _ODR[odr_hz] | _MODE_CONT
        self.overflow = 0
        self.skipped = 0
        self._dor = False  # DOR already counted for the sample now waiting
        self._st = bytearray(1)
        self._buf = bytearray(7)  # 0x00..0x06: the three words and the status
        self._t = bytearray(2)

    def _write(self, reg, data):
        self.i2c.writeto_mem(self.addr, reg, data)

    def chip_id(self):
        b = self._st
        self.i2c.readfrom_mem_into(self.addr, _REG_CHIP_ID, b)
        return b[0]

    def init(self):
        """Check the chip id, soft-reset, write the SET/RESET period and the configuration
        (continuous mode). Raises OSError from the bus (ENODEV: nothing answers at the
        address), ValueError naming the id read when another chip answers, OSError(EIO) when
        the control register does not read back what was written."""
        cid = self.chip_id()
        if cid != CHIP_ID:
            raise ValueError("not a QMC5883L at 0x%02x: chip id 0x%02x, expected 0x%02x"
                             % (self.addr, cid, CHIP_ID))
        self._write(_REG_CTRL2, _B_RESET)  # SOFT_RST: all registers to default, standby (§9.2.4)
        time.sleep_ms(_RESET_MS)
        self._write(_REG_SET_RESET, _B_SET_RESET)
        self._write(_REG_CTRL2, _B_CTRL2)
        self._write(_REG_CTRL1, bytes((self._ctrl1,)))
        b = self._st
        self.i2c.readfrom_mem_into(self.addr, _REG_CTRL1, b)
        if b[0] != self._ctrl1:
            raise OSError(errno.EIO, "QMC5883L CTRL1 reads 0x%02x after writing 0x%02x" % (b[0], self._ctrl1))
        self._dor = False

    def off(self):
        """Standby (MODE = 00): no measurements, lowest current. init() starts it again."""
        self._write(_REG_CTRL1, _B_STANDBY)

    def ready(self):
        """True when a sample has landed since the data registers were last read (DRDY). Counts
        DOR in `skipped` once per unread sample. One 1-byte read; allocates nothing."""
        st = self._st
        self.i2c.readfrom_mem_into(self.addr, _REG_STATUS, st)
        s = st[0]
        if s & _DOR and not self._dor:
            self._dor = True
            self.skipped += 1
        return (s & _DRDY) != 0

    def read_into(self, out):
        """Read the latest sample into out[0..2] (X, Y, Z raw counts, signed 16-bit; divide by
        lsb_per_g for gauss). Returns False when the sample overflowed (OVL: some axis is
        beyond the 16-bit output and reads saturated at -32768/32767, §9.2.2), else True.
        out: an array('h') or a list of 3. One 7-byte read; allocates nothing."""
        b = self._buf
        self.i2c.readfrom_mem_into(self.addr, _REG_DATA, b)
        # Few locals on purpose: a function whose locals and value stack need more than 11
        # words gets its frame from the heap at every call (py/objfun.c, VM_MAX_STATE_ON_STACK).
        v = b[0] | (b[1] << 8)
        out[0] = v - 65536 if v & 0x8000 else v
        v = b[2] | (b[3] << 8)
        out[1] = v - 65536 if v & 0x8000 else v
        v = b[4] | (b[5] << 8)
        out[2] = v - 65536 if v & 0x8000 else v
        self._dor = False
        if b[6] & _OVL:
            self.overflow += 1
            return False
        return True

    def temperature_raw(self):
        """The temperature word (signed, about 100 LSB per deg C; the offset is not compensated,
        only differences are meaningful, §9.2.3)."""
        b = self._t
        self.i2c.readfrom_mem_into(self.addr, _REG_TOUT, b)
        v = b[0] | (b[1] << 8)
        return v - 65536 if v & 0x8000 else v
