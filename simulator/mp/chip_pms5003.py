# Fake Plantower PMS5003 particle sensor on a simulated board's UART (MicroPython dialect).
#
# It speaks the real byte streams (PMS5003 series data manual V2.3, appendices I and II): the
# 32-byte data frame 42 4D 00 1C + 13 big-endian words + 16-bit sum of bytes 0-29, and the
# 7-byte host commands 42 4D CMD DATAH DATAL LRCH LRCL (LRC = sum of the first five bytes;
# commands with a wrong LRC are ignored):
#   E2 00 00  read in passive mode: one data frame comes back;
#   E1 00 00 / E1 00 01  passive / active mode;
#   E4 00 00 / E4 00 01  sleep / wake-up.
# Like real units (not in the manual; many drivers expect it), E1 and the sleep command are
# acknowledged with an 8-byte frame of length 4, 42 4D 00 04 CMD DATAL + sum; wake-up is not.
# The chip registers as board.uart_devices[uart_id] (see simulator/mp/fake_machine.py): bytes
# it sends take 10 bit times each at 9600 baud (8N1) and are handed over as they arrive.
#
# Modes and timing (manual, "Output result"): active mode is the power-on default; it sends a
# frame every 2.3 s ("stable mode") or, when the concentration changes a lot, every
# 200-800 ms, sooner the higher the concentration ("fast mode"). The change that counts as a
# lot (more than 3 ug/m3 and 10 %) and the first frame 1 s after wake-up are model
# assumptions, as is the answer to a command REPLY_US after its last byte. In standby only
# the sleep/wake command is heard (model assumption).
# SET pin (manual, "Circuit attentions" 2): pulled up inside, high or floating = working, low
# = sleeping. The chip is asleep while SET is low or after a sleep command, until both say
# otherwise; the pull-up is modelled as the chip driving the line high when the node does not.
#
# What the world says, through scene(board) -> dict, read at each measurement:
#   pm1, pm25, pm10  true mass concentrations, ug/m3 (floats; made cumulative if they are not)
#   rh      relative humidity %: optical sensors see the water on hygroscopic particles. Above
#           RH_KNEE the mass read grows by the kappa-Koehler factor of Crilley et al. 2018
#           (AMT 11, 709): C(aw) = 1 + (kappa / rho_p) * aw / (1 - aw), rho_p = 1.65, taken
#           relative to its value at RH_KNEE (model assumption: the factory calibration holds
#           up to there; Jayaratne et al. 2018, AMT 11, 4883, saw a Plantower PMS1003 over-read
#           only above about 75 % RH). kappa 0.3 for the fine mode (PM2.5), 0.1 for the coarse
#           part (Huang et al. 2024, AMT 17, 6073: 0.15-0.29 fine, 0.05-0.13 coarse); the scene
#           may give "kappa" for the fine mode.
#   noise   relative sd of the reading (one factor per frame for every channel)
#   corrupt probability that a byte sent has one bit flipped
#   drop    probability that a byte sent is lost
#   dead    True: the sensor answers nothing and sends nothing
# Warm-up (manual, "Circuit attentions" 4: stable data only 30 s after wake-up, "because of the
# fan's performance"): during the first 30 s after a wake-up or power-on the fan has not reached
# its flow; the model reads low, from 10 % of the truth rising linearly to 100 % at 30 s, with
# an extra relative noise of 30 % falling to 0 (model assumption on the shape). A driver that
# reads during warm-up gets wrong numbers.
# Frame contents: the atmospheric-environment words (4-6) carry the reading; the CF=1 words
# (1-3) equal them up to 30 ug/m3 and rise 1.5 times as fast above (model assumption after
# the ATM/CF=1 ratio of about 2/3 that PurpleAir users report at high concentrations); the
# particle counts per 0.1 L come from the three mass fractions with fixed ratios chosen to look
# like PMS5003 output (model assumption, not physics); word 13 (reserved) is 0. Every value
# is rounded to an int, as on the wire.
# Supply (manual, "Technical index"): <= 100 mA working, <= 200 uA standby; the maxima are
# booked (charge_ma_us(), board.peripherals). laser_on_us: time spent working (laser and fan
# on), for the laser's life (about 8,000 h: shared/REFERENCE.md).
#
# Frames of active mode are made lazily, when the node looks at the UART, each for its own
# time (warm-up, schedule) but from the scene as it is then; after a long time unread only the
# first BACKLOG frames are made (the rest could not fit any rx buffer) and counted in unheard.
# Randomness comes from the chip's own xorshift32, seeded from the board's seed, node id and
# UART id: the same scenario seed gives the same bytes, whatever else draws numbers.

from uartchip import BAUD, CHAR_BITS, KAPPA_COARSE, KAPPA_FINE, RH_KNEE, RHO_P, WARM_UP_US, UartChip, growth, wire_us  # noqa: F401
from chiprng import fnv as _fnv

