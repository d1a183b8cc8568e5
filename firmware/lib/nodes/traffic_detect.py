# Traffic-counter node: vehicle detection from a 3-axis magnetometer, speed and length from a
# pair of them along the lane, and the sensor fault rule. Pure logic, no hardware: the node app
# reads the chip and calls Detector.feed() for every sample (50-100 per second).
# Algorithm, defaults and their reasons: docs/traffic_detection.md.
#
# The detector follows the adaptive-threshold scheme of the Berkeley PATH magnetometer work
# (S. Y. Cheung, S. Coleri, B. Dundar, S. Ganesh, C.-W. Tan, P. Varaiya, "Traffic measurement
# and vehicle classification with a single magnetic sensor", PATH working paper
# UCB-ITS-PWP-2004-7 / TRB 2005; S. Y. Cheung, P. Varaiya, "Traffic surveillance by wireless
# sensor networks", California PATH research report, 2007): an adaptive baseline that tracks
# the slow drift of the background field and is updated only while no vehicle is detected,
# thresholds on the deviation from it, and a state machine with a hold-over that merges the
# peaks of one vehicle. Speed from two sensors a known distance apart: the time between their detections
# (same sources). The code is our own.
#
# The per-sample path allocates nothing (a functional requirement, tested in the WASI
# MicroPython): ints only (small ints: below 2**30), state in attributes and array('i'),
# results in a preallocated array, and every method on the path keeps its frame within the 11
# words the VM puts on the C stack (py/objfun.c VM_MAX_STATE_ON_STACK; a bigger frame is
# heap-allocated on each call), hence the small helpers.
from array import array
from micropython import const

PASSED = const(1)  # feed(): a vehicle passed; last = t_on, t_off, peak, area
PARKED = const(2)  # feed(): a vehicle stopped over the sensor and became the baseline (counted)
WARN = "warning"  # the event levels of schemas/event.json
INFO = "info"

DEFAULTS = {
    # Raw counts of a QMC5883L at +-8 G (datasheet: 3000 LSB/G, 2 mG field resolution): 90 =
    # 30 mG of L1 deviation. At +-2 G (12000 LSB/G) multiply by 4. Tune on site.
    "thr_on": 90,          # deviation (L1, raw counts) that starts a vehicle
    "thr_off": 45,         # below this the field counts as empty road (hysteresis: < thr_on)
    "min_on_ms": 20,       # a shorter detection is a spike, not a vehicle
    "min_gap_ms": 300,     # hold-over: a dip below thr_off shorter than this stays in one vehicle
    "rel_pct": 0,          # ...or below this share of the vehicle's peak (0: off): close followers
    "smooth": 0,           # deviation from an exponential mean over 2**smooth samples (0: raw)
    "absorb_s": 180,       # a vehicle whose field stays steady this long becomes the baseline
    "warm_s": 0,           # start-up: the baseline is the steadiest block of this long (0: the first)
    "hold_s": 5,           # absorb rule: a passing vehicle leaves a standing level for less than this
    "base_tau_s": 4,       # time constant of the baseline (rounded to a power of two of blocks)
    "guard_ms": 2000,      # the baseline learns only from samples this old with no vehicle since
    "zone_mm": 1000,       # detection zone (site calibration, may be < 0): length = speed x occ - zone
    "min_kmh": 5,          # pair_match: slower or faster is implausible
    "max_kmh": 200,
    "pair_tol_pct": 50,    # the rising- and falling-edge lags may differ by this share...
    "pair_tol_ms": 40,     # ...plus this (two samples at 50 Hz)
    "stuck_s": 60,         # fault_check: identical readings this long
    "fault_s": 10,         # no data / overflow this long
    "ok_s": 10,            # and clean this long before sensor_ok
}

_HALF = const(0x20000000)  # ticks_ms period 2**30 (time.ticks_diff is valid within +-2**29)
_CAP = const(0x1FFFFFFF)  # sums and counters saturate here: they stay small ints
_SAME_CAP = const(0x3FFFFFF)  # identical-sample counter cap (~7.7 days at 100 Hz)
_MAX_K = const(10)  # baseline accumulator: 2**15 * 16 * 2**10 = 2**29
_LAST_N = const(5)  # last: t_on, t_off, peak, area, t_mid


def _cfg(cfg, key):
    v = cfg.get(key) if cfg else None
    return DEFAULTS[key] if v is None else v


