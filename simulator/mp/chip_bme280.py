# Fake Bosch BME280 (temperature, pressure, humidity) at register level, on a simulated board's
# I2C bus.
#
# MicroPython dialect (runs beside the fakes under CPython and inside the WASI MicroPython).
# Register facts are those of the BME280 datasheet BST-BME280-DS002 (memory map §5.3 Table 18,
# registers §5.4, trimming parameters §4.2.2 Table 16, measurement time §9.1). What it models:
# - I2C (§6.2): a write is a register address then data, more (address, data) pairs may follow
#   (writes do not auto-increment); a read starts at the last address written and
#   auto-increments.
# - power-up (made, a board power-on reset, plugged back in, 0xB6 written to reset 0xE0): every
#   register to its reset state (Table 18: data 0x80 00 00 80 00 00 80 00, controls 0), the
#   chip id at 0xD0, then the NVM copy: status im_update (0xF3 bit 0) reads 1 and the trimming
#   registers read 0 for nvm_us, after which they hold the calibration.
# - ctrl_hum (0xF2) is latched by the next write to ctrl_meas (0xF4), as §5.4.3 says.
# - forced mode (ctrl_meas mode 01 or 10): one conversion of measure_us (default: the typical
#   time of §9.1, 1 + 2·T + (2·P + 0.5) + (2·H + 0.5) ms for the oversampling factors), status
#   measuring (bit 3) set meanwhile; the data registers keep the previous results until it ends;
#   then the mode bits read 00 (sleep). A forced write during a conversion is ignored.
#   Normal mode (11) measures every t_measure + t_standby (config t_sb), with the scene of the
#   first access after a conversion has ended. Sleep (00) stops it.
# - results: the scene is sampled when a conversion starts, scene(board) -> {"temp_c", "hpa",
#   "rh"} (+ "noise_c", "noise_hpa", "noise_rh": standard deviations, default 0; "unplugged":
#   every access raises OSError(ENODEV), as a NACK does). The raw ADC values are those that the
#   datasheet's integer compensation (§4.2.3, 64-bit pressure) turns back into the scene's
#   values: found by bisection over the ADC range (the compensation is monotonic in each raw
#   value), temperature first, then pressure and humidity with that temperature's t_fine. The
#   fake's compensation is its own transcription of the datasheet, not the driver's code, so a
#   slip in either shows as a reading that misses the scene. The
#   values are quantised as the chip does: temperature and pressure have 16 + (osrs - 1) bits
#   without the IIR filter and 20 bits with it (§3.4.2, §3.4.3), humidity 16 bits (§3.4.1); a
#   skipped measurement reads 0x80000 (0x8000 for humidity). The IIR filter's smoothing itself
#   is not modelled. Values beyond the ADC range saturate at its ends.
# Calibration: CAL below, or cal= in the same form. Randomness (noise only): a private
# xorshift32 stream seeded from the board's seed (or seed=), node id and address.
import errno

import simboard

CHIP_ID = 0x60

# Trimming parameters of the fake part. dig_T1..dig_P9 are those of the worked example in the
# BMP280 datasheet (BST-BMP280-DS001, §3.12; the BME280 uses the same T/P compensation);
# dig_H1..dig_H6 are a plausible set of the size reported by real BME280 parts (dig_H4 and dig_H5
# small and positive, dig_H3 = 0), widely used in public examples and tests. With these,
# adc_T 519888 gives 25.08 deg C, adc_P 415148 gives 100653 Pa and adc_H 30000 about 55 %RH.
CAL = {"T1": 27504, "T2": 26435, "T3": -1000,
       "P1": 36477, "P2": -10685, "P3": 3024, "P4": 2855, "P5": 140, "P6": -7,
       "P7": 15500, "P8": -14600, "P9": 6000,
       "H1": 75, "H2": 362, "H3": 0, "H4": 313, "H5": 50, "H6": 30}

