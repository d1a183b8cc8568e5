"""The water world: the ground truth that the water-meter node's fake reed switch counts.

One `Household` per node (or one `District` behind a district meter, params "kind":
"district"). Water is drawn as discrete end-use events, each at a constant flow rate:
showers, toilet cistern refills, taps, washing-machine and dishwasher fills, garden watering
on summer evenings; the people in the home get up, go out to work, come home and go to bed,
so there are busy mornings and evenings and quiet nights. Holidays (scheduled or random)
empty the home. Slow leaks (a running toilet, a dripping tap), burst pipes and backflow
(reverse flow) are scheduled or random. docs/worlds/water.md describes the model, its
parameters and defaults, and which figures come from sources.

Flow is piecewise constant: the sum of the active end uses, leaks and bursts minus backflow,
held as an integer number of millilitres per hour between breakpoints, so zero flow is
exactly zero, `volumes()` is the exact integral, and `next_change_s()` tells a pulse source
how long the rate holds, so the pulses can be placed exactly.

Written in the MicroPython dialect (it also runs in the WASI MicroPython): no dataclasses, no
typing, no `random`: a seeded xorshift32 gives the randomness, one independent stream per day
and purpose (and person), so the same (params, seed, start_unix) gives the same history
however often and in whatever order it is queried. History is generated lazily, whole days
in time order, as far as the latest time asked about.

Time: `t_s` is virtual seconds since the scenario start (board.clock.now_us / 1e6); negative
times read as 0 (nothing is modelled before the start). start_unix (UTC, shifted by params
"tz_h") gives the weekday, the hour and the season of t_s = 0.

Public API (Household and District alike):
- Household(params, seed, start_unix); District(params, seed, start_unix); make(params, seed,
  start_unix) picks one by params "kind" ("household", the default, or "district")
- flow_lps(t_s) -> signed litres per second at t_s (negative: reverse flow)
- volumes(t0_s, t1_s) -> (forward_l, reverse_l) through the meter between the two times
- volume_l(t0_s, t1_s) -> forward_l - reverse_l (negated when t1_s < t0_s)
- next_change_s(t_s) -> the first time after t_s at which the flow changes; the flow is
  constant on [t_s, next_change_s(t_s)). When nothing changes for 32 days it returns
  t_s + 32 days (the flow is constant up to there too).
- events(until_s) -> [(kind, start_s, end_s, l_per_s)]: end-use events starting at or before
  until_s, sorted by start; kind "shower", "toilet", "tap", "washing_machine", "dishwasher",
  "garden" (one event per appliance fill)
- leaks(until_s) -> [(kind, start_s, end_s or None, l_per_h)]; kind "leak" (scheduled),
  "toilet_leak", "tap_leak" (random); None: never fixed
- bursts(until_s) -> [(start_s, end_s, l_per_h)]; backflows(until_s) -> [(start_s, end_s,
  l_per_h)] (l_per_h > 0, flowing backwards)
- holidays(until_s) -> [(start_s, end_s)]; tampers(until_s) -> [(kind, start_s, end_s)] with
  kind "magnet" or "wire_cut"
- state_at(t_s) -> {"flow_lps", "magnet", "wire_cut", "tamper"}; scene(board) ->
  state_at(board.clock.now_us / 1e6); flow_source(board) -> flow_lps(board.clock.now_us / 1e6)
- weekday_hour(t_s) -> (weekday 0 = Monday, local hour)
- attach(board, params, seed, start_unix) -> the world, with its fake reed switch on the
  board's water_meter pins (see attach)
"""
import math

from worldkit import DAY_S, HOUR_S, M32, XorShift32, get, intervals, mix32, seed32

# 1970-01-01 was a Thursday: weekday (0 = Monday) of absolute day D is (D + 3) % 7.
_EPOCH_WEEKDAY = 3
# Peak of the garden season: 2024-07-15 as days since 1970-01-01.
_SUMMER_DAY = 19919
_YEAR_D = 365.2425
# How far next_change_s() looks for a change before it gives up (and returns t + this).
_LOOKAHEAD_S = 32 * DAY_S
# Flow is held in integer millilitres per hour: rates given in l/h (leaks, bursts) are exact,
# and one l/s is _U of them.
_U = 3600000

# Independent random streams (one per day and purpose; people get _S_PERSON + index).
_S_INIT = 1
_S_HOLIDAY = 2
_S_INCIDENT = 3
_S_APPLIANCE = 4
_S_GARDEN = 5
_S_SHOWER = 6
_S_CHIP = 7
_S_PERSON = 32