def tdiff(a, b):
    """a - b for time.ticks_ms() values (period 2**30), like time.ticks_diff; no big ints."""
    d = a - b
    if d >= _HALF:
        return d - _HALF - _HALF  # (2**30 is not a small int: in halves, no allocation)
    if d < -_HALF:
        return d + _HALF + _HALF
    return d


def tadd(t, d):
    """t + d for a time.ticks_ms() value t and 0 <= d < 2**29, wrapped; the sum never leaves
    the small ints (t + d itself could pass 2**30: a big int, an allocation)."""
    # (2**30 itself is not a small int: subtract and add it in halves)
    x = t - _HALF - _HALF + d
    if x < 0:
        x += _HALF
        x += _HALF
    return x


class Detector:
    """One magnetometer. feed(x, y, z, t_ms) per sample (raw ints, t_ms = time.ticks_ms());
    returns 0, PASSED or PARKED. After a nonzero return, last[0..4] = t_on_ms, t_off_ms (ticks),
    peak deviation, area (sum of the deviation over the vehicle's samples, saturating), t_mid_ms
    (ticks: the deviation's centroid in time, the vehicle's timing mark for speed: two sensors
    see the same shape shifted, and a centroid, unlike a threshold crossing, does not depend on
    the noise at one sample nor on the sample grid).
    Counters: count (PASSED + PARKED), n_parked, n_departed (parked vehicles that left: not
    counted again), n_spikes (detections shorter than min_on_ms), n_rebased (the baseline
    corrected to a standing level that was the road itself)."""

    def __init__(self, rate_hz, cfg=None):
        rate = int(rate_hz)
        if rate < 1:
            raise ValueError("rate_hz must be >= 1, got %r" % (rate_hz,))
        self.rate = rate
        self.thr_on = int(_cfg(cfg, "thr_on"))
        self.thr_off = int(_cfg(cfg, "thr_off"))
        if not 0 < self.thr_off < self.thr_on:
            raise ValueError("need 0 < thr_off < thr_on, got %d, %d" % (self.thr_off, self.thr_on))
        self.min_on = int(_cfg(cfg, "min_on_ms"))
        self.min_gap = int(_cfg(cfg, "min_gap_ms"))
        self.rel = int(_cfg(cfg, "rel_pct"))
        if not 0 <= self.rel < 100:
            raise ValueError("rel_pct must be 0..99, got %d" % self.rel)
        self.sh = int(_cfg(cfg, "smooth"))
        if not 0 <= self.sh <= 4:
            raise ValueError("smooth must be 0..4, got %d" % self.sh)
        self.absorb = min(int(_cfg(cfg, "absorb_s")) * 1000, _HALF - 1)
        # Blocks: the baseline, the absorb and the departure rules work on means of blk
        # samples (about 10 blocks per second): cheaper than per sample, and less noisy.
        blk = rate // 10 if rate >= 10 else 1
        self.blk = blk
        bps = rate * 1000 // blk  # blocks per 1000 s
        g = int(_cfg(cfg, "guard_ms")) * bps // 1000000
        self.guard = g if g > 0 else 1
        tau = int(_cfg(cfg, "base_tau_s")) * bps // 1000  # blocks
        w = int(_cfg(cfg, "warm_s")) * bps // 1000
        self.warm = max(w, 0)
        k = 1
        while k < _MAX_K and (1 << (k + 1)) - tau < tau - (1 << k):  # nearest power of two
            k += 1
        self.k = k
        self.hold = int(_cfg(cfg, "hold_s")) * bps // 1000  # blocks
        self.ring = array("i", [0] * (3 * self.guard))
        self.last = array("i", [0] * _LAST_N)
        self.pb = array("i", [0, 0, 0])  # the baseline before a parked vehicle was absorbed
        self.ref = array("i", [0, 0, 0])  # steady-level reference while a vehicle is present
        self.count = 0
        self.n_parked = 0
        self.n_departed = 0
        self.n_spikes = 0
        self.n_rebased = 0  # baseline corrections by the absorb rule (see _absorb)
        self.same = 0  # consecutive identical samples
        self.lx = self.ly = self.lz = -0x8000000  # previous sample (none yet)
        self.reset()

    def reset(self):
        """Forget the baseline and any vehicle in progress (counters stay); the steadiest block
        of the next warm_s becomes the baseline."""
        self.ready = 0
        self.wn = 0  # warm-up blocks so far
        self.wd = 0  # L1 change of the previous warm-up block from the one before
        self.wbest = -1  # steadiness of the best candidate so far (-1: none)
        self.ax = self.ay = self.az = 0  # baseline accumulators: baseline * 16 * 2**k
        self.bx = self.by = self.bz = 0  # baseline, raw counts (rounded)
        self.sx = self.sy = self.sz = 0  # sums of the open block
        self.mx = self.my = self.mz = 0  # mean of the last closed block
        self.bn = 0  # samples in the open block
        self.ri = 0  # ring write index (blocks)
        self.rn = 0  # blocks in the ring
        self.quiet = 0  # consecutive blocks without a vehicle
        self.busy = 0  # a vehicle was present during the open block
        self.st = 0  # 0: no vehicle, 1: vehicle present (or in its hold-over)
        self.rise = 0  # idle, and the deviation is >= thr_off since t_on
        self.fx = self.fy = self.fz = 0  # smoothed sample * 2**sh (sh = 0: the sample)
        self.t_on = 0
        self.t_hi = 0  # last sample >= thr_off of the vehicle
        self.peak = 0
        self.vl = 0  # after a vehicle that ended in the tail of its field: the valley since (else 0)
        self.off = self.thr_off  # the level below which the vehicle ends: thr_off or rel_pct of the peak
        self.area = 0
        self.ni = 0  # samples since t_on
        self.mom = 0  # sum of ni * deviation (first moment), -1 once it would overflow
        self.t_st = 0  # since when the field is steady (absorb rule)
        self.ref_ok = 0
        self.away = 0  # blocks off the standing level (absorb rule)
        self.parked = 0  # a parked vehicle is the baseline; pb holds the road's
        self.near = 0  # consecutive blocks near pb (departure rule)
        self.ptol = self.thr_off  # how near (set when a vehicle parks)

    def stuck_ms(self):
        """How long (ms, from the sample count) the readings have been identical."""
        return self.same * 1000 // self.rate

    # ---- the per-sample path ------------------------------------------------------------------
    def feed(self, x, y, z, t):
        if x == self.lx and y == self.ly and z == self.lz:
            if self.same < _SAME_CAP:
                self.same += 1
        else:
            self._new(x, y, z)
        self.sx += x
        self.sy += y
        self.sz += z
        self.bn += 1
        if not self.ready:
            return self._warm(t)
        if self.sh:
            x = self._smooth(x, y, z)
        else:
            # x becomes the deviation, then the result: no more locals (see the top)
            x = abs(x - self.bx) + abs(y - self.by) + abs(z - self.bz)
        x = self._step(x, t)
        if self.bn >= self.blk:
            return self._block(t) or x
        return x

    def _new(self, x, y, z):
        self.lx = x
        self.ly = y
        self.lz = z
        self.same = 0

    def _smooth(self, x, y, z):
        # f += x - f / 2**sh: f / 2**sh is an exponential mean of the samples (noise / ~1.7 at
        # sh = 2); the deviation of that mean from the baseline, in counts.
        sh = self.sh
        self.fx += x - (self.fx >> sh)
        self.fy += y - (self.fy >> sh)
        self.fz += z - (self.fz >> sh)
        x = abs(self.fx - (self.bx << sh)) + abs(self.fy - (self.by << sh))
        return (x + abs(self.fz - (self.bz << sh))) >> sh

    def _warm(self, t):
        # Start-up: a vehicle may be passing (in heavy traffic, most of the time). The baseline
        # is the block whose mean changed least from the block before and to the block after
        # (the road between vehicles is flat; a vehicle's field changes, even at its peak),
        # so a baseline taken under a vehicle never locks the detector in "present".
        if self.bn < self.blk:
            return 0
        pb = self.pb  # the previous block's mean (free until a vehicle parks)
        ref = self.ref  # the candidate
        self._mean()
        d = abs(self.mx - pb[0]) + abs(self.my - pb[1]) + abs(self.mz - pb[2])
        if self.wn >= 2:
            s = d if d > self.wd else self.wd  # the previous block's steadiness
            if self.wbest < 0 or s < self.wbest:
                self.wbest = s
                ref[0] = pb[0]
                ref[1] = pb[1]
                ref[2] = pb[2]
        self.wd = d
        pb[0] = self.mx
        pb[1] = self.my
        pb[2] = self.mz
        self.wn += 1
        if self.wn > self.warm:
            if self.wbest < 0:  # warm_s 0 (or too short to compare blocks): this block
                self._set_base(self.mx, self.my, self.mz)
            else:
                self._set_base(ref[0], ref[1], ref[2])
            sh = self.sh
            self.fx = self.mx << sh
            self.fy = self.my << sh
            self.fz = self.mz << sh
            self.ready = 1
        return 0

    def _step(self, d, t):
        if self.st:
            self.busy = 1
            self.ni += 1
            if d >= self.off:
                self.t_hi = t
                self._grow(d)
            elif tdiff(t, self.t_hi) >= self.min_gap:
                # Gone (below thr_off), or only its tail is left (below rel_pct of its peak):
                # then the next vehicle must rise out of the valley that follows.
                self.vl = d if d >= self.thr_off else 0
                return self._end()
            return 0
        if d < self.thr_off:
            self.rise = 0
            self.vl = 0
            return 0
        if self.vl:
            # In a tail: a new vehicle only where the deviation rises by thr_on out of the valley.
            if d < self.vl:
                self.vl = d
                return 0
            if d < self.thr_on or d < self.vl + self.thr_on:
                return 0
            self.vl = 0
            self.rise = 0
        if not self.rise:
            self.rise = 1
            self.t_on = t
            self.peak = 0
            self.area = 0
            self.ni = 0
            self.mom = 0
            self.off = self.thr_off
        else:
            self.ni += 1
        self._grow(d)
        if d >= self.thr_on:
            self.st = 1
            self.busy = 1
            self.t_hi = t
            self.t_st = t
            self.ref_ok = 0
        return 0

    def _grow(self, d):
        if d > self.peak:
            self.peak = d
            if self.rel and d * self.rel // 100 > self.off:
                self.off = d * self.rel // 100
        if self.area < _CAP:
            self.area += d
        if self.mom >= 0:
            if d and self.ni > (_CAP - self.mom) // d:
                self.mom = -1
            else:
                self.mom += self.ni * d

    def _end(self):
        # The deviation stayed below thr_off for min_gap: the vehicle has gone.
        self.st = 0
        self.rise = 0
        if tdiff(self.t_hi, self.t_on) < self.min_on:
            self.n_spikes += 1
            return 0
        return self._record(self.t_hi, PASSED)

    def _record(self, t_off, code):
        last = self.last
        last[0] = self.t_on
        last[1] = t_off
        last[2] = self.peak
        last[3] = self.area
        last[4] = self._mid(t_off)
        if self.count < _CAP:
            self.count += 1
        return code

    def _mid(self, t_off):
        # The centroid: t_on + mom / area samples, in ms; the middle of t_on..t_off when the
        # moment overflowed. Small ints only, small frames (see the top).
        a = self.area
        if self.mom < 0 or a <= 0 or a >= _CAP:
            return tadd(self.t_on, tdiff(t_off, self.t_on) // 2)
        return tadd(self.t_on, self._sixteenths(a) * (1000 // self.rate) // 16)

    def _sixteenths(self, a):
        # mom / a in sixteenths of a sample
        q = self.mom // a
        r = self.mom - q * a
        return (q << 4) + ((r << 4) // a if a < 0x2000000 else r // (a >> 4))

    # ---- per block (about 10 per second) ------------------------------------------------------
    def _mean(self):
        n = self.blk
        self.mx = self.sx // n
        self.my = self.sy // n
        self.mz = self.sz // n
        self.sx = self.sy = self.sz = 0
        self.bn = 0

    def _block(self, t):
        self._mean()
        self._learn()
        if self.parked and self._departed():
            return 0
        if self.st:
            return self._steady(t)
        return 0

    def _learn(self):
        # The guard ring delays the samples by `guard` blocks: the baseline takes a block only
        # when no vehicle was present from that block until now, so the slow approach of a
        # vehicle (below thr_on) never leaks into it.
        if self.busy:
            self.quiet = 0
        elif self.quiet < _CAP:
            self.quiet += 1
        self.busy = 0
        ring = self.ring
        i = self.ri
        if self.rn >= self.guard and self.quiet > self.guard:
            self._ema(ring[i], ring[i + 1], ring[i + 2], 0)
        elif self.rn >= self.guard and self._near(ring[i], ring[i + 1], ring[i + 2]):
            # Busy road, but this block sits within thr_on of the baseline: learn from it 8
            # times slower. Otherwise a baseline that slipped by about thr_on would make the
            # empty road flicker as vehicles and never be quiet enough to be corrected.
            self._ema(ring[i], ring[i + 1], ring[i + 2], 3)
        elif self.rn < self.guard:
            self.rn += 1
        ring[i] = self.mx
        ring[i + 1] = self.my
        ring[i + 2] = self.mz
        i += 3
        self.ri = 0 if i >= len(ring) else i

    def _near(self, x, y, z):
        return abs(x - self.bx) + abs(y - self.by) + abs(z - self.bz) < self.thr_on

    def _ema(self, x, y, z, slow):
        # acc = baseline * 16 * 2**k; acc += 16 * x - acc / 2**k: an exponential mean over
        # 2**k blocks, in 1/16 counts (no dead band, no floats); slow: 2**slow times fewer.
        k = self.k
        self.ax += ((x << 4) - (self.ax >> k)) >> slow
        self.ay += ((y << 4) - (self.ay >> k)) >> slow
        self.az += ((z << 4) - (self.az >> k)) >> slow
        self._round()

    def _round(self):
        s = self.k + 4
        h = 1 << (s - 1)
        self.bx = (self.ax + h) >> s
        self.by = (self.ay + h) >> s
        self.bz = (self.az + h) >> s

    def _set_base(self, x, y, z):
        s = self.k + 4
        self.ax = x << s
        self.ay = y << s
        self.az = z << s
        self._round()

    def _steady(self, t):
        # While a vehicle is present: since when has its field stayed within thr_off of one
        # level? That long (absorb_s) and it has stopped over the sensor for good. The level
        # is the block mean after a change, taken again from the next block (the first one
        # may still hold the vehicle's last movement). Vehicles passing over a standing level
        # (traffic beside a parked car; a baseline gone wrong, so the empty road itself reads as
        # "present") leave it for less than hold_s: they do not restart the clock.
        ref = self.ref
        if self.ref_ok and abs(self.mx - ref[0]) + abs(self.my - ref[1]) + abs(self.mz - ref[2]) <= self.thr_off:
            self.away = 0
            if self.ref_ok == 2:
                self._ref()
                self.ref_ok = 1
            if tdiff(t, self.t_st) >= self.absorb:
                return self._absorb(t)
            return 0
        if self.ref_ok == 1 and self.away < self.hold:
            self.away += 1
            return 0
        self._ref()
        self.ref_ok = 2
        self.away = 0
        self.t_st = t
        return 0

    def _ref(self):
        ref = self.ref
        ref[0] = self.mx
        ref[1] = self.my
        ref[2] = self.mz

    def _absorb(self, t):
        self.st = 0
        self.rise = 0
        self.vl = 0
        self.quiet = 0
        pb = self.pb
        if not self.parked and abs(self.mx - self.bx) + abs(self.my - self.by) + abs(self.mz - self.bz) < self.thr_on:
            # A standing level below thr_on from the baseline is the road itself (the baseline had
            # slipped, and the road read as one endless vehicle): correct it, count nothing.
            self.n_rebased += 1
            self._set_base(self.mx, self.my, self.mz)
            return 0
        if self.parked:
            # A level shift while a parked vehicle is the baseline: that vehicle has left
            # (the road's field has drifted away from pb meanwhile). Not a new vehicle.
            self.parked = 0
            self.n_departed += 1
            self._set_base(self.mx, self.my, self.mz)
            return 0
        pb[0] = self.bx
        pb[1] = self.by
        pb[2] = self.bz
        # Departure tolerance: the road drifts while a car stands (temperature), so a tight
        # thr_off would never see it leave; half the parked car's own shift, at most 2 thr_on.
        d = abs(self.mx - pb[0]) + abs(self.my - pb[1]) + abs(self.mz - pb[2])
        d = d // 2 if d // 2 < 2 * self.thr_on else 2 * self.thr_on
        self.ptol = d if d > self.thr_off else self.thr_off
        self.parked = 1
        self.near = 0
        self.n_parked += 1
        self._set_base(self.mx, self.my, self.mz)
        return self._record(t, PARKED)

    def _departed(self):
        # A parked vehicle has left when the field is back within ptol of the road's
        # baseline (pb) for a guard's worth of blocks: the baseline returns to the road and
        # the departure (a vehicle-like deviation from the parked level) is not counted.
        pb = self.pb
        if abs(self.mx - pb[0]) + abs(self.my - pb[1]) + abs(self.mz - pb[2]) >= self.ptol:
            self.near = 0
            return 0
        self.near += 1
        if self.near < self.guard:
            return 0
        self.parked = 0
        self.n_departed += 1
        self.st = 0
        self.rise = 0
        self.vl = 0
        self.quiet = 0
        self._set_base(self.mx, self.my, self.mz)
        return 1


# ---- two sensors along the lane ----------------------------------------------------------------
def pair_match(on_a_ms, on_b_ms, off_a_ms, off_b_ms, spacing_mm, cfg=None, mid_a_ms=None, mid_b_ms=None):
    """One vehicle seen by sensor A and by sensor B, spacing_mm apart along the lane (A first
    is direction +1). Times are ticks_ms. Returns (speed_mm_s, length_mm, direction) or None
    when implausible: the rising and falling edges disagree on the order or differ by more than
    pair_tol_pct / pair_tol_ms, or the speed is outside min_kmh..max_kmh.
    speed = spacing / the mean of the two edge lags; length = speed x the mean occupancy
    - zone_mm (at least 0). With the centroids (Detector.last[4]) of both: direction and speed
    from the centroids' lag, and both edge lags must agree with it within the tolerance."""
    d_on = tdiff(on_b_ms, on_a_ms)
    d_off = tdiff(off_b_ms, off_a_ms)
    occ_a = tdiff(off_a_ms, on_a_ms)
    occ_b = tdiff(off_b_ms, on_b_ms)
    if spacing_mm <= 0 or occ_a < 0 or occ_b < 0:
        return None
    if mid_a_ms is not None and mid_b_ms is not None:
        return _pair_mid(tdiff(mid_b_ms, mid_a_ms), d_on, d_off, occ_a + occ_b, spacing_mm, cfg)
    if d_on > 0 and d_off > 0:
        direction = 1
    elif d_on < 0 and d_off < 0:
        direction = -1
        d_on = -d_on
        d_off = -d_off
    else:
        return None
    lag2 = d_on + d_off  # twice the mean lag
    if abs(d_on - d_off) * 200 > lag2 * _cfg(cfg, "pair_tol_pct") + 200 * _cfg(cfg, "pair_tol_ms"):
        return None
    speed = (spacing_mm * 2000 + lag2 // 2) // lag2  # mm/s
    # km/h = mm/s * 36 / 10000
    if speed * 36 < _cfg(cfg, "min_kmh") * 10000 or speed * 36 > _cfg(cfg, "max_kmh") * 10000:
        return None
    return _speed_length(speed, occ_a + occ_b, direction, cfg)


def _pair_mid(lag, d_on, d_off, occ2, spacing_mm, cfg):
    if lag == 0:
        return None
    direction = 1 if lag > 0 else -1
    lag *= direction
    d_on *= direction
    d_off *= direction
    tol = lag * _cfg(cfg, "pair_tol_pct") // 100 + _cfg(cfg, "pair_tol_ms")
    if abs(d_on - lag) > tol or abs(d_off - lag) > tol:
        return None
    speed = (spacing_mm * 1000 + lag // 2) // lag  # mm/s
    if speed * 36 < _cfg(cfg, "min_kmh") * 10000 or speed * 36 > _cfg(cfg, "max_kmh") * 10000:
        return None
    return _speed_length(speed, occ2, direction, cfg)


def _speed_length(speed, occ2, direction, cfg):
    # occ2: the two sensors' occupancies added (ms)
    length = (speed * occ2 + 1000) // 2000 - _cfg(cfg, "zone_mm")
    return speed, (length if length > 0 else 0), direction


class PairMatcher:
    """Pairs the detections of sensor A (0) and sensor B (1), spacing_mm apart, in order: a
    detection pairs with the oldest waiting one of the other sensor that pair_match accepts
    (FIFO, so platoons and queues pair one to one); older waiting ones that it skips, and ones
    older than the largest plausible lag, are vehicles one sensor missed.
    add(sensor, t_on_ms, t_off_ms[, t_mid_ms]) and flush(now_ms) return the vehicles they settle, each
    (t_on_ms, t_off_ms, direction, speed_mm_s, length_mm), the times of the sensor that saw it
    first; a vehicle seen by one sensor only has direction 0, None for speed and length, and a
    sixth item: the sensor that saw it (0 or 1).
    Each detection ends up in exactly one vehicle. Not per sample: it may allocate."""

    QUEUE = 8  # waiting detections per sensor

    def __init__(self, spacing_mm, cfg=None):
        self.spacing = spacing_mm
        self.cfg = cfg
        # The largest lag between the sensors (at min_kmh), plus two samples' slack.
        self.max_lag = spacing_mm * 36 // (_cfg(cfg, "min_kmh") * 10) + 40
        self.q = ([], [])  # type: tuple

    def add(self, sensor, t_on_ms, t_off_ms, t_mid_ms=None):
        s = 1 if sensor else 0
        out = self.flush(t_off_ms)
        other = self.q[1 - s]
        for i in range(len(other)):
            o_on, o_off, o_mid = other[i]
            if s:
                r = pair_match(o_on, t_on_ms, o_off, t_off_ms, self.spacing, self.cfg, o_mid, t_mid_ms)
                ok = r is not None and r[2] == 1
            else:
                r = pair_match(t_on_ms, o_on, t_off_ms, o_off, self.spacing, self.cfg, t_mid_ms, o_mid)
                ok = r is not None and r[2] == -1
            if ok and r is not None:
                for j in range(i):
                    out.append(_single(other[j], 1 - s))
                del other[:i + 1]
                out.append((o_on, o_off, r[2], r[0], r[1]))
                return out
        own = self.q[s]
        own.append((t_on_ms, t_off_ms, t_mid_ms))
        if len(own) > self.QUEUE:
            out.append(_single(own.pop(0), s))
        return out

    def flush(self, now_ms):
        """Settle the waiting detections that can no longer pair (their partner would have come
        by now): call it now and then when the road is quiet."""
        out = []
        for s in (0, 1):
            q = self.q[s]
            while q and tdiff(now_ms, q[0][1]) > self.max_lag:
                out.append(_single(q.pop(0), s))
        return out


def _single(det, sensor):
    return det[0], det[1], 0, None, None, sensor


# ---- sensor faults -----------------------------------------------------------------------------
def fault_check(state, cfg, dt_ms, n_ok, n_bad, n_ovf, stuck_ms):
    """The magnetometer's health over the last dt_ms: n_ok samples read, n_bad polls without
    data (no data-ready, bus error), n_ovf samples flagged overflow; stuck_ms from
    Detector.stuck_ms(). Causes: "stuck" (identical readings for stuck_s), "no_data" (no
    sample at all) or "overflow" (at least half the samples overflowed), each of the last two
    persisting for fault_s. One sensor_fault (warning) when a cause appears, one sensor_ok
    (info) once it has been clean for ok_s. state: a small JSON-able dict (sf raised, fc cause,
    fb ms bad, fg ms clean). Returns [(name, level, data)]."""
    cause = None
    if stuck_ms >= _cfg(cfg, "stuck_s") * 1000:
        cause = "stuck"
    elif n_ok <= 0 and n_ovf <= 0:
        cause = "no_data"
    elif n_ovf > 0 and n_ovf >= n_ok:
        cause = "overflow"
    dt = dt_ms if dt_ms > 0 else 0
    if cause is not None:
        state["fg"] = 0
        fb = min(state.get("fb", 0) + dt, _CAP)
        state["fb"] = fb
        if not state.get("sf") and (cause == "stuck" or fb >= _cfg(cfg, "fault_s") * 1000):
            state["sf"] = 1
            state["fc"] = cause
            return [("sensor_fault", WARN, {"cause": cause, "s": (stuck_ms if cause == "stuck" else fb) // 1000})]
        return []
    state["fb"] = 0
    if not state.get("sf"):
        return []
    fg = min(state.get("fg", 0) + dt, _CAP)
    state["fg"] = fg
    if fg < _cfg(cfg, "ok_s") * 1000:
        return []
    state["sf"] = 0
    state["fg"] = 0
    return [("sensor_ok", INFO, {"cause": state.pop("fc", None)})]
