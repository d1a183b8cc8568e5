"""The air world: the ground truth that the air-quality node's fake sensors measure.

One `Site` per node: the air at one street site. Particulate matter (PM1, PM2.5, PM10 in
ug/m3) is a sum of components, each with its own size split: a background that follows the
season, road traffic with weekday rush hours and weaker weekends, evening wood smoke in the
cold season (strongest on cold still evenings), regional pollution episodes lasting 1-4 days
(random or scheduled), all but the episodes multiplied by autocorrelated noise (an AR(1)
process on the log scale). The weather: temperature with a daily and a seasonal cycle and
slow synoptic swings, relative humidity from a dew point (Magnus formula) with fog mornings,
pressure that drifts over days around 1013 hPa. Local sources are stronger when the air is
still (high pressure, low wind). docs/worlds/air.md describes the model, parameters, defaults
and which numbers come from sources.

Written in the MicroPython dialect (it also runs in the WASI MicroPython): no dataclasses, no
typing, no `random`: a seeded xorshift32 gives the randomness. Every random quantity is a pure
function of (seed, absolute hour or day, purpose): slow processes are evaluated at whole hours
of absolute time ("knots") and interpolated linearly, so values are continuous in time and the
same (params, seed, start_unix) gives the same values whatever the order of the queries. The
caches only save work (they are cleared when they grow) and never change a value.

Time: `t_s` is virtual seconds since the scenario start (board.clock.now_us / 1e6), negative
values included (the air existed before the scenario). start_unix (UTC, shifted by params
"tz_h" for the local hour and weekday) anchors t_s = 0 in the calendar: the season, the
weekday, the hour. The weather and the episodes depend on absolute time and on params
"weather_seed" (default: the seed), so sites that share a weather_seed share the weather and
the regional episodes while their street sources and noise stay their own.

Public API:
- Site(params, seed, start_unix)
- Site.state_at(t_s) -> {"pm1", "pm25", "pm10", "temp_c", "rh", "hpa", "dead", "corrupt", "drop",
  "noise", "unplugged"}
- Site.scene(board) -> state_at(board.clock.now_us / 1e6): the callable the fake chips take
- Site.hourly_pm25(t_end_s, hours) -> [true mean PM2.5 of each hour ending at t_end_s, t_end_s -
  3600, ...] (most recent first), Site.hourly_mean(key, t_end_s, hours) for any numeric key
- Site.episodes(until_s) -> [(start_s, end_s, peak_ugm3)]: episodes that start at or before
  until_s and end after 0, sorted by start
- Site.parts_at(t_s) -> the PM2.5 of each component (for tests and reports)
- Site.weekday_hour(t_s) -> (weekday 0 = Monday, local hour)
- attach(board, params, seed, start_unix) -> Site
"""
import math

from worldkit import DAY_S, HOUR_S, M32, XorShift32, get, intervals, mix32

# 1970-01-01 was a Thursday: weekday (0 = Monday) of absolute day D is (D + 3) % 7.
_EPOCH_WEEKDAY = 3
_YEAR_D = 365.2425
# Warmest day of the year: 2024-07-20 as days since 1970-01-01 (a modelling assumption: in
# central Europe July is the warmest month, January the coldest, about half a year apart).
_WARM_DAY = 19924

# Independent random streams: the site's own, and the weather's (weather_seed).
_S_NOISE = 1  # site: hourly innovations of the PM noise
_S_P1 = 2  # weather: slow pressure process
_S_P2 = 3  # weather: synoptic pressure process
_S_TZ = 4  # weather: temperature anomaly
_S_DZ = 5  # weather: dew-point depression
_S_WZ = 6  # weather: wind (ventilation)
_S_EPI = 7  # weather: random episodes, per local day
_S_FOG = 8  # weather: fog, per local day

# Smooth weather processes: stream -> kernel width in hours (knot spacing = width / 2).
_W_P1 = 40
_W_P2 = 12
_W_TZ = 30
_W_DZ = 20
_W_WZ = 8