# Household sizes, 1..5 persons: EU-28 2017 shares of households by size (Eurostat, Household
# composition statistics, LFS: 33.6 / 31.9 / 15.6 / 13.1 / 5.8 %, five or more counted as 5).
_SIZES = (0.336, 0.319, 0.156, 0.131, 0.058)

# Random incidents (params "incidents": true): probability per day, duration range (hours),
# rate range (l/h, drawn log-uniform). Modelling assumptions, see water.md.
_INCIDENTS = {
    "toilet_leak": (0.002, 24.0, 720.0, 1.0, 30.0),
    "tap_leak": (0.002, 72.0, 1440.0, 0.3, 3.0),
    "burst": (0.0002, 0.5, 12.0, 300.0, 3000.0),
    "backflow": (0.0005, 0.05, 0.5, 5.0, 60.0),
}
_KINDS = ("toilet_leak", "tap_leak", "burst", "backflow")
_NO_PULL_PINS = (34, 35, 36, 37, 38, 39)  # ESP32 input-only pads: no pull resistors

# Defaults of the household model (per person per day unless said otherwise); see water.md
# for the calibration against BDEW's breakdown of German household use.
_DEFAULTS = {
    "flushes_per_day": 5.0,  # toilet flushes at home on a day spent at home
    "taps_per_day": 8.0,  # short tap uses (5-40 s)
    "long_taps_per_day": 0.5,  # washing up, filling pots (1-4 min)
    "shower_prob": 0.6,  # showers per person per day
    "away_share": 0.6,  # share of people out at work or school on weekdays
    "loads_per_person_day": 0.3,  # washing-machine loads
    "dish_per_person_day": 0.25,  # dishwasher cycles
    "night_flush_prob": 0.15,  # a toilet visit between 2:00 and 4:30
    "garden_prob": 0.5,  # chance of watering on an evening at the peak of summer
    "holiday_prob": 0.005,  # a holiday starts on a given day
}


class _Rng(XorShift32):
    """xorshift32 (Marsaglia 2003, shifts 13, 17, 5), seeded from (seed32(seed), day,
    stream)."""

    def __init__(self, s32, day, stream):
        x = mix32(s32 ^ 0x7F4A7C15)
        x = mix32(x ^ (day & M32))
        x = mix32(x ^ (stream & M32))
        self.x = x if x else 0x6D2B79F5

    def poisson(self, lam):
        """Poisson-distributed count (Knuth's product of uniforms; lam is small here)."""
        if lam <= 0:
            return 0
        lim = math.exp(-lam)
        k = 0
        p = 1.0 - self.u()
        while p > lim:
            k += 1
            p *= 1.0 - self.u()
        return k


def _mlph(l_per_h):
    """Litres per hour -> integer millilitres per hour (at least 1 when positive)."""
    if l_per_h <= 0:
        return 0
    n = int(l_per_h * 1000.0 + 0.5)
    return n if n > 0 else 1


def _rated(spec, name, open_end):
    # [[start_h, dur_h, l_per_h]] -> [(start_s, end_s or None, ml/h)]
    out = []
    for item in spec or ():
        if len(item) != 3:
            raise ValueError("%s: each entry is [start_h, dur_h, l_per_h]" % name)
        s = float(item[0]) * HOUR_S
        if item[1] is None:
            if not open_end:
                raise ValueError("%s: the duration is required" % name)
            e = None
        else:
            d = float(item[1]) * HOUR_S
            if d < 0:
                raise ValueError("%s: negative duration" % name)
            e = s + d
        r = float(item[2])
        if r <= 0:
            raise ValueError("%s: l_per_h must be > 0" % name)
        out.append((s, e, _mlph(r)))
    return out


def _pick(r, segs, mass):
    # A time (hours) drawn from the piecewise-constant intensity segs = [(a, b, weight)].
    x = r.u() * mass
    for a, b, w in segs:
        m = (b - a) * w
        if x < m:
            return a + x / w
        x -= m
    a, b, w = segs[-1]
    return b


def _ev_key(e):
    return (e[1], e[2], e[0])


def _merge(a, b):
    # Two event lists in _ev_key order -> one (no sort: MicroPython's quicksort is quadratic
    # on a list that is in order already).
    if not a:
        return b
    if not b:
        return a
    out = []
    i = 0
    j = 0
    while i < len(a) and j < len(b):
        if _ev_key(b[j]) < _ev_key(a[i]):
            out.append(b[j])
            j += 1
        else:
            out.append(a[i])
            i += 1
    return out + a[i:] + b[j:]


