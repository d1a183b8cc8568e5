# Fill-level node logic: pure functions and small state machines, no hardware. The node app
# calls them each wake. All state lives in one small JSON-able dict that the app keeps in RTC
# memory (short keys, ints, a bounded history): well under 400 bytes as JSON.
# Units: mm, percent, seconds, tenths of °C. Rules and their reasons: docs/fill_level_logic.md.
# Terms follow LwM2M object 3435 "Filling level" (OMA LwM2M registry, 3435.xml): high threshold,
# container full, average filling speed (% per day), forecast full date.
#
# State keys: f last good fill, t last step time, c last temperature (c10), bf bin_full raised,
# fr fire_risk raised, ne emptyings seen, h0/h/hs fill history (base time, [[t - h0, fill]],
# spacing), fc consecutive failed samples, sf sensor_fault raised.

_RESTART_DROP_PCT = 5  # a fall this big restarts the forecast's history
ALERT = "alarm"  # the event levels of schemas/event.json
WARN = "warning"
INFO = "info"

DEFAULTS = {
    "full_pct": 80,             # bin_full at or above this fill (LwM2M 3435 "high threshold")
    "full_hyst_pct": 10,        # re-armed only below full_pct - this
    "emptied_drop_pct": 30,     # a fall this big between two good samples is a collection...
    "emptied_min_pct": 40,      # ...when the bin was at least this full before
    "fire_c": 60,               # fire_risk at or above this air temperature (°C)
    "fire_rate_c_per_min": 1.0,  # ...or rising at least this fast between samples
    "fire_rise_min_c": 3,       # ...by at least this much (one noisy step is not a fire)
    "fire_hyst_c": 10,          # re-armed below fire_c - this, and not rising fast
    "fault_after": 3,           # consecutive failed samples before sensor_fault
    "sample_s": 3600,           # base sampling interval
    "fast_pct": 60,             # above this fill: half the interval
    "min_sample_s": 300,        # the shortened interval never goes below this
    "hist_s": 900,              # initial spacing of the fill history points
}

_HIST_N = 8             # history points kept (compacted by halving)
_FIT_MIN_N = 3          # points needed for a fill rate
_FIT_MIN_SPAN_S = 3600  # and the time they must span
_NEAR_FULL_PCT = 5      # within this of full_pct: a quarter of the interval
_FAULT_CAP = 9999       # the failed-sample counter stops here (bounded state)


def _cfg(cfg, key):
    v = cfg.get(key) if cfg else None
    return DEFAULTS[key] if v is None else v