# Defaults per street (PM2.5 in ug/m3; modelling assumptions, see air.md): background at the
# annual mean, traffic increment at the mean weekday hour, wood-smoke increment on a still
# evening at a daily mean of 3 degC, and the coarse share of the traffic increment
# (PM10-2.5 / PM2.5 of the roadside increment: 0.21-0.61 at four UK roadside/background site
# pairs, rising with the traffic volume; see air.md).
_STREETS = {
    "residential": {"background_ugm3": 8.0, "traffic_ugm3": 1.5, "smoke_ugm3": 12.0,
                    "traffic_coarse": 0.3},
    "main_road": {"background_ugm3": 8.0, "traffic_ugm3": 6.0, "smoke_ugm3": 4.0,
                  "traffic_coarse": 0.6},
    "centre": {"background_ugm3": 9.0, "traffic_ugm3": 3.0, "smoke_ugm3": 5.0,
               "traffic_coarse": 0.45},
    "park": {"background_ugm3": 6.0, "traffic_ugm3": 0.5, "smoke_ugm3": 4.0,
             "traffic_coarse": 0.3},
}

# Traffic by local hour (weights at the middle of each hour, linear in between), weekdays:
# rush hours 7-9 h and 16-19 h. Weekends: later, flatter, lower. Only the shape matters: the
# weekday weights are scaled to a mean of 1, the weekend ones to _WEEKEND (Sat, Sun).
_TRAFFIC_WD = (0.15, 0.1, 0.08, 0.08, 0.15, 0.45, 1.1, 1.9, 1.9, 1.3, 1.0, 1.0,
               1.05, 1.05, 1.1, 1.35, 1.75, 1.9, 1.7, 1.2, 0.8, 0.6, 0.45, 0.3)
_TRAFFIC_WE = (0.3, 0.25, 0.2, 0.15, 0.12, 0.15, 0.25, 0.4, 0.6, 0.8, 0.95, 1.05,
               1.1, 1.1, 1.05, 1.05, 1.05, 1.0, 0.9, 0.75, 0.6, 0.5, 0.4, 0.35)
_WEEKEND = (0.75, 0.6)

# Size split of each component: PM1 / PM2.5 and PM2.5 / PM10 (the traffic's PM10 comes from
# traffic_coarse). Modelling assumptions within Putaud et al. 2010 (PM2.5/PM10 0.5-0.9 at most
# European sites); smoke and regional episodes are fine, road traffic adds coarse dust.
_BG_PM1 = 0.75
_BG_PM10 = 0.7
_TR_PM1 = 0.7
_SM_PM1 = 0.9
_SM_PM10 = 0.95
_EP_PM1 = 0.8
_EP_PM10 = 0.8

_HPA_SPAN = 26.5  # sea-level pressure = mean + span * tanh(anomaly / span): inside 986.75-1039.75
_MAGNUS_B = 17.62  # WMO-No. 8 (2008) Annex 4.B: saturation vapour pressure over water,
_MAGNUS_C = 243.12  # e = 6.112 hPa * exp(17.62 t / (243.12 + t)), t in degC
_CACHE_MAX = 6000


class _Rng(XorShift32):
    """xorshift32 (Marsaglia 2003, shifts 13, 17, 5), seeded from (seed, index, stream)."""

    def __init__(self, seed, index, stream):
        x = mix32(mix32(seed) ^ 0x9E3779B9)
        x = mix32(x ^ ((seed >> 32) & M32))
        x = mix32(x ^ (index & M32))
        x = mix32(x ^ ((index >> 32) & M32))
        x = mix32(x ^ stream)
        self.x = x if x else 0x6D2B79F5


def _tanh(x):
    if x > 20.0:
        return 1.0
    if x < -20.0:
        return -1.0
    e = math.exp(2.0 * x)
    return (e - 1.0) / (e + 1.0)


