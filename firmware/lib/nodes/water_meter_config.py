# The water-meter node's section of config.json ("node"), in the table format of
# telemetry/config.py. See docs/water_meter.md.
SCHEMA = {
    "ml_per_pulse": ("int", False, 1000, 1, 1000000, None, None),  # the meter's pulse value
    "direction": ("bool", False, True, None, None, None, None),  # a quadrature contact is wired
    # "hall": a Hall sensor's short pulses, so a level held past tamper_hold_s is a magnet; a
    # reed contact may rest closed for minutes at a trickle, so it says nothing there
    "sensor": ("str", False, "reed", None, None, ("reed", "hall"), None),
    "mode": ("str", False, "auto", None, None, ("auto", "irq", "counter"), None),
    "debounce_ms": ("int", False, 10, 1, 200, None, None),
    "save_every_pulses": ("int", False, 100, 1, 100000, None, None),  # the power-cut loss bound
    "save_every_s": ("int", False, 3600, 60, 86400, None, None),
    "tz_s": ("int", False, 0, -50400, 50400, None, None),  # local time for the night hours
    "leak_window_h": ("int", False, 24, 2, 168, None, None),
    "leak_zero_s": ("int", False, 3600, 300, 86400, None, None),
    "burst_l_h": ("int", False, 1000, 10, 100000, None, None),
    "burst_min": ("int", False, 30, 1, 1440, None, None),
    "backflow_l": ("int", False, 1, 1, 100000, None, None),
    "dry_days": ("int", False, 7, 1, 365, None, None),
    "tamper_hold_s": ("int", False, 60, 5, 3600, None, None),
}
