# The node lifecycle: boot -> sample -> queue -> report -> sleep.
#
# Battery nodes deep-sleep between samples (each wake is a fresh boot; what must outlive it is
# in RTC memory or on flash) and open a network session only when a report is due or an alert
# fires, within a time budget; when the network fails, reports back off exponentially while
# samples go on into the spool. Mains nodes keep the session open, feed the watchdog and take
# commands at any time. A bad config, or three crashed boots in a row, put the node in safe
# mode instead of a crash loop.
import gc
import json
import machine
import random
import sys
import time

from telemetry import boardinfo, clock, config, messages, rtcstate, spool, transport, wifi
from telemetry import battery as batt

CRASH_LIMIT = 3


def _awake_s():
    # ticks_ms counts from boot on the ESP32 port: seconds awake in this boot (one wake of a
    # battery node, far below the 12-day wrap; a mains node accumulates with ticks_diff).
    return time.ticks_diff(time.ticks_ms(), 0) // 1000
_CAUSES = {machine.PWRON_RESET: "power_on", machine.HARD_RESET: "hard", machine.WDT_RESET: "wdt",
           machine.DEEPSLEEP_RESET: "deep_sleep", machine.SOFT_RESET: "soft"}
_POLL_MS = 300  # how long a sleepy node listens for queued commands after connecting


class Context:
    """What a node type's app may use: the config, the board profile and its pins, and
    event() to raise an alert (it goes out at once)."""

    def __init__(self, node):
        self.cfg = node.cfg
        self.prof = node.prof
        self.pins = boardinfo.pins(node.prof, node.cfg["type"])
        self.wakes = node.rs["w"]
        self.state = node.rs  # small per-app state kept in RTC memory (key "a")
        self.event = node.event
        self._node = node

    def reading(self, r):
        """Spool one more reading now (an app with several to give from one sample)."""
        return self._node._accept(self._node._stamp(r))

    def listen(self, ms):
        """Take the commands that came (for up to ms) when a session is open: for an app with
        its own loop."""
        if self._node.tx.connected:
            self._node.listen(ms)

    def persist(self):
        """Write the RTC state now (it is otherwise written once per loop or wake): for a
        count that must survive a reset at any moment."""
        rtcstate.save(self._node.rs)

    def feed(self):
        """Feed the watchdog: for an app whose measurement takes a while (a sensor's warm-up)."""
        if self._node.wdt is not None:
            self._node.wdt.feed()

    def set_config(self, patch):
        """Change the config by a merge patch (validated, written atomically, applied by a
        restart after the session, rolled back if the node then cannot report): a
        calibration command's way to make its result last. None, or what was wrong."""
        from telemetry import commands

        error = commands.apply_config_patch(patch)
        if error is None:
            self._node.after = "reboot"
        return error


