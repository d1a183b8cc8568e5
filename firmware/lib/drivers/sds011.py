# Nova Fitness SDS011 laser dust sensor on a UART, 9600 baud 8N1.
#
# Sources (docs/drivers/sds011.md lists them with the figures taken):
# - SDS011 Laser Dust Sensor Control Protocol V1.3 (Nova Fitness, 2015-07-20):
#   section 1 "Protocol configuration": 9600 8N1; host packets of 19 bytes: head AA, command ID
#   B4, data bytes 1-15, checksum = low 8 bits of the sum of data bytes 1-15 (bytes 2-16),
#   tail AB; data bytes 14-15 are the device ID, FF FF = every sensor.
#   section 2 "Device ID". section 3 commands, data byte 1 first: 2 set data reporting mode
#   (byte 2: 0 query / 1 set; byte 3: 0 active / 1 query mode; kept after power off, factory
#   default active), 4 query data ("recommended query interval of not less than 3 seconds"),
#   6 set sleep and work (byte 3: 0 sleep / 1 work; "The data is stable when the sensor works
#   after 30 seconds"; "The fan and laser stop working in sleeping mode"; not kept after power
#   off). Replies: AA C5 + data bytes 1-6 + checksum + AB, echoing the command and its values,
#   data bytes 5-6 the device ID.
# - SDS011 laser PM2.5 sensor specification V1.3 (2015-10-09), "UART communication protocol":
#   the 10-byte data frame AA C0 PM25L PM25H PM10L PM10H ID1 ID2 CS AB, CS = low byte of the sum
#   of bytes 2-7, value / 10 = ug/m3 (0.0-999.9); output once per second in active mode.
#
# Readings are (pm25_x10, pm10_x10): ints in tenths of ug/m3, as on the wire. A query during
# the warm-up after wake (or after the driver starts: it cannot know how long the sensor has
# run) or while asleep returns None.
import machine
import time
from micropython import const

from drivers.uartframe import FrameParser

BAUD = const(9600)
FRAME_LEN = const(10)
CMD_LEN = const(19)
WARM_UP_MS = const(30000)  # protocol V1.3, "Set sleep and work": stable after 30 s of work

_HEAD = const(0xAA)
_TAIL = const(0xAB)
_DATA = const(0xC0)  # data frame
_REPLY = const(0xC5)  # command reply
_HOST = const(0xB4)  # host command

# Data byte 1 of the commands (protocol V1.3 section 3).
REPORT_MODE = const(2)
QUERY = const(4)
SLEEP_WORK = const(6)

_CHUNK_MS = const(20)  # UART read timeout: a 10-byte frame takes 10.4 ms at 9600 8N1
_RETRY_MS = const(500)  # query mode: ask again if no valid answer came by then
_READ_MS = const(2500)  # default wait: active mode sends every second
_ACK_MS = const(1000)  # default wait for a command's reply
_CMD_RETRY_MS = const(250)  # a reply comes within some 20 ms (model; no figure in the sheets)


def checksum_ok(buf):
    """True if the 10 bytes in buf end with the right checksum and the tail."""
    s = 0
    for i in range(2, 8):
        s += buf[i]
    return (s & 0xFF) == buf[8] and buf[9] == _TAIL


def fill_command(buf, cmd, d2=0, d3=0):
    """Write the 19-byte host command (data bytes 1-3 = cmd, d2, d3, the rest 0, device ID
    FF FF) into buf, checksum included."""
    buf[0] = _HEAD
    buf[1] = _HOST
    buf[2] = cmd
    buf[3] = d2
    buf[4] = d3
    for i in range(5, 15):
        buf[i] = 0
    buf[15] = 0xFF
    buf[16] = 0xFF
    s = 0
    for i in range(2, 17):
        s += buf[i]
    buf[17] = s & 0xFF
    buf[18] = _TAIL


class Parser(FrameParser):
    """Finds valid data frames (AA C0) in a byte stream fed in pieces of any size, and notes
    command replies (AA C5) (drivers/uartframe.py: partial frames kept, junk skipped, a
    10-byte candidate with a wrong checksum or tail counted in `bad`). Never raises."""

    PREFIX = 2  # head AA, then C0 (data) or C5 (reply)

    def __init__(self):
        FrameParser.__init__(self, FRAME_LEN)
        self.replies = 0  # valid command replies seen
        self.reply = bytearray(6)  # data bytes 1-6 of the last reply
        self.device_id = None  # ID1 | ID2 << 8 of the last valid frame or reply

    def _prefix_ok(self, pos, b):
        if pos == 0:
            return b == _HEAD
        return b == _DATA or b == _REPLY

    def _check(self, buf):
        return checksum_ok(buf)

    def _frame(self, buf, out):
        self.device_id = buf[6] | (buf[7] << 8)
        if buf[1] == _DATA:
            out.append((buf[2] | (buf[3] << 8), buf[4] | (buf[5] << 8)))
            self.frames += 1
        else:
            r = self.reply
            for j in range(6):
                r[j] = buf[2 + j]
            self.replies += 1


