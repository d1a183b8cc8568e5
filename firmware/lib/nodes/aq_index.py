# Air-quality indices: pure functions and one small state machine, no hardware, no imports.
# Integer arithmetic throughout (floats are 32-bit on the board): every result is exact.
# Choices and tables: docs/aq_index.md.
#
# Sources (facts, not code):
# - US EPA, "Technical Assistance Document for the Reporting of Daily Air Quality - the Air
#   Quality Index (AQI)", EPA-454/B-24-002, May 2024 (Table 6, after the PM2.5 NAAQS revision of
#   7 Feb 2024; in force on AirNow from 6 May 2024).
# - AirNow Tech forum, "The AQI Equation (2024 - Valid Beginning May 6th, 2024)": truncate PM2.5
#   to 0.1 ug/m3 and PM10 to 1 ug/m3, interpolate, round the AQI to the nearest integer; "AQI
#   values above 500 are considered Beyond the AQI. Follow recommendations for the Hazardous
#   category."
# - EPA "PM NowCast" fact sheet and AirNow Tech forum "The NowCast for PM2.5 and PM10": the only
#   completeness rule is 2 of the last 3 hours valid; raw hourly values in, NowCast truncated to
#   0.1 ug/m3 (PM2.5) / 1 ug/m3 (PM10).
# - EEA European Air Quality Index, 2024 revision of the bands (ETC HE Report 2024/17), hourly
#   concentrations for all pollutants.
# - Barkjohn, Gantt & Clements 2021, AMT 14, 4617-4637 (US-wide PurpleAir correction).
# - Crilley et al. 2018, AMT 11, 709-720 (OPC-N2: positive artefact above 85 % RH; a
#   kappa-Koehler growth correction).

# ---- US EPA AQI (2024) ---------------------------------------------------------------------
# Rows (C_lo, C_hi, I_lo, I_hi); concentrations after the EPA truncation, in the unit of the
# function's input: tenths of ug/m3 for PM2.5, whole ug/m3 for PM10 (TAD 2024 Table 6).
_PM25 = ((0, 90, 0, 50), (91, 354, 51, 100), (355, 554, 101, 150),
         (555, 1254, 151, 200), (1255, 2254, 201, 300), (2255, 3254, 301, 500))
_PM10 = ((0, 54, 0, 50), (55, 154, 51, 100), (155, 254, 101, 150),
         (255, 354, 151, 200), (355, 424, 201, 300), (425, 604, 301, 500))
AQI_MAX = 500  # above: "Beyond the AQI" (still the Hazardous category)
AQI_NAMES = ("Good", "Moderate", "Unhealthy for Sensitive Groups", "Unhealthy",
             "Very Unhealthy", "Hazardous")
_AQI_TOP = (50, 100, 150, 200, 300)  # highest AQI of categories 0..4


def _int(v):
    """int(v) (truncation toward zero), or None for None, NaN and infinities."""
    if v is None or v != v:
        return None
    try:
        return int(v)
    except (OverflowError, ValueError):
        return None


def _trunc(c):
    """The EPA truncation of a non-negative reading to the input's unit; None for None/NaN.
    A negative reading (a sensor offset) counts as 0."""
    c = _int(c)
    return None if c is None else c if c > 0 else 0


def _interp(table, c, cap):
    row = table[-1]
    for r in table:
        if c <= r[1]:
            row = r
            break
    lo, hi, ilo, ihi = row
    # Ip = (IHi - ILo) / (BPHi - BPLo) * (Cp - BPLo) + ILo, rounded half up in integers. Above
    # the top breakpoint the last segment goes on (the value keeps growing with the smoke).
    d = hi - lo
    aqi = ilo + (2 * (ihi - ilo) * (c - lo) + d) // (2 * d)
    return AQI_MAX if cap and aqi > AQI_MAX else aqi


def aqi_pm25(conc_x10, cap=False):
    """US EPA AQI (2024) of a PM2.5 concentration in tenths of ug/m3 (24-h mean or NowCast).
    Fractions of a tenth are truncated (EPA), negatives count as 0. Above 325.4 ug/m3 the value
    is extrapolated on the last segment ("Beyond the AQI") unless cap. None/NaN -> None."""
    c = _trunc(conc_x10)
    return None if c is None else _interp(_PM25, c, cap)


def aqi_pm10(conc, cap=False):
    """US EPA AQI (2024) of a PM10 concentration in ug/m3, truncated to 1 ug/m3 (EPA). Above
    604 ug/m3 extrapolated unless cap. None/NaN -> None."""
    c = _trunc(conc)
    return None if c is None else _interp(_PM10, c, cap)


