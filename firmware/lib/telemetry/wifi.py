# Wi-Fi station: connect within a time limit, report RSSI, switch the radio off for sleep.
import time

import network

_POLL_MS = 50


def connect(wcfg):
    """Connect with the config's ssid/key/static address. Returns the WLAN when connected,
    None when it did not connect within timeout_s (the radio is then off again)."""
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if wlan.isconnected():
        return wlan
    if wcfg.get("static"):
        wlan.ifconfig(tuple(wcfg["static"]))
    wlan.connect(wcfg["ssid"], wcfg["key"])
    start = time.ticks_ms()
    limit = wcfg["timeout_s"] * 1000
    while not wlan.isconnected():
        if time.ticks_diff(time.ticks_ms(), start) > limit:
            off()
            return None
        time.sleep_ms(_POLL_MS)
    return wlan


def rssi(wlan):
    try:
        return wlan.status("rssi")
    except Exception:
        return None


def off():
    wlan = network.WLAN(network.STA_IF)
    wlan.disconnect()
    wlan.active(False)
