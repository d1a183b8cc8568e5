# The air-quality node: fine dust (PMS5003 or SDS011 over UART) and weather (BME280 over I2C)
# on a lamp post. Each measurement cycle wakes the PM sensor, waits out its warm-up, averages
# a few readings and puts it back to sleep (its laser and fan wear out: ~8,000 h). Hourly means
# feed the US EPA AQI (NowCast) and the European AQI; an air_quality event goes out when the
# chosen index reaches the configured category, and again when it has recovered.
# docs/air_quality.md has the details.
import machine
import time

from nodes import aq_index
from telemetry import clock

_HOURS = 12  # NowCast history


class App:
    HA_FIELDS = (("pm25", "µg/m³", "pm25"), ("pm10", "µg/m³", "pm10"), ("t", "°C", "temperature"),
                 ("rh", "%", "humidity"), ("hpa", "hPa", "pressure"), ("aqi", None, "aqi"))

    def __init__(self, ctx):
        self.ctx = ctx
        self.n = ctx.cfg["node"]
        st = ctx.state.get("a")
        if not isinstance(st, dict):
            st = {}
            ctx.state["a"] = st
        self.st = st
        self.pm = None
        self.env = None

    # ---- hardware ------------------------------------------------------------------------
    def _pm(self):
        if self.pm is None:
            p = self.ctx.pins
            if self.n["pm_sensor"] == "sds011":
                from drivers import sds011

                self.pm = sds011.SDS011(p["pm_uart_id"], p["pm_tx"], p["pm_rx"])
                self.pm.set_query_mode()
            else:
                from drivers import pms5003

                self.pm = pms5003.PMS5003(p["pm_uart_id"], p["pm_tx"], p["pm_rx"], p.get("pm_set"))
                self.pm.passive()
            self.pm.warm_up_ms = self.n["warmup_s"] * 1000
        return self.pm

    def _env(self):
        if self.env is None:
            from drivers import bme280

            p = self.ctx.pins
            i2c = machine.I2C(p["i2c_id"], scl=machine.Pin(p["i2c_scl"]), sda=machine.Pin(p["i2c_sda"]))
            dev = bme280.BME280(i2c)
            dev.init()
            self.env = dev
        return self.env

    def _measure_pm(self):
        """(pm1, pm25_x10, pm10_x10) averaged over the cycle, or None. The sensor sleeps again
        whatever happens: its laser and fan only run for the warm-up and the readings."""
        pm = self._pm()
        pm.wake()
        try:
            # the warm-up (30-45 s) is longer than half the watchdog's timeout: feed it
            while pm.warm_left_ms() > 0:
                time.sleep_ms(min(pm.warm_left_ms(), 10000))
                self.ctx.feed()
            s1 = s25 = s10 = k = 0
            for _ in range(self.n["readings"]):
                self.ctx.feed()
                if self.n["pm_sensor"] == "sds011":
                    r = pm.query()
                    if r is not None:
                        s25 += r[0]
                        s10 += r[1]
                        k += 1
                else:
                    r = pm.read()
                    if r is not None:
                        s1 += r[0] * 10
                        s25 += r[1] * 10
                        s10 += r[2] * 10
                        k += 1
                # PMS5003 frames come every 200-800 ms; the SDS011 protocol (V1.3) asks for
                # at least 3 s between queries
                time.sleep_ms(3000 if self.n["pm_sensor"] == "sds011" else 1000)
        finally:
            pm.sleep()
        if k == 0:
            return None
        return (s1 // k, s25 // k, s10 // k)

    # ---- one sample ----------------------------------------------------------------------
    def sample(self):
        r = {}
        rh = None
        try:
            t100, pa, h1024 = self._env().read()
            rh = h1024 * 100 // 1024 // 100  # whole %
            r["t"] = t100 / 100
            r["rh"] = h1024 * 10 // 1024 / 10
            r["hpa"] = pa // 10 / 10
        except (OSError, ValueError) as e:
            self.env = None
            r["env_err"] = "bme280: %r" % (e,)
        try:
            got = self._measure_pm()
        except OSError as e:
            got = None
            r["pm_err"] = "%s: %r" % (self.n["pm_sensor"], e)
        if got is None:
            r.setdefault("pm_err", "%s: no valid frame" % self.n["pm_sensor"])
            return r
        pm1, pm25, pm10 = got
        if self.n["pm_sensor"] == "pms5003":
            r["pm1"] = pm1 / 10
        r["pm25"] = pm25 / 10
        r["pm10"] = pm10 / 10
        wet = rh is not None and aq_index.humidity_flag(rh, self.n["rh_limit"])
        if wet:
            r["wet"] = 1  # optical sizing over-reads in humid air (water on the particles)
        corrected = False
        if self.n["correction"] != "none" and rh is not None:
            c = aq_index.rh_correct(pm25, rh, self.n["correction"], self.n["kappa_x100"])
            if c is not None:
                pm25 = c
                corrected = True
                r["pm25_corr"] = c / 10
        # A wet raw reading is sent (flagged) but kept out of the hourly means behind the
        # indices: fog must not raise an air-quality alarm. A corrected one counts.
        self._hourly(pm25, pm10, r, wet and not corrected)
        return r

    # ---- hourly means and the indices ------------------------------------------------------
    def _hourly(self, pm25_x10, pm10_x10, r, skip=False):
        if not clock.synced():
            return  # hours are clock hours: a town compares them with other stations
        hour = clock.now() // 3600
        st = self.st
        if st.get("h") != hour:
            if st.get("n"):
                self._close_hour(st["h"], hour, r)
            elif st.get("h") is not None:
                self._close_hour(st["h"], hour, r, empty=True)
            st["h"] = hour
            st["s25"] = st["s10"] = st["n"] = 0
        if skip:
            return
        st["s25"] += pm25_x10
        st["s10"] += pm10_x10
        st["n"] += 1

    def _close_hour(self, done, now_hour, r, empty=False):
        st = self.st
        h25 = st.setdefault("q25", [])
        h10 = st.setdefault("q10", [])
        gap = min(now_hour - done - 1, _HOURS)  # hours with no sample at all: missing
        for lst, v in ((h25, None if empty else st["s25"] // st["n"]), (h10, None if empty else st["s10"] // st["n"])):
            for _ in range(gap):
                lst.insert(0, None)
            lst.insert(0, v)
            del lst[_HOURS:]
        nc25 = aq_index.nowcast(h25)
        nc10 = aq_index.nowcast([None if v is None else v // 10 for v in h10])
        aqi = None
        if nc25 is not None:
            aqi = aq_index.aqi_pm25(nc25)
            if nc10 is not None:
                aqi = max(aqi, aq_index.aqi_pm10(nc10))
        band = None if empty else aq_index.eaqi_band(aq_index.eaqi_pm25(h25[0], 10), aq_index.eaqi_pm10(h10[0], 10))
        if aqi is not None:
            r["aqi"] = aqi
            r["aqi_cat"] = aq_index.aqi_category(aqi)[0]
        if band is not None:
            r["eaqi"] = band[0]
        if not empty:
            r["hour_pm25"] = h25[0] / 10
        if self.n["index"] == "aqi":
            cat, value = (None, None) if aqi is None else (aq_index.aqi_category(aqi)[0], aqi)
        else:
            cat, value = (None, None) if band is None else (band[0], h25[0] // 10)
        cfg = {"alert_category": self.n["alert_category"], "recover_hours": self.n["recover_hours"]}
        for ev in aq_index.aq_step(st.setdefault("e", {}), cfg, self.n["index"], cat, value):
            self.ctx.event(ev[0], ev[1], ev[2])


def setup(ctx):
    return App(ctx)
