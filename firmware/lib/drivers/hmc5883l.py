# Honeywell HMC5883L three-axis magnetometer on I2C, at register level.
#
# Sources (docs/drivers/magnetometers.md lists them with the figures taken), all from the
# HMC5883L datasheet (Honeywell, "3-Axis Digital Compass IC HMC5883L"):
# - register list and pointer rules (Table 2, "Register Access"): address 0x1E; the pointer
#   moves on by one after each register read.
# - Configuration Register A (Tables 3-5): MA[6:5] samples averaged 1/2/4/8, DO[4:2] data
#   output rate 0.75-75 Hz in continuous mode ("other output rates with maximum rate of 160 Hz
#   can be achieved by monitoring DRDY interrupt pin in single measurement mode"), MS[1:0]
#   bias (00 normal).
# - Configuration Register B (Table 9): GN[7:5] gain, 1370 ... 230 LSB/gauss; output range
#   -2048..2047; the first measurement after a gain change still uses the old gain.
# - Mode Register: MD[1:0] 00 continuous, 01 single (the power-up default), 1x idle; in
#   continuous mode the first set is there 2/fDO after the write, then one every 1/fDO.
# - Data Output X, Z, Y registers 0x03-0x08, each MSB first (note the order: X, Z, Y); a
#   channel that overflows reads -4096 until the next valid measurement (Tables 13-15).
# - Status Register 0x09 (Tables 16-17): RDY bit 0, LOCK bit 1 (some but not all six data
#   registers read: new data waits until all six are). Identification A/B/C 0x0A-0x0C:
#   ASCII 'H', '4', '3'.
#
# Continuous mode only (75 Hz at most; 100 Hz would need single-measurement mode triggered
# per sample, not implemented; init() uses one single measurement to absorb the gain change,
# see there). One sample costs two I2C transactions: ready() reads the status
# (1 byte), read_into() the six data registers in one burst (which also releases LOCK).
# read_into() allocates nothing. The part has no overflow flag and no data-overrun flag: an
# overflow shows as -4096 in the channel, a missed sample is not visible at all.
import errno
import time
from micropython import const

ADDR = const(0x1E)
CHIP_ID = b"H43"  # Identification Registers A, B, C

_REG_CRA = const(0x00)
_REG_CRB = const(0x01)
_REG_MODE = const(0x02)
_REG_DATA = const(0x03)  # X MSB, X LSB, Z MSB, Z LSB, Y MSB, Y LSB
_REG_STATUS = const(0x09)
_REG_ID = const(0x0A)

_RDY = const(0x01)
_MODE_CONT = b"\x00"
_MODE_SINGLE = b"\x01"
_SINGLE_MS = const(6)  # operational example, single-measurement mode: "Wait 6 ms"
_SINGLE_WAIT_MS = const(20)  # then poll RDY this long at most
_MODE_IDLE = b"\x02"
OVERFLOW = const(-4096)  # what an overflowing channel reads

# DO[2:0] codes 0..6 (Table 5): typical data output rate, Hz, in continuous mode
ODR_HZ = (0.75, 1.5, 3, 7.5, 15, 30, 75)
# GN[2:0] codes 0..7 (Table 9): (recommended field range in gauss, gain in LSB/gauss)
GAINS = ((0.88, 1370), (1.3, 1090), (1.9, 820), (2.5, 660), (4.0, 440), (4.7, 390),
         (5.6, 330), (8.1, 230))
_AVG = {1: 0x00, 2: 0x20, 4: 0x40, 8: 0x60}  # MA[1:0] in CRA bits 6:5


