# Ultrasonic distance sensors in trigger/echo mode: the waterproof JSN-SR04T (mode 1, no
# resistor on the mode pad) and the HC-SR04, which share the timing.
#
# Sources (docs/drivers/ultrasonic.md lists them with the figures taken):
# - HC-SR04 user guide (Elecfreaks; SparkFun copy): trigger >= 10 us high, echo high time =
#   round trip, "uS / 58 = cm", range 2-400 cm, "over 60 ms measurement cycle".
# - HC-SR04 operating sequence (Cytron/Haitronic manual): no echo -> echo low after 38 ms.
# - JSN-SR04T output-mode sheet (V2.0/V3.0, mode 1): trigger >= 10 us, echo low after 60 ms when
#   nothing answers; range 25-450 cm (V2.0), 20-600 cm (V3.0), 23-500 cm (V3.3).
# - Speed of sound in air ~ 331.3 + 0.606 * T m/s (T in deg C), linearised ideal-gas value.
#
# A ping is: trigger low, a 20 us high pulse, then machine.time_pulse_us() on the echo pin.
# A failed ping is None, never a number: time_pulse_us timeouts (-2: the echo never rose, no
# sensor or no power; -1: stuck high), and any echo outside [blind zone, max range] (the
# sensor's own no-echo pulse, ring-down junk inside the blind zone, multipath beyond range).
import machine
import time
from micropython import const

_TRIG_US = const(20)  # sheets: >= 10 us; the JSN-SR20-Y1 (same family) asks for >= 20 us
_GAP_US = const(4)  # trigger held low before the pulse, so the rising edge is clean
_MARGIN_US = const(2000)  # time_pulse_us waits a little past the sensor's no-echo pulse
_SETTLE_MS = const(100)  # after switching the supply on: no datasheet figure, chosen margin
_C0_NM_US = const(331300)  # speed of sound at 0 deg C: 331.3 m/s; 1 m/s = 1000 nm/us
_DC_NM_US = const(606)  # its slope: 0.606 m/s per deg C = 606 nm/us per deg C

# model: (blind zone mm, max range mm, no-echo pulse us, min cycle ms trigger to trigger)
# The JSN-SR04T bounds are those every board version promises (V2.0: 25-450 cm): a V3 board
# sees further, but a reading the oldest version cannot vouch for is not accepted. Its sheet
# gives no cycle time: the 60 ms no-echo pulse plus the echo start delay and a margin.
MODELS = {
    "hc-sr04": (20, 4000, 38000, 60),
    "jsn-sr04t": (250, 4500, 60000, 70),
}


def sound_nm_per_us(air_c):
    """Speed of sound in nm/us (numerically mm/s) at air_c deg C, as an int. air_c is
    clamped to -40..85 (the ESP32's range); None or NaN count as 20 deg C."""
    if air_c is None or air_c != air_c:
        air_c = 20
    elif air_c < -40:
        air_c = -40
    elif air_c > 85:
        air_c = 85
    t10 = int(air_c * 10 + (0.5 if air_c >= 0 else -0.5))  # tenths of a degree
    return _C0_NM_US + (_DC_NM_US * t10 + 5) // 10


def mm_from_us(width_us, air_c=20):
    """One-way distance in whole mm for an echo high time of width_us (round trip).
    distance = width * c / 2, in integers that stay small ints (< 2**30) on the board: the
    width is split into ms and us parts so that no product exceeds ~4e8."""
    c = sound_nm_per_us(air_c)
    ms = width_us // 1000
    us = width_us - ms * 1000
    round_trip_um = ms * c + (us * c + 500) // 1000
    return (round_trip_um + 1000) // 2000


class Ultrasonic:
    """trigger, echo, power: GPIO numbers. power (optional) switches the sensor's supply, high
    = on: the first ping powers it up and waits the settle time, off() powers it down."""

    def __init__(self, trigger, echo, model="jsn-sr04t", power=None, settle_ms=_SETTLE_MS):
        m = MODELS.get(model)
        if m is None:
            raise ValueError("unknown ultrasonic model")
        self.model = model
        self.min_mm = m[0]
        self.max_mm = m[1]
        self.cycle_ms = m[3]
        self._timeout = m[2] + _MARGIN_US
        self._settle = settle_ms
        self._trig = machine.Pin(trigger, machine.Pin.OUT, value=0)
        self._echo = machine.Pin(echo, machine.Pin.IN)
        self._pwr = None
        if power is not None:
            self._pwr = machine.Pin(power, machine.Pin.OUT, value=0)
        self._on = power is None
        self._pinged = False
        self._last = time.ticks_ms()
        self.last_us = 0  # raw time_pulse_us result of the last ping, for diagnostics

    def _power_up(self):
        if self._on:
            return
        self._trig.value(0)  # never drive the trigger into an unpowered sensor
        if self._pwr is not None:
            self._pwr.value(1)
        time.sleep_ms(self._settle)
        self._on = True

    def _wait_cycle(self):
        # ticks_ms has 1 ms resolution: wait until cycle + 1 ticks have passed, so that the
        # true time since the last trigger is at least cycle_ms. A negative difference means
        # the last ping is older than half the ticks period: no wait.
        if not self._pinged:
            return
        cycle = self.cycle_ms
        while True:
            d = time.ticks_diff(time.ticks_ms(), self._last)
            if d < 0 or d > cycle:
                return
            time.sleep_ms(cycle + 1 - d)

    def ping_mm(self, air_c=20):
        """One ping: the distance in whole mm, or None for a failed ping. air_c: the air
        temperature in deg C, for the speed of sound."""
        self._power_up()
        self._wait_cycle()
        trig = self._trig
        trig.value(0)
        time.sleep_us(_GAP_US)
        self._last = time.ticks_ms()
        self._pinged = True
        trig.value(1)
        time.sleep_us(_TRIG_US)
        trig.value(0)
        w = machine.time_pulse_us(self._echo, 1, self._timeout)
        self.last_us = w
        if w <= 0:
            return None  # -2: no rising edge (no sensor, no power); -1: stuck high
        mm = mm_from_us(w, air_c)
        if mm < self.min_mm or mm > self.max_mm:
            return None
        return mm

    def pings(self, n, air_c=20):
        """n pings, each cycle_ms apart at least: a list of ints (mm) and Nones."""
        out = [None] * n if n > 0 else []
        for i in range(len(out)):
            out[i] = self.ping_mm(air_c)
        return out

    def off(self):
        """Trigger low, and the supply off when a power pin switches it."""
        self._trig.value(0)
        if self._pwr is not None:
            self._pwr.value(0)
            self._on = False