_NVM_US = 1000  # NVM copy after power-up: inside the datasheet's 2 ms start-up time (Table 1)
# t_sb (config bits 7:5) in µs, §5.4.6 Table 27
_T_SB_US = (500, 62500, 125000, 250000, 500000, 1000000, 10000, 20000)
_OSRS = (0, 1, 2, 4, 8, 16, 16, 16)  # osrs_x code -> oversampling factor (101 and above: x16)


def _oserror(code, name):
    # CPython sets .errno only with (code, text); MicroPython takes both forms.
    return OSError(code, name)


# ---- the datasheet's integer compensation (§4.2.3), used to invert it --------------------------
def _cdiv(n, d):
    q = abs(n) // abs(d)  # C division truncates toward zero
    return q if (n < 0) == (d < 0) else -q


def t_fine_of(adc_t, c):
    a = ((adc_t >> 3) - (c["T1"] << 1)) * c["T2"] >> 11
    d = (adc_t >> 4) - c["T1"]
    return a + (((d * d) >> 12) * c["T3"] >> 14)


def pressure_q8_of(adc_p, t_fine, c):
    """Pa/256, BME280_compensate_P_int64."""
    v1 = t_fine - 128000
    v2 = v1 * v1 * c["P6"] + ((v1 * c["P5"]) << 17) + (c["P4"] << 35)
    v1 = ((v1 * v1 * c["P3"]) >> 8) + ((v1 * c["P2"]) << 12)
    v1 = (((1 << 47) + v1) * c["P1"]) >> 33
    if v1 == 0:
        return 0
    p = _cdiv((((1048576 - adc_p) << 31) - v2) * 3125, v1)
    v1 = (c["P9"] * (p >> 13) * (p >> 13)) >> 25
    v2 = (c["P8"] * p) >> 19
    return ((p + v1 + v2) >> 8) + (c["P7"] << 4)


def humidity_q10_of(adc_h, t_fine, c):
    """%RH·1024, bme280_compensate_H_int32."""
    x = t_fine - 76800
    left = ((adc_h << 14) - (c["H4"] << 20) - c["H5"] * x + 16384) >> 15
    right = (((((x * c["H6"]) >> 10) * (((x * c["H3"]) >> 11) + 32768)) >> 10) + 2097152) * c["H2"]
    x = left * ((right + 8192) >> 14)
    x = x - (((((x >> 15) * (x >> 15)) >> 7) * c["H1"]) >> 4)
    return min(max(x, 0), 419430400) >> 12