class _Meter:
    """What every world behind a meter shares: the calendar, the piecewise-constant flow built
    from +/- rate steps, lazily day by day, the truth lists and the tamper intervals."""

    def _init_meter(self, p, seed, start_unix):
        self.params = p
        self.seed = int(seed)
        self._s32 = seed32(self.seed)
        loc = int(start_unix) + int(float(get(p, "tz_h", 0)) * HOUR_S)
        self.start_unix = int(start_unix)
        self._d0 = loc // DAY_S
        self._s0 = loc - self._d0 * DAY_S  # seconds into day _d0 at t_s = 0
        self.litres_per_pulse = float(get(p, "litres_per_pulse", 1.0))
        if self.litres_per_pulse <= 0:
            raise ValueError("litres_per_pulse must be > 0")
        b = get(p, "bounce_ms", (0.5, 3.0))
        if not isinstance(b, (list, tuple)):
            b = (b, b)
        self.bounce_ms = (float(b[0]), float(b[1]))
        if not 0 <= self.bounce_ms[0] <= self.bounce_ms[1]:
            raise ValueError("bounce_ms must be [min, max] with 0 <= min <= max")
        self.pullup = bool(p.get("pullup", False))
        self._open_level = 1 if self.pullup else None
        self.rc_us = int(get(p, "rc_us", 0))
        self.poll_s = float(get(p, "poll_s", 3600))
        self._tamper_pin = None
        self._lines = []
        self._tamper = []  # (kind, start_s, end_s)
        for k in ("magnet", "wire_cut"):
            for s, e in intervals(p.get(k), k):
                self._tamper.append((k, s, e))
        self._tamper.sort(key=lambda x: (x[1], x[0]))
        # Breakpoints: the flow is _bf[i] (ml/h) on [_bt[i], _bt[i+1]); _cf/_cr are the forward
        # and reverse volumes (ml/h x s) from 0 to _bt[i]. Only times before _horizon are final.
        self._bt = [0.0]
        self._bf = [0]
        self._cf = [0.0]
        self._cr = [0.0]
        self._pending = []  # (t_s, delta ml/h) not yet folded in
        self._next_day = self._d0
        self._horizon = self._day_start(self._d0)
        self._owner = None  # a District this household belongs to
        self.chip = None  # the fake reed switch attach() put on the board

    # ---- calendar -----------------------------------------------------------------------
    def _day_of(self, t):
        return self._d0 + int(math.floor((self._s0 + t) / DAY_S))

    def _day_start(self, day):
        return float((day - self._d0) * DAY_S - self._s0)

    def weekday_hour(self, t_s):
        """(weekday 0 = Monday, local hour as a float) at t_s."""
        day = self._day_of(t_s)
        return (day + _EPOCH_WEEKDAY) % 7, (t_s - self._day_start(day)) / HOUR_S

    # ---- the flow, built day by day -------------------------------------------------------
    def _ensure(self, t):
        if self._owner is not None:
            raise ValueError("this household is part of a district: query the district")
        while self._horizon <= t:
            self._step()

    def _day_deltas(self, day):
        """[(t_s, delta ml/h)] of the rate steps of the events that start on `day`."""
        raise NotImplementedError

    def _step(self):
        day = self._next_day
        self._pending.extend(self._day_deltas(day))
        self._next_day = day + 1
        # Every day's events start on or after its midnight: the flow before the next
        # midnight is now known.
        self._horizon = self._day_start(day + 1)
        self._fold()

    def _fold(self):
        pend = self._pending
        pend.sort()
        hz = self._horizon
        n = 0
        while n < len(pend) and pend[n][0] < hz:
            n += 1
        if n == 0:
            return
        bt = self._bt
        bf = self._bf
        cf = self._cf
        cr = self._cr
        i = 0
        while i < n:
            t = pend[i][0]
            d = 0
            while i < n and pend[i][0] == t:
                d += pend[i][1]
                i += 1
            if t < 0:
                t = 0.0
            last = len(bt) - 1
            if t <= bt[last]:
                # before the start (or at a time already folded): merged into the last step
                bf[last] += d
                if last > 0 and bf[last] == bf[last - 1]:
                    bt.pop()
                    bf.pop()
                    cf.pop()
                    cr.pop()
                continue
            if d == 0:
                continue
            f = bf[last]
            dt = t - bt[last]
            bt.append(t)
            bf.append(f + d)
            cf.append(cf[last] + (f * dt if f > 0 else 0.0))
            cr.append(cr[last] + (-f * dt if f < 0 else 0.0))
        self._pending = pend[n:]

    def _find(self, t):
        bt = self._bt
        lo = 0
        hi = len(bt)  # last index with bt[i] <= t
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if bt[mid] <= t:
                lo = mid
            else:
                hi = mid
        return lo

    def _cum(self, t):
        i = self._find(t)
        f = self._bf[i]
        dt = t - self._bt[i]
        fw = self._cf[i]
        rv = self._cr[i]
        if f > 0:
            fw += f * dt
        elif f < 0:
            rv -= f * dt
        return fw, rv

    def flow_lps(self, t_s):
        """Signed flow through the meter (l/s) at t_s; negative is reverse flow."""
        t = float(t_s)
        if t < 0:
            t = 0.0
        self._ensure(t)
        return self._bf[self._find(t)] / _U

    def volumes(self, t0_s, t1_s):
        """(forward litres, reverse litres) that pass the meter between t0_s and t1_s."""
        a = float(t0_s)
        b = float(t1_s)
        if b < a:
            a, b = b, a
        if a < 0:
            a = 0.0
        if b < 0:
            b = 0.0
        self._ensure(b)
        fa, ra = self._cum(a)
        fb, rb = self._cum(b)
        return (fb - fa) / _U, (rb - ra) / _U

    def volume_l(self, t0_s, t1_s):
        """Net signed volume (forward - reverse) from t0_s to t1_s."""
        fw, rv = self.volumes(t0_s, t1_s)
        v = fw - rv
        return v if t1_s >= t0_s else -v

    def next_change_s(self, t_s):
        """The first time after t_s when the flow changes (see the module docstring)."""
        t = float(t_s)
        if t < 0:
            t = 0.0
        limit = t + _LOOKAHEAD_S
        self._ensure(t)
        while True:
            i = self._find(t)
            if i + 1 < len(self._bt):
                return self._bt[i + 1]
            if self._horizon >= limit:
                return limit
            self._step()

    # ---- truth --------------------------------------------------------------------------
    def _parts(self):
        return [self]

    def events(self, until_s):
        """[(kind, start_s, end_s, l_per_s)] of the end uses starting at or before until_s."""
        self._ensure(float(until_s))
        out = []  # type: list[tuple]
        for h in self._parts():
            # each household's list is in order already (see Household._day_deltas)
            evs = h._events
            n = len(evs)
            while n > 0 and evs[n - 1][1] > until_s:
                n -= 1
            out = _merge(out, evs[:n])
        return out

    def _truth(self, attr, until_s):
        self._ensure(float(until_s))
        out = []
        for h in self._parts():
            for x in getattr(h, attr):
                if x[-3] <= until_s:
                    out.append(x)
        return out

    def leaks(self, until_s):
        """[(kind, start_s, end_s or None, l_per_h)] of the leaks starting at or before until_s."""
        out = self._truth("_leaks", until_s)
        out.sort(key=lambda x: (x[1], x[0]))
        return out

    def bursts(self, until_s):
        """[(start_s, end_s, l_per_h)] of the burst pipes starting at or before until_s."""
        out = self._truth("_bursts", until_s)
        out.sort()
        return out

    def backflows(self, until_s):
        """[(start_s, end_s, l_per_h)] of the reverse-flow episodes starting by until_s."""
        out = self._truth("_backflows", until_s)
        out.sort()
        return out

    def holidays(self, until_s):
        """[(start_s, end_s)] of the holidays starting at or before until_s."""
        self._ensure(float(until_s))
        out = []
        for h in self._parts():
            for x in h._hol:
                if x[0] <= until_s:
                    out.append(x)
        out.sort()
        return out

    def tampers(self, until_s):
        """[(kind, start_s, end_s)]: magnets on the meter and cut cables, by until_s."""
        return [x for x in self._tamper if x[1] <= until_s]

    def tampered(self, t_s):
        """(magnet, wire_cut) at t_s."""
        t = float(t_s)
        mag = False
        cut = False
        for k, s, e in self._tamper:
            if s <= t < e:
                if k == "magnet":
                    mag = True
                else:
                    cut = True
        return mag, cut

    def state_at(self, t_s):
        mag, cut = self.tampered(t_s)
        return {"flow_lps": self.flow_lps(t_s), "magnet": mag, "wire_cut": cut,
                "tamper": mag or cut}

    def scene(self, board):
        return self.state_at(board.clock.now_us / 1e6)

    def flow_source(self, board):
        return self.flow_lps(board.clock.now_us / 1e6)

    # ---- on a board -----------------------------------------------------------------------
    def _flow_tick(self, board):
        # At each change of the flow: tell the reed switch at once, and wait for the next.
        if self.chip is not None:
            self.chip.flow_changed()
        self._schedule_flow(board)

    def _schedule_flow(self, board):
        now = board.clock.now_us
        at = int(math.ceil(self.next_change_s(now / 1e6) * 1e6))
        if at <= now:
            at = now + 1
        board.call_at(at, self._flow_tick)

    def _line_level(self, board, pid):
        # The level the node reads on a meter line (pulse or direction) while tampering is
        # possible: a magnet holds the reed closed (0); a cut cable releases the line.
        p = board.pin(pid)
        hold = p.get("world_hold")
        if hold == "low":
            return 0
        lvl = p["level"] if hold is None else self._open_level
        if lvl is not None:
            return lvl
        # released: the pull-up decides (GPIO34-39 have none), as Board.pin_level does
        return 1 if p["pull"] == 2 and pid not in _NO_PULL_PINS else 0

    def _tamper_tick(self, board, t_s):
        mag, cut = self.tampered(t_s)
        # The tamper loop (a wire to GND through the meter cable and its seal) holds its line
        # low while intact; a cut opens it (None: released, the node's pull-up reads 1). A
        # magnet does not touch the loop: it shows on the pulse and direction lines only.
        if self._tamper_pin is not None:
            board.pin_edge(self._tamper_pin, None if cut else 0)
        hold = "open" if cut else ("low" if mag else None)
        for pid in self._lines:
            # through pin_update, so that watchers (the PCNT) and IRQs see the edge
            board.pin_update(pid, "world_hold", hold)

    def _wire(self, board, pins):
        """Drive the tamper line and the holds on the pulse and direction lines now and at
        every tamper start and end to come; tell the chip of every change of the flow."""
        self._tamper_pin = pins.get("tamper")
        self._lines = []
        if self._tamper:
            for k in ("pulse", "direction"):
                pid = pins.get(k)
                if pid is not None:
                    self._lines.append(pid)
                    board.pin_inputs[pid] = lambda b, pid=pid: self._line_level(b, pid)
        now = board.clock.now_us
        self._tamper_tick(board, now / 1e6)
        times = []
        for _, s, e in self._tamper:
            for tb in (s, e):
                if int(math.ceil(tb * 1e6)) > now and tb not in times:
                    times.append(tb)
        for tb in times:
            board.call_at(int(math.ceil(tb * 1e6)), lambda b, tb=tb: self._tamper_tick(b, tb))
        if self.chip is not None and hasattr(self.chip, "flow_changed"):
            self._schedule_flow(board)