def aqi_category(aqi):
    """(index 0..5, name) of an AQI value: 0-50 Good ... 301 and above Hazardous (including
    "Beyond the AQI"). None -> None."""
    if aqi is None:
        return None
    i = 0
    while i < 5 and aqi > _AQI_TOP[i]:
        i += 1
    return i, AQI_NAMES[i]


# ---- EPA NowCast for PM --------------------------------------------------------------------
_NC_HOURS = 12


def nowcast(hourly):
    """EPA NowCast for PM from hourly means, most recent first (hourly[0] = the hour just
    ended), None for a missing hour; only the first 12 are used. Values are ints in any unit
    (tenths of ug/m3 for PM2.5, ug/m3 for PM10; floats are truncated first); the result is in
    the same unit, truncated, so it is the EPA's truncated NowCast. None unless at least 2 of the 3 most recent hours are
    present (the EPA's only completeness rule).
    w = cmin / cmax over the present hours, at least 1/2; NowCast = sum(w^i c_i) / sum(w^i), i
    in hours ago, missing hours left out of both sums. Exact rational arithmetic in ints."""
    h = []
    for i in range(min(len(hourly), _NC_HOURS)):
        v = _int(hourly[i])
        if v is not None:
            h.append((i, v if v > 0 else 0))
    if sum(1 for i, _ in h if i < 3) < 2:
        return None
    cmin = min(v for _, v in h)
    cmax = max(v for _, v in h)
    if cmax == 0:
        return 0
    n = _NC_HOURS - 1
    num = den = 0
    if 2 * cmin <= cmax:  # w <= 1/2: use 1/2, weights scaled by 2^11
        for i, v in h:
            wt = 1 << (n - i)
            num += wt * v
            den += wt
    else:  # w = cmin / cmax, weights scaled by cmax^11
        for i, v in h:
            wt = cmin ** i * cmax ** (n - i)
            num += wt * v
            den += wt
    return num // den


# ---- European Air Quality Index (EEA, 2024 bands) -------------------------------------------
# Upper bounds of Good, Fair, Moderate, Poor, Very poor in ug/m3 (1-h values); above the last:
# Extremely poor. A value equal to a bound belongs to the lower band (see docs/aq_index.md).
EAQI_BOUNDS = {
    "pm25": (5, 15, 50, 90, 140),
    "pm10": (15, 45, 120, 195, 270),
    "no2": (10, 25, 60, 100, 150),
    "o3": (60, 100, 120, 160, 180),
    "so2": (20, 40, 125, 190, 275),
}
EAQI_NAMES = ("Good", "Fair", "Moderate", "Poor", "Very poor", "Extremely poor")


def eaqi_level(pollutant, conc, per=1):
    """EAQI band 0..5 of one pollutant ("pm25", "pm10", "no2", "o3", "so2"); conc in 1/per
    ug/m3 (per=10: tenths). None/NaN -> None. Exact for ints; for floats the comparison with
    the whole-number bounds is exact too."""
    if conc is None or conc != conc:
        return None
    bounds = EAQI_BOUNDS[pollutant]
    for i in range(5):
        if conc <= bounds[i] * per:
            return i
    return 5


def eaqi_pm25(conc, per=1):
    """EAQI band 0..5 of a PM2.5 concentration (1/per ug/m3)."""
    return eaqi_level("pm25", conc, per)


def eaqi_pm10(conc, per=1):
    """EAQI band 0..5 of a PM10 concentration (1/per ug/m3)."""
    return eaqi_level("pm10", conc, per)


def eaqi_band(*levels):
    """The overall EAQI, (index 0..5, name): the worst of the pollutants' bands given (None
    entries are ignored); None when no band is given."""
    worst = -1
    for lv in levels:
        if lv is not None and lv > worst:
            worst = lv
    if worst < 0:
        return None
    if worst > 5:
        worst = 5
    return worst, EAQI_NAMES[worst]


# ---- humidity ------------------------------------------------------------------------------
RH_LIMIT_PCT = 85  # Crilley et al. 2018: OPC mass artefact at ambient RH > 85 %
KOHLER = "kohler"          # Crilley et al. 2018 kappa-Koehler growth correction
BARKJOHN = "barkjohn2021"  # Barkjohn et al. 2021, US-wide PurpleAir (Plantower cf_1) correction


def humidity_flag(rh_pct, limit=RH_LIMIT_PCT):
    """True when the relative humidity is above limit (%): an optical PM reading then counts
    water grown onto the particles (and fog droplets). No humidity (None) -> False."""
    return rh_pct is not None and rh_pct == rh_pct and rh_pct > limit


