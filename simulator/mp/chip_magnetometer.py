# Fake three-axis magnetometers at register level, on a simulated board's I2C bus: the QST
# QMC5883L and the Honeywell HMC5883L.
#
# MicroPython dialect (runs beside the fakes under CPython and inside the WASI MicroPython).
# Register facts (docs/drivers/magnetometers.md has the sources):
# - QMC5883L, datasheet v1.0 §9 (Rev. B for the chip id): data 0x00-0x05 (X, Y, Z, LSB first),
#   status 0x06 (DRDY bit 0, OVL bit 1, DOR bit 2), temperature 0x07-0x08 (~100 LSB/deg C),
#   CTRL1 0x09 (OSR[7:6] RNG[5:4] ODR[3:2] MODE[1:0]), CTRL2 0x0A (SOFT_RST bit 7, ROL_PNT
#   bit 6, INT_ENB bit 0), SET/RESET period 0x0B, chip id 0x0D = 0xFF. Power-up and soft reset:
#   every register 0, standby. ODR 10/50/100/200 Hz; 12000 LSB/G at RNG 2 G, 3000 at 8 G; the
#   outputs saturate at -32768/32767 and OVL says so (OVL follows each measurement). DRDY is set
#   when a sample lands and cleared, with DOR, by reading any data register; DOR is set when a
#   sample replaces one nobody read. Reads auto-increment; with ROL_PNT a read that starts in
#   0x00-0x06 rolls from 0x06 back to 0x00. Reserved RNG codes act as 8 G, reserved MODE codes
#   as standby (undocumented: a guess).
# - HMC5883L, Honeywell datasheet: CRA 0x00 (MA[6:5] averaging, DO[4:2] 0.75-75 Hz, MS[1:0]),
#   CRB 0x01 (GN[7:5]: 1370/1090/820/660/440/390/330/230 LSB/G), mode 0x02 (00 continuous,
#   01 single, 1x idle; 0x01 at power-up), data 0x03-0x08 (X, Z, Y, MSB first), status 0x09
#   (RDY bit 0, LOCK bit 1), identification 0x0A-0x0C 'H43'. A channel beyond -2048..2047 reads
#   -4096. Continuous mode: the first set 2/fDO after a write to the mode or a configuration
#   register, then one per 1/fDO. Single mode (and power-up): one set 6 ms later (the
#   datasheet's operational example waits 6 ms), then the mode register reads idle (0x03). The
#   first set after a gain change still has the old gain. LOCK: set once some but not all six
#   data registers have been read, or the mode register has been read; while set, new sets are
#   not placed (they are lost); cleared by reading all six, writing the mode or CRA, power-up.
#   The pointer moves on by one per register, from 0x08 back to 0x03 (the operational example:
#   "will automatically re-point back to register 3"), from 0x0C or beyond to 0x00; invalid
#   registers read 0. RDY: the datasheet sets it when a set is placed and clears it "when the
#   device initiates a write to the data output registers"; for single mode it "remains high
#   until the data output register is read". The fake clears it when all six data registers
#   have been read, in both modes (a real part whose RDY stayed high in continuous mode would
#   make a RDY-polling driver read each set more than once: docs/drivers/magnetometers.md).
#
# The field: field(board, t_us) -> (bx, by, bz) in microtesla (1 G = 100 uT), asked for at the
# virtual time each sample is taken (samples are worked out lazily at each bus access, from the
# ODR, so the world must answer for times up to now). Non-finite or huge values overflow.
# Electrical noise: noise_ut (standard deviation per axis, uT; default 0.2 uT = 2 mG, the field
# resolution / noise floor both datasheets give; the HMC5883L's averaging divides it by
# sqrt(n)). The noise of sample k is a hash of (seed, k, axis): the same seed gives the same
# values whatever the driver's polling pattern. The seed comes from the board's seed (or seed=),
# node id, kind and address. clock_ppm: the part's rate error, positive when it runs fast
# (its ODR is "typical").
# Counters: samples_made, samples_read, overruns (samples replaced or lost before being read),
# overflows (samples with OVL / a -4096 channel). unplugged = True: every access raises
# OSError(ENODEV); plugged back, the part powers up afresh. Not modelled: supply current,
# self-test/bias fields, the QMC's interrupt pin, the OSR's effect on noise.
import errno
import math

