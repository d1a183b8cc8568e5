# Fake JSN-SR04T / HC-SR04 in trigger/echo mode, on a simulated board (MicroPython dialect).
#
# The chip watches the trigger pin the node drives (board.pins[trigger]["watch"]): a high pulse
# of at least 10 us, ended by its falling edge, starts a measurement (HC-SR04 user guide;
# JSN-SR04T mode 1 sheet). The module then sends its 8-cycle 40 kHz burst (8 x 25 us) and
# raises ECHO; ECHO stays high for the round trip of the sound to the surface, or for the
# sheet's no-echo time (38 ms HC-SR04, 60 ms JSN-SR04T) when nothing comes back. The echo line
# is a function of sim time: board.pin_inputs[echo] for Pin.value(), and
# board.pulse_sources[echo] for machine.time_pulse_us(), which gets (result, elapsed_us) with
# the semantics of extmod/machine_pulse.c (-2: never reached the level, -1: stayed too long).
#
# The world says what the sensor faces through scene(board) -> dict, read at each trigger:
#   distance_mm  true distance to the surface (float)
#   air_c        air temperature: the echo follows the TRUE speed of sound,
#                331.3 * sqrt(1 + T / 273.15) m/s (dry air, ideal gas), not the linear fit
#   noise_mm     sd of a near-gaussian error on the distance (default 0)
#   spurious     probability of an early echo from a wall or a bag at a shorter distance
#   lost         probability that no echo comes back (the no-echo pulse)
#   unplugged    True: no sensor on the wires, ECHO never rises
#   lid_open     True: the sensor looks at the sky: no echo, or junk near its maximum range
# Physics: a surface inside the blind zone (the transducer still rings) gives an unreliable
# short reading somewhere in the upper part of the blind zone; one beyond the maximum range
# gives no echo. A trigger while ECHO is still high is ignored; a trigger sooner than the
# cycle time after the previous one hears the previous ping's late reverberation (a short
# ghost echo), which is why the HC-SR04 guide asks for a 60 ms cycle.
# With a power pin, the module answers only while that pin is high and once it has booted
# (BOOT_US after power-on: a model assumption, no sheet gives the figure).
#
# Randomness comes from the chip's own xorshift32, seeded from the board's seed, node id and
# the trigger pin: the same scenario seed gives the same pings, whatever else draws numbers.

from chiprng import ChipRandom
from chiprng import fnv as _fnv

BURST_US = 200  # 8 cycles of 40 kHz before ECHO rises
MIN_TRIGGER_US = 10
BOOT_US = 50000

# model: (blind zone mm, max range mm, no-echo pulse us, cycle us)
# JSN-SR04T V3.0: 20-600 cm, 60 ms no-echo; HC-SR04: 2-400 cm, 38 ms no-echo, 60 ms cycle.
PHYSICS = {
    "jsn-sr04t": (200.0, 6000.0, 60000, 60000),
    "hc-sr04": (20.0, 4000.0, 38000, 60000),
}


def true_speed_m_s(air_c):
    return 331.3 * (1.0 + air_c / 273.15) ** 0.5


