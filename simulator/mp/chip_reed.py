# Fake reed-switch pulse output of a water meter, at the pin level, on a simulated board
# (MicroPython dialect).
#
# A magnet on the meter's wheel turns once per `litres_per_pulse` and passes one reed contact
# (the pulse contact, on `pin`) and, a quarter turn later, a second one (the direction contact,
# on `dir_pin`): two contacts in quadrature, as meters with a reverse-flow output have. The
# wheel's position is counted in quarter turns; the contacts are closed for half a turn each:
#   quarter 0: pulse closed, dir open     quarter 2: pulse open, dir closed
#   quarter 1: pulse closed, dir closed   quarter 3: pulse open, dir open
# Turning forward (3 -> 0) closes the pulse contact while dir is open: one forward pulse; the
# same boundary crossed backwards (0 -> 3) opens it while dir is open: one reverse pulse. These
# are the truth counters `pulses_fwd` / `pulses_rev` (a flow dithering on a boundary makes
# both grow), and pulses_fwd - pulses_rev is the net volume in whole pulses.
#
# The contacts switch to GND: closed drives the pin to 0; open releases it (None: the node's
# pull-up decides), or drives it to 1 with `pullup=True` (an external pull-up resistor).
#
# Flow: flow_source(board) -> litres per second (negative = reverse), read at each event; the
# wheel moves at that rate until the next event (flow integrated piecewise between events).
# Events: the next quarter-turn boundary only, or a re-read of the flow `poll_s` after the last
# one when the boundary is further away (a world that changes the flow at other times should
# call flow_changed() then, so that the change takes effect at once). No per-millisecond work:
# a still meter costs one event per poll_s, a pulse four boundary events plus its bounces.
#
# Contact bounce: each make and each break of a contact is followed by 1-3 pairs of extra
# transitions (open-close on a make, close-open on a break) spread over the first
# bounce_ms = (min, max) milliseconds (drawn uniformly per transition, each bounce at least
# 20 us long). Reed makers give 0.5-1 ms typical bounce with the magnet at full strength and
# say weaker actuation lengthens it (reed-sensor.com glossary "Bounce Time", "Bounce"); a
# meter's magnet drifts past slowly, so the default window goes to 3 ms. bounce_ms=(0, 0): no
# bounce (a Hall sensor or an electronic pulse output).
#
# rc_us (default 0, none): a capacitor across the contact with the pull-up, the usual hardware
# debounce. A make discharges it at once (the pin falls with the first contact and stays low
# through the make's bounces); the pin reads high again only once the contact has stayed open
# for rc_us (the charge time to the input's high threshold, about R*C*ln(4) for a threshold of
# 0.75 VDD). Each contact bounce shorter than rc_us then makes no pin edge.
#
# Randomness comes from the chip's own xorshift32 seeded from the board seed, node id and pin,
# so the same seed gives the same bounces under CPython and MicroPython.

from chiprng import ChipRandom
from chiprng import fnv as _fnv

_MIN_BOUNCE_US = 20