FRAME_LEN = 32
STABLE_US = 2300000
FAST_MIN_US = 200000
FAST_MAX_US = 800000
FIRST_FRAME_US = 1000000
REPLY_US = 5000
BACKLOG = 48
ACTIVE_MA = 100.0
STANDBY_MA = 0.2
CMD_READ = 0xE2
CMD_MODE = 0xE1
CMD_SLEEP = 0xE4


def cf1_from_atm(atm):
    if atm <= 30.0:
        return atm
    return 30.0 + 1.5 * (atm - 30.0)


def _q(x):
    v = int(x + 0.5) if x > 0 else 0
    return 65535 if v > 65535 else v


def encode(words):
    """The 32-byte data frame for 13 data words."""
    f = bytearray(FRAME_LEN)
    f[0] = 0x42
    f[1] = 0x4D
    f[2] = 0
    f[3] = 28
    for i in range(13):
        w = words[i]
        f[4 + 2 * i] = (w >> 8) & 0xFF
        f[5 + 2 * i] = w & 0xFF
    s = 0
    for i in range(30):
        s += f[i]
    f[30] = (s >> 8) & 0xFF
    f[31] = s & 0xFF
    return bytes(f)


def ack(cmd, datal):
    """The 8-byte acknowledgement real units send for E1 and the sleep command."""
    f = bytearray(8)
    f[0] = 0x42
    f[1] = 0x4D
    f[2] = 0
    f[3] = 4
    f[4] = cmd
    f[5] = datal
    s = 0
    for i in range(6):
        s += f[i]
    f[6] = (s >> 8) & 0xFF
    f[7] = s & 0xFF
    return bytes(f)