def _rh_x10(rh_pct):
    """RH in tenths of %, rounded, clamped to 0..1000; None for None/NaN."""
    if rh_pct is None or rh_pct != rh_pct:
        return None
    if rh_pct <= 0:
        return 0
    if rh_pct >= 100:
        return 1000
    return int(rh_pct * 10 + 0.5)


def rh_correct(pm_x10, rh_pct, method=None, kappa_x100=None):
    """A humidity-corrected PM2.5 in tenths of ug/m3 (int, >= 0), from a raw one in tenths and
    the relative humidity in %. method None: no correction (the raw value, truncated).
    None for a None/NaN reading, or a None/NaN humidity when a method needs it.

    BARKJOHN: PM2.5 = 0.524 * PA_cf1 - 0.0862 * RH + 5.75 (Barkjohn et al. 2021, the final
    US-wide correction; made for 24-h means of Plantower PMS5003 "cf_1" data with the sensor
    box's RH; the EPA's later extension for heavy smoke, PA_cf1 >= 570, is not included).
    Rounded to the nearest tenth, floored at 0.

    KOHLER: PM_dry = PM / C, C = 1 + (kappa / 1.65) / (-1 + 1 / aw), aw = RH / 100 (Crilley et
    al. 2018: kappa-Koehler growth of hygroscopic particles; 1.65 g/cm3 the assumed particle
    density). kappa_x100 is the site's bulk hygroscopicity x 100 (required). RH is taken at most
    99 % (the growth diverges at saturation; such readings are flagged by humidity_flag)."""
    pm = _int(pm_x10)
    if pm is None:
        return None
    if pm < 0:
        pm = 0
    if method is None:
        return pm
    rh = _rh_x10(rh_pct)
    if rh is None:
        return None
    if method == BARKJOHN:
        # tenths: 0.524 * pm - 0.0862 * rh_x10 + 57.5, all x 10000
        v = (5240 * pm - 862 * rh + 575000 + 5000) // 10000
        return v if v > 0 else 0
    if method == KOHLER:
        if kappa_x100 is None or kappa_x100 < 0:
            raise ValueError("rh_correct kohler: kappa_x100 (the bulk hygroscopicity x 100) is "
                             "required and must be >= 0")
        if rh > 990:
            rh = 990
        # C = 1 + (k / 1.65) * rh / (1000 - rh)  =>  PM / C = PM * a / (a + k100 * rh),
        # a = 165 * (1000 - rh), k100 = kappa * 100 (rh in tenths of %).
        a = 165 * (1000 - rh)
        den = a + int(kappa_x100) * rh
        return (2 * pm * a + den) // (2 * den)
    raise ValueError("rh_correct: unknown method %r" % (method,))


# ---- category changes -> events ------------------------------------------------------------
# State keys: a 1 while the alert is raised, b consecutive hours below the alert level since.
DEFAULTS = {
    "alert_category": 3,  # Unhealthy (AQI) / Poor (EAQI)
    "recover_hours": 2,   # hours in a row below the level before the all-clear
}
_KINDS = {"aqi": AQI_NAMES, "eaqi": EAQI_NAMES}


def _cfg(cfg, key):
    v = cfg.get(key) if cfg else None
    return DEFAULTS[key] if v is None else v


def aq_step(state, cfg, index_kind, category, value=None):
    """Apply one hour's category (0..5, None when the hour has no index) to state (updated in
    place); returns [(name, level, data)]: ("air_quality", "alarm", ...) when the category
    reaches alert_category or worse, ("air_quality", "info", ...) once it has stayed below it
    for recover_hours hours in a row. Raised and cleared events alternate strictly; a missing
    hour neither raises nor counts towards the all-clear (it restarts the count).
    data: {index, category, name, value, alert}. index_kind: "aqi" or "eaqi"."""
    names = _KINDS.get(index_kind)
    if names is None:
        raise ValueError("aq_step: index_kind must be 'aqi' or 'eaqi', got %r" % (index_kind,))
    if category is None:
        if state.get("a"):
            state["b"] = 0
        return []
    cat = int(category)
    cat = 0 if cat < 0 else 5 if cat > 5 else cat
    level = _cfg(cfg, "alert_category")
    data = {"index": index_kind, "category": cat, "name": names[cat], "value": value}
    if not state.get("a"):
        if cat >= level:
            state["a"] = 1
            state["b"] = 0
            data["alert"] = True
            return [("air_quality", "alarm", data)]
        return []
    if cat >= level:
        state["b"] = 0
        return []
    need = _cfg(cfg, "recover_hours")
    b = state.get("b", 0) + 1
    if b < need:
        state["b"] = b
        return []
    state["a"] = 0
    state["b"] = 0
    data["alert"] = False
    return [("air_quality", "info", data)]
