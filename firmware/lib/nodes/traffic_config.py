# The traffic node's section of config.json ("node"), in the table format of
# telemetry/config.py. See docs/traffic.md.
SCHEMA = {
    "sensor": ("str", False, "qmc5883l", None, None, ("qmc5883l", "hmc5883l"), None),
    "rate_hz": ("int", False, 50, 10, 100, None, None),  # HMC5883L: at most 75 (continuous mode)
    "spacing_mm": ("int", False, 1000, 200, 10000, None, None),  # sensor A to sensor B along the lane
    "interval_s": ("int", False, 300, 60, 3600, None, None),
    # raw counts of the chip (QMC5883L +-8 G: 3000 LSB/G), on the smoothed deviation; the
    # defaults suit a sensor 1.8 m from the near lane's centre (tuned in the simulator's road
    # world: docs/traffic_detection.md, "The node's rules")
    "thr_on": ("int", False, 22, 5, 30000, None, None),
    "thr_off": ("int", False, 15, 2, 30000, None, None),
    "zone_mm": ("int", False, 5000, -5000, 20000, None, None),  # field's reach along the lane
    "min_gap_ms": ("int", False, 200, 20, 2000, None, None),  # a shorter quiet spell: one vehicle
    "rel_pct": ("int", False, 30, 0, 90, None, None),  # a vehicle also ends below this share of its peak
    "smooth": ("int", False, 2, 0, 4, None, None),  # the deviation of a mean over ~2**smooth samples
    "warm_s": ("int", False, 5, 0, 60, None, None),  # start-up: the baseline is the steadiest block of this long
}


def problem(n):
    if n["thr_off"] >= n["thr_on"]:
        return "thr_off': %d must be below thr_on %d" % (n["thr_off"], n["thr_on"])
    if n["sensor"] == "hmc5883l" and n["rate_hz"] > 75:
        return "rate_hz': the HMC5883L samples at most 75 Hz in continuous mode"
    return None
