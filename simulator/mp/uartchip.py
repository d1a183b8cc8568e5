# What the fake UART particle sensors (chip_pms5003.py, chip_sds011.py) share: 9600-baud 8N1
# timing, the humidity growth of optical readings, their randomness (chiprng.py), and the sending side
# of the wire: bytes queued with the scene's line faults and handed over as they arrive.
# MicroPython dialect (it runs beside the fakes in both runtimes).
#
# Humidity (model of chip_pms5003.py, where the sources are): above RH_KNEE the mass read
# grows by the kappa-Koehler factor C(aw) = 1 + (kappa / rho_p) * aw / (1 - aw) of Crilley et
# al. 2018 (AMT 11, 709), relative to its value at RH_KNEE.

from chiprng import ChipRandom

BAUD = 9600
CHAR_BITS = 10  # 8N1: start, 8 data, stop
RH_KNEE = 70.0
RHO_P = 1.65
KAPPA_FINE = 0.3
KAPPA_COARSE = 0.1
WARM_UP_US = 30000000  # both data sheets: stable readings 30 s after a wake-up


def wire_us(nchars):
    """Time nchars take on the wire, rounded up as fake_machine.UART counts it."""
    return (nchars * CHAR_BITS * 1000000 + BAUD - 1) // BAUD


def growth(rh, kappa):
    """Factor by which water on the particles raises the mass an optical sensor reads."""
    if rh is None:
        return 1.0
    rh = float(rh)
    if rh <= RH_KNEE:
        return 1.0
    if rh > 99.0:
        rh = 99.0

    def c(aw):
        return 1.0 + (kappa / RHO_P) * aw / (1.0 - aw)

    return c(rh / 100.0) / c(RH_KNEE / 100.0)


class UartChip(ChipRandom):
    """Base of a fake UART chip. The subclass sets _rng (chiprng.fnv of its identity), _q = [],
    _tx_free, log = None and the counters frames_damaged, bytes_dropped, bytes_corrupted, and
    provides _catch_up(now) (makes the frames due by now), _streaming() (frames keep coming
    unasked) and _next_us (when the next one is made)."""

    # ---- supply and laser --------------------------------------------------------------
    # The subclass gives WORK_MA and IDLE_MA (its data sheet's maxima) and awake(); _since,
    # _charge (mA·µs) and _laser (µs working) start at its power-on.
    def _account(self):
        now = self.board.clock.now_us
        dt = now - self._since
        if dt > 0:
            if self.awake():
                self._charge += dt * self.WORK_MA
                self._laser += dt
            else:
                self._charge += dt * self.IDLE_MA
        self._since = now

    def charge_ma_us(self):
        self._account()
        return self._charge

    @property
    def laser_on_us(self):
        self._account()
        return self._laser

    # ---- measuring ----------------------------------------------------------------------
    def _gain(self, t, sc):
        """(warming, factor) of a reading taken at sim time t: during WARM_UP_US after a wake
        (self._woke_us) the fan has not reached its flow, so the model reads from 10 % of the
        truth rising to 100 %, with an extra relative noise of 30 % falling to 0 (model
        assumption, chip_pms5003.py); times 1 + the scene's relative "noise" (one draw)."""
        age = t - self._woke_us
        gain = 1.0
        extra = 0.0
        warming = age < WARM_UP_US
        if warming:
            f = age / WARM_UP_US if age > 0 else 0.0
            gain = 0.1 + 0.9 * f
            extra = 0.3 * (1.0 - f)
        g1 = self._gauss()
        g2 = self._gauss()
        common = 1.0 + float(sc.get("noise", 0.0)) * g1 + extra * g2
        if common < 0.0:
            common = 0.0
        return warming, gain * common

    # ---- the wire ------------------------------------------------------------------------
    def _send(self, t, data, sc, is_frame=False):
        # Queue bytes to go out from sim time t (after what is already going out), with the
        # scene's line faults. _q items: [start us, bytes sent, slot of each byte or None,
        # bytes handed over, length sent].
        start = t if t > self._tx_free else self._tx_free
        n = len(data)
        self._tx_free = start + wire_us(n)
        clean = data
        corrupt = float(sc.get("corrupt", 0.0))
        drop = float(sc.get("drop", 0.0))
        slots = None
        if corrupt > 0.0 or drop > 0.0:
            out = bytearray()
            slots = []
            for i in range(n):
                b = data[i]
                u_drop = self.random()
                u_flip = self.random()
                u_bit = self.random()
                if u_drop < drop:
                    self.bytes_dropped += 1
                    continue
                if u_flip < corrupt:
                    b ^= 1 << int(u_bit * 8)
                    self.bytes_corrupted += 1
                out.append(b)
                slots.append(i)
            data = bytes(out)
        if is_frame:
            if data != clean:
                self.frames_damaged += 1
            if self.log is not None:
                self.log.append((clean, data))
        if data:
            self._q.append([start, data, slots, 0, n])

    def _arrival(self, f, pos):
        slots = f[2]
        return f[0] + wire_us((pos if slots is None else slots[pos]) + 1)

    def uart_take(self, board):
        now = board.clock.now_us
        self._catch_up(now)
        out = bytearray()
        q = self._q
        while q:
            f = q[0]
            data = f[1]
            pos = f[3]
            while pos < len(data) and self._arrival(f, pos) <= now:
                out.append(data[pos])
                pos += 1
            f[3] = pos
            if pos < len(data):
                break
            q.pop(0)
        return bytes(out)

    def uart_next_at(self, board):
        now = board.clock.now_us
        self._catch_up(now)
        if self._q:
            f = self._q[0]
            return self._arrival(f, f[3])
        if self._streaming():
            return self._next_us + wire_us(1)
        return None