class Household(_Meter):
    def __init__(self, params, seed, start_unix):
        p = dict(params or {})
        kind = p.get("kind") or "household"
        if kind != "household":
            raise ValueError("a Household has kind 'household', not %r" % (kind,))
        self._init_meter(p, seed, start_unix)
        ri = _Rng(self._s32, 0, _S_INIT)
        # Drawn in a fixed order, whatever params override, so one override does not change
        # the other fixtures.
        x = ri.u()
        persons = 5
        acc = 0.0
        for i in range(5):
            acc += _SIZES[i]
            if x < acc:
                persons = i + 1
                break
        shower = ri.uniform(8.0, 12.0)
        cistern = ri.uniform(6.0, 9.0)
        refill = ri.uniform(8.0, 12.0)
        washer = ri.uniform(8.0, 12.0)
        dish = ri.uniform(3.0, 6.0)
        away_draws = [ri.u() for _ in range(10)]
        self.persons = int(get(p, "persons", persons))
        if not 0 <= self.persons <= 10:
            raise ValueError("persons must be 0..10")
        d = _DEFAULTS
        self.shower_lpm = float(get(p, "shower_lpm", shower))
        self.cistern_l = float(get(p, "cistern_l", cistern))
        self.refill_lpm = float(get(p, "refill_lpm", refill))
        self.washer_lpm = float(get(p, "washer_lpm", washer))
        self.dish_lpm = float(get(p, "dishwasher_lpm", dish))
        for k in ("shower_lpm", "cistern_l", "refill_lpm", "washer_lpm", "dish_lpm"):
            if getattr(self, k) <= 0:
                raise ValueError("%s must be > 0" % k)
        self.flushes = float(get(p, "flushes_per_day", d["flushes_per_day"]))
        self.taps = float(get(p, "taps_per_day", d["taps_per_day"]))
        self.long_taps = float(get(p, "long_taps_per_day", d["long_taps_per_day"]))
        self.shower_prob = float(get(p, "shower_prob", d["shower_prob"]))
        self.away_share = float(get(p, "away_share", d["away_share"]))
        self.night_flush = float(get(p, "night_flush_prob", d["night_flush_prob"]))
        self.loads = float(get(p, "loads_per_day", d["loads_per_person_day"] * self.persons))
        self.has_dishwasher = bool(get(p, "dishwasher", True))
        self.dish_cycles = float(get(p, "dishwasher_per_day", d["dish_per_person_day"] * self.persons))
        self.garden = bool(get(p, "garden", False))
        self.garden_prob = float(get(p, "garden_prob", d["garden_prob"]))
        self.holiday_prob = float(get(p, "holiday_prob", d["holiday_prob"]))
        hd = get(p, "holiday_days", (2, 14))
        self.holiday_lo = float(hd[0])
        self.holiday_hi = float(hd[1])
        if not 0 < self.holiday_lo <= self.holiday_hi:
            raise ValueError("holiday_days must be [lo, hi] with 0 < lo <= hi")
        for k in ("flushes", "taps", "long_taps", "loads", "dish_cycles"):
            if getattr(self, k) < 0:
                raise ValueError("%s must be >= 0" % k)
        self._away = [away_draws[i] < self.away_share for i in range(self.persons)]

        self.random_incidents = bool(p.get("incidents", False))
        rates = p.get("incident_rates") or {}
        for k in rates:
            if k not in _INCIDENTS:
                raise ValueError("unknown incident %r" % (k,))
        self._inc = {}
        for k in _KINDS:
            dflt = _INCIDENTS[k]
            r = rates.get(k)
            self._inc[k] = dflt if r is None else (float(r),) + dflt[1:]

        # Truth, and the scheduled steps (into the pending list now).
        self._events = []  # (kind, start_s, end_s, l_per_s)
        self._hol = intervals(p.get("holidays"), "holidays")
        self._leaks = []  # (kind, start_s, end_s or None, l_per_h)
        self._bursts = []  # (start_s, end_s, l_per_h)
        self._backflows = []
        for s, e, u in _rated(p.get("leaks"), "leaks", True):
            self._add_flow(self._pending, "leak", s, e, u)
        for s, e, u in _rated(p.get("bursts"), "bursts", False):
            self._add_flow(self._pending, "burst", s, e, u)
        for s, e, u in _rated(p.get("backflow"), "backflow", False):
            self._add_flow(self._pending, "backflow", s, e, u)

    def _add_flow(self, out, kind, s, e, u):
        lph = u / 1000.0
        if kind == "burst":
            self._bursts.append((s, e, lph))
        elif kind == "backflow":
            self._backflows.append((s, e, lph))
            u = -u
        else:
            self._leaks.append((kind, s, e, lph))
        out.append((s, u))
        if e is not None:
            out.append((e, -u))

    def _home(self, s, e):
        for hs, he in self._hol:
            if s < he and e > hs:
                return False
        return True

    # ---- one day ------------------------------------------------------------------------
    def _day_deltas(self, day):
        t0 = self._day_start(day)
        wd = (day + _EPOCH_WEEKDAY) % 7
        out = []  # type: list[tuple]
        # A holiday may start today (not while one is going on), between 6:00 and 20:00.
        if self.holiday_prob > 0:
            rh = _Rng(self._s32, day, _S_HOLIDAY)
            hit = rh.u() < self.holiday_prob
            s = float(math.floor(t0 + rh.uniform(6.0, 20.0) * HOUR_S))
            dur = float(math.floor(rh.uniform(self.holiday_lo, self.holiday_hi) * DAY_S))
            if hit and s >= 0 and self._home(s, s + 1):
                self._hol.append((s, s + dur))
        if self.random_incidents:
            rn = _Rng(self._s32, day, _S_INCIDENT)
            for k in _KINDS:
                prob, dlo, dhi, rlo, rhi = self._inc[k]
                hit = rn.u() < prob
                s = float(math.floor(t0 + rn.u() * DAY_S))
                dur = float(math.floor(rn.uniform(dlo, dhi) * HOUR_S)) + 1.0
                lph = rn.loguniform(rlo, rhi)
                if hit and s >= 0:
                    self._add_flow(out, k, s, s + dur, _mlph(lph))
        if self.persons > 0:
            evs = []  # type: list[tuple]
            self._people(day, t0, wd, evs)
            self._appliances(day, t0, wd, evs)
            if self.garden:
                self._garden(day, t0, evs)
            # Every event of a day starts before 1:00 the next day (bedtime <= 0:30, the last
            # dishwasher fill by 0:05) and the next day's first at 2:00 (a night flush), so
            # the list of events stays in start order day after day.
            evs.sort(key=_ev_key)
            for kind, s, e, u in evs:
                if s < 0 or not self._home(s, e):
                    continue
                self._events.append((kind, s, e, u / _U))
                out.append((s, u))
                out.append((e, -u))
        return out

    def _event(self, evs, kind, t0, h, dur_s, lpm):
        # Events start on whole seconds and last whole seconds (at least one).
        s = float(math.floor(t0 + h * HOUR_S))
        n = int(dur_s + 0.5)
        if n < 1:
            n = 1
        evs.append((kind, s, s + n, _mlph(lpm * 60.0)))
        return s + n

    def _people(self, day, t0, wd, evs):
        weekend = wd >= 5
        late = wd == 4 or wd == 5  # Friday and Saturday nights
        flush_s = self.cistern_l / self.refill_lpm * 60.0
        showers = []
        for pi in range(self.persons):
            r = _Rng(self._s32, day, _S_PERSON + pi)
            wake = r.uniform(7.0, 9.5) if weekend else r.uniform(5.5, 7.5)
            bed = r.uniform(22.0, 24.5) if late else r.uniform(21.5, 23.5)
            away = self._away[pi] and not weekend
            # Relative intensity of use while awake: the morning and bedtime routines, the
            # day (nothing while out at work or school), the evening.
            segs = [(wake, wake + 1.5, 2.0), (17.5, bed - 0.75, 1.0), (bed - 0.75, bed, 2.0)]
            if not away:
                segs.append((wake + 1.5, 17.5, 0.8))
            mass = 0.0
            for a, b, w in segs:
                mass += (b - a) * w
            f = 0.7 if away else 1.0
            for _ in range(r.poisson(self.flushes * f)):
                self._event(evs, "toilet", t0, _pick(r, segs, mass), flush_s, self.refill_lpm)
            f = 0.75 if away else 1.0
            for _ in range(r.poisson(self.taps * f)):
                h = _pick(r, segs, mass)
                self._event(evs, "tap", t0, h, r.uniform(5.0, 40.0), r.uniform(4.0, 8.0))
            for _ in range(r.poisson(self.long_taps * f)):
                h = _pick(r, segs, mass)
                self._event(evs, "tap", t0, h, r.uniform(60.0, 240.0), r.uniform(4.0, 8.0))
            if r.u() < self.shower_prob:
                if r.u() < 0.65:
                    h = wake + r.uniform(0.1, 1.0)
                else:
                    h = r.uniform(18.5, bed - 0.3)
                showers.append((h, r.uniform(300.0, 600.0), bed))
            if r.u() < self.night_flush:
                self._event(evs, "toilet", t0, r.uniform(2.0, 4.5), flush_s, self.refill_lpm)
        # One shower at a time: a later one waits 1-5 min after the one before.
        showers.sort()
        rs = _Rng(self._s32, day, _S_SHOWER)
        free = -1e18
        for h, dur, bed in showers:
            gap = rs.uniform(60.0, 300.0)
            s = t0 + h * HOUR_S
            if s < free + gap:
                s = free + gap
            if s > t0 + bed * HOUR_S:
                continue  # too late: skipped
            free = self._event(evs, "shower", t0, (s - t0) / HOUR_S, dur, self.shower_lpm)

    def _appliances(self, day, t0, wd, evs):
        r = _Rng(self._s32, day, _S_APPLIANCE)
        weekend = wd >= 5
        # Washing machine: more loads at weekends (weights 0.88 x 5 + 1.3 x 2 = 7), started
        # 8:00-20:00, one at a time; 4-5 fills of 9-13 l over a 90-150 min programme.
        n = r.poisson(self.loads * (1.3 if weekend else 0.88))
        starts = [r.uniform(8.0, 20.0) for _ in range(n)]
        starts.sort()
        free = -1e9
        for h in starts:
            h = max(h, free + r.uniform(0.0, 1.0))
            prog = r.uniform(1.5, 2.5)
            nf = 5 if r.u() < 0.5 else 4
            vols = [r.uniform(9.0, 13.0) for _ in range(nf)]
            if h > 20.5:
                continue
            for k in range(nf):
                self._event(evs, "washing_machine", t0, h + prog * k / nf,
                            vols[k] / self.washer_lpm * 60.0, self.washer_lpm)
            free = h + prog
        # Dishwasher: mostly after dinner (19:00-21:30), else after lunch; 4 fills of
        # 2.5-3.5 l over a 100-180 min programme.
        n = r.poisson(self.dish_cycles) if self.has_dishwasher else 0
        starts = []
        for _ in range(n):
            starts.append(r.uniform(19.0, 21.5) if r.u() < 0.7 else r.uniform(12.5, 14.5))
        starts.sort()
        free = -1e9
        for h in starts:
            h = max(h, free + r.uniform(0.0, 0.5))
            prog = r.uniform(100.0, 180.0) / 60.0
            vols = [r.uniform(2.5, 3.5) for _ in range(4)]
            if h > 21.5:
                continue
            k = 0
            for frac in (0.0, 0.15, 0.5, 0.85):
                self._event(evs, "dishwasher", t0, h + prog * frac,
                            vols[k] / self.dish_lpm * 60.0, self.dish_lpm)
                k += 1
            free = h + prog

    def _garden(self, day, t0, evs):
        # Summer evenings: the chance follows the season (none from mid-October to mid-April).
        season = math.cos(2.0 * math.pi * (day - _SUMMER_DAY) / _YEAR_D)
        if season <= 0:
            return
        r = _Rng(self._s32, day, _S_GARDEN)
        hit = r.u() < self.garden_prob * season
        h = r.uniform(19.0, 21.0)
        dur = r.uniform(20.0, 60.0) * 60.0
        lpm = r.uniform(15.0, 20.0)
        if hit:
            self._event(evs, "garden", t0, h, dur, lpm)


