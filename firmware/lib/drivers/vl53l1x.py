# ST VL53L1X time-of-flight ranging sensor on I2C, at register level.
#
# Sources (docs/drivers/vl53l1x.md lists them with the figures taken):
# - VL53L1X datasheet (DS12385): I2C address 0x29, up to 400 kHz, 16-bit register index sent
#   MSB first, multi-byte values big-endian, auto-incremented index; ranging up to 4 m.
# - ST's Ultra Lite Driver (STSW-IMG009, VL53L1X_api.c; user manuals UM2510 and UM2356):
#   register addresses, the default configuration block for 0x2D-0x87, the init sequence of
#   VL53L1X_SensorInit, data ready (VL53L1X_CheckForDataReady) and the range status table.
# - VL53L1 API (vl53l1_ll_def.h / platform config): firmware boot takes about 1.2 ms, boot
#   polling gives up after 500 ms.
#
# The default configuration is long distance mode (up to 4 m) with a 100 ms timing budget:
# the ULD's defaults, kept as they are. Only ULD range status 0 ("no error") gives a distance;
# any other status (sigma fail, signal fail, out of bounds, wrap-around, min range, ...) is a
# failed ping: None, never a number.
import errno
import time
from micropython import const

_VHV_CONFIG__TIMEOUT_MACROP_LOOP_BOUND = const(0x0008)
_VHV_CONFIG__INIT = const(0x000B)
_CONFIG_START = const(0x002D)  # the default configuration block starts here ...
_GPIO_HV_MUX__CTRL = const(0x0030)  # bit 4: interrupt polarity, 0 = active high; the next
# register, GPIO__TIO_HV_STATUS (0x0031), bit 0: the interrupt line (data ready == polarity)
_SYSTEM__INTERRUPT_CLEAR = const(0x0086)
_SYSTEM__MODE_START = const(0x0087)  # ... and ends here: 0x40 ranging, 0x00 stopped
_RESULT__RANGE_STATUS = const(0x0089)  # bits 4:0 device status; 0x0096-0x0097 distance mm
_RESULT_LEN = const(15)  # 0x0089 .. 0x0097 in one read
_DIST_OFS = const(13)  # RESULT__FINAL_CROSSTALK_CORRECTED_RANGE_MM_SD0 = 0x0096 - 0x0089
_FIRMWARE__SYSTEM_STATUS = const(0x00E5)  # boot state, 0 = not booted
_IDENTIFICATION__MODEL_ID = const(0x010F)  # model id 0xEA, then module type 0xCC

MODEL_ID = const(0xEACC)  # ULD VL53L1X_GetSensorId: the 16-bit read at 0x010F
ADDR = const(0x29)  # datasheet: default 7-bit I2C address
MAX_MM = const(4000)  # datasheet: "up to 400 cm" (long distance mode)
MIN_MM = const(40)  # datasheet: ranging from 4 cm

_BOOT_TIMEOUT_MS = const(500)  # VL53L1 API: VL53L1_BOOT_COMPLETION_POLLING_TIMEOUT_MS
_INIT_RANGE_TIMEOUT_MS = const(1000)  # ULD SensorInit: 1000 polls 1 ms apart
_POLL_MS = const(5)

