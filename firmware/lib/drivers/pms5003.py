# Plantower PMS5003 laser particle sensor on a UART, 9600 baud 8N1.
#
# Sources (docs/drivers/pms5003.md lists them with the figures taken):
# - Plantower PMS5003 series data manual V2.3 (2016-06-01):
#   "Output result": active mode is the power-on default (stable mode every 2.3 s, fast mode
#   every 200-800 ms when the concentration changes a lot); passive mode answers requests.
#   "Circuit attentions" 2): SET and RESET are pulled up inside; SET high or floating = working,
#   SET low = sleeping. 4): "Stable data should be got at least 30 seconds after the sensor
#   wakeup from the sleep mode because of the fan's performance".
#   "Technical index": active current <= 100 mA, standby current <= 200 uA.
#   Appendix I (frame): 0x42 0x4D, frame length 2*13+2 = 28, 13 big-endian 16-bit data words:
#   1-3 PM1.0 / PM2.5 / PM10 ug/m3 CF=1 (standard particle), 4-6 the same "under atmospheric
#   environment", 7-12 particles beyond 0.3 / 0.5 / 1.0 / 2.5 / 5.0 / 10 um in 0.1 L of air,
#   13 reserved; check code = 16-bit sum of bytes 0-29, big-endian, in bytes 30-31.
#   Appendix II (host commands): 42 4D CMD DATAH DATAL LRCH LRCL, LRC = sum of the first five
#   bytes: E2 00 00 read in passive mode (answer: one 32-byte frame), E1 00 00/00 01 passive/
#   active, E4 00 00/00 01 sleep/wake-up.
# - Not in the manual, seen on real units (many drivers expect it): E1 and the sleep command are
#   acknowledged with an 8-byte frame of length 4 (42 4D 00 04 E1 00 01 74); wake-up is not.
#   The parser skips those frames like any other bytes that are not a 28-byte-length frame.
#
# Readings are tuples of 12 ints, atmospheric values first (what a node reports):
#   (pm1, pm25, pm10, pm1_cf1, pm25_cf1, pm10_cf1, n0_3, n0_5, n1_0, n2_5, n5_0, n10)
# in ug/m3 and particles per 0.1 L. A read during the warm-up after wake (or after the driver
# starts: it cannot know how long the sensor has run) or while asleep returns None: the fan has
# not reached its flow, the numbers are low and noisy.
import machine
import struct
import time
from micropython import const

from drivers.uartframe import FrameParser

BAUD = const(9600)
FRAME_LEN = const(32)
_LEN_WORD = const(28)  # Appendix I: frame length = 2*13 + 2
WARM_UP_MS = const(30000)  # "Circuit attentions" 4)

# Indices into a reading.
PM1 = const(0)
PM25 = const(1)
PM10 = const(2)
PM1_CF1 = const(3)
PM25_CF1 = const(4)
PM10_CF1 = const(5)
N0_3 = const(6)
N0_5 = const(7)
N1_0 = const(8)
N2_5 = const(9)
N5_0 = const(10)
N10 = const(11)

# Appendix II commands, LRC included (sum of the first five bytes).
CMD_READ = b"\x42\x4d\xe2\x00\x00\x01\x71"
CMD_PASSIVE = b"\x42\x4d\xe1\x00\x00\x01\x70"
CMD_ACTIVE = b"\x42\x4d\xe1\x00\x01\x01\x71"
CMD_SLEEP = b"\x42\x4d\xe4\x00\x00\x01\x73"
CMD_WAKE = b"\x42\x4d\xe4\x00\x01\x01\x74"

_CHUNK_MS = const(40)  # UART read timeout: a 32-byte frame takes 33.3 ms at 9600 8N1
_RETRY_MS = const(500)  # passive mode: ask again if no valid answer came by then
_READ_MS = const(3000)  # default wait: longer than the 2.3 s stable-mode interval


def _prefix_ok(pos, b):
    # Can byte b stand at position pos of a data frame? Header 42 4D, length 00 1C.
    if pos == 0:
        return b == 0x42
    if pos == 1:
        return b == 0x4D
    if pos == 2:
        return b == 0
    if pos == 3:
        return b == _LEN_WORD
    return True


def checksum_ok(buf):
    """True if the 32 bytes in buf carry the right check code (Appendix I)."""
    s = 0
    for i in range(FRAME_LEN - 2):
        s += buf[i]
    return (s & 0xFFFF) == ((buf[30] << 8) | buf[31])