# Params that belong to the district meter, not to each household in it.
_DISTRICT_KEYS = ("kind", "households", "leaks", "bursts", "backflow", "magnet", "wire_cut",
                  "litres_per_pulse", "bounce_ms", "pullup", "rc_us", "poll_s")


class District(_Meter):
    """Many households behind one meter (params "households", default 20). Household params
    apply to every household (sizes drawn from the Eurostat shares unless "persons" is
    given); "leaks", "bursts" and "backflow" are the district's own (mains), as are the
    tamper intervals."""

    def __init__(self, params, seed, start_unix):
        p = dict(params or {})
        self._init_meter(p, seed, start_unix)
        n = int(get(p, "households", 20))
        if n < 1:
            raise ValueError("households must be >= 1")
        hp = {}
        for k in p:
            if k not in _DISTRICT_KEYS:
                hp[k] = p[k]
        hp["kind"] = "household"
        s32 = seed32(self.seed)
        self.households = []
        for i in range(n):
            h = Household(hp, mix32(s32 ^ mix32(i + 1)), start_unix)
            h._owner = self
            self.households.append(h)
        mains = {"persons": 0, "holiday_prob": 0, "tz_h": p.get("tz_h"), "leaks": p.get("leaks"),
                 "bursts": p.get("bursts"), "backflow": p.get("backflow")}
        self.mains = Household(mains, self.seed, start_unix)
        self.mains._owner = self
        for h in self._parts():
            self._pending.extend(h._pending)
            h._pending = []

    def _parts(self):
        return self.households + [self.mains]

    def _day_deltas(self, day):
        out = []
        for h in self._parts():
            out.extend(h._day_deltas(day))
        return out