class SDS011:
    """uart_id: 1 or 2; tx, rx: the ESP32's GPIOs (tx goes to the sensor's RX). The sensor is
    assumed to have just woken when the driver starts: queries are refused for warm_up_ms."""

    warm_up_ms = WARM_UP_MS

    def __init__(self, uart_id, tx, rx):
        self._uart = machine.UART(uart_id, baudrate=BAUD, tx=tx, rx=rx, timeout=_CHUNK_MS)
        self.parser = Parser()
        self._buf = bytearray(CMD_LEN)  # commands out, bytes in
        self._query = False  # factory default: active reporting
        self._asleep = False
        self._woke = time.ticks_ms()
        self._warm = False
        self.last = None
        self.timeouts = 0
        self.refused = 0

    # ---- commands ----------------------------------------------------------------------------
    def _drain(self):
        u = self._uart
        buf = self._buf
        while True:
            k = u.any()
            if k <= 0:
                break
            u.readinto(buf, k if k < CMD_LEN else CMD_LEN)
        self.parser.reset()

    def _send(self, cmd, d2, d3):
        fill_command(self._buf, cmd, d2, d3)
        self._uart.write(self._buf)

    def _command(self, cmd, d2, d3, timeout_ms):
        # Send, and again every _CMD_RETRY_MS (these commands can be repeated safely), until
        # the reply that echoes it (data bytes 1-3) comes: True, or the timeout: False.
        self._drain()
        p = self.parser
        seen = p.replies
        self._send(cmd, d2, d3)
        u = self._uart
        buf = self._buf
        start = time.ticks_ms()
        sent = start
        while True:
            n = u.readinto(buf)
            if n:
                p.feed(buf, n)
                r = p.reply
                if p.replies != seen and r[0] == cmd and r[1] == d2 and r[2] == d3:
                    return True
            now = time.ticks_ms()
            if time.ticks_diff(now, start) >= timeout_ms:
                return False
            if time.ticks_diff(now, sent) >= _CMD_RETRY_MS:
                self._send(cmd, d2, d3)
                sent = now

    def set_query_mode(self, timeout_ms=_ACK_MS):
        """Report query mode: the sensor answers query() only. True if it acknowledged."""
        self._query = True
        return self._command(REPORT_MODE, 1, 1, timeout_ms)

    def set_active_mode(self, timeout_ms=_ACK_MS):
        """Report active mode (factory default): a frame every second. True if acknowledged."""
        self._query = False
        return self._command(REPORT_MODE, 1, 0, timeout_ms)

    def sleep(self, timeout_ms=_ACK_MS):
        """Fan and laser off. True if the sensor acknowledged."""
        self._asleep = True
        self._warm = False
        return self._command(SLEEP_WORK, 1, 0, timeout_ms)

    def wake(self, timeout_ms=_ACK_MS):
        """Fan and laser on; the warm-up starts again (always: the driver cannot know whether
        the sensor was already running). True if the sensor acknowledged."""
        ok = self._command(SLEEP_WORK, 1, 1, timeout_ms)
        self._asleep = False
        self._warm = False
        self._woke = time.ticks_ms()
        return ok

    def warm_left_ms(self):
        """ms until readings can be trusted; the full warm-up while asleep."""
        if self._asleep:
            return self.warm_up_ms
        if self._warm:
            return 0
        d = time.ticks_diff(time.ticks_ms(), self._woke)
        # > rather than >=: ticks_ms counts whole ms. Negative: woke more than 6.2 days ago.
        if self.warm_up_ms <= 0 or d < 0 or d > self.warm_up_ms:
            self._warm = True
            return 0
        return self.warm_up_ms + 1 - d

    # ---- reading -----------------------------------------------------------------------------
    def query(self, timeout_ms=_READ_MS):
        """A fresh reading (pm25_x10, pm10_x10), or None: asleep, warming up, or no valid frame
        within timeout_ms."""
        if self.warm_left_ms() > 0:
            self.refused += 1
            return None
        self._drain()
        u = self._uart
        p = self.parser
        buf = self._buf
        start = time.ticks_ms()
        asked = start
        if self._query:
            self._send(QUERY, 0, 0)
        while True:
            n = u.readinto(buf)
            if n:
                got = p.feed(buf, n)
                if got:
                    self.last = got[-1]
                    return self.last
            now = time.ticks_ms()
            if time.ticks_diff(now, start) >= timeout_ms:
                break
            if self._query and time.ticks_diff(now, asked) >= _RETRY_MS:
                self._send(QUERY, 0, 0)
                asked = now
        self.timeouts += 1
        return None
