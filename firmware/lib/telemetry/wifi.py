# Wi-Fi station: connect within a time limit, fast reconnect, RSSI, radio off for sleep.
#
# Fast reconnect: the access point's BSSID is kept in RTC memory (the caller's `cache` dict,
# saved by rtcstate) after the first connect of a power-on; later wakes connect to it directly,
# skipping the scan (espressif/arduino-esp32 #11139: < 200 ms with static IP + BSSID, against
# 1.5-2 s with a scan and DHCP). A cached BSSID that fails gives way to the slow path within
# the same time limit; it is replaced only if the slow path then reaches the AP.
import binascii
import time

import network

_POLL_MS = 50


def _wait(wlan, limit_ms):
    start = time.ticks_ms()
    while not wlan.isconnected():
        if time.ticks_diff(time.ticks_ms(), start) > limit_ms:
            return False
        time.sleep_ms(_POLL_MS)
    return True


def connect(wcfg, cache=None, learn=False, limit_ms=None):
    """Connect with the config's ssid/key/static address within timeout_s (or limit_ms when
    shorter: what is left of a battery node's budget). Returns the WLAN, or None (the radio
    is then off again). cache: a dict kept in RTC memory ("bssid");
    learn: find the AP's BSSID after connecting, for the next wakes (costs one scan)."""
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if wlan.isconnected():
        return wlan
    if wcfg.get("static"):
        wlan.ifconfig(tuple(wcfg["static"]))
    limit = wcfg["timeout_s"] * 1000  # for the whole attempt, both paths together
    if limit_ms is not None and limit_ms < limit:
        limit = max(0, limit_ms)
    start = time.ticks_ms()
    cached = cache.get("bssid") if cache is not None else None
    if cached:
        wlan.connect(wcfg["ssid"], wcfg["key"], bssid=binascii.unhexlify(cached))
        if _wait(wlan, limit // 2):
            return wlan
        wlan.disconnect()
    wlan.connect(wcfg["ssid"], wcfg["key"])
    if not _wait(wlan, limit - time.ticks_diff(time.ticks_ms(), start)):
        off()  # the AP is down or out of reach: the cached BSSID stays for the next wake
        return None
    if cached:
        learn = True  # the AP answered under another BSSID: it changed, learn the new one
    if learn and cache is not None:
        best = None
        for ssid, bssid, channel, rssi, sec, hidden in wlan.scan():
            if ssid == wcfg["ssid"].encode() and (best is None or rssi > best[1]):
                best = (bssid, rssi)
        if best is not None:
            cache["bssid"] = binascii.hexlify(best[0]).decode()
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