# ---- one burst of pings -> a distance ------------------------------------------------------
def _median(s):
    """Median of a sorted, non-empty list (the floor of the mean of the two middle values)."""
    n = len(s)
    return (s[(n - 1) // 2] + s[n // 2]) // 2


def robust(pings, lo_mm, hi_mm, max_spread_mm=50):
    """(median_mm, quality_pct) of the echoes that agree, or None when too few agree.

    pings: distances in mm, None for a failed ping. Values outside [lo_mm, hi_mm] are dropped.
    The pings agreeing are those within max_spread_mm / 2 of the upper median of the rest; at
    least 3 of them and at least half of all pings must agree. quality = agreeing share of all
    pings. Provably: if more than half of the pings lie in one band no wider than
    max_spread_mm / 2, the result lies in that band."""
    n = len(pings)
    vals = []
    for p in pings:
        if isinstance(p, (int, float)) and lo_mm <= p <= hi_mm:  # NaN fails the comparison
            vals.append(p)
    if not vals:
        return None
    vals.sort()
    # Upper median: inside the majority band if there is one; on an even split, the farther
    # cluster wins (spurious echoes - side walls, the lid, a bag over the rim - are shorter).
    mid = vals[len(vals) // 2]
    agree = [v for v in vals if 2 * abs(v - mid) <= max_spread_mm]
    k = len(agree)
    if k < 3 or 2 * k < n:
        return None
    return int(_median(agree)), k * 100 // n


# ---- distance -> fill ----------------------------------------------------------------------
def fill_pct(distance_mm, empty_mm, full_mm):
    """Fill in % (0..100, rounded, clamped) from the distance sensor-to-surface. empty_mm:
    sensor to the bin floor; full_mm: sensor to the surface of a full bin. The sensor looks
    down, so 0 <= full_mm < empty_mm; anything else raises ValueError."""
    if not 0 <= full_mm < empty_mm:
        raise ValueError("fill calibration: need 0 <= full_mm < empty_mm (the sensor looks down, a"
                         " fuller bin is nearer); got full_mm=%r empty_mm=%r" % (full_mm, empty_mm))
    span = empty_mm - full_mm
    p = int(((empty_mm - distance_mm) * 200 + span) // (2 * span))
    return 0 if p < 0 else 100 if p > 100 else p


# ---- events from one sample ----------------------------------------------------------------
def step(state, cfg, now_s, fill, temp_c10):
    """Apply one sample to state (updated in place); returns [(name, level, data)].
    fill: int % or None (no distance this time); temp_c10: tenths of °C or None."""
    ev = []  # type: list
    last_t = state.get("t")
    dt = None if last_t is None else now_s - last_t
    state["t"] = now_s
    if fill is not None:
        _fill_rules(state, cfg, now_s, fill, ev)
    _fire_rules(state, cfg, dt, temp_c10, ev)
    return ev


def _fill_rules(state, cfg, now_s, fill, ev):
    last = state.get("f")
    state["f"] = fill
    drop = 0 if last is None else last - fill
    if drop >= _cfg(cfg, "emptied_drop_pct") and last >= _cfg(cfg, "emptied_min_pct"):
        state["ne"] = state.get("ne", 0) + 1
        ev.append(("bin_emptied", INFO, {"from": last, "to": fill}))
    if drop >= _RESTART_DROP_PCT:
        # More than settling explains (a collection, counted or too small to count, or waste
        # taken out): a straight line cannot follow it, the history starts again.
        _hist_reset(state, cfg, now_s, fill)
    else:
        _hist_add(state, cfg, now_s, fill)
    full = _cfg(cfg, "full_pct")
    if state.get("bf"):
        if fill < full - _cfg(cfg, "full_hyst_pct"):
            state["bf"] = 0
    elif fill >= full:
        state["bf"] = 1
        ev.append(("bin_full", ALERT, {"fill": fill}))


def _fire_rules(state, cfg, dt, temp, ev):
    last = state.get("c")
    if temp is None:
        state.pop("c", None)  # the rate rule compares consecutive samples only
        return
    state["c"] = temp
    lim = _cfg(cfg, "fire_c") * 10
    rule = "abs" if temp >= lim else None
    data = {"c10": temp}
    if last is not None and dt is not None and dt > 0:
        rise = temp - last
        per_min = int(_cfg(cfg, "fire_rate_c_per_min") * 10 + 0.5)  # tenths of °C per minute
        if rise >= _cfg(cfg, "fire_rise_min_c") * 10 and rise * 60 >= per_min * dt:
            rule = rule or "rate"
            data["c10_min"] = rise * 60 // dt
    if state.get("fr"):
        if rule is None and temp < lim - _cfg(cfg, "fire_hyst_c") * 10:
            state["fr"] = 0
    elif rule is not None:
        state["fr"] = 1
        data["rule"] = rule
        ev.append(("fire_risk", ALERT, data))


def fault_step(state, cfg, ok):
    """Count failed samples (ok False: no consistent echo). fault_after in a row raise one
    sensor_fault; the next good sample raises sensor_ok. Returns [(name, level, data)]."""
    n = state.get("fc", 0)
    if ok:
        ev = [("sensor_ok", INFO, {"n": n})] if state.get("sf") else []
        state["fc"] = 0
        state["sf"] = 0
        return ev
    if n < _FAULT_CAP:
        n += 1
    state["fc"] = n
    if n >= _cfg(cfg, "fault_after") and not state.get("sf"):
        state["sf"] = 1
        return [("sensor_fault", WARN, {"n": n})]
    return []


# ---- fill history and forecast -------------------------------------------------------------
def _hist_reset(state, cfg, now_s, fill):
    state["h0"] = now_s
    state["h"] = [[0, fill]]
    state["hs"] = _cfg(cfg, "hist_s")


def _hist_add(state, cfg, now_s, fill):
    h = state.get("h")
    h0 = state.get("h0")
    if not h or h0 is None or now_s - h0 < h[-1][0]:  # nothing yet, or the clock went back
        _hist_reset(state, cfg, now_s, fill)
        return
    t = now_s - h0
    # The newest point always holds the latest sample; it becomes a kept point once it is
    # hs after the one before it.
    if len(h) >= 2 and t - h[-2][0] < state.get("hs", 0):
        h[-1] = [t, fill]
    else:
        h.append([t, fill])
    if len(h) > _HIST_N:
        # Keep every other point, the first (the cycle's start) and the newest among them, and
        # double the spacing: the history always spans the whole cycle in <= 8 points.
        state["h"] = h[(len(h) - 1) % 2::2]
        state["hs"] = state.get("hs", 0) * 2


def _fit(state):
    """Least squares over the history in exact integers: (sxy, sxx), both scaled by n
    (slope = sxy / sxx % per second), or None with too few points or too short a span."""
    h = state.get("h")
    if not h or len(h) < _FIT_MIN_N or h[-1][0] - h[0][0] < _FIT_MIN_SPAN_S:
        return None
    n = len(h)
    st = sf = stt = stf = 0
    for t, f in h:
        st += t
        sf += f
        stt += t * t
        stf += t * f
    sxx = n * stt - st * st
    if sxx <= 0:
        return None
    return n * stf - st * sf, sxx


def rate_pct_per_day(state):
    """Fill speed since the last emptying, % per day (one decimal; negative when settling),
    or None with too little history (LwM2M 3435 "average filling speed")."""
    r = _fit(state)
    if r is None:
        return None
    sxy, sxx = r
    return (sxy * 1728000 + sxx) // (2 * sxx) / 10  # rounded tenths: 2 * 864000


def eta_full_s(state, now_s, full_pct):
    """Seconds from now_s until the fill reaches full_pct at the fitted rate, counted from the
    latest sample; 0 when already there (or overdue by the trend); None when not rising or
    with too little history."""
    h = state.get("h")
    h0 = state.get("h0")
    if not h or h0 is None:
        return None
    t_last, f_last = h[-1]
    if f_last >= full_pct:
        return 0
    r = _fit(state)
    if r is None or r[0] <= 0:
        return None
    sxy, sxx = r
    eta = (full_pct - f_last) * sxx // sxy - (now_s - h0 - t_last)
    return eta if eta > 0 else 0


# ---- when to wake next ---------------------------------------------------------------------
def next_sample_s(cfg, fill):
    """The sampling interval: sample_s, halved above fast_pct, quartered from full_pct - 5;
    shortened never below min_sample_s (a sample_s set below that floor is used as is)."""
    base = _cfg(cfg, "sample_s")
    s = base
    if fill is not None:
        if fill >= _cfg(cfg, "full_pct") - _NEAR_FULL_PCT:
            s = base // 4
        elif fill > _cfg(cfg, "fast_pct"):
            s = base // 2
    floor = _cfg(cfg, "min_sample_s")
    return max(s, min(base, floor))