class HMC5883L:
    """i2c: a machine.I2C (or SoftI2C); addr: 0x1E. odr_hz: 0.75, 1.5, 3, 7.5, 15, 30 or 75
    (continuous mode tops out at 75 Hz); range_g: the field range wanted, gauss: the smallest
    gain range of Table 9 that covers it is used (1.3 G, 1090 LSB/G, the part's default, holds
    the earth's field with margin); avg: samples averaged per output, 1, 2, 4 or 8. Call init()
    once; then poll ready() and read_into() a preallocated buffer.

    Counters: overflow (samples with a channel at -4096); skipped stays 0 (the part cannot tell:
    kept for the same interface as the QMC5883L driver)."""

    def __init__(self, i2c, addr=ADDR, odr_hz=75, range_g=1.3, avg=1):
        if odr_hz not in ODR_HZ:
            raise ValueError("HMC5883L odr_hz must be one of 0.75, 1.5, 3, 7.5, 15, 30, 75 (75 Hz"
                             " is the most in continuous mode), not %s" % (odr_hz,))
        gain = -1
        for i in range(len(GAINS)):
            if GAINS[i][0] >= range_g:
                gain = i
                break
        if gain < 0:
            raise ValueError("HMC5883L range_g must be at most 8.1, not %s" % (range_g,))
        if avg not in _AVG:
            raise ValueError("HMC5883L avg must be 1, 2, 4 or 8, not %s" % (avg,))
        self.i2c = i2c
        self.addr = addr
        self.odr_hz = odr_hz
        self.range_g = GAINS[gain][0]
        self.lsb_per_g = GAINS[gain][1]
        self._cra = _AVG[avg] | (ODR_HZ.index(odr_hz) << 2)  # MS = 00: normal measurement
        self._crb = gain << 5
        self.overflow = 0
        self.skipped = 0
        self._st = bytearray(1)
        self._buf = bytearray(6)
        self._id = bytearray(3)

    def _write(self, reg, data):
        self.i2c.writeto_mem(self.addr, reg, data)

    def chip_id(self):
        """The three identification bytes (b'H43' for an HMC5883L)."""
        b = self._id
        self.i2c.readfrom_mem_into(self.addr, _REG_ID, b)
        return bytes(b)

    def init(self):
        """Check the identification registers, write the configuration and start continuous
        mode. Raises OSError from the bus (ENODEV: nothing answers at the address: many
        "HMC5883L" GY-271 modules carry a QMC5883L at 0x0D), ValueError naming the id read when
        another chip answers, OSError(EIO) when the configuration does not read back."""
        cid = self.chip_id()
        if cid != CHIP_ID:
            raise ValueError("not an HMC5883L at 0x%02x: id %r, expected %r" % (self.addr, cid, CHIP_ID))
        self._write(_REG_CRA, bytes((self._cra,)))
        self._write(_REG_CRB, bytes((self._crb,)))
        b = bytearray(2)
        self.i2c.readfrom_mem_into(self.addr, _REG_CRA, b)
        if b[0] != self._cra or b[1] != self._crb:
            raise OSError(errno.EIO, "HMC5883L configuration reads 0x%02x 0x%02x after writing 0x%02x 0x%02x"
                          % (b[0], b[1], self._cra, self._crb))
        # Drop whatever set is there (the power-up single measurement, or one from before a
        # reset of the MCU): reading all six clears RDY, and any LOCK a half-done read left.
        self.i2c.readfrom_mem_into(self.addr, _REG_DATA, self._buf)
        # "The very first measurement after a gain change maintains the same gain as the
        # previous setting" (Table 9 notes): spend it on one single measurement (6 ms in the
        # datasheet's single-mode example), then continuous mode, where every set has the new
        # gain; the first lands 2/fDO later. The mode register is written, never read (reading
        # it sets LOCK, Table 17).
        self._write(_REG_MODE, _MODE_SINGLE)
        time.sleep_ms(_SINGLE_MS)
        n = 0
        while not self.ready() and n < _SINGLE_WAIT_MS:
            time.sleep_ms(1)
            n += 1
        self._write(_REG_MODE, _MODE_CONT)
        self.i2c.readfrom_mem_into(self.addr, _REG_DATA, self._buf)  # the single set, old gain

    def off(self):
        """Idle mode: no measurements. init() starts it again."""
        self._write(_REG_MODE, _MODE_IDLE)

    def ready(self):
        """True when a data set has been placed since the data registers were last read in full
        (RDY). One 1-byte read; allocates nothing."""
        st = self._st
        self.i2c.readfrom_mem_into(self.addr, _REG_STATUS, st)
        return (st[0] & _RDY) != 0

    def read_into(self, out):
        """Read the latest sample into out[0..2] as X, Y, Z raw counts (signed; divide by
        lsb_per_g for gauss); the registers hold X, Z, Y, and the driver reorders them.
        Returns False when a channel overflowed (it reads -4096), else True. out: an
        array('h') or a list of 3. One 6-byte read; allocates nothing."""
        b = self._buf
        self.i2c.readfrom_mem_into(self.addr, _REG_DATA, b)
        # Few locals on purpose: a function whose locals and value stack need more than 11
        # words gets its frame from the heap at every call (py/objfun.c, VM_MAX_STATE_ON_STACK).
        v = (b[0] << 8) | b[1]
        out[0] = v - 65536 if v & 0x8000 else v
        v = (b[4] << 8) | b[5]
        out[1] = v - 65536 if v & 0x8000 else v
        v = (b[2] << 8) | b[3]
        out[2] = v - 65536 if v & 0x8000 else v
        if out[0] == OVERFLOW or out[1] == OVERFLOW or out[2] == OVERFLOW:
            self.overflow += 1
            return False
        return True

    def temperature_raw(self):
        """None: the HMC5883L has no temperature output (same interface as the QMC5883L)."""
        return None