def decode(buf):
    """The reading in a valid 32-byte frame (atmospheric values first)."""
    w = struct.unpack_from(">HHHHHHHHHHHH", buf, 4)
    return (w[3], w[4], w[5], w[0], w[1], w[2], w[6], w[7], w[8], w[9], w[10], w[11])


class Parser(FrameParser):
    """Finds valid data frames in a byte stream fed in pieces of any size (drivers/uartframe.py:
    partial frames kept, junk skipped, a frame with the right header and length but a wrong
    check code counted in `bad`). Never raises, whatever the bytes."""

    PREFIX = 4  # header 42 4D, length 00 1C

    def __init__(self):
        FrameParser.__init__(self, FRAME_LEN)

    def _prefix_ok(self, pos, b):
        return _prefix_ok(pos, b)

    def _check(self, buf):
        return checksum_ok(buf)

    def _frame(self, buf, out):
        out.append(decode(buf))
        self.frames += 1


class PMS5003:
    """uart_id: 1 or 2 (UART0 is the REPL); tx, rx: the ESP32's GPIOs (tx goes to the sensor's
    RX). set_pin: optional GPIO wired to SET (low = sleep). The sensor is assumed to have just
    woken when the driver starts: reads are refused for warm_up_ms."""

    warm_up_ms = WARM_UP_MS

    def __init__(self, uart_id, tx, rx, set_pin=None):
        self._uart = machine.UART(uart_id, baudrate=BAUD, tx=tx, rx=rx, timeout=_CHUNK_MS)
        self._set = None
        if set_pin is not None:
            self._set = machine.Pin(set_pin, machine.Pin.OUT, value=1)
        self.parser = Parser()
        self._buf = bytearray(FRAME_LEN)
        self._passive = False  # the manual's power-on default is active mode
        self._asleep = False
        self._woke = time.ticks_ms()
        self._warm = False
        self.last = None  # the last reading returned
        self.timeouts = 0  # reads that found no valid frame in time
        self.refused = 0  # reads refused: asleep or warming up

    # ---- modes -------------------------------------------------------------------------------
    def passive(self):
        """Passive mode: the sensor sends a frame only when asked (read())."""
        self._uart.write(CMD_PASSIVE)
        self._passive = True

    def active(self):
        """Active mode (the power-on default): the sensor streams frames by itself."""
        self._uart.write(CMD_ACTIVE)
        self._passive = False

    def sleep(self):
        """Fan and laser off: the sleep command, and SET low when it is wired."""
        self._uart.write(CMD_SLEEP)
        if self._set is not None:
            self._set.value(0)
        self._asleep = True
        self._warm = False

    def wake(self):
        """SET high and the wake-up command; the warm-up starts again (always: the driver cannot
        know whether the sensor was already running). The mode is set again afterwards."""
        if self._set is not None:
            self._set.value(1)
        self._uart.write(CMD_WAKE)
        if self._passive:
            self._uart.write(CMD_PASSIVE)
        self._asleep = False
        self._warm = False
        self._woke = time.ticks_ms()

    def warm_left_ms(self):
        """ms until readings can be trusted; the full warm-up while asleep."""
        if self._asleep:
            return self.warm_up_ms
        if self._warm:
            return 0
        d = time.ticks_diff(time.ticks_ms(), self._woke)
        # > rather than >=: ticks_ms counts whole ms. A negative difference means the wake is
        # more than half a ticks period (6.2 days) ago.
        if self.warm_up_ms <= 0 or d < 0 or d > self.warm_up_ms:
            self._warm = True
            return 0
        return self.warm_up_ms + 1 - d

    # ---- reading -----------------------------------------------------------------------------
    def _drain(self):
        # Throw away what waited in the rx buffer (old frames, acks): the reading must be fresh.
        u = self._uart
        buf = self._buf
        while True:
            k = u.any()
            if k <= 0:
                break
            u.readinto(buf, k if k < FRAME_LEN else FRAME_LEN)
        self.parser.reset()

    def read(self, timeout_ms=_READ_MS):
        """A fresh reading (tuple of 12 ints), or None: asleep, warming up, or no valid frame
        within timeout_ms (dead sensor, every frame corrupted)."""
        if self.warm_left_ms() > 0:
            self.refused += 1
            return None
        self._drain()
        u = self._uart
        p = self.parser
        buf = self._buf
        start = time.ticks_ms()
        asked = start
        if self._passive:
            u.write(CMD_READ)
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
            if self._passive and time.ticks_diff(now, asked) >= _RETRY_MS:
                u.write(CMD_READ)
                asked = now
        self.timeouts += 1
        return None
