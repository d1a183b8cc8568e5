# Fake Nova Fitness SDS011 particle sensor on a simulated board's UART (MicroPython dialect).
#
# It speaks the real byte streams:
# - data frame (SDS011 specification V1.3, "UART communication protocol"): 10 bytes
#   AA C0 PM25L PM25H PM10L PM10H ID1 ID2 CS AB, CS = low byte of the sum of bytes 2-7,
#   values in 0.1 ug/m3 (0.0-999.9 ug/m3); once per second in active reporting mode.
# - host commands (Laser Dust Sensor Control Protocol V1.3, sections 1 and 3): 19 bytes
#   AA B4, data bytes 1-15, checksum (low byte of the sum of data bytes 1-15), AB; data bytes
#   14-15 the device ID (FF FF: any sensor; another ID than the chip's is ignored, as is a
#   wrong checksum or tail). Data byte 1 is the command:
#     2  data reporting mode: byte 2 = 0 query / 1 set, byte 3 = 0 active / 1 query mode
#     4  query data: in query mode one data frame comes back
#     6  sleep and work: byte 2 = 0 query / 1 set, byte 3 = 0 sleep / 1 work
#   Each of 2 and 6 is answered AA C5 cmd byte2 byte3 00 ID1 ID2 CS AB. Commands 5 (device
#   ID), 7 (firmware version) and 8 (working period) are not modelled: ignored, and counted.
#   While asleep only command 6 is heard (mkfrey/sds011-esp-raw docs/behaviour.md, found on
#   real units; the protocol says any command wakes the sensor: the driver relies on neither).
#   Replies come REPLY_US after the command's last byte (model assumption); the first frame
#   of active mode 1 s after the work command or the switch to active mode.
# The chip registers as board.uart_devices[uart_id] (see simulator/mp/fake_machine.py): bytes
# take 10 bit times each at 9600 baud (8N1) and are handed over as they arrive.
#
# What the world says, through scene(board) -> dict, read at each measurement: pm25, pm10
# (true ug/m3; pm1 is ignored), rh, noise, corrupt, drop, dead, with the meanings and the
# humidity model of chip_pms5003.py (kappa-Koehler growth above 70 % RH, Crilley et al. 2018).
# Warm-up (protocol V1.3, "Set sleep and work": "The data is stable when the sensor works after
# 30 seconds"): the same model as chip_pms5003.py, low by up to 90 % and noisier during the
# first 30 s after a wake-up or power-on.
# Supply (SDS011 specification V1.3, "Technical parameters"): rated current 70 mA +- 10 mA,
# sleep current < 4 mA with laser and fan asleep; 70 mA and 4 mA are booked. laser_on_us: time
# working (laser and fan on); the laser's life is about 8,000 h (specification, service life).
# Active-mode frames are made lazily as in chip_pms5003.py (BACKLOG, unheard). Randomness: the
# chip's own xorshift32 seeded from the board's seed, node id and UART id; the device ID too.

from uartchip import BAUD, CHAR_BITS, KAPPA_COARSE, KAPPA_FINE, RH_KNEE, RHO_P, WARM_UP_US, UartChip, growth, wire_us  # noqa: F401
from chiprng import fnv as _fnv

FRAME_LEN = 10
CMD_LEN = 19
PERIOD_US = 1000000
FIRST_FRAME_US = 1000000
REPLY_US = 10000
BACKLOG = 48
WORK_MA = 70.0
SLEEP_MA = 4.0

CMD_REPORT_MODE = 2
CMD_QUERY = 4
CMD_SLEEP_WORK = 6


def _q10(x):
    v = int(x * 10.0 + 0.5) if x > 0 else 0
    return 9999 if v > 9999 else v


def frame(kind, d):
    """A 10-byte frame AA kind d[0..5] CS AB (kind 0xC0 data, 0xC5 reply)."""
    f = bytearray(FRAME_LEN)
    f[0] = 0xAA
    f[1] = kind
    s = 0
    for i in range(6):
        f[2 + i] = d[i] & 0xFF
        s += d[i] & 0xFF
    f[8] = s & 0xFF
    f[9] = 0xAB
    return bytes(f)