import simboard

QMC5883L = "qmc5883l"
HMC5883L = "hmc5883l"
DEFAULT_ADDR = {QMC5883L: 0x0D, HMC5883L: 0x1E}

QMC_CHIP_ID = 0xFF
QMC_ODR_MHZ = (10000, 50000, 100000, 200000)  # ODR[1:0], in mHz
QMC_LSB_PER_G = (12000, 3000, 3000, 3000)  # RNG[1:0] (10 and 11 reserved)

HMC_ID = b"H43"
HMC_ODR_MHZ = (750, 1500, 3000, 7500, 15000, 30000, 75000, 75000)  # DO[2:0] (111 reserved)
HMC_GAIN = (1370, 1090, 820, 660, 440, 390, 330, 230)  # GN[2:0], LSB/gauss
HMC_SINGLE_US = 6000
HMC_OVERFLOW = -4096


def _oserror(code, name):
    # CPython sets .errno only with (code, text); MicroPython takes both forms.
    return OSError(code, name)


def _mix(x):
    # A 32-bit integer hash (xor-shift / multiply rounds): counter-based noise.
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


class Magnetometer:
    def __init__(self, board, bus, field, kind=QMC5883L, addr=None, seed=None, noise_ut=0.2,
                 temp_c=25.0, clock_ppm=0):
        if kind not in DEFAULT_ADDR:
            raise ValueError("kind must be %r or %r, not %r" % (QMC5883L, HMC5883L, kind))
        self.board = board
        self.bus = bus
        self.field = field
        self.kind = kind
        self.qmc = kind == QMC5883L
        self.addr = DEFAULT_ADDR[kind] if addr is None else addr
        self.noise_ut = noise_ut
        self.temp_c = temp_c  # the QMC5883L's temperature output follows it
        self.clock_ppm = int(clock_ppm)
        self.unplugged = False
        s = board.seed if seed is None else seed
        h = 2166136261
        for ch in "%s/%s/magnetometer/%s/%d" % (s, board.node_id, kind, self.addr):
            h = ((h ^ ord(ch)) * 16777619) & 0xFFFFFFFF
        self._seed = h
        self._gone = False
        self.samples_made = 0
        self.samples_read = 0
        self.overruns = 0
        self.overflows = 0
        self.soft_resets = 0
        self.last_field = None  # (bx, by, bz) uT of the latest sample placed
        self.last_raw = None  # (x, y, z) counts of the latest sample placed
        self.last_t_us = None  # virtual time it was taken
        devs = board.i2c_devices.get(bus)
        if devs is None:
            devs = {}
            board.i2c_devices[bus] = devs
        devs[self.addr] = self
        hooks = getattr(board, "boot_hooks", None)
        if hooks is not None:
            hooks.append(self._on_boot)
        self.power_up()

    # ---- power -----------------------------------------------------------------------------
    def power_up(self):
        r = bytearray(256)
        now = self.board.clock.now_us
        self.run_start = None  # continuous measuring since (virtual us), None: not measuring
        self.landed = 0  # samples landed since run_start
        self.next_due = 0  # virtual us of the next sample of the run
        self.single_due = None
        self.unread = False
        self.drdy = False
        self.dor = False
        self.ovl = False
        self.mask = 0  # HMC: data registers read since the last set was placed (bits 0-5)
        self.mode_read = False  # HMC: the mode register has been read (LOCK)
        self.gain_lag = 0
        if self.qmc:
            r[0x0D] = QMC_CHIP_ID
        else:
            r[0x00] = 0x10
            r[0x01] = 0x20
            r[0x02] = 0x01
            r[0x0A:0x0D] = HMC_ID
            self.gain_active = 1
            self.single_due = now + HMC_SINGLE_US  # power-up default: single-measurement mode
        self.regs = r
        self.ptr = 0

    def _on_boot(self, board):
        if board.reset_cause == simboard.PWRON_RESET:
            self.power_up()

    # ---- settings decoded ----------------------------------------------------------------------
    def odr_mhz(self):
        if self.qmc:
            return QMC_ODR_MHZ[(self.regs[0x09] >> 2) & 3]
        return HMC_ODR_MHZ[(self.regs[0x00] >> 2) & 7]

    def lsb_per_g(self):
        if self.qmc:
            return QMC_LSB_PER_G[(self.regs[0x09] >> 4) & 3]
        return HMC_GAIN[self.gain_active]

    def averaging(self):
        return 1 if self.qmc else 1 << ((self.regs[0x00] >> 5) & 3)

    def locked(self):
        return not self.qmc and (self.mode_read or (self.mask != 0 and self.mask != 0x3F))

    def _period(self):
        # sample k of a run lands at run_start + k * num // den (us); clock_ppm > 0: faster
        return 1000000000000000, self.odr_mhz() * (1000000 + self.clock_ppm)

    def _k0(self):
        return 1 if self.qmc else 2  # QMC: one period after the start (a guess); HMC: 2/fDO

    def _start(self):
        self.run_start = self.board.clock.now_us
        self.landed = 0
        num, den = self._period()
        self.next_due = self.run_start + (self._k0() * num) // den  # the first sample

    # ---- sampling ------------------------------------------------------------------------------
    def _update(self):
        now = self.board.clock.now_us
        if self.single_due is not None and now >= self.single_due:
            t = self.single_due
            self.single_due = None
            self._land(1, t)
            self.regs[0x02] = (self.regs[0x02] & 0xFC) | 0x03  # back to idle
        if self.run_start is not None and now >= self.next_due:
            num, den = self._period()
            k0 = self._k0()
            # samples k >= k0 with run_start + k*num//den <= now: ceil((now - start + 1)*den/num)
            n = ((now - self.run_start + 1) * den + num - 1) // num - k0
            m = n - self.landed
            if m > 0:
                self._land(m, self.run_start + ((n - 1 + k0) * num) // den)
                self.landed = n
            self.next_due = self.run_start + ((n + k0) * num) // den

    def _gauss(self, k, axis):
        # Irwin-Hall of 4 uniforms, scaled to unit variance
        base = _mix(self._seed ^ _mix(k * 3 + axis))
        t = 0.0
        for i in range(4):
            t += _mix(base + i * 0x9E3779B9) / 4294967296.0
        return (t - 2.0) * 1.7320508075688772

    def _land(self, m, t):
        """m measurements completed, the latest taken at virtual time t."""
        k = self.samples_made + m - 1  # index of the latest, for its noise
        self.samples_made += m
        if not self.qmc:
            use_old = self.gain_lag and m == 1
            gain_code = self.gain_active if use_old else self.regs[0x01] >> 5
            self.gain_active = self.regs[0x01] >> 5
            self.gain_lag = 0
            if self.locked():
                self.overruns += m  # not placed: the data registers are locked
                return
            lsb = HMC_GAIN[gain_code]
        else:
            lsb = QMC_LSB_PER_G[(self.regs[0x09] >> 4) & 3]
        lost = m - 1 + (1 if self.unread else 0)
        if lost:
            self.overruns += lost
            self.dor = True
        f = self.field(self.board, t)
        sd = float(self.noise_ut) / math.sqrt(self.averaging()) if self.noise_ut else 0.0
        raw = [0, 0, 0]
        over = False
        for i in range(3):
            try:
                v = float(f[i]) / 100.0 * lsb
            except (TypeError, ValueError, OverflowError, IndexError):
                v = float("nan")
            if sd:
                v += sd / 100.0 * lsb * self._gauss(k, i)
            if self.qmc:
                if v != v or v >= 32767.0:  # NaN, or saturated
                    raw[i] = 32767
                    over = over or not (v < 32767.5)
                elif v <= -32768.0:
                    raw[i] = -32768
                    over = over or not (v > -32768.5)
                else:
                    raw[i] = int(math.floor(v + 0.5))
            else:
                if v != v or v >= 2047.5 or v < -2048.5:
                    raw[i] = HMC_OVERFLOW
                    over = True
                else:
                    raw[i] = int(math.floor(v + 0.5))
        r = self.regs
        if self.qmc:
            for i in range(3):
                w = raw[i] & 0xFFFF
                r[2 * i] = w & 0xFF
                r[2 * i + 1] = w >> 8
            tc = float(self.temp_c) * 100.0
            tr = int(math.floor(tc + 0.5)) if -32768.0 <= tc <= 32767.0 else (32767 if tc > 0 else -32768)
            r[0x07] = tr & 0xFF
            r[0x08] = (tr >> 8) & 0xFF
            self.ovl = over
            self.drdy = True
        else:
            for j, i in ((0, 0), (1, 2), (2, 1)):  # registers hold X, Z, Y
                w = raw[i] & 0xFFFF
                r[3 + 2 * j] = w >> 8
                r[4 + 2 * j] = w & 0xFF
            self.drdy = True
            self.mask = 0
        if over:
            self.overflows += 1
        self.unread = True
        try:
            self.last_field = (f[0], f[1], f[2])
        except (TypeError, IndexError):
            self.last_field = None
        self.last_raw = (raw[0], raw[1], raw[2])
        self.last_t_us = t

    # ---- the bus ---------------------------------------------------------------------------------
    def _check_bus(self):
        if self.unplugged:
            self._gone = True
            raise _oserror(errno.ENODEV, "ENODEV")
        if self._gone:
            self._gone = False
            self.power_up()  # plugged back in: a fresh power-up

    def _data_read(self, a):
        # a data register has been read
        if self.qmc:
            self.drdy = False
            self.dor = False
            if self.unread:
                self.unread = False
                self.samples_read += 1
            return
        self.mask |= 1 << (a - 3)
        if self.mask == 0x3F:
            self.mask = 0
            self.mode_read = False
            self.drdy = False
            if self.unread:
                self.unread = False
                self.samples_read += 1

    def _get(self, a):
        r = self.regs
        if self.qmc:
            if a <= 0x05:
                v = r[a]
                self._data_read(a)
                return v
            if a == 0x06:
                return (1 if self.drdy else 0) | (2 if self.ovl else 0) | (4 if self.dor else 0)
            if a <= 0x0B or a == 0x0D:
                return r[a]
            return 0
        if 0x03 <= a <= 0x08:
            v = r[a]
            self._data_read(a)
            return v
        if a == 0x09:
            return (1 if self.drdy else 0) | (2 if self.locked() else 0)
        if a == 0x02:
            self.mode_read = True
            return r[a]
        if a <= 0x0C:
            return r[a]
        return 0

    def _next(self, a, start):
        if self.qmc:
            if a == 0x06 and start <= 0x06 and self.regs[0x0A] & 0x40:
                return 0  # ROL_PNT
            return (a + 1) & 0xFF
        if a == 0x08:
            return 0x03
        if a >= 0x0C:
            return 0
        return a + 1

    def _put(self, a, v):
        r = self.regs
        now = self.board.clock.now_us
        if self.qmc:
            if a == 0x09:
                was = r[0x09]
                r[0x09] = v
                if v & 3 == 1:
                    if self.run_start is None or was & 3 != 1 or (was ^ v) & 0x0C:
                        self._start()
                else:
                    self.run_start = None
            elif a == 0x0A:
                if v & 0x80:
                    self.soft_resets += 1
                    self.power_up()  # SOFT_RST: every register to its default, standby
                else:
                    r[0x0A] = v & 0x41
            elif a == 0x0B:
                r[0x0B] = v
            return  # the rest is read-only
        if a == 0x00:
            r[0x00] = v & 0x7F
            self.mask = 0
            self.mode_read = False
        elif a == 0x01:
            r[0x01] = v & 0xE0
            if v >> 5 != self.gain_active:
                self.gain_lag = 1
        elif a == 0x02:
            r[0x02] = v & 0x83
            self.mask = 0
            self.mode_read = False
            self.single_due = None
            self.run_start = None
            md = v & 3
            if md == 1:
                self.single_due = now + HMC_SINGLE_US
            elif md == 0:
                self._start()
            return
        else:
            return
        if r[0x02] & 3 == 0:
            self._start()  # a configuration write restarts the measurement cycle

    # fake_machine: a register access is a write of the register address, then a read
    def i2c_write(self, board, data):
        self._check_bus()
        self._update()
        n = len(data)
        if not n:
            return
        a = data[0]
        start = a
        for i in range(1, n):
            self._put(a, data[i])
            a = self._next(a, start)
        self.ptr = a

    def i2c_read(self, board, n):
        self._check_bus()
        self._update()
        out = bytearray(n)
        a = self.ptr
        start = a
        for i in range(n):
            out[i] = self._get(a)
            a = self._next(a, start)
        self.ptr = a
        return out  # fake_machine copies it
