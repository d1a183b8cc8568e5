# Water-meter node logic: pure functions and small state machines, no hardware. The node app
# calls observe() with its pulse counters on every wake, then interval_rollover() (telemetry),
# alarms() and tamper_step() (events). All memory is one small JSON-able dict that the app keeps
# in RTC memory (short keys, ints only): under 400 bytes as JSON.
# Units: ml, ml/h, seconds. Rules and their reasons: docs/water_meter_alarms.md.
# The alarms follow the info codes of the Kamstrup MULTICAL 21 / flowIQ 2101 (Technical
# Description 5512-897, "Info codes"): LEAK = not one continuous hour of zero flow in the last
# 24 h, cleared by an hour of zero flow; BURST = a large flow for 30 min; REVERSE; DRY /
# NO_CONSUMPTION; TAMPER.
#
# State keys. t: the last observation (epoch s); every other time is an *age*, seconds before t,
# so a clock jump changes nothing stored (observe() adds the elapsed time to the ages).
#   pf/pr the fwd/rev counters at t; q forward flow (ml/h) at t;
#   tl age of the last observation with net forward pulses (of the first observation until then);
#   lz age of the end of the latest zero-flow period of >= leak_zero_s (first observation until then);
#   af/ar ml in the open interval (the one holding t); ci completed intervals not yet rolled
#   over, flat: [start, fwd_ml, rev_ml, fwd_ml, rev_ml, ...] for consecutive intervals;
#   hm ml in the open local hour (-1: partly unobserved); nm smallest hourly ml of the latest night;
#   bs/bp age and peak of the current run of flow above burst_ml_h;
#   rw net reverse ml per half of backflow_window_s (two closed halves, then the open one);
#   mh age of the start of the magnet input's active level; tc age of tamper-clean-since.
#   Raised alarms: lr (leak: lz when raised), br (burst: its run's age), bb (backflow: 1),
#   dr (no_consumption: tl when raised), tr (tamper: 1). Keys are absent when not in use.

ALERT = "alarm"  # the event levels of schemas/event.json
WARN = "warning"
INFO = "info"

DEFAULTS = {
    "ml_per_pulse": 1000,        # the meter's pulse value (1 L/pulse: a common reed output)
    "interval_s": 900,           # consumption intervals, aligned to multiples of this (epoch time)
    "max_gap_s": 3600,           # a longer (or negative) step between observations: a clock jump
    "tz_s": 0,                   # local time = UTC + tz_s (for the night hours)
    "night_from_h": 0,           # night = local hours [from, to); may wrap past midnight
    "night_to_h": 5,
    "leak_window_s": 86400,      # leak: no zero-flow period of leak_zero_s inside this window
    "leak_zero_s": 3600,
    "burst_ml_h": 1000000,       # burst: flow above this (1 m3/h: 40 % of a Q3 of 2.5 m3/h)...
    "burst_s": 1800,             # ...for this long
    "burst_hyst_pct": 20,        # cleared below burst_ml_h less this share
    "backflow_ml": 1000,         # backflow: reverse volume above this...
    "backflow_window_s": 3600,   # ...within this window
    "dry_days": 7,               # no_consumption: no forward pulse for this many days
    "tamper_hold_s": 60,         # magnet: active level, no counted edge, for this long
    "tamper_clear_s": 600,       # tamper cleared once every input has been normal this long
}

_PEND_N = 4              # completed intervals kept for interval_rollover (then merged)
_RING_N = 3              # backflow slots: two halves of the window and the open one
_TICKS_PERIOD = 1 << 30  # time.ticks_ms() wraps here on the ESP32 (MicroPython time.ticks_diff)
_TICKS_HALF = 1 << 29
_AGE_KEYS = ("tl", "lz", "bs", "mh", "tc", "lr", "br", "dr")


def _cfg(cfg, key):
    v = cfg.get(key) if cfg else None
    return DEFAULTS[key] if v is None else v


# ---- flow ------------------------------------------------------------------------------------
def flow_from_intervals(ticks_list, ml_per_pulse):
    """Flow in ml/h from the time.ticks_ms() stamps of consecutive pulses, oldest first: the
    pulse intervals between the first and the last stamp over the time they took. Wrap-safe
    (ticks wrap at 2**30 ms); a non-increasing pair (out of order, a duplicate) is skipped.
    None with fewer than two usable stamps."""
    n = 0
    total = 0
    for i in range(1, len(ticks_list)):
        d = ((ticks_list[i] - ticks_list[i - 1] + _TICKS_HALF) & (_TICKS_PERIOD - 1)) - _TICKS_HALF
        if d > 0:
            n += 1
            total += d
    if n == 0:
        return None
    return n * ml_per_pulse * 3600000 // total


