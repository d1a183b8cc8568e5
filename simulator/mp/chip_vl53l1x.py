# Fake ST VL53L1X time-of-flight sensor at register level, on a simulated board's I2C bus.
#
# MicroPython dialect (runs beside the fakes under CPython and inside the WASI MicroPython).
# Register facts are those of firmware/lib/drivers/vl53l1x.py (VL53L1X datasheet DS12385; ST's
# Ultra Lite Driver VL53L1X_api.c, UM2510): 16-bit register index MSB first, auto-increment,
# big-endian values. What the fake models:
# - power-up: the register map is cleared and the model id (0x010F-0x0111 = EA CC 10) is set;
#   FIRMWARE__SYSTEM_STATUS (0x00E5) reads 0 until boot_us after power-up (about 1.2 ms in the
#   VL53L1 API), then bit 0; bit 1 once a range has completed. The chip powers up when it is
#   made, at every power-on reset of the board (same supply), when it is plugged back in, and
#   after a soft reset (0x0000 written 0x00 then 0x01).
# - configuration: every written byte is stored; the distance mode (0x004B: 0x14 short, 0x0A
#   long) and the timing budget (0x005E-0x005F, the ULD's table) decide the range limit and
#   the measurement period. Unknown values count as long mode, 100 ms.
# - ranging: SYSTEM__MODE_START (0x0087) 0x40/0x20 back-to-back, 0x10 single shot, 0x00 stop.
#   A result completes every timing budget of virtual time after the start. It is latched when
#   no interrupt is pending (GPIO__TIO_HV_STATUS 0x0031 bit 0 then equals the polarity set by
#   GPIO_HV_MUX__CTRL 0x0030 bit 4); results that complete while one is pending are dropped.
#   SYSTEM__INTERRUPT_CLEAR (0x0086) bit 0 clears it.
# - results from the scene (a callable(board) -> dict, called at every bus access; a result
#   that has completed takes the scene of the first access after it):
#   "distance_mm" true distance; "noise_mm" standard deviation (default 0); "spurious"
#   probability of a valid but wrong short reading; "lost" probability of a signal fail;
#   "lid_open" out-of-bounds status at the range limit; "max_mm" range limit (default 4000 mm in
#   long mode, 1300 mm in short mode; lower it for bright light); "unplugged" every access
#   raises OSError(ENODEV), as a NACK does (the chip is seen to power-cycle when an access
#   finds it plugged in again). Beyond the limit: signal fail; nearer than 40 mm: min range
#   clipped (neither is valid for the ULD).
# Randomness: a private xorshift32 stream seeded from the board's seed, node id and address, so
# the same scenario seed gives the same readings without touching the node's `random`.
import errno

import simboard

MODEL = b"\xea\xcc\x10"  # 0x010F model id, 0x0110 module type, 0x0111 mask revision
_MAP_SIZE = 0x0200
_BOOT_US = 1200  # VL53L1 API VL53L1_FIRMWARE_BOOT_TIME_US
_MIN_MM = 40  # datasheet: ranging from 4 cm

# device range status values (RESULT__RANGE_STATUS bits 4:0) and what the ULD makes of them
RAW_VALID = 9  # -> 0 no error
RAW_SIGMA_FAIL = 6  # -> 1
RAW_SIGNAL_FAIL = 4  # -> 2
RAW_MIN_CLIPPED = 8  # -> 3
RAW_OUT_OF_BOUNDS = 5  # -> 4
RAW_WRAP = 7  # -> 7

# ULD VL53L1X_GetTimingBudgetInMs: RANGE_CONFIG__TIMEOUT_MACROP_A_HI value -> ms (both modes)
_BUDGETS = {0x001D: 15, 0x0051: 20, 0x001E: 20, 0x00D6: 33, 0x0060: 33, 0x01AE: 50,
            0x00AD: 50, 0x02E1: 100, 0x01CC: 100, 0x03E1: 200, 0x02D9: 200, 0x0591: 500,
            0x048F: 500}


