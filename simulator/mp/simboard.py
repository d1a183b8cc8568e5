# The simulated board: one node's hardware state in virtual time.
#
# Written in the MicroPython dialect: it runs under CPython (many nodes in one process) and
# inside the WASI build of MicroPython (one node per VM). The fake modules (fake_machine,
# fake_time, ...) hold a reference to one Board and read or change its state; nothing else
# about the node is global.
#
# Time is an integer count of microseconds since the scenario started ("sim time"). Every
# blocking call of a fake advances it through Board.advance(), which also books the time to the
# board's current power state for the energy account.

# Power states the energy account knows; each board profile gives a current for each.
DEEP_SLEEP = "deep_sleep"
LIGHT_SLEEP = "light_sleep"
ACTIVE = "active"
WIFI_IDLE = "wifi_idle"
WIFI_CONNECT = "wifi_connect"
WIFI_TX = "wifi_tx"
WIFI_RX = "wifi_rx"
OFF = "off"
POWER_STATES = (DEEP_SLEEP, LIGHT_SLEEP, ACTIVE, WIFI_IDLE, WIFI_CONNECT, WIFI_TX, WIFI_RX, OFF)

# machine.reset_cause() values of the ESP32 port (ports/esp32/modmachine.c)
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
# machine.wake_reason() values of the ESP32 port
PIN_WAKE = 2
EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6

RTC_MEMORY_BYTES = 2048  # machine.RTC.memory() size on the ESP32 port
SECONDS_1970_TO_2000 = 946684800
TICKS_PERIOD = 1 << 30  # ticks_ms/ticks_us wrap here on the ESP32 port (py/mpconfig.h)


class Restart(BaseException):
    """Unwinds the firmware when the node stops running its program (a reset of some kind).

    A BaseException, so that the firmware's own `except Exception` never swallows it."""

    cause = HARD_RESET

    def __init__(self, ms=0):
        super().__init__(ms)
        self.ms = ms


class DeepSleep(Restart):
    cause = DEEPSLEEP_RESET


class HardReset(Restart):
    cause = HARD_RESET


class SoftReset(Restart):
    cause = SOFT_RESET


class WatchdogReset(Restart):
    cause = WDT_RESET


class PowerCut(Restart):
    cause = PWRON_RESET


class SimulationEnd(BaseException):
    """The scenario's time is up: unwinds whatever the node is doing."""


def _end(board):
    raise SimulationEnd()


class Clock:
    """Sim time for one board. `hook`, when set by a scheduler, is called once the board's time
    passes `horizon`, so that a multi-node engine can let other nodes catch up."""

    def __init__(self, now_us=0):
        self.now_us = now_us
        self.horizon = -1
        self.hook = None

    def check(self):
        if self.hook is not None and self.now_us > self.horizon:
            self.hook()


