# The node lifecycle: boot -> sample -> queue -> report -> sleep.
#
# Battery nodes deep-sleep between samples (each wake is a fresh boot; what must outlive it
# is in RTC memory or on flash). Mains nodes loop, feeding the watchdog. A bad config puts
# the node in safe mode instead of a crash loop.
import gc
import machine
import time

from telemetry import boardinfo, clock, config, messages, rtcstate, spool, transport, wifi


class Context:
    """What a node type's app may use: the config, the board profile and its pins."""

    def __init__(self, cfg, prof, wakes):
        self.cfg = cfg
        self.prof = prof
        self.pins = boardinfo.pins(prof, cfg["type"])
        self.wakes = wakes


class Node:
    def __init__(self, cfg, prof):
        self.cfg = cfg
        self.prof = prof
        self.rs = rtcstate.load()
        self.rs["w"] = self.rs.get("w", 0) + 1
        self.spool = spool.Spool(cfg["spool_bytes"]).open()
        mod = __import__("nodes." + cfg["type"])
        self.app = getattr(mod, cfg["type"]).setup(Context(cfg, prof, self.rs["w"]))
        self.tx = transport.PrintTransport()

    def take_sample(self):
        r = self.app.sample()
        if r is None:
            return None
        r["ts"] = clock.now()
        if not clock.synced():
            r["u"] = 1
        return self.spool.accept(r)

    def report(self):
        """Connect, set the clock if needed, send what the spool holds. True when all sent."""
        cfg = self.cfg
        wlan = None
        if cfg["wifi"]:
            wlan = wifi.connect(cfg["wifi"])
            if wlan is None:
                print("report: Wi-Fi did not connect; readings stay in the spool")
                return False
            if not clock.synced():
                before = clock.now()
                if clock.sync(cfg["ntp_host"]):
                    self.rs["off"] = clock.now() - before
        ok = self.tx.open(cfg)
        while ok and self.spool.count > 0:
            batch = self.spool.pending(cfg["batch"])
            if not batch:
                break
            payload = messages.telemetry(cfg, [p for _, p in batch], self.rs.get("off"))
            ok = self.tx.publish(messages.topic(cfg, "telemetry"), payload, 1, False)
            if ok:
                self.spool.ack(batch[-1][0])
        self.tx.close()
        if wlan is not None:
            wifi.off()
        return ok

    def wake_cycle(self):
        """One wake of a battery node; ends in deep sleep."""
        wdt = machine.WDT(timeout=self.cfg["wdt_s"] * 1000)
        self.take_sample()
        n = self.rs.get("n", 0) + 1
        # Report when the interval is up, and at once after a power-on (no RTC state).
        if n * self.cfg["sample_s"] >= self.cfg["report_s"] or "n" not in self.rs:
            self.report()
            n = 0
        self.rs["n"] = n
        rtcstate.save(self.rs)
        wdt.feed()
        # ticks_ms counts from boot on the ESP32 port (esp_timer), so it is the whole wake,
        # boot included: subtracting it keeps the samples on a fixed cadence.
        awake = time.ticks_ms()
        machine.deepsleep(max(1000, self.cfg["sample_s"] * 1000 - awake))

    def run_forever(self):
        """A mains node: sample and report on schedule, never sleeping deeper than idle."""
        wdt = machine.WDT(timeout=self.cfg["wdt_s"] * 1000)
        feed_ms = self.cfg["wdt_s"] * 500
        next_sample = time.ticks_ms()
        last_report = None
        while True:
            now = time.ticks_ms()
            if time.ticks_diff(now, next_sample) >= 0:
                self.take_sample()
                next_sample = time.ticks_add(next_sample, self.cfg["sample_s"] * 1000)
                if last_report is None or time.ticks_diff(now, last_report) >= self.cfg["report_s"] * 1000:
                    self.report()
                    last_report = now
                gc.collect()
            wdt.feed()
            wait = time.ticks_diff(next_sample, time.ticks_ms())
            time.sleep_ms(max(0, min(wait, feed_ms)))


def battery_powered(cfg, prof):
    return (cfg["power"] or prof.get("power_supply")) == "battery"


def safe_mode(err, prof):
    """Keep the node reachable (USB REPL, and the network once issue #3's commands land) and
    wait for a fixed config.json; never raise, never reboot in a loop."""
    print("SAFE MODE:", err)
    battery = prof.get("power_supply") == "battery"
    # After a power-on or reset an installer is likely at hand: stay awake a while. A wake
    # from deep sleep only checks briefly, so a misconfigured battery node lasts for months.
    awake_ms = 600000 if machine.reset_cause() != machine.DEEPSLEEP_RESET else 5000
    start = time.ticks_ms()
    while True:
        time.sleep_ms(min(5000, awake_ms))
        cfg, err2 = config.load()
        if err2 is None:
            print("SAFE MODE: config.json is valid again; restarting")
            machine.reset()
        if battery and time.ticks_diff(time.ticks_ms(), start) >= awake_ms:
            machine.deepsleep(6 * 3600 * 1000)


def main():
    prof = boardinfo.load()
    cfg, err = config.load()
    if err is not None:
        safe_mode(err, prof)
        return
    node = Node(cfg, prof)
    if battery_powered(cfg, prof):
        node.wake_cycle()
    else:
        node.run_forever()
