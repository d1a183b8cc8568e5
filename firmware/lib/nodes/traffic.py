# The traffic-counter node: two magnetometers a known distance apart along the lane (one per
# I2C bus) sampled at 50-100 Hz; each vehicle's disturbance of the Earth's field is one
# detection per sensor (nodes/traffic_detect.py), the pair gives speed, length and direction,
# and each interval's counts, occupancy, speeds, headways and length classes go out as one
# reading (nodes/traffic_stats.py). Mains or solar: it samples all the time, the MQTT session
# stays open. docs/traffic.md has the details.
#
# The sampling loop allocates nothing per sample (preallocated buffers; the detector is
# allocation-free): on the board a garbage collection would stall it and lose samples.
import machine
import time
from array import array

from nodes import traffic_detect, traffic_lane

_POLL_MS = 1000  # MQTT is polled this often while sampling (commands, keepalive)


class App:
    STAYS_AWAKE = True
    HA_FIELDS = (("n", None, None), ("spd_kmh10", None, None))

    def __init__(self, ctx):
        self.ctx = ctx
        n = self.n = ctx.cfg["node"]
        p = ctx.pins
        self.sensors = [self._open(p["i2c_id"], p["i2c_scl"], p["i2c_sda"]),
                        self._open(p["i2c2_id"], p["i2c2_scl"], p["i2c2_sda"])]
        self.lane = traffic_lane.Lane(n)
        self.rules = self.lane.rules
        self.dets = self.lane.dets
        self.buf = array("h", [0, 0, 0])
        self.ok = [0, 0]
        self.bad = [0, 0]
        self.ovf = [0, 0]
        self.fault = {}
        self.t_close = time.ticks_ms()

    def _open(self, bus, scl, sda):
        i2c = machine.I2C(bus, scl=machine.Pin(scl), sda=machine.Pin(sda), freq=400000)
        if self.n["sensor"] == "hmc5883l":
            from drivers import hmc5883l

            dev = hmc5883l.HMC5883L(i2c, odr_hz=min(self.n["rate_hz"], 75))
        else:
            from drivers import qmc5883l

            dev = qmc5883l.QMC5883L(i2c, odr_hz=self.n["rate_hz"])  # type: ignore[assignment]  # same interface
        try:
            dev.init()
        except (OSError, ValueError) as e:
            print("traffic: sensor on I2C%d: %r" % (bus, e))
            return None
        return dev

    # ---- the sampling loop ---------------------------------------------------------------
    def idle(self, ms):
        """Sample both sensors until ms have passed (the lifecycle's wait), polling MQTT now
        and then."""
        end = time.ticks_add(time.ticks_ms(), ms)
        poll = time.ticks_add(time.ticks_ms(), _POLL_MS)
        period = 1000 // self.n["rate_hz"]
        buf = self.buf
        while time.ticks_diff(end, time.ticks_ms()) > 0:
            now = time.ticks_ms()
            for i in (0, 1):
                dev = self.sensors[i]
                if dev is None:
                    self.bad[i] += 1
                    continue
                try:
                    if not dev.ready():
                        continue
                    if not dev.read_into(buf):
                        self.ovf[i] += 1
                        continue
                except OSError:
                    self.bad[i] += 1
                    continue
                self.ok[i] += 1
                if self.dets[i].feed(buf[0], buf[1], buf[2], now):
                    self.lane.detected(i)
            if time.ticks_diff(now, poll) >= 0:
                poll = time.ticks_add(now, _POLL_MS)
                self.ctx.listen(0)
            time.sleep_ms(period)

    # ---- one interval ----------------------------------------------------------------------
    def sample(self):
        """Called every sample_s (= interval_s): the interval's statistics as one reading."""
        now = time.ticks_ms()
        self.lane.flush(now)
        span = time.ticks_diff(now, self.t_close)
        self.t_close = now
        r = self.lane.close(span)
        for i in (0, 1):
            stuck = self.dets[i].stuck_ms()
            for ev in traffic_detect.fault_check(self.fault.setdefault(i, {}), self.rules, span, self.ok[i],
                                                 self.bad[i], self.ovf[i], stuck):
                self.ctx.event(ev[0], ev[1], dict(ev[2], sensor=i))
            self.ok[i] = self.bad[i] = self.ovf[i] = 0
        return r


def setup(ctx):
    return App(ctx)