def flow_ml_h(state):
    """Forward flow in ml/h as of the last observation (0 before the first one)."""
    return state.get("q", 0)


# ---- observations ----------------------------------------------------------------------------
def observe(state, cfg, now_s, fwd_pulses, rev_pulses, flow=None):
    """Apply one reading of the cumulative pulse counters, taken at now_s (state updated in
    place). The first call only sets the baseline: a node whose counters start at 0 at power-on
    makes it at boot with (0, 0). A counter lower than before restarted from 0: its value is
    what came since. flow: ml/h from flow_from_intervals() over this window's pulses when the
    node has their times (None: the flow comes from the counts)."""
    t = state.get("t")
    if t is None:
        state["t"] = now_s
        state["pf"] = fwd_pulses
        state["pr"] = rev_pulses
        state["q"] = 0
        state["tl"] = 0
        state["lz"] = 0  # no evidence from before: the benefit of the doubt (docs)
        state["af"] = 0
        state["ar"] = 0
        state["hm"] = -1
        return
    ml = _cfg(cfg, "ml_per_pulse")
    df = fwd_pulses - state.get("pf", 0)
    if df < 0:
        df = fwd_pulses
    dr = rev_pulses - state.get("pr", 0)
    if dr < 0:
        dr = rev_pulses
    state["pf"] = fwd_pulses
    state["pr"] = rev_pulses
    if df > 0 or dr > 0:
        state.pop("mh", None)  # an edge was counted: whatever is on the sensor moved
    # The rules see the net movement of the window: a pointer magnet wobbling on the edge of
    # the reed (water hammer, a pump) counts forward and back in turn, and is no flow.
    # The interval volumes keep both counts as they are.
    nf = df - dr if df > dr else 0
    nr = dr - df if dr > df else 0
    dt = now_s - t
    if dt < 0 or dt > _cfg(cfg, "max_gap_s"):
        # A clock jump, or a gap without evidence: no time is taken as passed (the ages stay),
        # and the volume goes to the interval in progress at now_s, so totals still add up.
        _rebase(state, cfg, t, now_s, df * ml, dr * ml, nr * ml)
        dt = 0
    else:
        _account(state, cfg, t, now_s, df * ml, dr * ml)
        _ring(state, cfg, t, now_s, nr * ml)
        for k in _AGE_KEYS:
            if k in state:
                state[k] += dt
    state["t"] = now_s
    _flow(state, cfg, dt, nf, ml, flow)


def _flow(state, cfg, dt, df, ml, flow):
    el = state.get("tl", 0)  # since the last forward pulse was seen
    q = state.get("q", 0)
    if df > 0:
        if flow is not None:
            q = flow
        else:
            # One pulse: the interval since the previous pulse was seen. Several: their count
            # over this window (they all fell inside it).
            span = dt if df > 1 else el
            if span > 0:
                q = df * ml * 3600 // span
        state["tl"] = 0
    elif el >= _cfg(cfg, "leak_zero_s"):
        q = 0
        state["lz"] = 0  # a zero-flow period of leak_zero_s that lasts until now
    elif el > 0:
        # The fastest flow consistent with no pulse for el: it holds within the last pulse
        # interval, then falls as 1/el.
        lim = ml * 3600 // el
        q = min(q, lim)
    state["q"] = q
    if q > _cfg(cfg, "burst_ml_h"):
        if "bs" not in state:
            state["bs"] = 0
            state["bp"] = q
        elif q > state.get("bp", 0):
            state["bp"] = q
    else:
        state.pop("bs", None)
        state.pop("bp", None)


def _account(state, cfg, t, now, vf, vr):
    """Credit vf/vr ml, seen over (t, now], to the intervals and local hours it spans, in
    proportion to time (cumulative floors: the parts add up exactly)."""
    iv = _cfg(cfg, "interval_s")
    tz = _cfg(cfg, "tz_s")
    dt = now - t
    a = t
    cf = cr = 0
    while True:
        ib = a - a % iv + iv
        hb = a - (a + tz) % 3600 + 3600
        e = min(hb, ib)
        e = min(e, now)
        if dt > 0:
            nf = vf * (e - t) // dt
            nr = vr * (e - t) // dt
        else:
            nf = vf
            nr = vr
        state["af"] = state.get("af", 0) + nf - cf
        state["ar"] = state.get("ar", 0) + nr - cr
        hm = state.get("hm", -1)
        if hm >= 0:
            state["hm"] = hm + nf - cf
        cf = nf
        cr = nr
        if e == ib:
            _close_interval(state, cfg, ib - iv)
        if e == hb:
            _close_hour(state, cfg, hb - 3600)
        if e >= now:
            return
        a = e