# VL51L1X_DEFAULT_CONFIGURATION of ST's ULD (VL53L1X_api.c, STSW-IMG009), the 91 register
# values for 0x2D..0x87 written at init (data, not code). Notable ones: 0x30 = 0x01 (interrupt
# active high), 0x46 = 0x20 (interrupt on new sample), 0x4B = 0x0A (long distance mode),
# 0x5E-0x5F = 0x01CC (100 ms timing budget in long mode), 0x87 = 0x00 (not ranging).
_DEFAULT_CONFIG = (
    b"\x00\x00\x00\x01\x02\x00\x02\x08"  # 0x2D-0x34
    b"\x00\x08\x10\x01\x01\x00\x00\x00"  # 0x35-0x3C
    b"\x00\xff\x00\x0f\x00\x00\x00\x00"  # 0x3D-0x44
    b"\x00\x20\x0b\x00\x00\x02\x0a\x21"  # 0x45-0x4C
    b"\x00\x00\x05\x00\x00\x00\x00\xc8"  # 0x4D-0x54
    b"\x00\x00\x38\xff\x01\x00\x08\x00"  # 0x55-0x5C
    b"\x00\x01\xcc\x0f\x01\xf1\x0d\x01"  # 0x5D-0x64
    b"\x68\x00\x80\x08\xb8\x00\x00\x00"  # 0x65-0x6C
    b"\x00\x0f\x89\x00\x00\x00\x00\x00"  # 0x6D-0x74
    b"\x00\x00\x01\x0f\x0d\x0e\x0e\x00"  # 0x75-0x7C
    b"\x00\x02\xc7\xff\x9b\x00\x00\x00"  # 0x7D-0x84
    b"\x01\x00\x00"  # 0x85-0x87
)

# ULD status_rtn: device range status (RESULT__RANGE_STATUS & 0x1F, 0..23) to the ULD's
# status: 0 no error, 1 sigma fail, 2 signal fail, 3 min range clipped, 4 out of bounds,
# 5 hardware fail, 6 valid without wrap-around check, 7 wrap-around, 9 crosstalk signal fail,
# 10 synchronisation interrupt, 11 merged pulse, 12 lack of signal, 13 min range fail,
# 255 none / unknown (UM2510; VL53L1 API vl53l1_def.h range status defines).
_STATUS = b"\xff\xff\xff\x05\x02\x04\x01\x07\x03\x00\xff\xff\x09\x0d\xff\xff\xff\xff\x0a\x06\xff\xff\x0b\x0c"

_B_START = b"\x40"
_B_STOP = b"\x00"
_B_CLEAR = b"\x01"
_B_VHV_BOUND = b"\x09"  # ULD: "two bounds VHV"
_B_VHV_INIT = b"\x00"  # ULD: "start VHV from the previous temperature"


def range_status(raw):
    """The ULD range status (0 = valid) for a RESULT__RANGE_STATUS register value."""
    raw &= 0x1F
    return _STATUS[raw] if raw < 24 else 255