def make(params, seed, start_unix):
    """A Household or a District, by params "kind"."""
    p = dict(params or {})
    kind = p.get("kind") or "household"
    if kind == "district":
        return District(p, seed, start_unix)
    if kind == "household":
        return Household(p, seed, start_unix)
    raise ValueError("unknown kind %r" % (kind,))


def attach(board, params, seed, start_unix):
    """Create the world (make()), keep it in board.extra["world"], and put its fake reed
    switch on the board's water_meter pins: chip_reed.Reed(board, pulse, world.flow_source,
    litres_per_pulse, bounce_ms=(min, max), dir_pin=direction, seed=..., rc_us=...,
    pullup=..., poll_s=...). The world calls chip.flow_changed() at every change of the flow
    (so pulses come exactly when the volume says), drives the tamper line, and holds the
    pulse and direction lines while a magnet is on the meter or the cable is cut (see
    water.md). params "litres_per_pulse" (default 1.0) must agree with the node's config."""
    params = dict(params or {})
    w = make(params, seed, start_unix)
    board.extra["world"] = w
    pins = board.profile["pins"]["water_meter"]
    import chip_reed  # type: ignore[import-not-found]  # a bare name in simulator/mp

    w.chip = chip_reed.Reed(board, pins["pulse"], w.flow_source, w.litres_per_pulse,
                            bounce_ms=w.bounce_ms, dir_pin=pins.get("direction"),
                            seed=_Rng(w._s32, 0, _S_CHIP).x, rc_us=w.rc_us, pullup=w.pullup,
                            poll_s=w.poll_s)
    w._wire(board, pins)
    return w
