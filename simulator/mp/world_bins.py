"""The bin world: the ground truth that the fill-level node's fake distance sensors measure.

One `Bin` per node. It models a waste bin with a sensor in its lid: waste arrives as discrete
deposits (bags) at a rate that follows the hour of day, the weekday and (for park bins) the
season; scheduled collections empty it (some are skipped); the air in the bin follows a daily
temperature cycle; incidents (lid left open, fire, sensor unplugged) are scheduled or random.
docs/worlds/bins.md describes the model, its parameters and defaults.

Written in the MicroPython dialect (it also runs in the WASI MicroPython): no dataclasses, no
typing, no `random`: a seeded xorshift32 gives the randomness, one independent stream per day
and purpose, so the same (params, seed, start_unix) gives the same history however often and in
whatever order it is queried. History is generated lazily, day by day in time order, as far as
the latest time asked about.

Time: `t_s` is virtual seconds since the scenario start (board.clock.now_us / 1e6); start_unix
(UTC, shifted by params "tz_h") gives the weekday and hour of t_s = 0.

Public API:
- Bin(params, seed, start_unix)
- Bin.state_at(t_s) -> {"distance_mm", "fill_pct", "air_c", "noise_mm", "spurious", "lost",
  "lid_open", "unplugged", "fire"}
- Bin.scene(board) -> state_at(board.clock.now_us / 1e6): the callable the fake chips take
- Bin.truth_fill_pct(t_s), Bin.air_c(t_s)
- Bin.collections(until_s) -> [(t_s, fill_before_pct)]: the collections that happened
- Bin.skipped_collections(until_s) -> [t_s]: scheduled collections the truck missed
- Bin.deposits(until_s) -> [(t_s, litres, accepted_litres)]
- Bin.incidents(until_s) -> [(kind, start_s, end_s)]
- Bin.tmp36_uv(board) -> microvolts of the TMP36 in the bin (see attach)
- attach(board, params, seed, start_unix) -> Bin

Temperature sensor: attach() puts Bin.tmp36_uv in board.adc_sources for the profile's
fill_level "temp_sensor" pin. It models an analog TMP36: Vout = 500 mV + 10 mV/degC x T
(TMP36 datasheet: 10 mV/degC scale factor, 750 mV at 25 degC; specified -40..+125 degC,
operates to +150 degC, so the output is clamped to that range). The node reads it with
machine.ADC(machine.Pin(pin), atten=machine.ADC.ATTN_11DB).read_uv() and
T = (uv - 500000) / 10000 degC. The fake sensor is always powered and ideal (params
"tmp36_offset_c" adds a fixed calibration error; the datasheet allows +-2 degC).
"""
import math

from worldkit import DAY_S, HOUR_S, M32, XorShift32, get, intervals, mix32

# 1970-01-01 was a Thursday: weekday (0 = Monday) of absolute day D is (D + 3) % 7.
_EPOCH_WEEKDAY = 3
# Peak of the park season: 2024-07-15 as days since 1970-01-01.
_SUMMER_DAY = 19919
_YEAR_D = 365.2425

# Independent random streams (one per day and purpose).
_S_DEPOSIT = 1
_S_COLLECT = 2
_S_INCIDENT = 3
_S_TEMP = 4
_S_INIT = 5
_S_FIRE = 6

