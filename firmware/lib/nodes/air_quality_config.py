# The air-quality node's section of config.json ("node"), in the table format of
# telemetry/config.py. See docs/air_quality.md.
SCHEMA = {
    "pm_sensor": ("str", False, "pms5003", None, None, ("pms5003", "sds011"), None),
    "warmup_s": ("int", False, 30, 30, 45, None, None),  # datasheets: >= 30 s; within the 60 s watchdog
    "readings": ("int", False, 5, 1, 30, None, None),  # averaged per measurement cycle
    "rh_limit": ("int", False, 85, 50, 100, None, None),  # readings above are flagged "wet"
    "correction": ("str", False, "none", None, None, ("none", "barkjohn2021", "kohler"), None),
    "kappa_x100": ("int", False, None, 1, 100, None, None),  # for "kohler" only
    "index": ("str", False, "aqi", None, None, ("aqi", "eaqi"), None),  # the one that raises events
    "alert_category": ("int", False, 3, 1, 5, None, None),
    "recover_hours": ("int", False, 2, 1, 24, None, None),
    "altitude_m": ("int", False, 0, -500, 5000, None, None),
}


def problem(n):
    if n["correction"] == "kohler" and n["kappa_x100"] is None:
        return "kappa_x100': the kohler correction needs the particles' kappa"
    return None