def _close_interval(state, cfg, start):
    f = state.get("af", 0)
    r = state.get("ar", 0)
    state["af"] = 0
    state["ar"] = 0
    ci = state.get("ci")
    if not ci:
        state["ci"] = [start, f, r]
        return
    n = (len(ci) - 1) // 2
    if n < _PEND_N and start == ci[0] + n * _cfg(cfg, "interval_s"):
        ci.append(f)
        ci.append(r)
    else:
        # interval_rollover() was not called for a while (or the clock jumped): the volume
        # joins the newest entry rather than being lost; that entry then covers more time.
        ci[-2] += f
        ci[-1] += r


def _is_night(cfg, hour):
    a = _cfg(cfg, "night_from_h")
    b = _cfg(cfg, "night_to_h")
    if a < b:
        return a <= hour < b
    if a > b:
        return hour >= a or hour < b
    return False


def _close_hour(state, cfg, start):
    hm = state.get("hm", -1)
    state["hm"] = 0
    hour = (start + _cfg(cfg, "tz_s")) // 3600 % 24
    if not _is_night(cfg, hour):
        return
    first = hour == _cfg(cfg, "night_from_h")  # a new night: last night's minimum is replaced
    if hm < 0:  # partly unobserved: not a measured hour
        if first:
            state.pop("nm", None)
    elif first or hm < state.get("nm", hm + 1):
        state["nm"] = hm


def _ring(state, cfg, t, now, vr):
    """Net reverse volume per half of the backflow window; vr joins the slot of now."""
    sl = _cfg(cfg, "backflow_window_s") // 2
    sl = max(sl, 1)
    rw = state.get("rw")
    if rw is not None:
        k = now // sl - t // sl
        if k >= _RING_N:
            rw = None
        elif k > 0:
            rw = rw[k:] + [0] * k
    if vr > 0:
        if rw is None:
            rw = [0] * _RING_N
        rw[-1] += vr
    if rw is None or not any(rw):
        state.pop("rw", None)
    else:
        state["rw"] = rw


def _rebase(state, cfg, t, now, vf, vr, net_r):
    iv = _cfg(cfg, "interval_s")
    if t - t % iv != now - now % iv:
        _close_interval(state, cfg, t - t % iv)  # what was seen of it; the rest is unknown
    state["af"] = state.get("af", 0) + vf
    state["ar"] = state.get("ar", 0) + vr
    tz = _cfg(cfg, "tz_s")
    hm = state.get("hm", -1)
    if hm >= 0 and (t + tz) // 3600 == (now + tz) // 3600:
        state["hm"] = hm + vf
    else:
        state["hm"] = -1
    if net_r > 0:
        rw = state.get("rw") or [0] * _RING_N
        rw[-1] += net_r
        state["rw"] = rw


# ---- consumption intervals -------------------------------------------------------------------
def interval_rollover(state, cfg, now_s):
    """The completed consumption intervals not returned yet, oldest first:
    [(start_s, fwd_ml, rev_ml)], start_s a multiple of interval_s. An interval is complete once
    an observation at or after its end was made; one ending after now_s (the clock went back)
    waits. Call it after every observe()."""
    ci = state.get("ci")
    if not ci:
        state.pop("ci", None)
        return []
    iv = _cfg(cfg, "interval_s")
    out = []
    s = ci[0]
    i = 1
    while i < len(ci) and s + iv <= now_s:
        out.append((s, ci[i], ci[i + 1]))
        s += iv
        i += 2
    if i < len(ci):
        state["ci"] = [s] + ci[i:]
    else:
        state.pop("ci")
    return out


# ---- alarms ----------------------------------------------------------------------------------
def alarms(state, cfg, now_s):
    """Raise and clear the flow alarms on the evidence up to the last observe() (normally made
    at now_s: a later now_s adds no evidence). Returns [(name, level, data)]: leak, burst,
    backflow (alarm) and no_consumption (warning), each raised once and then cleared by its
    <name>_cleared (info) before it can be raised again."""
    t = state.get("t")
    if t is None:
        return []
    if now_s < t:
        return []  # the clock went back since the observation: decide at the next one
    ev = []  # type: list
    q = state.get("q", 0)
    _leak_rule(state, cfg, t, q, ev)
    _burst_rule(state, cfg, q, ev)
    _backflow_rule(state, cfg, ev)
    _dry_rule(state, cfg, t, ev)
    return ev


