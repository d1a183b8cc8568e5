# Water-meter pulse input: a reed contact to GND (closed = 0, with a pull-up) that closes once
# per pulse volume, and optionally a second contact a quarter turn later (quadrature) that
# tells the flow direction. docs/water_meter_counting.md has the design and the figures.
#
# Two ways to count:
# - "counter": the ESP32's pulse counter (PCNT) through machine.Counter / machine.Encoder
#   (MicroPython >= 1.26, ports/esp32/modules/machine.py). It counts in hardware while the CPU
#   is awake, but the PCNT is a digital peripheral: clock-gated in light sleep and powered off
#   in deep sleep (ESP-IDF "Sleep Modes", ESP32). A node counting this way stays awake (mains).
#   Its glitch filter tops out at 1023 APB cycles, 12.8 us (filter_ns * 80 // 1000, clamped, in
#   the port): far shorter than reed bounce (0.5-3 ms). A single contact then needs an RC
#   across it; with the direction contact the Encoder's quadrature decoding cancels a bounce by
#   itself (fall +1, rise -1, fall +1 = +1) as long as the other contact is steady.
# - "irq": software, for battery nodes. In wait() the node light-sleeps with the pulse pin as
#   the ext0 wake source (Pin.irq(trigger=WAKE_LOW/WAKE_HIGH, wake=machine.SLEEP)) at the level
#   opposite to the one it last read, so each level change wakes the CPU (GPIO interrupts do
#   not run in light sleep: ESP-IDF Power Management, "Light-sleep"); it reads the pin, feeds
#   the debouncer and sleeps again until the next change (in a hold-off, at most until its
#   end, to read the pin then). Awake (outside wait()), a pin IRQ on both edges feeds the same
#   debouncer.
#
# Direction, both modes: a make of the pulse contact while the direction contact is open is
# +1 (forward), a break of the pulse contact while it is open is -1 (reverse); changes while
# the direction contact is closed count nothing. That is the Encoder's phases=1 rule (phase_a
# falling +1 / rising -1 while phase_b is high, hold while low), so the two modes agree. Without
# a direction contact every make is forward.
#
# Counts are ints: fwd and rev only grow; count() is fwd - rev.
import machine
import time
from micropython import const

DEBOUNCE_MS = const(10)  # > the 3 ms a slow reed may bounce (docs), with margin
_FILTER_NS = const(13000)  # PCNT: the port clamps to its longest filter, 1023 cycles = 12.8 us
_POLL_MS = const(1000)  # counter mode, wait() with max_pulses: read the PCNT this often


class Debouncer:
    """Lock-out debouncer for one contact. edge(t_ms, level) takes a level read at ticks_ms()
    t_ms; a change of level is accepted when at least min_ms have passed since the last accepted
    change, and rejected as a bounce inside that hold-off. Returns 1 when it accepts a make
    (the level becomes `active`), else 0. Times compare with ticks_diff, so the ticks wrap
    does not matter; a hold-off whose start is more than half a ticks period back is over."""

    def __init__(self, min_ms, level=1, active=0):
        self.min_ms = min_ms
        self.level = 1 if level else 0  # the accepted level
        self.active = active
        self.t = None  # ticks_ms of the last accepted change while its hold-off may still run
        self.makes = 0
        self.rejected = 0

    def holdoff(self, t_ms):
        """ms of hold-off left at t_ms (0: a change would be accepted)."""
        if self.t is None:
            return 0
        dt = time.ticks_diff(t_ms, self.t)
        if dt < 0 or dt >= self.min_ms:
            self.t = None
            return 0
        return self.min_ms - dt

    def edge(self, t_ms, level):
        level = 1 if level else 0
        hold = self.holdoff(t_ms)  # also forgets a hold-off that is over
        if level == self.level:
            return 0
        if hold > 0:
            self.rejected += 1
            return 0
        self.level = level
        self.t = t_ms
        if level == self.active:
            self.makes += 1
            return 1
        return 0