class Board:
    def __init__(self, node_id, profile, flash_root, seed=1, rtc_epoch=0, uid=None):
        self.node_id = node_id
        self.profile = profile
        self.flash_root = flash_root
        self.seed = seed
        self.clock = Clock(0)
        # Seconds since 2000-01-01 (the ESP32 port's epoch) that the true world shows at sim
        # time 0. The RTC starts at 2000-01-01 after a power loss and is set by ntptime.
        self.world_epoch2000_at_zero = rtc_epoch
        self.rtc_base_s = 0  # RTC seconds (epoch 2000) at rtc_base_us
        self.rtc_base_us = 0
        self.rtc_memory = b""
        self.boot_us = 0
        self.ticks_offset_ms = 0  # lets a scenario start the tick counter near its wrap
        self.state = ACTIVE
        self.energy_us = {}
        for s in POWER_STATES:
            self.energy_us[s] = 0
        self.reset_cause = PWRON_RESET
        self.wake_reason = 0
        self.boots = 0
        self.console = []  # lines the node printed, as (sim time us, text)
        self.console_sink = None  # callable(board, text) instead of keeping lines
        self.pins = {}  # pin id -> dict(level=.., pull=.., mode=.., irq=..)
        self.pin_inputs = {}  # pin id -> callable(board) -> level, for pins a chip drives
        self.pulse_sources = {}  # pin id -> callable(board, level, timeout_us) -> width or -1/-2
        self.adc_sources = {}  # pin id -> callable(board) -> microvolts at the pin
        self.i2c_devices = {}  # bus id -> {addr: device}; a device has read/write methods
        self.uart_devices = {}  # uart id -> device with write(bytes) and read_until(board, n, deadline)
        self.wdt_timeout_ms = 0
        self.wdt_fed_us = 0
        self.timeline = []  # sorted [at_us, order, callable(board)]: faults, timers, world events
        self._order = 0
        self.network = None  # set by the engine: the scenario's simnet.NetworkWorld
        self.sta_ip = None  # the station interface's address while it is connected
        self.boot_hooks = []  # fakes' callables(board) run at every boot: hardware resets
        self.flash_budget = 0  # bytes the filesystem may hold; fake_os sets its default
        self.flash_used = 0  # bytes in use, kept by fake_os
        self.code_gen = 0  # bumped by fake_os when a .py/.mpy file changes (module caches)
        self.flash_write_hook = None  # callable(board, path, nbytes), for power-cut injection
        self.irq_queue = []  # pending pin IRQ handlers to run at the next Python-level point
        self.uid = uid if uid is not None else _uid_from(node_id)
        self.extra = {}  # room for world models and node-type specifics
        self.peripherals = []  # chips with a supply of their own: .charge_ma_us() drawn so far
        self.net_bytes = [0, 0]  # TCP bytes sent, received, 40 B of TCP/IP headers per segment
        self.sample_hook = None  # callable(board) at every advance(): heap sampling (make bench)

    # ---- time ----------------------------------------------------------------------------
    def advance(self, us, state=None):
        """Spend `us` microseconds of sim time in `state` (default: the current state)."""
        if self.sample_hook is not None:
            self.sample_hook(self)
        if us < 0:
            us = 0
        st = state if state is not None else self.state
        # Events scheduled inside this span cut it short and fire at their time.
        while self.timeline and self.timeline[0][0] <= self.clock.now_us + us:
            at, _, action = self.timeline.pop(0)
            step = at - self.clock.now_us
            if step > 0:
                self._spend(step, st)
                us -= step
            action(self)
        if self.wdt_timeout_ms and st != DEEP_SLEEP and st != OFF:
            # A starved watchdog resets the chip at its deadline, not at the end of the span.
            deadline = self.wdt_fed_us + self.wdt_timeout_ms * 1000
            if self.clock.now_us + us > deadline:
                self._spend(max(0, deadline - self.clock.now_us), st)
                raise WatchdogReset()
        self._spend(us, st)
        self.clock.check()
        self.run_irqs()

    def _spend(self, us, state):
        self.energy_us[state] = self.energy_us.get(state, 0) + us
        self.clock.now_us += us

    def call_at(self, at_us, action):
        """Run action(board) when sim time reaches at_us (from inside advance())."""
        self._order += 1
        item = [at_us, self._order, action]
        tl = self.timeline
        i = len(tl)
        while i > 0 and tl[i - 1][0] > at_us:
            i -= 1
        tl.insert(i, item)
        return item

    def cancel(self, item):
        if item in self.timeline:
            self.timeline.remove(item)

    def now_us(self):
        return self.clock.now_us

    def ticks_us(self):
        return ((self.clock.now_us - self.boot_us) + self.ticks_offset_ms * 1000) % TICKS_PERIOD

    def ticks_ms(self):
        return ((self.clock.now_us - self.boot_us) // 1000 + self.ticks_offset_ms) % TICKS_PERIOD

    def rtc_seconds_us(self):
        """RTC time as (seconds since 2000, microseconds within the second)."""
        us = self.rtc_base_s * 1000000 + (self.clock.now_us - self.rtc_base_us)
        return us // 1000000, us % 1000000

    def set_rtc_seconds(self, seconds, us=0):
        self.rtc_base_s = seconds
        self.rtc_base_us = self.clock.now_us - us

    def true_epoch2000_us(self):
        """What a perfect clock (an NTP server) shows now, in µs since 2000."""
        return self.world_epoch2000_at_zero * 1000000 + self.clock.now_us

    # ---- lifecycle -------------------------------------------------------------------------
    def boot(self, cause):
        """The chip starts running: RAM is gone, ticks restart."""
        self.boots += 1
        self.reset_cause = cause
        if cause != SOFT_RESET:
            self.boot_us = self.clock.now_us  # a soft reset keeps the tick counter running
        self.state = ACTIVE
        self.wdt_timeout_ms = 0
        self.irq_queue = []
        for hook in self.boot_hooks:
            hook(self)
        for p in self.pins.values():
            p["irq"] = None
        if cause == PWRON_RESET:
            self.rtc_memory = b""
            self.rtc_base_s = 0
            self.rtc_base_us = self.clock.now_us
        if cause != DEEPSLEEP_RESET:
            self.wake_reason = 0
        # Wake-to-main.py time from the profile (ROM boot, MicroPython init, filesystem mount).
        self.advance(int(self.profile.get("boot_ms", 0)) * 1000, ACTIVE)

    def end_at(self, at_us):
        """Stop the node at at_us, wherever it is (a mains node's loop never returns)."""
        self.call_at(at_us, _end)

    def power_cut(self, off_ms=0):
        """Power goes away: only flash survives. Raises to unwind the running firmware."""
        raise PowerCut(off_ms)

    def print(self, text):
        if self.console_sink is not None:
            self.console_sink(self, text)
        else:
            self.console.append((self.clock.now_us, text))

    # ---- pins ------------------------------------------------------------------------------
    # A pin's dict: "mode" (None or machine.Pin.IN=1 / OUT=3 / OPEN_DRAIN=7), "pull" (None or
    # PULL_DOWN=1 / PULL_UP=2), "value_out" (the node's output latch), "level" (what a chip or
    # the world drives onto the pin: 0, 1, or None when nothing drives it), "irq" ((handler,
    # pin_obj) or None) and "trigger" (IRQ_RISING=1 | IRQ_FALLING=2), "wake"/"wake_level"/
    # "wake_boot" (Pin.irq(wake=...): machine.SLEEP=2 | DEEPSLEEP=4, level 0/1, boot it was set
    # in), "watch" (callable(board, pid, level) told whenever the pin's level changes, for chips
    # that listen to a pin the node drives). Values are those of the ESP32 stubs (machine.pyi).
    def pin(self, pid):
        p = self.pins.get(pid)
        if p is None:
            p = {"level": None, "pull": None, "mode": None, "irq": None, "trigger": 0,
                 "value_out": 0, "wake": None, "wake_level": None, "wake_boot": -1,
                 "watch": None}
            self.pins[pid] = p
        return p

    def pin_level(self, pid):
        """The level the node reads on the pin now."""
        p = self.pin(pid)
        mode = p["mode"]
        if mode == 3:  # Pin.OUT (GPIO_MODE_INPUT_OUTPUT): the pad follows the output latch
            return 1 if p["value_out"] else 0
        if mode == 7 and not p["value_out"]:  # Pin.OPEN_DRAIN pulling low
            return 0
        src = self.pin_inputs.get(pid)
        if src is not None:
            return 1 if src(self) else 0
        level = p["level"]
        if level is not None:
            return 1 if level else 0
        # Nothing drives the pin: the internal pull decides. GPIO34-39 have no pull resistors.
        if pid not in _NO_PULL_PINS:
            pull = p["pull"]
            if pull == 2:  # Pin.PULL_UP
                return 1
        return 0  # pulled down, or floating (read as 0)

    def pin_edge(self, pid, level):
        """A chip or world drives an input pin to `level` (0, 1, or None to let it float);
        queues the pin's IRQ handler if the level the node sees makes a matching edge."""
        if level is not None:
            level = 1 if level else 0
        self.pin_update(pid, "level", level)

    def pin_update(self, pid, key, value):
        """Change one field of a pin's dict (the node setting "value_out", "mode" or "pull"; a
        chip setting "level") and react to the change of level it makes: tell the pin's watcher
        and queue its IRQ handler on a matching edge (IRQ_RISING=1, IRQ_FALLING=2)."""
        p = self.pin(pid)
        old = self.pin_level(pid)
        p[key] = value
        new = self.pin_level(pid)
        if old == new:
            return
        if p["watch"] is not None:
            p["watch"](self, pid, new)
        if p["irq"] is None:
            return
        trig = p["trigger"]
        if (new == 1 and trig & 1) or (new == 0 and trig & 2):
            self.irq_queue.append(p["irq"])

    def run_irqs(self):
        """Run queued soft IRQ handlers (pin edges, timer callbacks), unless the node disabled
        IRQs with machine.disable_irq() in this boot (then they run at enable_irq())."""
        off = getattr(self, "irq_off", None)  # (boots, disabled) set by machine.disable_irq()
        if off is not None and off[0] == self.boots and off[1]:
            return
        while self.irq_queue:
            handler, arg = self.irq_queue.pop(0)
            handler(arg)


_NO_PULL_PINS = (34, 35, 36, 37, 38, 39)  # ESP32 input-only pads without pull resistors


def _uid_from(node_id):
    # Six bytes like the ESP32's base MAC, derived from the node id so that runs repeat.
    h = 5381
    for ch in node_id:
        h = ((h * 33) ^ ord(ch)) & 0xFFFFFFFFFFFF
    b = bytearray(6)
    for i in range(6):
        b[5 - i] = (h >> (8 * i)) & 0xFF
    b[0] = b[0] & 0xFE | 0x02  # locally administered, unicast
    return bytes(b)


# ---- calendar (epoch 2000, as the ESP32 port's time module) --------------------------------
_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def is_leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def days_in_month(y, m):
    if m == 2 and is_leap(y):
        return 29
    return _MDAYS[m - 1]


def seconds_to_tuple(t):
    """Seconds since 2000-01-01 -> (year, month, mday, hour, minute, second, weekday, yearday),
    weekday 0 = Monday, as time.gmtime() on the ESP32 port."""
    days = t // 86400
    rem = t - days * 86400
    hour = rem // 3600
    minute = (rem % 3600) // 60
    second = rem % 60
    weekday = (days + 5) % 7  # 2000-01-01 was a Saturday
    y = 2000
    while True:
        n = 366 if is_leap(y) else 365
        if days < n:
            break
        days -= n
        y += 1
    yday = days + 1
    m = 1
    while days >= days_in_month(y, m):
        days -= days_in_month(y, m)
        m += 1
    return (y, m, days + 1, hour, minute, second, weekday, yday)


def tuple_to_seconds(y, mo, d, h, mi, s):
    """(year, month, mday, hour, minute, second) -> seconds since 2000; overflowing fields carry,
    as time.mktime() does."""
    mo -= 1
    y += mo // 12
    mo = mo % 12
    days = 0
    for yy in range(2000, y):
        days += 366 if is_leap(yy) else 365
    for mm in range(1, mo + 1):
        days += days_in_month(y, mm)
    days += d - 1
    return days * 86400 + h * 3600 + mi * 60 + s