class Node:
    def __init__(self, cfg, prof, rs, battery):
        self.cfg = cfg
        self.prof = prof
        self.rs = rs
        self.battery = battery
        rs["w"] = rs.get("w", 0) + 1
        rs["crash"] = rs.get("crash", 0)
        self.spool = spool.Spool(cfg["spool_bytes"]).open()
        if "p" not in rs:
            rs["p"] = self.spool.next_seq  # first seq of this power-on (see messages.stamp)
        self.tx = transport.make(cfg, self._on_message)
        self.acks = []
        self.after = None  # "reboot" once the session is closed
        self.report_now = False
        self.wifi_ms = None
        self.wlan = None
        self.wdt = None  # machine.WDT once the wake or the loop started it
        self.wake_t0 = time.ticks_ms()  # the start of this wake (a deep-sleep wake: the firmware start)
        self.looping = False  # run_forever() keeps "up" itself
        mod = __import__("nodes." + cfg["type"])
        self.app = getattr(mod, cfg["type"]).setup(Context(self))

    # ---- readings and events -------------------------------------------------------------
    def _stamp(self, r):
        r["ts"] = clock.now()
        if not clock.synced():
            r["u"] = 1
        return r

    def take_sample(self):
        r = self.app.sample()
        if r is None:
            return None
        return self._accept(self._stamp(r))

    def event(self, name, level, data=None):
        """Raise an alert: spooled like a reading (same seq counter), sent at once."""
        self._accept(self._stamp({"event": name, "level": level, "data": data or {}}))
        self.report_now = True

    def _accept(self, record):
        """Into the spool; a full or failing flash loses the record, counted (RTC memory) and
        reported in health as dropped, and the node keeps running."""
        try:
            return self.spool.accept(record)
        except OSError as e:
            self.rs["lost"] = self.rs.get("lost", 0) + 1
            print("spool: flash write failed (%r): reading dropped" % (e,))
            return None

    # ---- the network session -----------------------------------------------------------------
    def connect(self):
        """Wi-Fi, clock, broker. True when the broker has us."""
        cfg = self.cfg
        if cfg["wifi"]:
            start = time.ticks_ms()
            left = cfg["net_budget_s"] * 1000 - time.ticks_diff(start, self.wake_t0) if self.battery else None
            self.wlan = wifi.connect(cfg["wifi"], self.rs, self.battery, left)
            if self.wlan is None:
                print("network: Wi-Fi did not connect; readings stay in the spool")
                return False
            self.wifi_ms = time.ticks_diff(time.ticks_ms(), start)
            self.sync_clock()
        will = (messages.topic(cfg, "status"), messages.status(cfg, "offline"), 1, True)
        if not self.tx.open(will):
            print("network: broker unreachable:", getattr(self.tx, "error", None))
            return False
        from telemetry import commands  # loaded only when a session opens: heap and boot time

        commands.trial_passed()
        if cfg["ha"] and not self.rs.get("ha"):
            fields = getattr(self.app, "HA_FIELDS", ())
            for t, p in messages.ha_discovery(cfg, fields):
                self.tx.publish(t, p, 1, True)
            self.rs["ha"] = 1
        return True

    def sync_clock(self):
        """NTP at the first connect of a power-on and then daily."""
        now = clock.now()
        if clock.synced() and now - self.rs.get("ntp", 0) < 86400:
            return
        was_synced = clock.synced()
        if clock.sync(self.cfg["ntp_host"]):
            if not was_synced:
                self.rs["off"] = clock.now() - now  # stamps the readings taken before
            self.rs["ntp"] = clock.now()

    def deliver(self):
        """Send what the spool holds: events one by one, readings in batches. A record leaves
        the spool only once the broker acknowledged it. True when all went out."""
        cfg = self.cfg
        off = self.rs.get("off")
        sync = (off, self.rs.get("p", 0)) if off is not None else None
        while self.spool.count > 0:
            if self.over_budget():
                print("network: budget of %d s spent; %d records wait for the next report"
                      % (cfg["net_budget_s"], self.spool.count))
                return False
            batch = self.spool.pending(cfg["batch"])
            if not batch:
                break
            readings = []  # type: list[bytes]
            upto = None
            for end, p in batch:
                if b'"event"' in p and "event" in json.loads(p):  # cheap test first
                    if readings:
                        break  # send the readings before it first, in seq order
                    if not self.tx.publish(messages.topic(cfg, "event"), messages.event(cfg, p, sync), 1):
                        return False
                    upto = end
                    break
                readings.append(p)
                upto = end
            if readings:
                msg = messages.telemetry(cfg, readings, sync)
                if not self.tx.publish(messages.topic(cfg, "telemetry"), msg, 1):
                    return False
            try:
                self.spool.ack(upto)
            except OSError as e:
                # the flash is full: the batch was delivered but stays in the spool, to go out
                # again (the collector's seq dedupe absorbs it) once there is room
                print("spool: cannot record the delivery (%r)" % (e,))
                return False
        return True

    def uptime_s(self):
        # a deep-sleep node adds "up" at each sleep, so this wake's seconds are not in it yet;
        # a node in the loop adds them as it goes
        return self.rs.get("up", 0) + (_awake_s() if self.battery and not self.looping else 0)

    def over_budget(self):
        """A battery node's time awake in this wake (since the boot of a deep-sleep wake, or the
        start of a light-sleep node's session) against its net_budget_s: a slow broker or a long
        backlog cannot drain the cell."""
        return self.battery and time.ticks_diff(time.ticks_ms(), self.wake_t0) > self.cfg["net_budget_s"] * 1000

    def health(self):
        rssi = wifi.rssi(self.wlan) if self.wlan is not None else None
        f = {"batt_mv": batt.millivolts(self.prof), "rssi": rssi,
             "heap_free": gc.mem_free(), "reset": _CAUSES.get(machine.reset_cause(), "unknown"),
             "uptime_s": self.uptime_s(), "boots": self.rs["w"],
             "spool": self.spool.count, "dropped": self.spool.dropped + self.rs.get("lost", 0),
             "crashes": self.rs.get("crashes", 0), "wifi_ms": self.wifi_ms}
        self.tx.publish(messages.topic(self.cfg, "health"), messages.health(self.cfg, f), 0)

    def listen(self, ms):
        """Take commands for up to ms, then send their acks."""
        handled = self.tx.poll(ms)
        while handled and len(self.acks) < 20:
            handled = self.tx.poll(50)
        self.flush_acks()

    def flush_acks(self):
        while self.acks:
            self.tx.publish(messages.topic(self.cfg, "ack"), self.acks.pop(0), 1)

    def _on_message(self, topic, payload, retain):
        from telemetry import commands

        cfg = self.cfg
        try:
            cid, cmd, args = commands.parse(payload)
        except ValueError as e:
            self.acks.append(messages.ack(cfg, None, None, False, str(e)))
            return
        ok, error, result = True, None, None
        if cmd == "ping":
            result = {"uptime_s": self.uptime_s(),
                      "seq": self.spool.next_seq}
        elif cmd == "reboot":
            self.after = "reboot"
        elif cmd == "sample":
            result = {"seq": self.take_sample()}
            self.report_now = True
        elif cmd == "spool":
            if args.get("action", "info") == "flush":
                self.report_now = True
            result = {"count": self.spool.count, "dropped": self.spool.dropped, "next_seq": self.spool.next_seq}
        elif cmd == "config":
            error = commands.apply_config_patch(args)
            ok = error is None
            if ok:
                self.after = "reboot"  # the new config applies from the next boot
        elif hasattr(self.app, "command"):
            ok, error, result = self.app.command(cmd, args)
        else:
            ok, error = False, "unknown command %r" % cmd
        self.acks.append(messages.ack(cfg, cid, cmd, ok, error, result))

    def close(self, status):
        if self.tx.connected:
            self.tx.publish(messages.topic(self.cfg, "status"), status, 1, True)
            self.tx.close(True)
        if self.wlan is not None:
            wifi.off()
            self.wlan = None

    # ---- battery: one wake ---------------------------------------------------------------------
    def report_interval(self):
        fails = self.rs.get("fail", 0)
        if not fails:
            return self.cfg["report_s"]
        # back off: double per failed attempt, capped, with jitter so a town's nodes spread out
        s = min(self.cfg["report_s"] << min(fails, 16), self.cfg["backoff_max_s"])
        return s - random.getrandbits(8) * s // 2560

    def wake_cycle(self):
        cfg = self.cfg
        wdt = self.wdt = machine.WDT(timeout=cfg["wdt_s"] * 1000)
        self.take_sample()
        # seconds slept since the last report: the interval planned at each sleep ("si"), so
        # a node type that samples faster (a bin nearly full) still reports on time
        acc = self.rs.get("acc", 0) + self.rs.get("si", 0)
        # After a power-on (no RTC state) report at once: the node announces itself.
        if acc >= self.report_interval() or "acc" not in self.rs or self.report_now:
            acc = 0
            self.session()
        self.rs["acc"] = acc
        wdt.feed()
        self.rs["crash"] = 0  # this boot did not crash
        if self.after == "reboot":
            rtcstate.save(self.rs)
            machine.reset()
        # ticks_ms counts from boot on the ESP32 port (esp_timer), so it is the whole wake,
        # boot included: subtracting it keeps the samples on a fixed cadence.
        awake_ms = time.ticks_diff(time.ticks_ms(), 0)
        si = cfg["sample_s"]
        if hasattr(self.app, "next_sample_s"):
            si = min(si, max(1, self.app.next_sample_s()))
        self.rs["si"] = si
        sleep_ms = max(1000, si * 1000 - awake_ms)
        self.rs["up"] = self.rs.get("up", 0) + (awake_ms + sleep_ms) // 1000
        rtcstate.save(self.rs)
        machine.deepsleep(sleep_ms)

    def session(self):
        """One report of a sleepy node, bounded by net_budget_s."""
        cfg = self.cfg
        if self.connect():
            self.rs["fail"] = 0
            self.deliver()
            self.health()
            if not self.over_budget():
                self.listen(_POLL_MS)
            if self.report_now:
                self.report_now = False
                self.deliver()
            nxt = clock.now() + self.report_interval()
            self.close(messages.status(cfg, "sleeping", True, nxt))
        else:
            self.rs["fail"] = self.rs.get("fail", 0) + 1
            self.close(None)
            from telemetry import commands

            if commands.trial_failed():
                self.after = "reboot"

    # ---- mains: the loop ---------------------------------------------------------------------
    def run_forever(self, keep_session=True):
        """The loop of a node that stays up. keep_session (mains): the MQTT session stays open
        and commands arrive at once. Without it (a battery node whose app must stay awake, a
        water meter counting pulses): the node connects only when a report is due or an event
        fires, closes the session after it, and spends the time between in the app's idle()
        (light sleep), the radio off."""
        cfg = self.cfg
        self.looping = True
        wdt = self.wdt = machine.WDT(timeout=cfg["wdt_s"] * 1000)
        feed_ms = cfg["wdt_s"] * 500
        idle = getattr(self.app, "idle", None)
        now = time.ticks_ms()
        next_sample = now
        next_report = now
        next_try = now
        last = now
        fails = 0
        while True:
            now = time.ticks_ms()
            gone = time.ticks_diff(now, last)
            self.rs["up"] = self.rs.get("up", 0) + gone // 1000
            last = time.ticks_add(now, -(gone % 1000))  # keep the remainder: no drift
            if time.ticks_diff(now, next_sample) >= 0:
                self.take_sample()
                next_sample = time.ticks_add(next_sample, cfg["sample_s"] * 1000)
            due = time.ticks_diff(now, next_report) >= 0 or self.report_now
            # next_try matters only after a failure: a stale one would read as the future once
            # ticks_ms has moved on by half its period (6.2 days)
            retry_ok = fails == 0 or time.ticks_diff(now, next_try) >= 0
            if not self.tx.connected and retry_ok and (keep_session or due):
                self.wake_t0 = now  # a battery node's network budget counts from here
                if self.connect():
                    fails = 0
                    if keep_session:
                        self.tx.publish(messages.topic(cfg, "status"), messages.status(cfg, "online", True), 1, True)
                else:
                    fails += 1
                    self.close(None)
                    from telemetry import commands

                    if commands.trial_failed():
                        machine.reset()
                    back = min(5000 << min(fails, 16), cfg["backoff_max_s"] * 1000)
                    next_try = time.ticks_add(now, back - random.getrandbits(8) * back // 2560)
            if self.tx.connected and due:
                self.report_now = False
                if self.deliver():
                    self.health()
                next_report = time.ticks_add(now, cfg["report_s"] * 1000)
                if self.wlan is not None:
                    self.sync_clock()
                if not keep_session:
                    self.listen(_POLL_MS)
                    self.close(messages.status(cfg, "sleeping", True, clock.now() + cfg["report_s"]))
            self.rs["crash"] = 0
            rtcstate.save(self.rs)
            wdt.feed()
            gc.collect()
            wait = max(0, min(time.ticks_diff(next_sample, time.ticks_ms()), feed_ms))
            if idle is not None:
                idle(wait)  # the app's own waiting (counting pulses, sampling); it polls MQTT
            elif self.tx.connected:
                self.listen(wait)
            else:
                time.sleep_ms(wait)
            if self.after == "reboot":
                self.close(messages.status(cfg, "offline", True, None, "reboot"))
                machine.reset()


def battery_powered(cfg, prof):
    return (cfg["power"] or prof.get("power_supply")) == "battery"


def safe_mode(err, prof, cfg=None, rs=None):
    """Keep the node reachable and wait for a fix; never raise, never reboot in a loop.
    With a valid config (a crash loop) it also connects, says why on its status topic and
    takes commands (reboot clears the crash count, config patches it)."""
    print("SAFE MODE:", err)
    battery = prof.get("power_supply") == "battery"
    # After a power-on or reset an installer is likely at hand: stay awake a while. A wake
    # from deep sleep only checks briefly, so a misconfigured battery node lasts for months.
    awake_ms = 600000 if machine.reset_cause() != machine.DEEPSLEEP_RESET else 5000
    node = None
    if cfg is not None and rs is not None:
        try:
            node = Node(cfg, prof, rs, battery)
            if node.connect():
                node.tx.publish(messages.topic(cfg, "status"),
                                messages.status(cfg, "safe_mode", True, None, err), 1, True)
                node.health()
        except Exception as e:
            print("SAFE MODE: cannot report:", repr(e))
            node = None
    start = time.ticks_ms()
    while True:
        if node is not None and node.tx.connected:
            node.listen(5000)
            if node.after == "reboot":
                rs["crash"] = 0
                rtcstate.save(rs)
                node.close(messages.status(cfg, "offline", True, None, "reboot"))
                machine.reset()
        else:
            time.sleep_ms(min(5000, awake_ms))
        if cfg is None:
            cfg2, err2 = config.load()
            if err2 is None:
                print("SAFE MODE: config.json is valid again; restarting")
                machine.reset()
        if battery and time.ticks_diff(time.ticks_ms(), start) >= awake_ms:
            if node is not None:
                node.close(messages.status(cfg, "safe_mode", True, clock.now() + 21600, err))
            machine.deepsleep(6 * 3600 * 1000)


def main():
    prof = boardinfo.load()
    rs = rtcstate.load()
    cfg, err = config.load()
    if err is not None:
        safe_mode(err, prof)
        return
    if rs.get("crash", 0) >= CRASH_LIMIT:
        safe_mode("crashed %d boots in a row" % rs["crash"], prof, cfg, rs)
        return
    battery = battery_powered(cfg, prof)
    try:
        node = Node(cfg, prof, rs, battery)
        if battery and not getattr(node.app, "STAYS_AWAKE", False):
            node.wake_cycle()
        else:
            node.run_forever(keep_session=not battery)
    except Exception as e:
        # Count the crash in RTC memory (it survives the reset), then restart.
        rs["crash"] = rs.get("crash", 0) + 1
        rs["crashes"] = rs.get("crashes", 0) + 1
        rtcstate.save(rs)
        print("CRASH:", repr(e))
        sys.print_exception(e)
        machine.reset()
