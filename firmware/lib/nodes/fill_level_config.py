# The fill-level node's section of config.json ("node"), in the table format of
# telemetry/config.py. Distances in mm from the sensor's face; see docs/fill_level.md.
SCHEMA = {
    "sensor": ("str", False, "jsn-sr04t", None, None, ("jsn-sr04t", "hc-sr04", "vl53l1x"), None),
    "empty_mm": ("int", False, 1100, 100, 6000, None, None),  # sensor to the bin's floor
    "full_mm": ("int", False, 300, 20, 5000, None, None),  # sensor to the surface at "full"
    "pings": ("int", False, 7, 3, 15, None, None),
    "full_pct": ("int", False, 80, 10, 100, None, None),
    "full_hyst_pct": ("int", False, 10, 1, 50, None, None),
    "emptied_drop_pct": ("int", False, 30, 5, 100, None, None),
    "fire_c": ("int", False, 60, 30, 120, None, None),
    "fire_rate_c10_min": ("int", False, 10, 1, 500, None, None),  # tenths of °C per minute
    "fault_after": ("int", False, 3, 1, 50, None, None),
    "min_sample_s": ("int", False, 300, 60, 86400, None, None),
}


def problem(n):
    """What the table cannot say, as "<field>': <why>" (config.validate words the rest)."""
    if n["full_mm"] >= n["empty_mm"]:
        return "full_mm': %d is not nearer the sensor than the floor at empty_mm %d" % (n["full_mm"], n["empty_mm"])
    return None
