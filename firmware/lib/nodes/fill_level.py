# The fill-level node: a battery node under a bin lid. Each wake it pings the waste surface
# several times, keeps the consistent echoes (nodes/fill_logic.py), turns the median distance
# into a fill percentage from the calibrated depths, and raises bin_full / bin_emptied /
# fire_risk / sensor_fault events. The telemetry carries the estimated time to full, so a
# route can take in the bins that will be full tomorrow. docs/fill_level.md has the details.
import machine
import time

from nodes import fill_logic

_BLIND_LO = 40  # mm: the VL53L1X ranges from 4 cm (DS12385 features); nearer is "clipped"
_ETA_MAX_S = 30 * 86400  # a forecast further out than a month is no forecast: left out


class App:
    # Home Assistant discovery (config "ha": true): field, unit, device class
    HA_FIELDS = (("fill", "%", None), ("mm", "mm", "distance"), ("temp_c", "°C", "temperature"))

    def __init__(self, ctx):
        self.ctx = ctx
        self.n = ctx.cfg["node"]  # full_mm < empty_mm: checked with the config (fill_level_config)
        st = ctx.state.get("a")
        if not isinstance(st, dict):
            st = {}
            ctx.state["a"] = st
        self.st = st
        self.rules = self._rules()
        self.sensor = None

    def _rules(self):
        n = self.n
        r = dict(fill_logic.DEFAULTS)
        r["full_pct"] = n["full_pct"]
        r["full_hyst_pct"] = n["full_hyst_pct"]
        r["emptied_drop_pct"] = n["emptied_drop_pct"]
        r["fire_c"] = n["fire_c"]
        r["fire_rate_c_per_min"] = n["fire_rate_c10_min"] / 10
        r["fault_after"] = n["fault_after"]
        r["sample_s"] = self.ctx.cfg["sample_s"]
        r["min_sample_s"] = n["min_sample_s"]
        return r

    # ---- hardware ------------------------------------------------------------------------
    def _open(self):
        if self.sensor is not None:
            return self.sensor
        p = self.ctx.pins
        kind = self.n["sensor"]
        if kind == "vl53l1x":
            from drivers import vl53l1x

            i2c = machine.I2C(p["i2c_id"], scl=machine.Pin(p["i2c_scl"]), sda=machine.Pin(p["i2c_sda"]))
            dev = vl53l1x.VL53L1X(i2c)
            dev.init()
            self.sensor = dev
        else:
            from drivers import ultrasonic

            self.sensor = ultrasonic.Ultrasonic(p["trigger"], p["echo"], kind, p.get("sensor_power"))
        return self.sensor

    def temp_c10(self):
        """Air in the bin, tenths of °C, from a TMP36 (10 mV/°C, 500 mV at 0 °C: TMP36
        datasheet, transfer function) on the profile's temp_sensor pin; None without one."""
        pid = self.ctx.pins.get("temp_sensor")
        if pid is None:
            return None
        uv = machine.ADC(machine.Pin(pid), atten=machine.ADC.ATTN_11DB).read_uv()
        return (uv - 500000) // 1000

    def _window(self):
        kind = self.n["sensor"]
        if kind == "vl53l1x":
            return _BLIND_LO, 4000
        from drivers import ultrasonic

        m = ultrasonic.MODELS[kind]
        return m[0], m[1]

    # ---- one sample ----------------------------------------------------------------------
    def sample(self):
        # Seconds since power-on, sleeps included (lifecycle keeps "up" in RTC memory): the
        # rules' time base. Not the calendar clock, which jumps when NTP first sets it.
        now = self.ctx.state.get("up", 0) + time.ticks_diff(time.ticks_ms(), 0) // 1000
        t10 = self.temp_c10()
        air_c = 20 if t10 is None else t10 // 10
        pings = []
        err = None
        try:
            sensor = self._open()
            pings = sensor.pings(self.n["pings"], air_c)
        except (OSError, ValueError) as e:  # no chip on the bus, wrong chip, bus fault
            err = "sensor: %r" % (e,)
            self.sensor = None
        finally:
            if self.sensor is not None:
                self.sensor.off()
        lo, hi = self._window()
        got = fill_logic.robust(pings, lo, hi) if pings else None
        last = self.st.get("f")
        if got is None and err is None and last is not None and last >= self.rules["full_pct"]:
            # Waste heaped into the ultrasonic sensor's blind zone gives no usable echo: a bin
            # last seen full is over full, not a faulty sensor (no sensor_fault flapping while
            # it stays so; a collection brings the echo back).
            over = {"fill": 100, "q": 0, "blind": 1}  # type: dict
            if t10 is not None:
                over["temp_c"] = t10 / 10
            for ev in fill_logic.step(self.st, self.rules, now, None, t10):
                self.ctx.event(ev[0], ev[1], ev[2])
            return over
        for ev in fill_logic.fault_step(self.st, self.rules, got is not None):
            self.ctx.event(ev[0], ev[1], ev[2] if err is None else dict(ev[2], error=err))
        r = {}
        if t10 is not None:
            r["temp_c"] = t10 / 10
        if got is None:
            r["q"] = 0
            if err is not None:
                r["err"] = err
            # the fire rule needs no distance: a burning bin may also blind the sensor
            for ev in fill_logic.step(self.st, self.rules, now, None, t10):
                self.ctx.event(ev[0], ev[1], ev[2])
            return r
        mm, q = got
        fill = fill_logic.fill_pct(mm, self.n["empty_mm"], self.n["full_mm"])
        for ev in fill_logic.step(self.st, self.rules, now, fill, t10):
            self.ctx.event(ev[0], ev[1], ev[2])
        r["fill"] = fill
        r["mm"] = mm
        r["q"] = q
        eta = fill_logic.eta_full_s(self.st, now, self.rules["full_pct"])
        if eta is not None and eta < _ETA_MAX_S:
            r["eta_h"] = eta // 3600
        return r

    def next_sample_s(self):
        return fill_logic.next_sample_s(self.rules, self.st.get("f"))

    # ---- commands --------------------------------------------------------------------------
    def command(self, cmd, args):
        if cmd != "calibrate-empty":
            return False, "unknown command %r" % cmd, None
        # The bin is empty now: its floor is where the echo comes from.
        t10 = self.temp_c10()
        try:
            pings = self._open().pings(max(self.n["pings"], 9), 20 if t10 is None else t10 // 10)
        except (OSError, ValueError) as e:
            return False, "sensor: %r" % (e,), None
        finally:
            if self.sensor is not None:
                self.sensor.off()
        lo, hi = self._window()
        got = fill_logic.robust(pings, lo, hi)
        if got is None:
            return False, "no consistent echo: is the lid closed and the bin empty?", None
        mm = got[0]
        if mm <= self.n["full_mm"]:
            return False, "measured %d mm, not beyond full_mm %d: the bin is not empty" % (mm, self.n["full_mm"]), None
        error = self.ctx.set_config({"node": {"empty_mm": mm}})
        if error is not None:
            return False, error, None
        return True, None, {"empty_mm": mm, "q": got[1]}


def setup(ctx):
    return App(ctx)
