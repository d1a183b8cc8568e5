# The water-meter node: reads a meter's pulse output (reed or Hall contact, one pulse per
# ml_per_pulse, a second contact for the direction) so that every litre is counted and a leak
# is found within a day. It never deep-sleeps: the pulse counter and RTC GPIO wake do not count
# there. On a battery it light-sleeps between pulses (drivers/pulse.py, irq mode) and opens a
# network session only for reports and alarms; on mains the hardware counter counts.
# Totals are ints, kept in RTC memory and saved to a wear-levelled ring on flash
# (nodes/water_total.py): a power cut loses at most save_every_pulses - 1 pulses.
# docs/water_meter.md has the design and the figures.
import machine
import time

from drivers import pulse
from nodes import water_logic, water_total
from telemetry import clock


class App:
    STAYS_AWAKE = True  # lifecycle: a loop with idle() between samples, even on a battery
    HA_FIELDS = (("fwd_ml", "mL", "water"), ("flow_l_h", "L/h", None))

    def __init__(self, ctx):
        self.ctx = ctx
        n = self.n = ctx.cfg["node"]
        p = ctx.pins
        battery = (ctx.cfg["power"] or ctx.prof.get("power_supply")) == "battery"
        self.inp = pulse.PulseInput(p["pulse"], p.get("direction") if n["direction"] else None,
                                    mode=n["mode"], debounce_ms=n["debounce_ms"], low_power=battery)
        self.tot = water_total.Totals(every_pulses=n["save_every_pulses"], every_s=n["save_every_s"],
                                      state=ctx.state.setdefault("wt", {}))
        self.tot.load()
        self.tamper = None
        if p.get("tamper") is not None:
            self.tamper = machine.Pin(p["tamper"], machine.Pin.IN, machine.Pin.PULL_UP)
        self.pin = machine.Pin(p["pulse"])
        st = ctx.state.get("a")
        if not isinstance(st, dict):
            st = {}
            ctx.state["a"] = st
        self.st = st
        self.rules = {
            "ml_per_pulse": n["ml_per_pulse"], "tz_s": n["tz_s"], "leak_window_s": n["leak_window_h"] * 3600,
            "leak_zero_s": n["leak_zero_s"], "burst_ml_h": n["burst_l_h"] * 1000, "burst_s": n["burst_min"] * 60,
            "backflow_ml": n["backflow_l"] * 1000, "dry_days": n["dry_days"], "tamper_hold_s": n["tamper_hold_s"],
        }

    def _account(self, now):
        df, dr = self.inp.take()
        if df or dr:
            self.tot.add(df, dr)
        try:
            self.tot.maybe_save(now)
        except OSError as e:  # a full or failing flash: the total stays in RTC memory
            print("water: total not saved (%r)" % (e,))

    def idle(self, ms):
        """Between samples: light sleep, counting the pulses that wake it. Each pulse goes into
        the total in RTC memory at once, so a reset (watchdog, machine.reset) loses none."""
        end = time.ticks_add(time.ticks_ms(), ms)
        while True:
            left = time.ticks_diff(end, time.ticks_ms())
            if left <= 0:
                break
            if self.inp.wait(left, 1):
                self._account(clock.now())
                self.ctx.persist()

    def sample(self):
        now = clock.now()
        self._account(now)
        if not clock.synced():
            return None  # pulses are counted; intervals and alarms wait for the calendar
        st = self.st
        water_logic.observe(st, self.rules, now, self.tot.fwd, self.tot.rev)
        events = water_logic.alarms(st, self.rules, now)
        # a Hall output held active past any real pulse: a magnet on the sensor
        magnet = self.n["sensor"] == "hall" and self.pin.value() == 0
        cut = self.tamper is not None and self.tamper.value() == 1  # the loop is broken
        events += water_logic.tamper_step(st, self.rules, magnet, cut, now)
        for ev in events:
            self.ctx.event(ev[0], ev[1], ev[2])
        ivs = water_logic.interval_rollover(st, self.rules, now)
        if not ivs:
            return None  # the readings are the completed 15-minute intervals
        fwd, rev = self.tot.volume_ml(self.n["ml_per_pulse"])
        r = None
        for iv in ivs:  # one reading per interval (after a gap there may be several)
            if r is not None:
                self.ctx.reading(r)
            r = {"iv_start": iv[0], "iv_fwd_ml": iv[1], "iv_rev_ml": iv[2], "fwd_ml": fwd, "rev_ml": rev,
                 "flow_l_h": water_logic.flow_ml_h(st) // 1000}
        return r


def setup(ctx):
    return App(ctx)
