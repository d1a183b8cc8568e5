# A few values kept in RTC memory: they survive deep sleep (not a power cut) and cost no
# flash wear. Stored as compact JSON; anything unreadable reads as empty.
import json

import machine

_rtc = machine.RTC()


def load():
    raw = _rtc.memory()
    if not raw:
        return {}
    try:
        d = json.loads(raw)
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def save(d):
    _rtc.memory(json.dumps(d).encode())
