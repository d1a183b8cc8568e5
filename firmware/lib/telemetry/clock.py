# Wall-clock time for messages: Unix epoch seconds whatever the port's epoch, and whether the
# RTC has been set since power-on (an unset ESP32 RTC starts at 2000-01-01).
import time

_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
# Any time before this (2024-01-01) means the RTC was never set.
_VALID_AFTER = 1704067200


def now():
    return time.time() + _EPOCH_OFFSET


def synced():
    return now() >= _VALID_AFTER


def sync(host):
    """Set the RTC by NTP. True on success; never raises."""
    try:
        import ntptime
        ntptime.host = host
        ntptime.settime()
        return True
    except Exception:
        return False


def stamp(d):
    """Put the time in a message dict; flag it ("u": 1) while the clock was never set."""
    d["ts"] = now()
    if not synced():
        d["u"] = 1
    return d