class Reed(ChipRandom):
    def __init__(self, board, pin, flow_source, litres_per_pulse, bounce_ms=(0.5, 3.0),
                 dir_pin=None, seed=None, rc_us=0, pullup=False, quarter=2, poll_s=60):
        if litres_per_pulse <= 0:
            raise ValueError("litres_per_pulse must be > 0")
        self.board = board
        self.pins = (pin, dir_pin)
        self.flow_source = flow_source
        self.litres_per_pulse = litres_per_pulse
        self.bounce_us = (int(bounce_ms[0] * 1000), int(bounce_ms[1] * 1000))
        self.rc_us = int(rc_us)
        self.open_level = 1 if pullup else None
        self.poll_us = int(poll_s * 1000000)
        s = board.seed if seed is None else seed
        self._rng = _fnv("%s|%s|reed|%s" % (s, board.node_id, pin))
        # Truth, for tests and worlds (no growing lists: a run lasts weeks).
        self.pulses_fwd = 0
        self.pulses_rev = 0
        self.contact_edges = 0  # transitions of the pulse contact, bounces included
        self.events = 0  # motion events handled (boundaries and flow re-reads)
        # The wheel: quarter index q (any int) and the fraction f (0..1) of the way through it.
        self._q = quarter
        self._q_start = quarter
        self._f = 0.5
        self._rate = 0.0  # quarters per us, signed
        self._t = board.clock.now_us
        self._cross_at = None  # sim us of the boundary the scheduled event is for
        self._over = 0.0  # quarter turns past the boundary by then
        self._item = None
        self._closed = [False, False]  # contact states now (pulse, dir), bounces included
        self._settles = [False, False]  # the states they settle in once bouncing is over
        self._gen = [0, 0]  # bumped at every make/break: later bounces of the old one are void
        self._rise = [None, None]  # pending "pin reads high" event (rc_us)
        for i in (0, 1):
            self._closed[i] = self._want(i)
            self._settles[i] = self._closed[i]
            if self.pins[i] is not None:
                board.pin_edge(self.pins[i], 0 if self._closed[i] else self.open_level)
        self._reschedule()

    # ---- randomness (ChipRandom) -----------------------------------------------------------
    def _uniform(self, lo, hi):
        return lo + (hi - lo) * self.random()

    # ---- truth ---------------------------------------------------------------------------
    def litres(self):
        """Net volume through the meter since the start, as the wheel's position says."""
        self._integrate(self.board.clock.now_us)
        return ((self._q - self._q_start) + (self._f - 0.5)) * self.litres_per_pulse / 4.0

    def flow_changed(self):
        """The world changed the flow now: integrate up to now and re-read it."""
        self._integrate(self.board.clock.now_us)
        self._reschedule()

    # ---- motion --------------------------------------------------------------------------
    def _want(self, i):
        r = self._q % 4
        if i == 0:
            return r == 0 or r == 1
        return r == 1 or r == 2

    def _integrate(self, now):
        dt = now - self._t
        if dt > 0:
            f = self._f + self._rate * dt
            self._f = 0.0 if f < 0.0 else (1.0 if f > 1.0 else f)
        self._t = now

    def _reschedule(self):
        b = self.board
        if self._item is not None:
            b.cancel(self._item)
            self._item = None
        now = b.clock.now_us
        lps = float(self.flow_source(b))
        rate = lps / self.litres_per_pulse * 4.0 / 1000000.0
        self._rate = rate
        wait = self.poll_us
        self._cross_at = None
        if rate > 0.0 or rate < 0.0:
            left = (1.0 - self._f) / rate if rate > 0.0 else self._f / -rate
            us = int(left) + 1 if left > int(left) else int(left)
            if us < 1:
                us = 1
            if us <= wait:
                wait = us
                self._cross_at = now + us
                self._over = (us - left) * (rate if rate > 0.0 else -rate)  # past the boundary
        self._item = b.call_at(now + wait, self._tick)

    def _tick(self, board):
        self._item = None
        self.events += 1
        now = board.clock.now_us
        if self._cross_at is not None and now >= self._cross_at:
            self._t = now
            # The event is on the whole us after the boundary: carry what the wheel turned
            # past it, so that no motion is lost to the rounding.
            over = self._over if self._over < 1.0 else 1.0
            if self._rate > 0.0:
                self._q += 1
                self._f = over
                if self._q % 4 == 0:
                    self.pulses_fwd += 1
            else:
                if self._q % 4 == 0:
                    self.pulses_rev += 1
                self._q -= 1
                self._f = 1.0 - over
            for i in (0, 1):
                want = self._want(i)
                if want != self._settles[i]:
                    self._switch(i, want)
        else:
            self._integrate(now)
        self._reschedule()

    # ---- contacts ------------------------------------------------------------------------
    def _switch(self, i, closed):
        # A make or break of contact i now, with its bounce.
        b = self.board
        self._gen[i] += 1
        self._settles[i] = closed
        self._contact(i, closed)
        lo, hi = self.bounce_us
        if hi <= 0 or self.pins[i] is None:
            return
        window = int(self._uniform(lo, hi))
        pairs = 1 + self._next() % 3
        n = 2 * pairs
        if window < n * _MIN_BOUNCE_US:
            window = n * _MIN_BOUNCE_US
        # n transitions at increasing times in (0, window], each at least the minimum apart.
        spare = window - n * _MIN_BOUNCE_US
        weights = [self._uniform(0.1, 1.0) for _ in range(n)]
        total = 0.0
        for w in weights:
            total += w
        now = b.clock.now_us
        times = []
        acc = 0.0
        for k in range(n):
            acc += weights[k]
            times.append(now + (k + 1) * _MIN_BOUNCE_US + int(acc / total * spare))
        self._bounce(i, self._gen[i], times, 0, closed)

    def _bounce(self, i, gen, times, k, closed):
        # Schedule bounce k (from 0) of a make/break that ends `closed`: an even k flips the
        # contact back to its old state, an odd k to the new one, so the last leaves it new.
        def fire(board):
            if self._gen[i] != gen:
                return
            self._contact(i, closed if k % 2 else not closed)
            if k + 1 < len(times):
                self._bounce(i, gen, times, k + 1, closed)

        self.board.call_at(times[k], fire)

    def _contact(self, i, closed):
        if closed == self._closed[i]:
            return
        self._closed[i] = closed
        if i == 0:
            self.contact_edges += 1
        if self.pins[i] is None:
            return
        b = self.board
        if closed:
            if self._rise[i] is not None:
                b.cancel(self._rise[i])
                self._rise[i] = None
            b.pin_edge(self.pins[i], 0)
        elif self.rc_us <= 0:
            b.pin_edge(self.pins[i], self.open_level)
        else:
            if self._rise[i] is not None:
                b.cancel(self._rise[i])

            def rise(board):
                self._rise[i] = None
                if not self._closed[i]:
                    board.pin_edge(self.pins[i], self.open_level)

            self._rise[i] = b.call_at(b.clock.now_us + self.rc_us, rise)