class SDS011(UartChip):
    WORK_MA = WORK_MA
    IDLE_MA = SLEEP_MA

    def __init__(self, board, uart_id, scene, seed=None, warm=False, query_mode=False):
        """warm: already running for longer than the warm-up. query_mode: the reporting mode
        stored in the sensor's flash from an earlier life (factory default: active)."""
        self.board = board
        self.uart_id = uart_id
        self.scene = scene
        s = board.seed if seed is None else seed
        self._rng = _fnv("%s|%s|sds011|%s" % (s, board.node_id, uart_id))
        self.device_id = (self._next() >> 8) & 0xFFFF
        if self.device_id == 0xFFFF:
            self.device_id = 0xFFFE
        now = board.clock.now_us
        self.query_mode = bool(query_mode)
        self._asleep = False  # "stay work state after power on"
        self._woke_us = now - WARM_UP_US if warm else now
        self._next_us = now + FIRST_FRAME_US
        self._q = []  # [start us, bytes sent, slot of each byte or None, handed over, length]
        self._tx_free = now
        self._rx = []
        self._since = now
        self._charge = 0.0
        self._laser = 0
        self.frames_sent = 0
        self.warm_frames = 0
        self.frames_damaged = 0
        self.bytes_dropped = 0
        self.bytes_corrupted = 0
        self.requests = 0  # queries answered
        self.commands = 0  # valid commands received (checksum, tail, ID)
        self.bad_commands = 0  # 19-byte candidates with a wrong checksum or tail
        self.ignored = 0  # valid commands not acted on
        self.unheard = 0
        self.wakes = 0
        self.sleeps = 0
        self.last_true = None  # (pm25, pm10) of the scene at the last measurement
        self.last_reading = None  # (pm25_x10, pm10_x10) of the last data frame
        self.log = None  # a list: (clean frame, bytes sent) appended for every data frame
        board.peripherals.append(self)
        board.uart_devices[uart_id] = self

    # ---- power, laser, state -------------------------------------------------------------
    def awake(self):
        return not self._asleep

    def _set_asleep(self, now, asleep):
        if asleep == self._asleep:
            return
        self._account()
        self._asleep = asleep
        if asleep:
            self.sleeps += 1
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
        else:
            self.wakes += 1
            self._woke_us = now
            self._next_us = now + FIRST_FRAME_US

    # ---- measuring -----------------------------------------------------------------------
    def _measure(self, t, sc):
        warming, k = self._gain(t, sc)
        pm25 = float(sc.get("pm25", 0.0))
        pm10 = float(sc.get("pm10", 0.0))
        if pm25 < 0.0:
            pm25 = 0.0
        if pm10 < pm25:
            pm10 = pm25
        self.last_true = (pm25, pm10)
        rh = sc.get("rh")
        gf = growth(rh, float(sc.get("kappa", KAPPA_FINE)))
        gc = growth(rh, KAPPA_COARSE)
        v25 = _q10(pm25 * gf * k)
        v10 = _q10((pm25 * gf + (pm10 - pm25) * gc) * k)
        self.last_reading = (v25, v10)
        self.frames_sent += 1
        if warming:
            self.warm_frames += 1
        i = self.device_id
        return frame(0xC0, (v25 & 0xFF, v25 >> 8, v10 & 0xFF, v10 >> 8, i & 0xFF, i >> 8))

    # ---- the wire (UartChip sends and hands over) -----------------------------------------
    def _streaming(self):
        return not self.query_mode and not self._asleep

    def _catch_up(self, now):
        made = 0
        while self._streaming() and self._next_us <= now:
            if made >= BACKLOG:
                skip = (now - self._next_us) // PERIOD_US + 1
                self.unheard += skip
                self._next_us += skip * PERIOD_US
                break
            t = self._next_us
            sc = self.scene(self.board) or {}
            made += 1
            self._next_us = t + PERIOD_US
            if sc.get("dead"):
                continue
            self._send(t, self._measure(t, sc), sc, True)

    def uart_write(self, board, data):
        now = board.clock.now_us
        self._catch_up(now)
        rx = self._rx
        for i in range(len(data)):
            rx.append(data[i])
            while rx:
                if rx[0] != 0xAA or (len(rx) >= 2 and rx[1] != 0xB4):
                    rx.pop(0)
                    continue
                if len(rx) < CMD_LEN:
                    break
                s = 0
                for j in range(2, 17):
                    s += rx[j]
                if (s & 0xFF) != rx[17] or rx[18] != 0xAB:
                    self.bad_commands += 1
                    rx.pop(0)
                    continue
                cmd = rx[2]
                d2 = rx[3]
                d3 = rx[4]
                dev = rx[15] | (rx[16] << 8)
                rx = rx[CMD_LEN:]
                self._rx = rx
                if dev == 0xFFFF or dev == self.device_id:
                    self._command(now, cmd, d2, d3)
        self._rx = rx

    def _reply(self, now, cmd, d2, d3, sc):
        i = self.device_id
        self._send(now + REPLY_US, frame(0xC5, (cmd, d2, d3, 0, i & 0xFF, i >> 8)), sc)

    def _command(self, now, cmd, d2, d3):
        self.commands += 1
        sc = self.scene(self.board) or {}
        if sc.get("dead"):
            self.ignored += 1
            return
        if cmd == CMD_SLEEP_WORK:
            if d2 == 1:
                self._set_asleep(now, d3 == 0)
            self._reply(now, CMD_SLEEP_WORK, d2, 0 if self._asleep else 1, sc)
            return
        if self._asleep:
            self.ignored += 1
            return
        if cmd == CMD_REPORT_MODE:
            if d2 == 1:
                q = d3 == 1
                if q != self.query_mode:
                    self.query_mode = q
                    if not q:
                        self._next_us = now + FIRST_FRAME_US
            self._reply(now, CMD_REPORT_MODE, d2, 1 if self.query_mode else 0, sc)
        elif cmd == CMD_QUERY and self.query_mode:
            self.requests += 1
            t = now + REPLY_US
            self._send(t, self._measure(t, sc), sc, True)
        else:
            self.ignored += 1