class PMS5003(UartChip):
    WORK_MA = ACTIVE_MA
    IDLE_MA = STANDBY_MA

    def __init__(self, board, uart_id, scene, set_pin=None, seed=None, warm=False):
        """warm: the sensor has been running for longer than the warm-up already."""
        self.board = board
        self.uart_id = uart_id
        self.scene = scene
        self.set_pin = set_pin
        s = board.seed if seed is None else seed
        self._rng = _fnv("%s|%s|pms5003|%s" % (s, board.node_id, uart_id))
        now = board.clock.now_us
        self.passive = False  # power-on default: active mode
        self._cmd_sleep = False
        self._set_low = False
        self._woke_us = now - WARM_UP_US if warm else now
        self._next_us = now + FIRST_FRAME_US
        self._prev_pm25 = None
        self._q = []  # [start us, bytes sent, slot of each byte or None, bytes handed over]
        self._tx_free = now
        self._rx = []  # command bytes received, not yet a whole command
        self._since = now
        self._charge = 0.0  # mA·µs
        self._laser = 0  # µs working
        # What happened, for tests and benches (counters; `log` only when a test sets a list).
        self.frames_sent = 0  # data frames put on the wire
        self.warm_frames = 0  # of which measured during the warm-up
        self.frames_damaged = 0  # data frames with a byte dropped or flipped
        self.bytes_dropped = 0
        self.bytes_corrupted = 0
        self.requests = 0  # passive reads answered
        self.commands = 0  # valid commands received
        self.bad_commands = 0  # 7-byte candidates with a wrong LRC
        self.ignored = 0  # valid commands not acted on (asleep, dead, read in active mode)
        self.unheard = 0  # active-mode frames never made: nobody read the UART for too long
        self.wakes = 0
        self.sleeps = 0
        self.last_true = None  # (pm1, pm25, pm10) of the scene at the last measurement
        self.last_reading = None  # what the last data frame says, in the driver's order
        self.log = None  # a list: (clean frame, bytes sent) appended for every data frame
        board.peripherals.append(self)
        board.uart_devices[uart_id] = self
        if set_pin is not None:
            board.pin(set_pin)
            board.pin_edge(set_pin, 1)  # the pull-up inside the sensor
            self._prev_watch = board.pins[set_pin]["watch"]
            board.pins[set_pin]["watch"] = self._on_set
            self._set_low = not board.pin_level(set_pin)

    # ---- power, laser, state -------------------------------------------------------------
    def awake(self):
        return not self._cmd_sleep and not self._set_low

    def _changed(self, was):
        # After a state change (accounted before it): start or stop the fan and the stream.
        now = self.board.clock.now_us
        is_on = self.awake()
        if was == is_on:
            return
        if is_on:
            self.wakes += 1
            self._woke_us = now
            self._next_us = now + FIRST_FRAME_US
            self._prev_pm25 = None
        else:
            self.sleeps += 1
            self._cancel_unstarted(now)

    def _cancel_unstarted(self, now):
        keep = []
        free = now
        for f in self._q:
            if f[0] <= now:
                keep.append(f)
                end = f[0] + wire_us(f[4])
                if end > free:
                    free = end
        self._q = keep
        self._tx_free = free

    def _on_set(self, board, pid, level):
        now = board.clock.now_us
        self._catch_up(now)
        was = self.awake()
        self._account()
        self._set_low = not level
        self._changed(was)
        if self._prev_watch is not None:
            self._prev_watch(board, pid, level)

    # ---- measuring -----------------------------------------------------------------------
    def _measure(self, t, sc):
        """The data frame measured at sim time t."""
        warming, k = self._gain(t, sc)
        pm1 = float(sc.get("pm1", 0.0))
        pm25 = float(sc.get("pm25", 0.0))
        pm10 = float(sc.get("pm10", 0.0))
        if pm1 < 0.0:
            pm1 = 0.0
        if pm25 < pm1:
            pm25 = pm1
        if pm10 < pm25:
            pm10 = pm25
        self.last_true = (pm1, pm25, pm10)
        rh = sc.get("rh")
        gf = growth(rh, float(sc.get("kappa", KAPPA_FINE)))
        gc = growth(rh, KAPPA_COARSE)
        a1 = pm1 * gf * k
        a25 = pm25 * gf * k
        a10 = (pm25 * gf + (pm10 - pm25) * gc) * k
        fine = a1
        mid = a25 - a1
        coarse = a10 - a25
        n10 = 0.1 * coarse
        n5 = n10 + 0.8 * coarse
        n25 = n5 + 3.0 * coarse
        n1 = n25 + 20.0 * mid
        n05 = n1 + 35.0 * fine
        n03 = n05 + 100.0 * fine
        w = (_q(cf1_from_atm(a1)), _q(cf1_from_atm(a25)), _q(cf1_from_atm(a10)),
             _q(a1), _q(a25), _q(a10),
             _q(n03), _q(n05), _q(n1), _q(n25), _q(n5), _q(n10), 0)
        self.last_reading = (w[3], w[4], w[5], w[0], w[1], w[2], w[6], w[7], w[8], w[9], w[10],
                             w[11])
        self.frames_sent += 1
        if warming:
            self.warm_frames += 1
        return encode(w)

    def _interval(self):
        # Stable mode unless PM2.5 moved by more than 3 ug/m3 and 10 % (model assumption).
        v = self.last_reading[1]
        prev = self._prev_pm25
        self._prev_pm25 = v
        if prev is not None:
            d = v - prev if v > prev else prev - v
            if d <= 3 or d * 10 <= prev:
                return STABLE_US
        c = v / 500.0
        if c > 1.0:
            c = 1.0
        return FAST_MAX_US - int((FAST_MAX_US - FAST_MIN_US) * c)

    # ---- the wire (UartChip sends and hands over) -----------------------------------------
    def _streaming(self):
        return not self.passive and self.awake()

    def _catch_up(self, now):
        # Make the active-mode frames due by now.
        made = 0
        while self._streaming() and self._next_us <= now:
            if made >= BACKLOG:
                skip = (now - self._next_us) // STABLE_US + 1
                self.unheard += skip
                self._next_us += skip * STABLE_US
                break
            t = self._next_us
            sc = self.scene(self.board) or {}
            made += 1
            if sc.get("dead"):
                self._next_us = t + STABLE_US
                continue
            self._send(t, self._measure(t, sc), sc, True)
            self._next_us = t + self._interval()

    def uart_write(self, board, data):
        now = board.clock.now_us
        self._catch_up(now)
        rx = self._rx
        for i in range(len(data)):
            rx.append(data[i])
            while rx:
                if rx[0] != 0x42 or (len(rx) >= 2 and rx[1] != 0x4D):
                    rx.pop(0)
                    continue
                if len(rx) < 7:
                    break
                s = rx[0] + rx[1] + rx[2] + rx[3] + rx[4]
                if (s & 0xFFFF) != ((rx[5] << 8) | rx[6]):
                    self.bad_commands += 1
                    rx.pop(0)
                    continue
                cmd = rx[2]
                datal = rx[4]
                rx = rx[7:]
                self._rx = rx
                self._command(now, cmd, datal)
        self._rx = rx

    def _command(self, now, cmd, datal):
        self.commands += 1
        sc = self.scene(self.board) or {}
        if sc.get("dead"):
            self.ignored += 1
            return
        was = self.awake()
        if cmd == CMD_SLEEP:
            self._account()
            self._cmd_sleep = datal == 0
            self._changed(was)
            if datal == 0 and was:
                self._send(now + REPLY_US, ack(CMD_SLEEP, 0), sc)
            return
        if not was:
            self.ignored += 1  # standby: only the sleep/wake command is heard
            return
        if cmd == CMD_MODE:
            passive = datal == 0
            if passive != self.passive:
                self.passive = passive
                if passive:
                    self._cancel_unstarted(now)
                else:
                    self._next_us = now + FIRST_FRAME_US
                    self._prev_pm25 = None
            self._send(now + REPLY_US, ack(CMD_MODE, datal), sc)
        elif cmd == CMD_READ and self.passive:
            self.requests += 1
            t = now + REPLY_US
            self._send(t, self._measure(t, sc), sc, True)
        else:
            self.ignored += 1