# Deposit rate profiles per use: relative weights of the 24 local hours and the 7 weekdays
# (Monday first). Only the shape matters: the rates are scaled so that the mean over a week
# (and over a year for the seasonal park profile) is litres_per_day.
_HOURS = {
    # before work and in the evening, little at night
    "home": (0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 1.0, 1.6, 1.4, 0.9, 0.7, 0.7,
             0.8, 0.7, 0.6, 0.7, 0.9, 1.2, 1.6, 1.8, 1.6, 1.1, 0.6, 0.3),
    # business hours, most at opening and closing
    "shop": (0.02, 0.02, 0.02, 0.02, 0.02, 0.05, 0.2, 0.6, 1.2, 1.0, 1.0, 1.0,
             1.1, 1.0, 1.0, 1.0, 1.1, 1.4, 1.6, 1.0, 0.3, 0.1, 0.05, 0.02),
    # afternoons
    "park": (0.05, 0.02, 0.02, 0.02, 0.02, 0.05, 0.1, 0.3, 0.5, 0.6, 0.8, 1.1,
             1.4, 1.6, 1.7, 1.7, 1.6, 1.4, 1.2, 0.9, 0.6, 0.3, 0.15, 0.08),
}
_WEEKDAYS = {
    "home": (0.9, 0.9, 0.9, 0.9, 0.95, 1.2, 1.25),  # more at weekends
    "shop": (1.15, 1.15, 1.15, 1.15, 1.2, 0.8, 0.05),  # closed on Sunday
    "park": (0.7, 0.7, 0.7, 0.8, 1.0, 1.6, 1.5),  # weekends
}

# Defaults per use. depth_mm: sensor to the floor (the node's empty_mm); full_mm: sensor to
# the surface at 100 %; capacity_l: litres between the floor and full_mm; bag_l: a deposit is
# uniform in [lo, hi] litres; season: amplitude of the yearly rate cycle (peak mid-July).
_USES = {
    "home": {"depth_mm": 1100, "full_mm": 300, "capacity_l": 240, "litres_per_day": 50,
             "bag_l": (5, 35), "collection": {"days": [1, 4], "hour": 7}, "settle": 0.1,
             "season": 0.0},
    "shop": {"depth_mm": 1400, "full_mm": 300, "capacity_l": 1100, "litres_per_day": 320,
             "bag_l": (10, 60), "collection": {"days": [0, 2, 4], "hour": 6}, "settle": 0.1,
             "season": 0.0},
    "park": {"depth_mm": 700, "full_mm": 200, "capacity_l": 60, "litres_per_day": 10,
             "bag_l": (0.2, 2.5), "collection": {"days": [0, 3], "hour": 9}, "settle": 0.05,
             "season": 0.4},
}

# Measurement quality the chips apply, per sensor (modelling assumptions, see bins.md):
# HC-SR04 ranging accuracy 3 mm (its datasheet), JSN-SR04T +-1 cm (vendor sheet).
_SENSORS = {
    "jsn-sr04t": {"noise_mm": 5.0, "spurious": 0.03, "lost": 0.02},
    "hc-sr04": {"noise_mm": 3.0, "spurious": 0.03, "lost": 0.02},
    "vl53l1x": {"noise_mm": 5.0, "spurious": 0.01, "lost": 0.01},
}

# Random incidents (params "incidents": true): probability per day, duration range in hours.
_INCIDENTS = {
    "lid_open": (0.03, 0.2, 6.0),
    "unplugged": (0.003, 2.0, 48.0),
    "fire": (0.0005, 0.5, 2.0),
}
_KINDS = ("lid_open", "unplugged", "fire")

_FIRE_RISE_S = 120.0  # time constant of the rise to the fire's peak temperature
_FIRE_DECAY_S = 1200.0  # and of the cooling once it is out
_FIRE_PEAK_C = (70.0, 90.0)
_TMP36_RANGE_C = (-40.0, 150.0)


class _Rng(XorShift32):
    """xorshift32 (Marsaglia 2003, shifts 13, 17, 5), seeded from (seed, day, stream)."""

    def __init__(self, seed, day, stream):
        x = mix32(mix32(seed) ^ 0x9E3779B9)
        x = mix32(x ^ ((seed >> 32) & M32))
        x = mix32(x ^ (day & M32))
        x = mix32(x ^ stream)
        self.x = x if x else 0x6D2B79F5