def _ramp(x):
    """0 for x <= 0, 1 for x >= 1, a raised cosine in between."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return 0.5 - 0.5 * math.cos(math.pi * x)


def _month(day):
    """Civil month (1-12) of a day counted from 1970-01-01 (proleptic Gregorian). Counts in
    400-year eras of 146097 days and in years that start on 1 March, so that the leap day is
    the last day of a year; months from March have 153 days per 5 months."""
    z = day + 719468  # days from 0000-03-01 to 1970-01-01
    era = z // 146097
    doe = z - era * 146097  # day of the era, 0..146096
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365  # year of the era
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)  # day of the March-based year
    mp = (5 * doy + 2) // 153  # 0 = March ... 11 = February
    return mp + 3 if mp < 10 else mp - 9


def _saturation_hpa(t_c):
    return 6.112 * math.exp(_MAGNUS_B * t_c / (_MAGNUS_C + t_c))


def _pair(params, key, default):
    v = get(params, key, default)
    if len(v) != 2:
        raise ValueError("%s: give [lo, hi]" % key)
    lo = float(v[0])
    hi = float(v[1])
    if hi < lo:
        raise ValueError("%s: hi < lo" % key)
    return lo, hi


def _nonneg(params, key, default):
    v = float(get(params, key, default))
    if not v >= 0.0:  # also refuses NaN
        raise ValueError("%s must be >= 0" % key)
    return v


class Site:
    def __init__(self, params, seed, start_unix):
        p = dict(params or {})
        self.params = p
        street = p.get("street") or "residential"
        if street not in _STREETS:
            raise ValueError("unknown street %r" % (street,))
        self.street = street
        d = _STREETS[street]
        self.seed = int(seed)
        ws = p.get("weather_seed")
        self.weather_seed = self.seed if ws is None else int(ws)
        sensor = p.get("pm_sensor") or "pms5003"
        if sensor not in ("pms5003", "sds011"):
            raise ValueError("unknown pm_sensor %r" % (sensor,))
        self.pm_sensor = sensor

        # ---- particulate matter
        self.background = _nonneg(p, "background_ugm3", d["background_ugm3"])
        self.traffic = _nonneg(p, "traffic_ugm3", d["traffic_ugm3"])
        self.smoke = _nonneg(p, "smoke_ugm3", d["smoke_ugm3"])
        self.traffic_coarse = _nonneg(p, "traffic_coarse", d["traffic_coarse"])
        self.bg_season = min(_nonneg(p, "bg_season", 0.25), 0.9)
        self.noise_sigma = _nonneg(p, "noise_sigma", 0.3)
        tau = float(get(p, "noise_tau_h", 6.0))
        if not 0.1 <= tau <= 100.0:
            raise ValueError("noise_tau_h must be in 0.1..100")
        # AR(1) with phi = exp(-1 h / tau), written as its moving average truncated where
        # phi^n < 1e-4 and rescaled to unit variance: x_H = sum_j w_j g_(H - j).
        phi = math.exp(-1.0 / tau)
        n = int(math.ceil(math.log(1e-4) / math.log(phi))) if phi > 1e-4 else 1
        n = max(1, min(n, 1000))
        c = math.sqrt((1.0 - phi * phi) / (1.0 - phi ** (2 * n)))
        self._arw = [c * phi ** j for j in range(n)]
        self.episode_prob = min(_nonneg(p, "episode_prob", 0.02), 1.0)
        self.episode_peak = _pair(p, "episode_peak_ugm3", (15.0, 45.0))
        self.episode_dur_h = _pair(p, "episode_dur_h", (24.0, 96.0))
        if self.episode_peak[0] < 0 or self.episode_dur_h[0] <= 0:
            raise ValueError("episode_peak_ugm3 must be >= 0 and episode_dur_h > 0")
        self._sched_epi = []
        for item in p.get("episodes") or ():
            if len(item) != 3:
                raise ValueError("episodes: each entry is [start_h, dur_h, peak_ugm3]")
            s = float(item[0]) * HOUR_S
            dur = float(item[1]) * HOUR_S
            peak = float(item[2])
            if dur <= 0 or peak < 0:
                raise ValueError("episodes: dur_h must be > 0 and peak_ugm3 >= 0")
            self._sched_epi.append((s, s + dur, peak))
        self._dead = intervals(p.get("pm_dead"), "pm_dead")
        self._unplugged = intervals(p.get("bme_unplugged"), "bme_unplugged")
        self.pm_noise = _nonneg(p, "pm_noise", 0.05)
        self.corrupt = min(_nonneg(p, "corrupt", 0.0005), 1.0)
        self.drop = min(_nonneg(p, "drop", 0.0005), 1.0)

        # ---- weather
        self.temp_mean_c = float(get(p, "temp_mean_c", 10.0))
        self.temp_season_c = _nonneg(p, "temp_season_c", 8.0)
        self.temp_range_w = _nonneg(p, "temp_range_winter_c", 5.0)
        self.temp_range_s = _nonneg(p, "temp_range_summer_c", 10.0)
        self.temp_synoptic_c = _nonneg(p, "temp_synoptic_c", 2.5)
        self.dep_w = _nonneg(p, "dewpoint_dep_winter_c", 2.0)
        self.dep_s = _nonneg(p, "dewpoint_dep_summer_c", 3.0)
        self.fog_w = min(_nonneg(p, "fog_prob_winter", 0.25), 1.0)
        self.fog_s = min(_nonneg(p, "fog_prob_summer", 0.05), 1.0)
        self.hpa_mean = float(get(p, "hpa_mean", 1013.25))
        self.hpa_sigma = _nonneg(p, "hpa_sigma", 8.0)
        self.altitude_m = float(get(p, "altitude_m", 0.0))
        if not -100.0 <= self.altitude_m <= 3000.0:
            raise ValueError("altitude_m must be in -100..3000")
        # barometric formula of the ICAO standard atmosphere (troposphere)
        self._p_factor = (1.0 - 2.25577e-5 * self.altitude_m) ** 5.25588

        # ---- calendar: local day index and position of t_s = 0; absolute hour of t_s = 0
        self.start_unix = int(start_unix)
        loc = self.start_unix + int(float(get(p, "tz_h", 0)) * HOUR_S)
        self._d0 = loc // DAY_S
        self._s0 = loc - self._d0 * DAY_S
        self._h0 = self.start_unix // HOUR_S
        self._hoff = (self.start_unix - self._h0 * HOUR_S) / HOUR_S

        wd = 0.0
        for w in _TRAFFIC_WD:
            wd += w
        we = 0.0
        for w in _TRAFFIC_WE:
            we += w
        self._twd = [24.0 * w / wd for w in _TRAFFIC_WD]
        self._twe = [24.0 * w / we for w in _TRAFFIC_WE]

        self._g = {}  # (stream, index) -> standard normal
        self._knots = {}  # absolute hour -> (noise, pressure, temp, dewpoint dep, wind)
        self._days = {}  # local day -> (episode or None, fog or None)
        self.pm_chip = None  # the fake chips attach() put on the board
        self.env_chip = None

    # ---- calendar -----------------------------------------------------------------------
    def _day_of(self, t):
        return self._d0 + int(math.floor((self._s0 + t) / DAY_S))

    def _day_start(self, day):
        return float((day - self._d0) * DAY_S - self._s0)

    def weekday_hour(self, t_s):
        """(weekday 0 = Monday, local hour as a float) at t_s."""
        t = float(t_s)
        day = self._day_of(t)
        return (day + _EPOCH_WEEKDAY) % 7, (t - self._day_start(day)) / HOUR_S

    def _season(self, t):
        """cos of the year's phase: 1 on the warmest day, -1 half a year later."""
        days = (self._d0 - _WARM_DAY) + (self._s0 + t) / DAY_S
        return math.cos(2.0 * math.pi * days / _YEAR_D)

    # ---- random processes -----------------------------------------------------------------
    def _gauss(self, seed, stream, i):
        key = (stream, i)
        v = self._g.get(key)
        if v is None:
            if len(self._g) > 4 * _CACHE_MAX:
                self._g = {}
            v = _Rng(seed, i, stream).gauss()
            self._g[key] = v
        return v

    def _smooth(self, stream, width, hour):
        """Unit-variance smooth process at an absolute hour: white noise at knots every
        width / 2 hours, smoothed with a Gaussian kernel of sd width / sqrt(2) (the sum of
        the squared weights is sqrt(pi) * width / spacing, whatever the hour)."""
        step = width // 2
        k0 = (hour - 4 * width) // step
        k1 = (hour + 4 * width) // step + 1
        s = 0.0
        for k in range(k0, k1 + 1):
            x = (hour - k * step) / width
            s += self._gauss(self.weather_seed, stream, k) * math.exp(-0.5 * x * x)
        return s * math.sqrt(step / (math.sqrt(math.pi) * width))

    def _knot(self, hour):
        v = self._knots.get(hour)
        if v is None:
            if len(self._knots) > _CACHE_MAX:
                self._knots = {}
            x = 0.0
            for j, w in enumerate(self._arw):
                x += w * self._gauss(self.seed, _S_NOISE, hour - j)
            v = (x,
                 0.8 * self._smooth(_S_P1, _W_P1, hour) + 0.6 * self._smooth(_S_P2, _W_P2, hour),
                 self._smooth(_S_TZ, _W_TZ, hour),
                 self._smooth(_S_DZ, _W_DZ, hour),
                 self._smooth(_S_WZ, _W_WZ, hour))
            self._knots[hour] = v
        return v

    def _slow(self, t):
        """(noise, pressure, temperature, dew-point depression, wind): unit-variance processes
        at t, linear between the whole absolute hours."""
        x = self._hoff + t / HOUR_S
        k = int(math.floor(x))
        f = x - k
        a = self._knot(self._h0 + k)
        b = self._knot(self._h0 + k + 1)
        g = 1.0 - f
        return (a[0] * g + b[0] * f, a[1] * g + b[1] * f, a[2] * g + b[2] * f,
                a[3] * g + b[3] * f, a[4] * g + b[4] * f)

    def _day(self, day):
        """(random episode (start_s, end_s, peak) or None, fog (start_h, end_h, rh) or None)
        of a local day."""
        v = self._days.get(day)
        if v is None:
            if len(self._days) > _CACHE_MAX:
                self._days = {}
            t0 = self._day_start(day)
            w = 0.5 - 0.5 * self._season(t0 + 0.5 * DAY_S)  # 1 in mid-winter, 0 in mid-summer
            r = _Rng(self.weather_seed, day, _S_EPI)
            hit = r.u() < self.episode_prob * (0.6 + 0.8 * w)
            s = t0 + r.u() * DAY_S
            dur = r.uniform(self.episode_dur_h[0], self.episode_dur_h[1]) * HOUR_S
            peak = r.uniform(self.episode_peak[0], self.episode_peak[1])
            epi = (s, s + dur, peak) if hit else None
            r = _Rng(self.weather_seed, day, _S_FOG)
            hit = r.u() < self.fog_s + (self.fog_w - self.fog_s) * w
            fs = r.uniform(1.0, 5.0)
            fe = r.uniform(8.0, 11.0)
            frh = r.uniform(92.0, 100.5)
            fog = (fs, fe, min(frh, 100.0)) if hit else None
            v = (epi, fog)
            self._days[day] = v
        return v

    def _max_epi_s(self):
        return max(self.episode_dur_h[1] * HOUR_S, 0.0)

    def _episode_ugm3(self, t):
        s = 0.0
        for e in self._sched_epi:
            s += _episode_shape(e, t)
        if self.episode_prob > 0:
            day = self._day_of(t)
            back = int(self._max_epi_s() // DAY_S) + 1
            for dd in range(day - back, day + 1):
                e = self._day(dd)[0]
                if e is not None:
                    s += _episode_shape(e, t)
        return s

    # ---- components -----------------------------------------------------------------------
    def _traffic_w(self, day, i):
        wd = (day + _EPOCH_WEEKDAY) % 7
        if wd == 5:
            return self._twe[i] * _WEEKEND[0]
        if wd == 6:
            return self._twe[i] * _WEEKEND[1]
        return self._twd[i]

    def _traffic_profile(self, day, h):
        x = h - 0.5
        if x < 0:
            return self._traffic_w(day - 1, 23) * (-x) + self._traffic_w(day, 0) * (1.0 + x)
        i = int(x)
        f = x - i
        b = self._traffic_w(day, i + 1) if i < 23 else self._traffic_w(day + 1, 0)
        return self._traffic_w(day, i) * (1.0 - f) + b * f

    def _compute(self, t):
        day = self._day_of(t)
        h = (t - self._day_start(day)) / HOUR_S
        cs = self._season(t)
        w = 0.5 - 0.5 * cs  # 1 in mid-winter
        xn, pn, tz, dz, wz = self._slow(t)

        # weather
        sig_p = self.hpa_sigma * (0.75 + 0.5 * w)
        p_msl = self.hpa_mean + _HPA_SPAN * _tanh(sig_p * pn / _HPA_SPAN)
        syn = self.temp_synoptic_c
        anom = 0.0
        if syn > 0:
            # high pressure: colder in winter (clear nights, inversions), warmer in summer
            anom = 3.0 * syn * _tanh(syn * (0.8 * tz + 0.6 * pn * cs) / (3.0 * syn))
        t_base = self.temp_mean_c + self.temp_season_c * cs + anom
        amp = 0.5 * (self.temp_range_w * w + self.temp_range_s * (1.0 - w))
        amp *= 1.0 + 0.15 * min(max(pn, -2.0), 2.0)
        temp = t_base + amp * math.cos(2.0 * math.pi * (h - 15.0) / 24.0)
        dep = (self.dep_w * w + self.dep_s * (1.0 - w)) * math.exp(0.5 * dz - 0.125)
        dew = t_base - amp - dep
        rh = 100.0 * _saturation_hpa(dew) / _saturation_hpa(temp)
        fog = self._day(day)[1]
        if fog is not None:
            fs, fe, frh = fog
            f = min(_ramp(h - fs + 1.0), _ramp(fe + 1.0 - h))
            if f > 0.0 and frh > rh:
                rh += (frh - rh) * f
        rh = min(max(rh, 0.0), 100.0)

        # particulate matter (PM2.5 of each component)
        still = math.exp(0.3 * min(max(pn, -3.0), 3.0) + 0.3 * min(max(wz, -3.0), 3.0) - 0.09)
        # ^ mean about 1; > 1 for still air (high pressure, little wind)
        bg = self.background * (1.0 + self.bg_season * (2.0 * w - 1.0)) * math.sqrt(still)
        tr = self.traffic * self._traffic_profile(day, h) * still
        sm = 0.0
        if self.smoke > 0 and 17.0 < h and _month(day) in (10, 11, 12, 1, 2, 3):
            # heating demand: degrees below 18 degC (Eurostat's heating-degree base; without its
            # 15 degC threshold, so that the smoke stays continuous), per 15
            heat = max(0.0, 18.0 - t_base) / 15.0
            sm = self.smoke * heat * min(_ramp((h - 17.0) / 1.5), _ramp((24.0 - h) / 1.5)) * still
        sig = self.noise_sigma
        noise = math.exp(sig * xn - 0.5 * sig * sig)
        ep = self._episode_ugm3(t)
        return (bg * noise, tr * noise, sm * noise, ep, temp, rh, p_msl * self._p_factor)

    # ---- truth --------------------------------------------------------------------------
    def state_at(self, t_s):
        t = float(t_s)
        bg, tr, sm, ep, temp, rh, hpa = self._compute(t)
        pm25 = bg + tr + sm + ep
        pm1 = _BG_PM1 * bg + _TR_PM1 * tr + _SM_PM1 * sm + _EP_PM1 * ep
        pm10 = bg / _BG_PM10 + tr * (1.0 + self.traffic_coarse) + sm / _SM_PM10 + ep / _EP_PM10
        dead = False
        for s, e in self._dead:
            if s <= t < e:
                dead = True
        unplugged = False
        for s, e in self._unplugged:
            if s <= t < e:
                unplugged = True
        return {
            "pm1": min(pm1, pm25),
            "pm25": pm25,
            "pm10": max(pm10, pm25),
            "temp_c": temp,
            "rh": rh,
            "hpa": hpa,
            "dead": dead,
            "corrupt": self.corrupt,
            "drop": self.drop,
            "noise": self.pm_noise,
            "unplugged": unplugged,
        }

    def scene(self, board):
        return self.state_at(board.clock.now_us / 1e6)

    def parts_at(self, t_s):
        """PM2.5 (ug/m3) of each component at t_s: {"background", "traffic", "smoke",
        "episode"} (the first three with the noise applied); they sum to state_at's pm25."""
        bg, tr, sm, ep, _, _, _ = self._compute(float(t_s))
        return {"background": bg, "traffic": tr, "smoke": sm, "episode": ep}

    def hourly_mean(self, key, t_end_s, hours):
        """True means of state_at(t)[key] over the hours ending at t_end_s, t_end_s - 3600, ...
        (most recent first), each the mean of 60 samples at the middle of its minutes."""
        out = []
        t_end = float(t_end_s)
        for i in range(int(hours)):
            t0 = t_end - (i + 1) * HOUR_S
            s = 0.0
            for m in range(60):
                s += self.state_at(t0 + 30.0 + 60.0 * m)[key]
            out.append(s / 60.0)
        return out

    def hourly_pm25(self, t_end_s, hours):
        return self.hourly_mean("pm25", t_end_s, hours)

    def episodes(self, until_s):
        """[(start_s, end_s, peak_ugm3)]: scheduled and random episodes that start at or before
        until_s and end after t_s = 0, sorted by start."""
        out = [e for e in self._sched_epi if e[0] <= until_s and e[1] > 0]
        if self.episode_prob > 0:
            back = int(self._max_epi_s() // DAY_S) + 1
            for day in range(self._day_of(0.0) - back, self._day_of(float(until_s)) + 1):
                e = self._day(day)[0]
                if e is not None and e[0] <= until_s and e[1] > 0:
                    out.append(e)
        out.sort()
        return out


def _episode_shape(e, t):
    s, end, peak = e
    if t <= s or t >= end:
        return 0.0
    r = min(12.0 * HOUR_S, 0.25 * (end - s))  # ramps of up to 12 h at each end
    return peak * min(_ramp((t - s) / r), _ramp((end - t) / r))


def attach(board, params, seed, start_unix):
    """Create the site, keep it in board.extra["world"], and put its fake PM sensor (UART) and
    BME280 (I2C, address 0x76) on the board's air_quality pins. params "pm_sensor": "pms5003"
    (default) or "sds011"."""
    params = dict(params or {})
    s = Site(params, seed, start_unix)
    board.extra["world"] = s
    pins = board.profile["pins"]["air_quality"]
    if s.pm_sensor == "sds011":
        import chip_sds011  # type: ignore[import-not-found]  # a bare name in simulator/mp

        s.pm_chip = chip_sds011.SDS011(board, pins["pm_uart_id"], s.scene)
    else:
        import chip_pms5003  # type: ignore[import-not-found]

        s.pm_chip = chip_pms5003.PMS5003(board, pins["pm_uart_id"], s.scene, set_pin=pins.get("pm_set"))
    import chip_bme280  # type: ignore[import-not-found]

    s.env_chip = chip_bme280.BME280(board, pins["i2c_id"], s.scene, addr=0x76)
    return s
