# The heartbeat node: no sensor of its own. It proves the node is alive and reports what
# every board can measure: battery voltage, chip temperature, wake count.
import esp32

from telemetry import battery


class App:
    # Home Assistant discovery (config "ha": true): field, unit, device class
    HA_FIELDS = (("batt_mv", "mV", "voltage"), ("chip_c", "°C", "temperature"))

    def __init__(self, ctx):
        self.ctx = ctx

    def sample(self):
        r = {"wakes": self.ctx.wakes}
        mv = battery.millivolts(self.ctx.prof)
        if mv is not None:
            r["batt_mv"] = mv
        # esp32.raw_temperature() is in °F; report whole °C (the sensor is ±several °C).
        r["chip_c"] = (esp32.raw_temperature() - 32) * 5 // 9
        return r


def setup(ctx):
    return App(ctx)