class Bin:
    def __init__(self, params, seed, start_unix):
        p = dict(params or {})
        self.params = p
        use = p.get("use") or "home"
        if use not in _USES:
            raise ValueError("unknown bin use %r" % (use,))
        self.use = use
        d = _USES[use]
        self.seed = int(seed)
        self.depth_mm = float(get(p, "depth_mm", d["depth_mm"]))
        self.full_mm = float(get(p, "full_mm", d["full_mm"]))
        if not 0 <= self.full_mm < self.depth_mm:
            raise ValueError("need 0 <= full_mm < depth_mm")
        self.span_mm = self.depth_mm - self.full_mm  # waste height at 100 %
        # Waste cannot rise above the rim: it heaps up to overflow_mm below the sensor (by
        # default 100 mm above "full", less in a shallow bin so that truth stays <= 130 %).
        ov = p.get("overflow_mm")
        if ov is None:
            ov = self.full_mm - min(100.0, 0.3 * self.span_mm)
        self.overflow_mm = min(max(float(ov), 0.0), self.full_mm)
        self.cap_mm = self.depth_mm - self.overflow_mm
        self.capacity_l = float(get(p, "capacity_l", d["capacity_l"]))
        if self.capacity_l <= 0:
            raise ValueError("capacity_l must be > 0")
        self.mm_per_l = self.span_mm / self.capacity_l
        self.litres_per_day = float(get(p, "litres_per_day", d["litres_per_day"]))
        bag = get(p, "bag_l", d["bag_l"])
        self.bag_lo = float(bag[0])
        self.bag_hi = float(bag[1])
        if not 0 < self.bag_lo <= self.bag_hi:
            raise ValueError("bag_l must be [lo, hi] with 0 < lo <= hi")
        self.season = float(get(p, "season", d["season"]))
        self.settle = min(max(float(get(p, "settle", d["settle"])), 0.0), 0.9)
        self.settle_s = float(get(p, "settle_h", 12)) * HOUR_S
        hw = get(p, "hour_weights", _HOURS[use])
        wd = get(p, "weekday_weights", _WEEKDAYS[use])
        if len(hw) != 24 or len(wd) != 7:
            raise ValueError("hour_weights needs 24 values, weekday_weights 7")
        sh = 0.0
        for w in hw:
            sh += w
        sw = 0.0
        for w in wd:
            sw += w
        if sh <= 0 or sw <= 0:
            raise ValueError("weights must not all be zero")
        # deposits per hour = litres_per_day * _wd[weekday] * _hw[hour] * season / mean bag
        self._hw = [float(w) / sh for w in hw]
        self._wd = [7.0 * float(w) / sw for w in wd]
        self._mean_bag = 0.5 * (self.bag_lo + self.bag_hi)

        col = get(p, "collection", d["collection"])
        self.col_days = []  # weekdays (0 = Monday), or
        self.col_every = 0  # every N days from the start day + first_day
        self.col_first = 0
        if "every_days" in col:
            self.col_every = int(col["every_days"])
            if self.col_every < 1:
                raise ValueError("collection every_days must be >= 1")
            self.col_first = int(col.get("first_day", 0))
        else:
            self.col_days = [int(x) % 7 for x in col.get("days", ())]
        self.col_hour = float(col.get("hour", 7))
        self.col_jitter_s = float(col.get("jitter_min", 60)) * 60
        self.skip_prob = float(get(p, "skip_prob", col.get("skip_prob", 0.02)))
        self.residue_pct = float(col.get("residue_pct", 3))

        sensor = p.get("sensor") or "jsn-sr04t"
        if sensor not in _SENSORS:
            raise ValueError("unknown sensor %r" % (sensor,))
        self.sensor = sensor
        q = _SENSORS[sensor]
        self.noise_mm = float(get(p, "noise_mm", q["noise_mm"]))
        self.spurious = float(get(p, "spurious", q["spurious"]))
        self.lost = float(get(p, "lost", q["lost"]))

        self.air_min_c = float(get(p, "air_min_c", 8))
        self.air_max_c = float(get(p, "air_max_c", 22))
        self.air_peak_h = float(get(p, "air_peak_h", 15))
        self.air_jitter_c = float(get(p, "air_jitter_c", 2))
        self.tmp36_offset_c = float(get(p, "tmp36_offset_c", 0))

        self.random_incidents = bool(p.get("incidents", False))
        rates = p.get("incident_rates") or {}
        self._inc_rates = {}
        for k in _KINDS:
            dflt = _INCIDENTS[k]
            r = rates.get(k)
            self._inc_rates[k] = dflt if r is None else (float(r), dflt[1], dflt[2])

        # Local time: day index and position of t_s = 0.
        loc = int(start_unix) + int(float(get(p, "tz_h", 0)) * HOUR_S)
        self.start_unix = int(start_unix)
        self._d0 = loc // DAY_S
        self._s0 = loc - self._d0 * DAY_S  # seconds into day _d0 at t_s = 0

        # Incidents: [kind, start_s, end_s, peak_c]; scheduled ones now, random ones per day.
        self._inc = []
        n = 0
        for k in _KINDS:
            for s, e in intervals(p.get(k), k):
                peak = 0.0
                if k == "fire":
                    peak = _Rng(self.seed, n, _S_FIRE).uniform(_FIRE_PEAK_C[0], _FIRE_PEAK_C[1])
                    n += 1
                self._inc.append([k, s, e, peak])

        # Fill history: the waste height is h(t) = base[i] + loose[i] * exp(-(t - t[i]) / settle_s)
        # for t[i] <= t < t[i+1]: "loose" is the part of recent deposits that has yet to settle.
        start_pct = p.get("start_pct")
        ri = _Rng(self.seed, self._d0, _S_INIT)
        if start_pct is None:
            start_pct = ri.uniform(0, 30)
        h0 = min(max(float(start_pct), 0.0) * self.span_mm / 100.0, self.cap_mm)
        self._et = [0.0]
        self._eb = [h0]
        self._el = [0.0]
        self._col = []  # (t_s, fill_before_pct)
        self._skip = []  # t_s of skipped collections
        self._dep = []  # (t_s, litres, accepted litres)
        self._next_day = self._d0  # first day not generated yet
        self._toff = {}  # day -> temperature offset
        self.chip = None  # the fake sensor attach() put on the board

    # ---- calendar -----------------------------------------------------------------------
    def _day_of(self, t):
        return self._d0 + int(math.floor((self._s0 + t) / DAY_S))

    def _day_start(self, day):
        return float((day - self._d0) * DAY_S - self._s0)

    def weekday_hour(self, t_s):
        """(weekday 0 = Monday, local hour as a float) at t_s."""
        day = self._day_of(t_s)
        return (day + _EPOCH_WEEKDAY) % 7, (t_s - self._day_start(day)) / HOUR_S

    def _season(self, day):
        if not self.season:
            return 1.0
        return 1.0 + self.season * math.cos(2.0 * math.pi * (day - _SUMMER_DAY) / _YEAR_D)

    def _collected_on(self, day):
        if self.col_every:
            return (day - self._d0 - self.col_first) % self.col_every == 0
        return ((day + _EPOCH_WEEKDAY) % 7) in self.col_days

    # ---- history, generated day by day ----------------------------------------------------
    def _ensure(self, t):
        last = self._day_of(t)
        while self._next_day <= last:
            self._gen_day(self._next_day)
            self._next_day += 1

    def _gen_day(self, day):
        t0 = self._day_start(day)
        evs = []
        # Deposits: a Poisson process whose rate is constant within each hour; exponential gaps
        # measured in expected deposits carry across the hours of the day.
        rng = _Rng(self.seed, day, _S_DEPOSIT)
        per_day = self.litres_per_day * self._wd[(day + _EPOCH_WEEKDAY) % 7] * self._season(day) / self._mean_bag
        if per_day > 0:
            e = rng.expo()
            for hour in range(24):
                lam = per_day * self._hw[hour]  # expected deposits in this hour
                if lam <= 0:
                    continue
                used = 0.0
                while used + e < lam:
                    used += e
                    t = t0 + (hour + used / lam) * HOUR_S
                    litres = rng.uniform(self.bag_lo, self.bag_hi)
                    if t >= 0:
                        evs.append((t, 0, litres))
                    e = rng.expo()
                e -= lam - used
        # The collection of the day: within jitter of the hour, unless the truck skips it.
        if self._collected_on(day):
            rc = _Rng(self.seed, day, _S_COLLECT)
            t = t0 + self.col_hour * HOUR_S + rc.u() * self.col_jitter_s
            skipped = rc.u() < self.skip_prob
            residue = rc.uniform(0, self.residue_pct) * self.span_mm / 100.0
            if t >= 0:
                if skipped:
                    self._skip.append(t)
                else:
                    evs.append((t, 1, residue))
        # Random incidents: at most one of each kind starts per day.
        if self.random_incidents:
            rn = _Rng(self.seed, day, _S_INCIDENT)
            for k in _KINDS:
                prob, lo, hi = self._inc_rates[k]
                hit = rn.u() < prob
                s = t0 + rn.u() * DAY_S
                dur = rn.uniform(lo, hi) * HOUR_S
                peak = rn.uniform(_FIRE_PEAK_C[0], _FIRE_PEAK_C[1])
                if hit and s >= 0:
                    self._inc.append([k, s, s + dur, peak if k == "fire" else 0.0])
        evs.sort()
        et = self._et
        eb = self._eb
        el = self._el
        for t, kind, v in evs:
            i = len(et) - 1
            loose = el[i] * self._decay(t - et[i])
            h = eb[i] + loose
            if kind == 0:
                acc_mm = min(v * self.mm_per_l, self.cap_mm - h)
                if acc_mm < 0:
                    acc_mm = 0.0
                self._dep.append((t, v, acc_mm / self.mm_per_l))
                if acc_mm <= 0:
                    continue
                et.append(t)
                eb.append(eb[i] + (1.0 - self.settle) * acc_mm)
                el.append(loose + self.settle * acc_mm)
            else:
                self._col.append((t, 100.0 * h / self.span_mm))
                et.append(t)
                eb.append(v)
                el.append(0.0)

    def _decay(self, dt):
        if self.settle_s <= 0:
            return 0.0
        return math.exp(-dt / self.settle_s)

    def _height(self, t):
        et = self._et
        lo = 0
        hi = len(et)  # last index with et[i] <= t
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if et[mid] <= t:
                lo = mid
            else:
                hi = mid
        h = self._eb[lo]
        loose = self._el[lo]
        if loose > 0:
            h += loose * self._decay(t - et[lo])
        return h

    # ---- air ----------------------------------------------------------------------------
    def _day_offset(self, day):
        v = self._toff.get(day)
        if v is None:
            v = _Rng(self.seed, day, _S_TEMP).uniform(-self.air_jitter_c, self.air_jitter_c)
            self._toff[day] = v
        return v

    def _ambient(self, t):
        day = self._day_of(t)
        hour = (t - self._day_start(day)) / HOUR_S
        mid = 0.5 * (self.air_min_c + self.air_max_c)
        amp = 0.5 * (self.air_max_c - self.air_min_c)
        # day-to-day offsets, linear between noons
        if hour >= 12:
            a, f = day, (hour - 12) / 24.0
        else:
            a, f = day - 1, (hour + 12) / 24.0
        off = self._day_offset(a) * (1.0 - f) + self._day_offset(a + 1) * f
        return mid + off + amp * math.cos(2.0 * math.pi * (hour - self.air_peak_h) / 24.0)

    def air_c(self, t_s):
        """Air temperature in the bin (degC): the daily cycle plus any fire."""
        t = float(t_s)
        if t < 0:
            t = 0.0
        self._ensure(t)
        return self._air(t)

    def _air(self, t):
        amb = self._ambient(t)
        extra = 0.0
        for k, s, e, peak in self._inc:
            if k != "fire" or t < s:
                continue
            if t < e:
                x = (peak - amb) * (1.0 - math.exp(-(t - s) / _FIRE_RISE_S))
            else:
                x = (peak - self._ambient(e)) * (1.0 - math.exp(-(e - s) / _FIRE_RISE_S))
                x *= math.exp(-(t - e) / _FIRE_DECAY_S)
            extra = max(extra, x)
        return amb + extra

    # ---- truth --------------------------------------------------------------------------
    def state_at(self, t_s):
        t = float(t_s)
        if t < 0:
            t = 0.0
        self._ensure(t)
        h = self._height(t)
        flags = {"lid_open": False, "unplugged": False, "fire": False}
        for k, s, e, _ in self._inc:
            if s <= t < e:
                flags[k] = True
        return {
            "distance_mm": self.depth_mm - h,
            "fill_pct": 100.0 * h / self.span_mm,
            "air_c": self._air(t),
            "noise_mm": self.noise_mm,
            "spurious": self.spurious,
            "lost": self.lost,
            "lid_open": flags["lid_open"],
            "unplugged": flags["unplugged"],
            "fire": flags["fire"],
        }

    def scene(self, board):
        return self.state_at(board.clock.now_us / 1e6)

    def truth_fill_pct(self, t_s):
        t = float(t_s)
        if t < 0:
            t = 0.0
        self._ensure(t)
        return 100.0 * self._height(t) / self.span_mm

    def collections(self, until_s):
        """[(t_s, fill_before_pct)] of the collections at or before until_s."""
        self._ensure(float(until_s))
        return [c for c in self._col if c[0] <= until_s]

    def skipped_collections(self, until_s):
        self._ensure(float(until_s))
        return [t for t in self._skip if t <= until_s]

    def deposits(self, until_s):
        """[(t_s, litres, accepted_litres)]: accepted < litres when the bin was overfull."""
        self._ensure(float(until_s))
        return [d for d in self._dep if d[0] <= until_s]

    def incidents(self, until_s):
        """[(kind, start_s, end_s)] of the incidents starting at or before until_s."""
        self._ensure(float(until_s))
        out = [(k, s, e) for k, s, e, _ in self._inc if s <= until_s]
        out.sort(key=lambda x: (x[1], x[0]))
        return out

    def tmp36_uv(self, board):
        """Microvolts at the TMP36's output (see the module docstring)."""
        c = self.air_c(board.clock.now_us / 1e6) + self.tmp36_offset_c
        c = min(max(c, _TMP36_RANGE_C[0]), _TMP36_RANGE_C[1])
        return int(500000 + 10000 * c)


def attach(board, params, seed, start_unix):
    """Create the bin, keep it in board.extra["world"], and put its fake distance sensor and
    TMP36 on the board's fill_level pins. params "sensor": "jsn-sr04t" (default), "hc-sr04"
    or "vl53l1x"."""
    params = dict(params or {})
    b = Bin(params, seed, start_unix)
    board.extra["world"] = b
    pins = board.profile["pins"]["fill_level"]
    if b.sensor == "vl53l1x":
        import chip_vl53l1x  # type: ignore[import-not-found]  # a bare name in simulator/mp

        b.chip = chip_vl53l1x.VL53L1X(board, pins["i2c_id"], b.scene, addr=0x29)
    else:
        import chip_ultrasonic  # type: ignore[import-not-found]

        b.chip = chip_ultrasonic.Ultrasonic(board, pins["trigger"], pins["echo"], b.scene,
                                            model=b.sensor, power=pins.get("sensor_power"))
    tp = pins.get("temp_sensor")
    if tp is not None:
        board.adc_sources[tp] = b.tmp36_uv
    return b