class VL53L1X:
    """i2c: a machine.I2C (or SoftI2C); addr: the 7-bit address. Call init() once after
    power-up; then ping_mm()/pings() start ranging on demand and off() stops it."""

    def __init__(self, i2c, addr=ADDR):
        self.i2c = i2c
        self.addr = addr
        self.min_mm = MIN_MM
        self.max_mm = MAX_MM
        self.status = 255  # ULD range status of the last ping (255: none read)
        self._ranging = False
        self._b1 = bytearray(1)
        self._b2 = bytearray(2)
        self._res = bytearray(_RESULT_LEN)

    # ---- register access (datasheet: 16-bit index, MSB first) ---------------------------
    def _read(self, reg, buf):
        self.i2c.readfrom_mem_into(self.addr, reg, buf, addrsize=16)

    def _write(self, reg, data):
        self.i2c.writeto_mem(self.addr, reg, data, addrsize=16)

    def model_id(self):
        b = self._b2
        self._read(_IDENTIFICATION__MODEL_ID, b)
        return (b[0] << 8) | b[1]

    def booted(self):
        """ULD VL53L1X_BootState: FIRMWARE__SYSTEM_STATUS is 0 until the firmware has booted
        (bit 0, firmware_bootup; bit 1 is set once a range has been done, and may read alone
        after a host reset that did not power-cycle the sensor)."""
        b = self._b1
        self._read(_FIRMWARE__SYSTEM_STATUS, b)
        return b[0] != 0

    def data_ready(self):
        """ULD VL53L1X_CheckForDataReady: GPIO__TIO_HV_STATUS bit 0 equals the interrupt
        polarity, which is the inverse of GPIO_HV_MUX__CTRL bit 4. One read of both."""
        b = self._b2
        self._read(_GPIO_HV_MUX__CTRL, b)
        pol = 0 if b[0] & 0x10 else 1
        return (b[1] & 1) == pol

    # ---- set-up ----------------------------------------------------------------------------
    def init(self, boot_timeout_ms=_BOOT_TIMEOUT_MS):
        """Wait for the firmware to boot, check the model id, write the ULD's default
        configuration and run its first-range sequence. Raises OSError from the bus (ENODEV:
        no chip at the address), ValueError naming the id read when another chip answers, and
        OSError(ETIMEDOUT) when the chip does not boot or range in time."""
        t0 = time.ticks_ms()
        while not self.booted():
            if time.ticks_diff(time.ticks_ms(), t0) >= boot_timeout_ms:
                self._check_id()  # a different chip explains a boot register stuck at 0
                raise OSError(errno.ETIMEDOUT, "VL53L1X did not boot")
            time.sleep_ms(1)
        self._check_id()
        # ULD VL53L1X_SensorInit: the default block, then one range to settle the VHV loop.
        self._write(_CONFIG_START, _DEFAULT_CONFIG)
        self._ranging = False
        self.start()
        if not self._wait_ready(_INIT_RANGE_TIMEOUT_MS):
            self.stop()
            raise OSError(errno.ETIMEDOUT, "VL53L1X first range timed out")
        self._write(_SYSTEM__INTERRUPT_CLEAR, _B_CLEAR)
        self.stop()
        self._write(_VHV_CONFIG__TIMEOUT_MACROP_LOOP_BOUND, _B_VHV_BOUND)
        self._write(_VHV_CONFIG__INIT, _B_VHV_INIT)

    def _check_id(self):
        mid = self.model_id()
        if mid != MODEL_ID:
            raise ValueError("not a VL53L1X at 0x%02x: model id 0x%04x, expected 0x%04x"
                             % (self.addr, mid, MODEL_ID))

    # ---- ranging ---------------------------------------------------------------------------
    def start(self):
        """Clear any pending result, then start back-to-back ranging."""
        self._write(_SYSTEM__INTERRUPT_CLEAR, _B_CLEAR)
        self._write(_SYSTEM__MODE_START, _B_START)
        self._ranging = True

    def stop(self):
        self._write(_SYSTEM__MODE_START, _B_STOP)
        self._ranging = False

    def off(self):
        """Stop ranging: the sensor waits in software standby until the next ping. (Cutting
        its supply or XSHUT would need a pin this driver is not given.)"""
        self.stop()

    def _wait_ready(self, timeout_ms):
        t0 = time.ticks_ms()
        while not self.data_ready():
            if time.ticks_diff(time.ticks_ms(), t0) >= timeout_ms:
                return False
            time.sleep_ms(_POLL_MS)
        return True

    def ping_mm(self, timeout_ms=200):
        """The next range in whole mm, or None: no result within timeout_ms, or a range status
        other than valid, or a distance beyond the sensor's 4 m. Starts ranging if stopped.
        Only bus errors raise (OSError)."""
        if not self._ranging:
            self.start()
        if not self._wait_ready(timeout_ms):
            self.status = 255
            return None
        r = self._res
        self._read(_RESULT__RANGE_STATUS, r)  # ULD VL53L1X_GetResult: status .. distance
        self._write(_SYSTEM__INTERRUPT_CLEAR, _B_CLEAR)  # lets the next result in
        st = range_status(r[0])
        self.status = st
        if st != 0:
            return None
        mm = (r[_DIST_OFS] << 8) | r[_DIST_OFS + 1]
        if mm > MAX_MM:
            return None
        return mm

    def pings(self, n, air_c=None, timeout_ms=200):
        """n ranges, one per timing budget: a list of ints (mm) and Nones. air_c is accepted
        for the same call as the ultrasonic driver; light needs no temperature correction."""
        out = [None] * n if n > 0 else []
        for i in range(len(out)):
            out[i] = self.ping_mm(timeout_ms)
        return out