def _oserror(code, name):
    # CPython sets .errno only with (code, text); MicroPython takes both forms.
    return OSError(code, name)


class VL53L1X:
    def __init__(self, board, bus, scene, addr=0x29, boot_us=_BOOT_US, seed=None):
        """boot_us: firmware boot time after power-up; None: the chip never boots."""
        self.board = board
        self.bus = bus
        self.addr = addr
        self.scene = scene
        self.boot_us = boot_us
        self.regs = bytearray(_MAP_SIZE)
        self.ptr = 0
        s = board.seed if seed is None else seed
        h = 2166136261
        for ch in "%s/%s/vl53l1x/%d" % (s, board.node_id, addr):
            h = ((h ^ ord(ch)) * 16777619) & 0xFFFFFFFF
        self._rng = h or 1
        self._gone = False
        self.measurements = 0  # results latched since made (for tests and benches)
        self.last = None  # (raw status, mm) of the last latched result
        self.ranging = 0
        self._charge = 0.0  # mA·µs drawn until _since
        self._since = board.clock.now_us
        board.peripherals.append(self)
        devs = board.i2c_devices.get(bus)
        if devs is None:
            devs = {}
            board.i2c_devices[bus] = devs
        devs[addr] = self
        hooks = getattr(board, "boot_hooks", None)
        if hooks is not None:
            hooks.append(self._on_boot)
        self.power_up()

    # ---- power -----------------------------------------------------------------------------
    # Supply current (DS12385, electrical characteristics): active ranging, VCSEL included,
    # 16 mA typical / 18 mA max (the max is booked); software standby a few µA (7 µA booked).
    RANGING_MA = 18.0
    STANDBY_MA = 0.007

    def _account(self):
        now = self.board.clock.now_us
        ma = self.RANGING_MA if self.ranging else self.STANDBY_MA
        self._charge += (now - self._since) * ma
        self._since = now

    def charge_ma_us(self):
        self._account()
        return self._charge

    def power_up(self):
        self._account()
        r = self.regs
        for i in range(len(r)):
            r[i] = 0
        r[0x010F] = MODEL[0]
        r[0x0110] = MODEL[1]
        r[0x0111] = MODEL[2]
        r[0x0000] = 0x01  # SOFT_RESET: out of reset
        now = self.board.clock.now_us
        self.booted_at = None if self.boot_us is None else now + self.boot_us
        self.ranging = 0  # 0 stopped, 1 back-to-back, 2 single shot
        self.next_us = 0
        self.ready = False
        self.ranged = False
        self.in_reset = False

    def _on_boot(self, board):
        if board.reset_cause == simboard.PWRON_RESET:
            self.power_up()

    def is_booted(self):
        return self.booted_at is not None and self.board.clock.now_us >= self.booted_at and not self.in_reset

    # ---- randomness --------------------------------------------------------------------------
    def _rand(self):
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x
        return x / 4294967296.0

    def _gauss(self):
        # Irwin-Hall: the sum of 12 uniforms minus 6 has mean 0 and variance 1 (no math module).
        t = 0.0
        for _ in range(12):
            t += self._rand()
        return t - 6.0

    # ---- configuration decoded -----------------------------------------------------------------
    def short_mode(self):
        return self.regs[0x004B] == 0x14

    def budget_us(self):
        a = (self.regs[0x005E] << 8) | self.regs[0x005F]
        return _BUDGETS.get(a, 100) * 1000

    def polarity(self):
        # ULD VL53L1X_GetInterruptPolarity: 1 (active high) when 0x0030 bit 4 is 0
        return 0 if self.regs[0x0030] & 0x10 else 1

    # ---- the world -------------------------------------------------------------------------
    def _check_bus(self):
        sc = self.scene(self.board)
        if sc.get("unplugged"):
            self._gone = True
            raise _oserror(errno.ENODEV, "ENODEV")
        if self._gone:
            self._gone = False
            self.power_up()  # plugged back in: a fresh power-up
        return sc

    def _measure(self, sc):
        limit = sc.get("max_mm")
        if limit is None:
            limit = 1300 if self.short_mode() else 4000
        d = float(sc.get("distance_mm", 0.0))
        noise = float(sc.get("noise_mm", 0.0) or 0.0)
        u = self._rand()  # one draw per result for the faults, whatever happens
        lost = float(sc.get("lost", 0.0) or 0.0)
        spurious = float(sc.get("spurious", 0.0) or 0.0)
        if sc.get("lid_open"):
            raw, mm = RAW_OUT_OF_BOUNDS, limit
        elif u < lost:
            raw, mm = RAW_SIGNAL_FAIL, d + noise * self._gauss()
        elif d > limit:
            raw, mm = RAW_SIGNAL_FAIL, limit
        elif u < lost + spurious:
            raw, mm = RAW_VALID, _MIN_MM + (d - _MIN_MM) * self._rand()
        else:
            mm = d + noise * self._gauss()
            raw = RAW_VALID if mm >= _MIN_MM else RAW_MIN_CLIPPED
        mm = int(mm + 0.5)
        if mm < 0:
            mm = 0
        if mm > 0xFFFF:
            mm = 0xFFFF
        return raw, mm

    def _latch(self, sc):
        raw, mm = self._measure(sc)
        r = self.regs
        r[0x0089] = raw
        r[0x008A] = 0
        r[0x008B] = (r[0x008B] + 1) & 0xFF  # RESULT__STREAM_COUNT
        r[0x0096] = mm >> 8
        r[0x0097] = mm & 0xFF
        self.ready = True
        self.ranged = True
        self.measurements += 1
        self.last = (raw, mm)

    def _update(self, sc):
        if not self.ranging:
            return
        now = self.board.clock.now_us
        if now < self.next_us:
            return
        period = self.budget_us()
        if not self.ready:
            self._latch(sc)
        if self.ranging == 2:
            self.ranging = 0
            return
        # results that completed while one was pending are lost; the cadence goes on
        self.next_us += ((now - self.next_us) // period + 1) * period

    # ---- register reads and writes ---------------------------------------------------------
    def _get(self, a):
        if a >= _MAP_SIZE:
            return 0
        if a == 0x0031:  # GPIO__TIO_HV_STATUS
            line = self.polarity() if self.ready else 1 - self.polarity()
            return (self.regs[a] & 0xFE) | line
        if a == 0x00E5:  # FIRMWARE__SYSTEM_STATUS
            if not self.is_booted():
                return 0
            return 0x03 if self.ranged else 0x01
        return self.regs[a]

    def _put(self, a, v):
        if a >= _MAP_SIZE or a in (0x0031, 0x00E5, 0x010F, 0x0110, 0x0111):
            return  # outside the map or read-only: ignored
        if a == 0x0000:  # SOFT_RESET: 0 holds the chip in reset, 1 lets it boot again
            if v & 1 == 0:
                self.in_reset = True
                self.ranging = 0
            elif self.in_reset:
                self.power_up()
            return
        if not self.is_booted():
            return
        self.regs[a] = v
        if a == 0x0086 and v & 1:  # SYSTEM__INTERRUPT_CLEAR
            self.ready = False
        elif a == 0x0087:  # SYSTEM__MODE_START
            self._account()
            if v & 0x60:
                self.ranging = 1
            elif v & 0x10:
                self.ranging = 2
            else:
                self.ranging = 0
            if self.ranging:
                self.next_us = self.board.clock.now_us + self.budget_us()

    # the board's bus calls these (fake_machine: a register access is a write of the
    # register index, then a read)
    def i2c_write(self, board, data):
        self._update(self._check_bus())
        if len(data) < 2:
            return
        a = (data[0] << 8) | data[1]
        for i in range(2, len(data)):
            self._put(a, data[i])
            a += 1
        self.ptr = a

    def i2c_read(self, board, n):
        self._update(self._check_bus())
        out = bytearray(n)
        a = self.ptr
        for i in range(n):
            out[i] = self._get(a)
            a += 1
        self.ptr = a
        return bytes(out)