class Ultrasonic(ChipRandom):
    def __init__(self, board, trigger, echo, scene, model="jsn-sr04t", power=None, seed=None):
        phys = PHYSICS.get(model)
        if phys is None:
            raise ValueError("unknown ultrasonic model %s" % (model,))
        self.board = board
        self.trigger = trigger
        self.echo = echo
        self.power = power
        self.scene = scene
        self.model = model
        self.blind_mm = phys[0]
        self.max_mm = phys[1]
        self.noecho_us = phys[2]
        self.cycle_us = phys[3]
        s = board.seed if seed is None else seed
        self._rng = _fnv("%s|%s|ultrasonic|%s" % (s, board.node_id, trigger))
        self._rise = None  # sim us the trigger went high
        self._echo_at = None  # (rise us, fall us) of the pending or last echo pulse
        self._powered_at = None
        # Supply current while powered: HC-SR04 15 mA (vendor sheets); JSN-SR04T "< 8 mA"
        # working current (V3 sheet; V2 listings give 5 mA quiescent, 30 mA while pinging).
        # Without a power pin the module draws it all the time.
        self.supply_ma = 15.0 if model == "hc-sr04" else 8.0
        self._on_since = board.clock.now_us if power is None else None
        self._charge = 0.0  # mA·µs drawn in closed on-periods
        board.peripherals.append(self)
        # What happened, for tests and benches (no growing lists: worlds run for weeks).
        self.pings = 0  # measurements started
        self.ignored = 0  # valid triggers that started nothing (busy, unpowered, booting)
        self.short_triggers = 0  # trigger pulses under 10 us
        self.too_soon = 0  # triggers within the cycle time of the previous one
        self.last_trigger_us = None
        self.min_gap_us = None  # shortest time between two measurement starts
        self.last_true_mm = None  # what the last ping should have measured
        self.last_reported_mm = None  # what the echo width says (None: no echo)
        board.pin(trigger)
        self._prev_trig_watch = board.pins[trigger]["watch"]
        board.pins[trigger]["watch"] = self._on_trigger
        if power is not None:
            board.pin(power)
            self._prev_pwr_watch = board.pins[power]["watch"]
            board.pins[power]["watch"] = self._on_power
            if board.pin_level(power):
                self._powered_at = board.clock.now_us - BOOT_US  # already on and booted
        board.pin_inputs[echo] = self._echo_level
        board.pulse_sources[echo] = self._pulse

    # ---- pins ----------------------------------------------------------------------------
    def _is_on(self, now):
        if self.power is None:
            return True
        if not self.board.pin_level(self.power) or self._powered_at is None:
            return False
        return now - self._powered_at >= BOOT_US

    def charge_ma_us(self):
        if self._on_since is None:
            return self._charge
        return self._charge + (self.board.clock.now_us - self._on_since) * self.supply_ma

    def _on_power(self, board, pid, level):
        now = board.clock.now_us
        if level and self._on_since is None:
            self._on_since = now
        elif not level and self._on_since is not None:
            self._charge += (now - self._on_since) * self.supply_ma
            self._on_since = None
        if level:
            self._powered_at = board.clock.now_us
        else:
            self._powered_at = None
            self._echo_at = None  # a measurement dies with the supply
        if self._prev_pwr_watch is not None:
            self._prev_pwr_watch(board, pid, level)

    def _on_trigger(self, board, pid, level):
        now = board.clock.now_us
        if level:
            self._rise = now
        elif self._rise is not None:
            width = now - self._rise
            self._rise = None
            if width < MIN_TRIGGER_US:
                self.short_triggers += 1
            else:
                self._start(now)
        if self._prev_trig_watch is not None:
            self._prev_trig_watch(board, pid, level)

    def _start(self, now):
        ea = self._echo_at
        if not self._is_on(now) or (ea is not None and now < ea[1]):
            self.ignored += 1
            return
        sc = self.scene(self.board) or {}
        if sc.get("unplugged"):
            self.ignored += 1  # nothing on the wires: ECHO is never driven
            return
        soon = self.last_trigger_us is not None and now - self.last_trigger_us < self.cycle_us
        if self.last_trigger_us is not None:
            gap = now - self.last_trigger_us
            if self.min_gap_us is None or gap < self.min_gap_us:
                self.min_gap_us = gap
        self.last_trigger_us = now
        self.pings += 1
        if soon:
            self.too_soon += 1
        mm = self._measure(sc, soon)
        c_mm_us = true_speed_m_s(float(sc.get("air_c", 20.0))) / 1000.0
        if mm is None:
            width = self.noecho_us
        else:
            width = int(2.0 * mm / c_mm_us + 0.5)
            if width < 1:
                width = 1
            if width > self.noecho_us:
                width = self.noecho_us
        self.last_reported_mm = mm
        rise = now + BURST_US
        self._echo_at = (rise, rise + width)

    def _measure(self, sc, soon):
        # The distance the echo width will say, or None for no echo. Every draw happens in
        # the same order each ping, so a scene change does not shift the random sequence.
        d = float(sc.get("distance_mm", 0.0))
        self.last_true_mm = d
        u_lost = self.random()
        u_spur = self.random()
        u_where = self.random()
        noise = self._gauss() * float(sc.get("noise_mm", 0.0))
        blind = self.blind_mm
        top = self.max_mm
        if soon:  # the last ping's reverberation arrives first
            return blind * (0.5 + u_where)
        if sc.get("lid_open"):
            if u_lost < 0.5:
                return None
            return top * (0.75 + 0.35 * u_where)  # junk around the maximum range
        if u_lost < float(sc.get("lost", 0.0)):
            return None
        if d < blind:  # ringing transducer: a reading from the upper part of the blind zone
            return blind * (0.7 + 0.3 * u_where)
        if u_spur < float(sc.get("spurious", 0.0)):
            return blind + (d - blind) * u_where  # a wall or a bag, nearer than the surface
        if d > top:
            return None
        mm = d + noise
        if mm < blind:
            mm = blind
        return mm

    def _echo_level(self, board):
        ea = self._echo_at
        if ea is None or not self._is_on(board.clock.now_us):
            return 0
        now = board.clock.now_us
        return 1 if ea[0] <= now < ea[1] else 0

    def _pulse(self, board, level, timeout_us):
        # time_pulse_us(echo, level, timeout): wait for the level, then time it; each phase
        # has its own timeout, as in extmod/machine_pulse.c.
        now = board.clock.now_us
        ea = self._echo_at
        if ea is not None and not self._is_on(now):
            ea = None
        if level:
            if ea is None or ea[1] <= now:
                return -2, timeout_us
            start = ea[0] if ea[0] > now else now
            if start - now >= timeout_us:
                return -2, timeout_us
            if ea[1] - start >= timeout_us:
                return -1, (start - now) + timeout_us
            return ea[1] - start, ea[1] - now
        # level 0: the line is low except during the pulse
        if ea is None or now < ea[0] or now >= ea[1]:
            start = now
            end = ea[0] if (ea is not None and ea[0] > now) else None
        else:
            start = ea[1]
            if start - now >= timeout_us:
                return -2, timeout_us
            end = None
        if end is None or end - start >= timeout_us:
            return -1, (start - now) + timeout_us
        return end - start, end - now