def _leak_rule(state, cfg, t, q, ev):
    lz = state.get("lz", 0)
    if "lr" in state:
        if lz < state["lr"]:  # a zero-flow period of leak_zero_s since
            ev.append(("leak_cleared", INFO, {"since_ts": t - state.pop("lr"), "flow_ml_h": q}))
        return
    w = _cfg(cfg, "leak_window_s")
    # A zero period that ended lz ago lies inside the last w while lz <= w - leak_zero_s.
    if lz > w - _cfg(cfg, "leak_zero_s"):
        state["lr"] = lz
        ev.append(("leak", ALERT, {"flow_ml_h": q, "mnf_ml_h": state.get("nm"), "window_s": w,
                                   "since_ts": t - lz}))


def _burst_rule(state, cfg, q, ev):
    thr = _cfg(cfg, "burst_ml_h")
    if "br" in state:
        if q < thr - thr * _cfg(cfg, "burst_hyst_pct") // 100:
            ev.append(("burst_cleared", INFO, {"flow_ml_h": q, "duration_s": state.pop("br")}))
        return
    bs = state.get("bs")
    if bs is not None and bs >= _cfg(cfg, "burst_s"):
        state["br"] = bs
        ev.append(("burst", ALERT, {"peak_ml_h": state.get("bp", q), "duration_s": bs,
                                    "flow_ml_h": q}))


def _backflow_rule(state, cfg, ev):
    rw = state.get("rw")
    s = sum(rw) if rw else 0
    w = _cfg(cfg, "backflow_window_s")
    if state.get("bb"):
        if s == 0:
            state.pop("bb")
            ev.append(("backflow_cleared", INFO, {"window_s": w}))
    elif s > _cfg(cfg, "backflow_ml"):
        state["bb"] = 1
        ev.append(("backflow", ALERT, {"rev_ml": s, "window_s": w}))


def _dry_rule(state, cfg, t, ev):
    tl = state.get("tl", 0)
    if "dr" in state:
        if tl < state["dr"]:  # a forward pulse since
            since = state.pop("dr")
            ev.append(("no_consumption_cleared", INFO, {"since_ts": t - since, "idle_s": since - tl}))
        return
    if tl >= _cfg(cfg, "dry_days") * 86400:
        state["dr"] = tl
        ev.append(("no_consumption", WARN, {"since_ts": t - tl, "idle_s": tl}))


# ---- tamper ----------------------------------------------------------------------------------
def tamper_step(state, cfg, magnet_held, wire_cut, now_s=None):
    """Tamper evidence from the inputs at this wake; call it after observe(). magnet_held: the
    magnet-sensing input reads its active level now. With no edge counted in between (observe()
    restarts the hold on any counted pulse) for tamper_hold_s, it is a magnet on the sensor.
    wire_cut: the input reads the level only a cut or unplugged cable gives (the docs say
    which). now_s: defaults to the last observation's time; nothing happens before the first. One tamper (alarm) per episode;
    tamper_cleared (info) once every input has read normal for tamper_clear_s.
    Returns [(name, level, data)]."""
    t = state.get("t")
    if t is None:
        return []  # before the first observe(): no time base for the ages yet
    now = t if now_s is None else now_s
    held = 0
    if magnet_held:
        mh = state.get("mh")
        if mh is None or now < t - mh:
            state["mh"] = t - now
        else:
            held = now - t + mh
    else:
        state.pop("mh", None)
    magnet = held >= _cfg(cfg, "tamper_hold_s") if magnet_held else False
    cut = bool(wire_cut)
    if state.get("tr"):
        if magnet or cut:
            state.pop("tc", None)
            return []
        tc = state.get("tc")
        if tc is None or now < t - tc:
            state["tc"] = tc = t - now
        clean = now - t + tc
        if clean >= _cfg(cfg, "tamper_clear_s"):
            state.pop("tr")
            state.pop("tc")
            return [("tamper_cleared", INFO, {"clean_s": clean})]
        return []
    if magnet or cut:
        state["tr"] = 1
        return [("tamper", ALERT, {"magnet": magnet, "wire_cut": cut, "held_s": held})]
    return []