def solve(f, target, bits, full_bits):
    """The raw value on the grid of `bits` significant bits (of a `full_bits` ADC) for which the
    monotonic f comes closest to target: bisection, then the neighbours (integer rounding can
    make f step back by a count here and there). Where a run of raw values all give the target
    (the clamps of the humidity formula at 0 and 100 %), the end of the run inside the ADC range
    is taken: the raw value a real chip reads there."""
    shift = full_bits - bits
    n = 1 << bits
    sign = 1 if f((n - 1) << shift) >= f(0) else -1
    tgt = sign * target

    def first(strict):
        # the first k in 0..n with sign·f(k) >= tgt (> tgt when strict); n when there is none
        lo = 0
        hi = n
        while lo < hi:
            mid = (lo + hi) // 2
            v = sign * f(mid << shift)
            if v > tgt or (v == tgt and not strict):
                hi = mid
            else:
                lo = mid + 1
        return lo

    k1 = first(False)
    k2 = first(True) - 1
    if k2 >= k1:
        if k1 == 0 and k2 < n - 1:
            return k2 << shift
        if k2 == n - 1 and k1 > 0:
            return k1 << shift
        return ((k1 + k2) // 2) << shift
    best = 0
    best_err = None
    for k in range(k2 - 1, k1 + 2):
        if 0 <= k < n:
            err = abs(f(k << shift) - target)
            if best_err is None or err < best_err:
                best = k
                best_err = err
    return best << shift


def calibration_bytes(c):
    """The register image of the trimming parameters: 26 bytes for 0x88..0xA1 and 7 bytes for
    0xE1..0xE7 (Table 16). 0xA0 is reserved (0)."""
    lo = bytearray(26)
    i = 0
    for k in ("T1", "T2", "T3", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9"):
        v = c[k] & 0xFFFF
        lo[i] = v & 0xFF
        lo[i + 1] = v >> 8
        i += 2
    lo[25] = c["H1"] & 0xFF
    hi = bytearray(7)
    h2 = c["H2"] & 0xFFFF
    h4 = c["H4"] & 0xFFF
    h5 = c["H5"] & 0xFFF
    hi[0] = h2 & 0xFF
    hi[1] = h2 >> 8
    hi[2] = c["H3"] & 0xFF
    hi[3] = h4 >> 4  # 0xE4: dig_H4[11:4]
    hi[4] = ((h5 & 0x0F) << 4) | (h4 & 0x0F)  # 0xE5: dig_H5[3:0] | dig_H4[3:0]
    hi[5] = h5 >> 4  # 0xE6: dig_H5[11:4]
    hi[6] = c["H6"] & 0xFF
    return bytes(lo), bytes(hi)


def measure_time_typ_us(ot, op, oh):
    """§9.1: t_measure,typ = 1 + 2·T + (2·P + 0.5) + (2·H + 0.5) ms, terms of skipped
    measurements left out."""
    us = 1000 + 2000 * ot
    if op:
        us += 2000 * op + 500
    if oh:
        us += 2000 * oh + 500
    return us


class BME280:
    def __init__(self, board, bus, scene, addr=0x76, chip_id=CHIP_ID, seed=None, cal=None,
                 nvm_us=_NVM_US, measure_us=None):
        """measure_us: the length of a conversion, overriding the datasheet's typical time
        (a slow part, for tests)."""
        self.board = board
        self.bus = bus
        self.addr = addr
        self.scene = scene
        self.chip_id = chip_id
        self.cal = dict(CAL) if cal is None else dict(cal)
        self.nvm_us = nvm_us
        self.measure_us = measure_us
        self.regs = bytearray(256)
        self.ptr = 0
        s = board.seed if seed is None else seed
        h = 2166136261
        for ch in "%s/%s/bme280/%d" % (s, board.node_id, addr):
            h = ((h ^ ord(ch)) * 16777619) & 0xFFFFFFFF
        self._rng = h or 1
        self._gone = False
        self.conversions = 0  # conversions completed since made (for tests and benches)
        self.early_reads = 0  # data-register reads while a conversion was running
        self.last = None  # (adc_t, adc_p, adc_h) of the last completed conversion
        self._charge = 0.0
        self._since = board.clock.now_us
        self.measuring_until = 0
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
    # Supply current (Table 1): measuring pressure 714 µA, temperature 350 µA, humidity 340 µA
    # (typical); the pressure figure is booked for the whole conversion. Sleep 0.3 µA (max).
    MEASURING_MA = 0.714
    SLEEP_MA = 0.0003

    def _account(self):
        now = self.board.clock.now_us
        t = self._since
        busy_end = self.measuring_until if self.measuring_until < now else now
        busy = busy_end - t if busy_end > t else 0
        if self.mode == 3:
            busy = (now - t) * self._busy_share()
        self._charge += busy * self.MEASURING_MA + ((now - t) - busy) * self.SLEEP_MA
        self._since = now

    def charge_ma_us(self):
        self._account()
        return self._charge

    def power_up(self):
        r = self.regs
        for i in range(256):
            r[i] = 0
        r[0xD0] = self.chip_id
        lo, hi = calibration_bytes(self.cal)
        r[0x88:0x88 + len(lo)] = lo
        r[0xE1:0xE1 + len(hi)] = hi
        r[0xF7] = 0x80
        r[0xFA] = 0x80
        r[0xFD] = 0x80
        now = self.board.clock.now_us
        self.nvm_until = now + self.nvm_us
        self.mode = 0
        self.hum_osrs = 0  # ctrl_hum as latched by the last ctrl_meas write
        self.measuring_until = 0
        self.pending = None
        self.normal_start = 0
        self.normal_done = 0  # normal-mode conversions whose results are in the registers
        self._since = now

    def _on_boot(self, board):
        if board.reset_cause == simboard.PWRON_RESET:
            self._account()
            self.power_up()

    # ---- randomness --------------------------------------------------------------------------
    def _rand(self):
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x
        return x / 4294967296.0

    def _gauss(self):
        t = 0.0
        for _ in range(12):
            t += self._rand()
        return t - 6.0

    # ---- settings decoded ----------------------------------------------------------------------
    def oversampling(self):
        """(T, P, H) factors in force: T and P from ctrl_meas, H as latched."""
        m = self.regs[0xF4]
        return _OSRS[m >> 5], _OSRS[(m >> 2) & 7], _OSRS[self.hum_osrs]

    def filter_on(self):
        return (self.regs[0xF5] >> 2) & 7 != 0

    def conversion_us(self):
        if self.measure_us is not None:
            return self.measure_us
        ot, op, oh = self.oversampling()
        return measure_time_typ_us(ot, op, oh)

    def _cycle_us(self):
        return self.conversion_us() + _T_SB_US[self.regs[0xF5] >> 5]

    def _busy_share(self):
        return self.conversion_us() / self._cycle_us()

    # ---- the world ---------------------------------------------------------------------------
    def _check_bus(self):
        sc = self.scene(self.board)
        if sc.get("unplugged"):
            self._gone = True
            raise _oserror(errno.ENODEV, "ENODEV")
        if self._gone:
            self._gone = False
            self._account()
            self.power_up()  # plugged back in: a fresh power-up
        return sc

    def raw_values(self, sc):
        """(adc_t, adc_p, adc_h) that the compensation turns into the scene's values, at the
        resolution of the current settings."""
        c = self.cal
        ot, op, oh = self.oversampling()
        m = self.regs[0xF4]
        full = 20 if self.filter_on() else 0
        temp = float(sc.get("temp_c", 20.0)) + float(sc.get("noise_c", 0.0) or 0.0) * self._gauss()
        hpa = float(sc.get("hpa", 1013.25)) + float(sc.get("noise_hpa", 0.0) or 0.0) * self._gauss()
        rh = float(sc.get("rh", 50.0)) + float(sc.get("noise_rh", 0.0) or 0.0) * self._gauss()
        bits_t = full or 15 + min(m >> 5, 5)  # 16 + (osrs_t - 1) bits, osrs_t the code
        adc_t = solve(lambda a: t_fine_of(a, c), temp * 5120.0, bits_t, 20)
        t_fine = t_fine_of(adc_t, c)
        bits_p = full or 15 + min((m >> 2) & 7, 5)
        adc_p = solve(lambda a: pressure_q8_of(a, t_fine, c), hpa * 25600.0, bits_p, 20)
        adc_h = solve(lambda a: humidity_q10_of(a, t_fine, c), rh * 1024.0, 16, 16)
        if not ot:
            adc_t = 0x80000
        if not op:
            adc_p = 0x80000
        if not oh:
            adc_h = 0x8000
        return adc_t, adc_p, adc_h

    def _start(self, sc):
        self._account()
        self.pending = self.raw_values(sc)
        self.measuring_until = self.board.clock.now_us + self.conversion_us()

    def _commit(self, vals):
        adc_t, adc_p, adc_h = vals
        r = self.regs
        r[0xF7] = adc_p >> 12
        r[0xF8] = (adc_p >> 4) & 0xFF
        r[0xF9] = (adc_p & 0x0F) << 4
        r[0xFA] = adc_t >> 12
        r[0xFB] = (adc_t >> 4) & 0xFF
        r[0xFC] = (adc_t & 0x0F) << 4
        r[0xFD] = adc_h >> 8
        r[0xFE] = adc_h & 0xFF
        self.conversions += 1
        self.last = vals

    def _update(self, sc):
        now = self.board.clock.now_us
        if self.pending is not None and now >= self.measuring_until:
            self._account()
            self._commit(self.pending)
            self.pending = None
            if self.mode != 3:
                self.mode = 0  # forced mode ends in sleep mode (§3.3.3)
        if self.mode == 3:
            # Normal mode: conversion k ends at normal_start + k·cycle + t_measure; the results
            # of the latest that has ended are in the registers (the scene as it is now).
            cyc = self._cycle_us()
            ended = (now - self.normal_start - self.conversion_us()) // cyc + 1
            if now - self.normal_start < self.conversion_us():
                ended = 0
            if ended > self.normal_done:
                self._commit(self.raw_values(sc))
                self.normal_done = ended

    def measuring(self):
        now = self.board.clock.now_us
        if self.mode == 3:
            return (now - self.normal_start) % self._cycle_us() < self.conversion_us()
        return self.pending is not None and now < self.measuring_until

    # ---- register reads and writes ---------------------------------------------------------
    def _get(self, a):
        if a == 0xF3:  # status
            v = 0
            if self.measuring():
                v |= 0x08
            if self.board.clock.now_us < self.nvm_until:
                v |= 0x01
            return v
        if a == 0xF4:
            return (self.regs[a] & 0xFC) | self.mode
        if (0x88 <= a <= 0xA1 or 0xE1 <= a <= 0xF0) and self.board.clock.now_us < self.nvm_until:
            return 0  # the NVM copy has not reached the image registers yet
        if 0xF7 <= a <= 0xFE and self.mode != 3 and self.measuring():
            self.early_reads += 1  # a forced conversion's results are not there yet
        return self.regs[a]

    def _put(self, a, v, sc):
        if a == 0xE0:  # reset: 0xB6 runs the power-on-reset procedure, other values nothing
            if v == 0xB6:
                self._account()
                self.power_up()
            return
        if a == 0xF2:
            self.regs[a] = v & 0x07
        elif a == 0xF4:
            self._account()
            if self.pending is not None and self.mode != 3:
                return  # a forced conversion is running: it finishes as it started
            self.regs[a] = v & 0xFC
            self.hum_osrs = self.regs[0xF2] & 0x07  # §5.4.3: ctrl_hum takes effect now
            mode = v & 0x03
            if mode == 1 or mode == 2:
                self.mode = 1
                self._start(sc)
            elif mode == 3:
                if self.mode != 3:
                    self.mode = 3
                    self.normal_start = self.board.clock.now_us
                    self.normal_done = 0
            else:
                self.mode = 0
        elif a == 0xF5:
            if self.mode != 3:  # §5.4.6: writes in normal mode may be ignored; they are here
                self.regs[a] = v & 0xFD  # bit 1 is unused
        # everything else (trimming data, id, status, data) is read-only: ignored

    # the board's bus calls these (fake_machine: a register access is a write of the
    # register address, then a read)
    def i2c_write(self, board, data):
        sc = self._check_bus()
        self._update(sc)
        n = len(data)
        if not n:
            return
        i = 0
        while i + 1 < n:  # (register, value) pairs: writes do not auto-increment (§6.2.1)
            self._put(data[i], data[i + 1], sc)
            i += 2
        self.ptr = data[n - 1] if n % 2 else data[n - 2]

    def i2c_read(self, board, n):
        sc = self._check_bus()
        self._update(sc)
        out = bytearray(n)
        a = self.ptr
        for i in range(n):
            out[i] = self._get(a & 0xFF)
            a += 1
        self.ptr = a & 0xFF
        return bytes(out)