class PulseInput:
    """pulse_pin, dir_pin: GPIO numbers (dir_pin optional). mode "counter" (PCNT, awake only),
    "irq" (software, light sleep) or "auto": "irq" for a low_power node, else "counter" where
    machine has Counter. pull: the pins' internal pull (None with external pull-ups).
    unit: the PCNT unit in counter mode."""

    def __init__(self, pulse_pin, dir_pin=None, mode="auto", debounce_ms=DEBOUNCE_MS,
                 pull=machine.Pin.PULL_UP, low_power=True, unit=0, filter_ns=_FILTER_NS):
        if mode == "auto":
            mode = "irq" if low_power or not hasattr(machine, "Counter") else "counter"
        if mode != "irq" and mode != "counter":
            raise ValueError("mode")
        self.mode = mode
        self.fwd = 0  # pulses forward since start
        self.rev = 0  # pulses in reverse since start
        self.edges_seen = 0  # irq mode: pin changes seen (IRQs, wakes on a new level)
        self.bounces_rejected = 0  # irq mode: changes inside the hold-off
        self._pin = self._input(pulse_pin, pull)
        self._dir = self._input(dir_pin, pull) if dir_pin is not None else None
        self._took_f = 0
        self._took_r = 0
        self._hw = None  # type: machine.Counter | machine.Encoder | None
        self._hw_last = 0
        if mode == "counter":
            if self._dir is None:
                self._hw = machine.Counter(unit, self._pin, edge=machine.Counter.FALLING,
                                           filter_ns=filter_ns)
            else:
                self._hw = machine.Encoder(unit, self._pin, self._dir, filter_ns=filter_ns,
                                           phases=1)
        self._raw = self._pin.value()
        self._deb = Debouncer(debounce_ms, self._raw, 0)
        if mode == "irq":
            self._listen()

    @staticmethod
    def _input(pid, pull):
        if pull is None:
            return machine.Pin(pid, machine.Pin.IN)
        return machine.Pin(pid, machine.Pin.IN, pull)

    def _listen(self):
        self._pin.irq(handler=self._irq, trigger=machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING)

    # ---- software counting ---------------------------------------------------------------
    def _irq(self, pin):
        self.edges_seen += 1
        self._raw = pin.value()
        self._feed(time.ticks_ms(), self._raw)

    def _sample(self, t, level):
        if level != self._raw:
            self._raw = level
            self.edges_seen += 1
        return self._feed(t, level)

    def _feed(self, t, level):
        """Debounce one reading; count it. Returns the pulses it counted (0 or 1)."""
        d = self._deb
        before = d.level
        made = d.edge(t, level)
        self.bounces_rejected = d.rejected
        if d.level == before:
            return 0
        if self._dir is not None:
            if not self._dir.value():
                return 0  # direction contact closed: neither a forward nor a reverse pulse
            if made:
                self.fwd += 1
            else:
                self.rev += 1
            return 1
        if made:
            self.fwd += 1
            return 1
        return 0

    # ---- hardware counting ---------------------------------------------------------------
    def _poll(self):
        hw = self._hw
        if hw is None:
            return 0
        v = hw.value()
        d = v - self._hw_last
        self._hw_last = v
        # The PCNT gives the net count only: a change between two reads is booked one way.
        if d > 0:
            self.fwd += d
            return d
        self.rev -= d
        return -d

    # ---- API -----------------------------------------------------------------------------
    def count(self):
        """Signed pulses since the start: forward minus reverse."""
        if self._hw is not None:
            self._poll()
        else:
            self._sample(time.ticks_ms(), self._pin.value())
        return self.fwd - self.rev

    def take(self):
        """(forward, reverse) pulses counted since the last take()."""
        self.count()
        df = self.fwd - self._took_f
        dr = self.rev - self._took_r
        self._took_f = self.fwd
        self._took_r = self.rev
        return df, dr

    def wait(self, ms, max_pulses=0):
        """Spend ms counting; with max_pulses > 0, return as soon as that many pulses (forward
        or reverse) came. Returns the pulses counted. irq mode light-sleeps; counter mode stays
        awake (the PCNT counts nothing in light sleep) and reads the PCNT every second while
        max_pulses is set."""
        end = time.ticks_add(time.ticks_ms(), ms)
        if self._hw is not None:
            n = 0
            while True:
                left = time.ticks_diff(end, time.ticks_ms())
                if left <= 0:
                    return n
                time.sleep_ms(left if max_pulses <= 0 or left < _POLL_MS else _POLL_MS)
                n += self._poll()
                if 0 < max_pulses <= n:
                    return n
        pin = self._pin
        n = 0
        pin.irq(handler=None)  # edge IRQs do not run in light sleep; this also drops ext0
        try:
            while True:
                now = time.ticks_ms()
                level = pin.value()
                n += self._sample(now, level)
                left = time.ticks_diff(end, now)
                if left <= 0 or 0 < max_pulses <= n:
                    return n
                hold = self._deb.holdoff(now)
                nap = hold if 0 < hold < left else left
                # Wake when the pin leaves the level just read (ext0: one RTC pin, by level).
                pin.irq(trigger=machine.Pin.WAKE_HIGH if level == 0 else machine.Pin.WAKE_LOW,
                        wake=machine.SLEEP)
                machine.lightsleep(nap)
                pin.irq(handler=None)
                if time.ticks_ms() == now and pin.value() == level:
                    time.sleep_ms(1)  # another wake source holds its level: do not spin
        finally:
            self._listen()

    def deinit(self):
        if self._hw is not None:
            self._hw.deinit()
        else:
            self._pin.irq(handler=None)
