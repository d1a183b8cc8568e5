# Fake of MicroPython's `time` module on the ESP32 port, in virtual time.
# Ticks count from boot and wrap at 2**30 (py/mpconfig.h MICROPY_PY_TIME_TICKS_PERIOD);
# the calendar functions use the RTC and the port's epoch, 2000-01-01.
import simboard

_board = None
_PERIOD = simboard.TICKS_PERIOD
_HALF = _PERIOD // 2


def _attach(board):
    global _board
    _board = board


def ticks_ms():
    return _board.ticks_ms()


def ticks_us():
    return _board.ticks_us()


def ticks_cpu():
    return _board.ticks_us()


def ticks_add(ticks, delta):
    return (ticks + delta) % _PERIOD


def ticks_diff(ticks1, ticks2):
    # Signed difference within a half period, as extmod/modtime.c computes it.
    return ((ticks1 - ticks2 + _HALF) % _PERIOD) - _HALF


def sleep_ms(ms):
    _board.advance(int(ms) * 1000)


def sleep_us(us):
    _board.advance(int(us))


def sleep(seconds):
    _board.advance(int(seconds * 1000000))


def time():
    return _board.rtc_seconds_us()[0]


def time_ns():
    s, us = _board.rtc_seconds_us()
    return (s * 1000000 + us) * 1000


def gmtime(secs=None):
    if secs is None:
        secs = time()
    return simboard.seconds_to_tuple(int(secs))


def localtime(secs=None):
    # The ESP32 port has no time zones: local time is UTC.
    return gmtime(secs)


def mktime(local_time):
    t = local_time
    return simboard.tuple_to_seconds(t[0], t[1], t[2], t[3], t[4], t[5])
