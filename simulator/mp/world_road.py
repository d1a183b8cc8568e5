"""The road world: the ground truth that the traffic-counter node's two fake magnetometers see.

One `Road` per node. A kerb-side node has two magnetometers a known distance apart along the
lane (sensor 1 is `spacing_mm` further along the +x direction than sensor 0). Vehicles pass in
one or two lanes (each with its direction): their arrivals are a headway process (a minimum
headway plus a non-homogeneous Poisson part) whose rate follows the hour of day and the
weekday, with rush hours (params "vph", vehicles per hour per lane at the weekday peak), or a
fixed rate for benchmarks (params "rate_vph"). A traffic light upstream (params "light")
releases platoons; queues crawl past the sensor at rush hours; cars park next to the node for
minutes to hours. Each vehicle is a short row of magnetic dipoles (a two-wheeler one small one,
a truck or bus five, the axles strongest) moving rigidly past the sensors; the field at a
sensor is the Earth's field, plus a fixed offset per sensor, plus a slow temperature drift,
plus the dipoles nearby. docs/worlds/road.md describes the model, its parameters and defaults.

Written in the MicroPython dialect (it also runs in the WASI MicroPython): no dataclasses, no
typing, no `random`: a seeded xorshift32 gives the randomness, one independent stream per
10-minute chunk, lane and purpose. The traffic of a lane is generated chunk by chunk in time
order (a chunk needs the state the previous one ended in: the last vehicle, the light's queue);
that state is kept for every chunk generated, the vehicles themselves only for the few chunks
used last, so a chunk dropped from the cache is regenerated exactly. The same (params, seed,
start_unix) therefore gives the same vehicles and fields however often and in whatever order
they are queried, in bounded memory over a week.

Units and axes: the field is in microtesla (FIELD_UNIT, what chip_magnetometer takes). Both
sensors share one right-handed frame: x along the lane, towards sensor 1; y across the road,
from the kerb towards the lanes; z down. The default Earth field (20, 0, 45) uT is a
mid-latitude northern field with the road running to magnetic north.

Time: `t_s` is virtual seconds since the scenario start (board.clock.now_us / 1e6); `t_us` the
same in microseconds. start_unix (UTC, shifted by params "tz_h") gives the weekday and hour of
t_s = 0. Traffic starts 10 minutes before t_s = 0 (a warm-up), parking a day before.

Public API:
- Road(params, seed, start_unix)
- Road.field(sensor_index, t_us) -> (bx, by, bz) uT at sensor 0 or 1: clean (the chip adds its
  noise), with the baseline drift
- Road.field_source(index) -> callable(board, t_us) -> field(index, t_us), for the fake chip
- Road.baseline(sensor_index, t_s) -> (bx, by, bz): the field with no vehicle and no parked car
- Road.vehicles(t0_s, t1_s) -> [(t_front_at_sensor0_s, lane, direction, type, length_m,
  speed_kmh)] of the passes with t0_s <= t < t1_s, in time order
- Road.parked(t0_s, t1_s) -> [(arrive_s, leave_s, type, length_m)] of the parked cars whose
  stay overlaps [t0_s, t1_s)
- Road.queues(t0_s, t1_s) -> [(lane, start_s, end_s, speed_kmh)] of the queue episodes
  overlapping [t0_s, t1_s)
- Road.rate_vph(lane, t_s) -> the demand (vehicles per hour) of a lane at t_s
- Road.temperature_c(t_s); Road.weekday_hour(t_s) -> (weekday 0 = Monday, local hour)
- attach(board, params, seed, start_unix) -> Road, with two fake magnetometers on the board's
  traffic buses
"""
import math

from worldkit import DAY_S, HOUR_S, M32, XorShift32, get, mix32, seed32

FIELD_UNIT = "uT"  # what field() returns and chip_magnetometer expects (1 G = 100 uT)
TYPES = ("two_wheeler", "car", "van", "truck")
# 1970-01-01 was a Thursday: weekday (0 = Monday) of absolute day D is (D + 3) % 7.
_EPOCH_WEEKDAY = 3

_CHUNK_S = 600  # traffic is generated in chunks of this many seconds of demand time
_K0 = -1  # the first chunk: a warm-up before t = 0
_CACHE_CHUNKS = 6  # chunks per lane whose vehicles are kept
_EPS_UT = 0.02  # a vehicle is left out of the sum where its field is below this (see road.md)
_R_CAP_M = 50.0  # and never counted further away than this
_V_MIN = 1.0  # m/s: the slowest a vehicle passes (3.6 km/h)
_MAX_SPACING_M = 10.0
# No vehicle's field reaches further back in time than this before its front passes sensor 0:
# (_R_CAP_M + _MAX_SPACING_M) / _V_MIN, rounded up.
_PRE_MAX_S = 64.0
_SPAN_S = 2.0  # forward queries reuse the set of nearby vehicles for this long
_DRIFT_KNOT_S = 10  # the drift is exact at multiples of this and linear in between
_BIG = 1e30

# Independent random streams.
_S_ARRIVE = 1
_S_VEHICLE = 2
_S_MAGNET = 3
_S_QUEUE = 4
_S_PARK = 5
_S_TEMP = 6
_S_SITE = 7

# Demand through the day relative to the weekday peak (8-9 h = 1.0), per day type: weekdays
# with morning and evening rush hours, Saturdays with a broad late morning, quiet Sundays. The
# rate is linear between the middles of the hours. A modelling assumption with the shape of
# typical urban traffic-count profiles.
_PROFILE = {
    "weekday": (0.06, 0.04, 0.03, 0.03, 0.05, 0.15, 0.45, 0.9, 1.0, 0.7, 0.55, 0.55,
                0.6, 0.6, 0.6, 0.7, 0.85, 0.95, 0.8, 0.55, 0.4, 0.3, 0.2, 0.12),
    "saturday": (0.1, 0.07, 0.05, 0.04, 0.04, 0.07, 0.15, 0.3, 0.45, 0.6, 0.7, 0.75,
                 0.75, 0.7, 0.65, 0.65, 0.65, 0.6, 0.55, 0.45, 0.35, 0.3, 0.25, 0.17),
    "sunday": (0.12, 0.09, 0.07, 0.05, 0.04, 0.05, 0.08, 0.15, 0.25, 0.4, 0.5, 0.55,
               0.6, 0.6, 0.55, 0.55, 0.55, 0.5, 0.45, 0.4, 0.3, 0.22, 0.15, 0.1),
}
_DAY_TYPES = ("weekday", "saturday", "sunday")
_DAY_TYPE_OF_WEEKDAY = (0, 0, 0, 0, 0, 1, 2)

# Vehicle types (index into TYPES). _LEN: uniform length range (m); _KT: total magnetic moment
# as mu0/4pi * m, in uT m^3 (0.1 uT m^3 per A m^2), spread log-uniformly over _K_SPREAD per
# vehicle; _HT: height of the dipoles above the road (m); _SPEED, _SD: factors on the lane's
# mean free speed and on its spread; _DIP: the dipoles as (position behind the front as a
# share of the length, share of the moment): the engine and axles strongest. Moments: a highly
# permeable body of effective radius R in the Earth's field H0 = B0/mu0 (~40 A/m) carries
# m ~ 4 pi R^3 H0 (the sphere result); R ~ 0.43 m (two-wheeler), 1.06 m (car), 1.26 m (van),
# 2 m (truck, bus) give the figures below (see road.md).
_LEN = ((1.8, 2.2), (4.0, 5.0), (5.8, 7.2), (10.0, 14.0))
_KT = (4.0, 60.0, 100.0, 400.0)
_HT = (0.5, 0.4, 0.5, 0.7)
_SPEED = (1.0, 1.0, 0.97, 0.88)
_SD = (1.5, 1.0, 1.0, 0.8)
_DIP = (
    ((0.5, 1.0),),
    ((0.22, 0.55), (0.75, 0.45)),
    ((0.18, 0.4), (0.5, 0.2), (0.82, 0.4)),
    ((0.1, 0.3), (0.35, 0.1), (0.6, 0.1), (0.78, 0.25), (0.9, 0.25)),
)
_K_SPREAD = (0.6, 1.6)
_MIX = {"two_wheeler": 0.04, "car": 0.8, "van": 0.11, "truck": 0.05}
_PARK_MIX = (0.0, 0.85, 0.15, 0.0)  # parked: cars and vans

_LIGHT = {"cycle_s": 90.0, "green_s": 40.0, "offset_s": 0.0, "distance_m": 150.0,
          "sat_headway_s": 2.0, "accel_mps2": 1.5}
_QUEUES = {"prob": 0.25, "at_h": [8.0, 17.5], "spread_h": 1.0, "dur_min": [5.0, 30.0],
           "speed_kmh": [5.0, 20.0], "weekdays_only": True}
_PARKING = {"x_m": -3.5, "offset_m": 1.2, "free_min": 60.0, "stay_min": [5.0, 240.0],
            "speed_kmh": 7.0}


class _Rng(XorShift32):
    """xorshift32 (Marsaglia 2003, shifts 13, 17, 5), seeded from (seed32(seed), index,
    stream)."""

    def __init__(self, s32, index, stream):
        x = mix32(s32 ^ 0x2545F491)
        x = mix32(x ^ (index & M32))
        x = mix32(x ^ ((index >> 32) & M32))
        x = mix32(x ^ (stream & M32))
        self.x = x if x else 0x6D2B79F5

    def unit(self):
        """A uniform random direction."""
        z = 2.0 * self.u() - 1.0
        a = 6.283185307179586 * self.u()
        s = math.sqrt(max(0.0, 1.0 - z * z))
        return (s * math.cos(a), s * math.sin(a), z)


def _opt(spec, defaults, on_by_default, name):
    """An optional feature: None -> on_by_default; False -> off; True -> defaults; a dict ->
    defaults updated by it."""
    if spec is None:
        spec = on_by_default
    if spec is False:
        return None
    out = dict(defaults)
    if spec is not True:
        if not isinstance(spec, dict):
            raise ValueError("%s: true, false or an object" % name)
        for k in spec:
            if k not in defaults:
                raise ValueError("%s: unknown key %r" % (name, k))
            out[k] = spec[k]
    return out


def _pair(v, name):
    if len(v) != 2:
        raise ValueError("%s: [lo, hi]" % name)
    lo = float(v[0])
    hi = float(v[1])
    if not 0 < lo <= hi:
        raise ValueError("%s: need 0 < lo <= hi" % name)
    return lo, hi


def _scheduled_queues(spec):
    out = []
    for item in spec or ():
        if len(item) not in (2, 3):
            raise ValueError("queue: each entry is [start_h, dur_h] or [start_h, dur_h, speed_kmh]")
        s = float(item[0]) * HOUR_S
        d = float(item[1]) * HOUR_S
        kmh = float(item[2]) if len(item) == 3 else 10.0
        if d < 0 or kmh <= 0:
            raise ValueError("queue: negative duration or speed")
        out.append((s, s + d, max(kmh / 3.6, _V_MIN)))
    return out


def _bisect(a, x):
    """The first index i with a[i] >= x (a sorted)."""
    lo = 0
    hi = len(a)
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _dipoles(rng, ti, k_total, dirn, y, h_sensor, e_dir):
    """The dipoles of a vehicle of type ti (moment k_total uT m^3) at lateral offset y, as
    tuples (u, rho2, dz, kx, ky, kz, c): u the position behind the front along +x (signed by
    the direction), rho2 = dy^2 + dz^2, dz = sensor minus dipole (z down), c = ky dy + kz dz."""
    # Mostly induced by the Earth's field (along it), partly permanent (any direction).
    f = rng.uniform(0.4, 0.9)
    p = rng.unit()
    mx = f * e_dir[0] + (1.0 - f) * p[0]
    my = f * e_dir[1] + (1.0 - f) * p[1]
    mz = f * e_dir[2] + (1.0 - f) * p[2]
    dy = -y
    out = []
    for share_pos, share_k in _DIP[ti]:
        q = rng.unit()
        ax = mx + 0.25 * q[0]
        ay = my + 0.25 * q[1]
        az = mz + 0.25 * q[2]
        n = math.sqrt(ax * ax + ay * ay + az * az)
        if n <= 0:
            ax, ay, az, n = e_dir[0], e_dir[1], e_dir[2], 1.0
        k = k_total * share_k / n
        kx = k * ax
        ky = k * ay
        kz = k * az
        dz = _HT[ti] + rng.uniform(-0.1, 0.1) - h_sensor
        out.append((dirn * share_pos, dy * dy + dz * dz, dz, kx, ky, kz, ky * dy + kz * dz))
    return out


def _add_dipoles(dx0, dy, L, dips, bx, by, bz):
    # Field of point dipoles: B = (3 (k.r) r / r^5 - k / r^3), r = sensor - dipole, k in uT m^3.
    # dx0: sensor minus the vehicle's front along x; a dipole sits u * L behind the front.
    for u, rho2, dz, kx, ky, kz, c in dips:
        dx = dx0 + u * L
        r2 = dx * dx + rho2
        inv3 = 1.0 / (r2 * math.sqrt(r2))
        q = 3.0 * (kx * dx + c) / r2
        bx += (q * dx - kx) * inv3
        by += (q * dy - ky) * inv3
        bz += (q * dz - kz) * inv3
    return bx, by, bz


class Road:
    def __init__(self, params, seed, start_unix):
        p = dict(params or {})
        self.params = p
        self.seed = int(seed)
        self._s32 = seed32(self.seed)
        self.spacing_m = float(get(p, "spacing_mm", 1000)) / 1000.0
        if not 0 < self.spacing_m <= _MAX_SPACING_M:
            raise ValueError("spacing_mm must be in (0, %d]" % int(_MAX_SPACING_M * 1000))
        self._xs = (0.0, self.spacing_m)
        self.sensor = p.get("sensor") or "qmc5883l"
        e = get(p, "earth_ut", (20.0, 0.0, 45.0))
        if len(e) != 3:
            raise ValueError("earth_ut: [x, y, z]")
        self.earth_ut = (float(e[0]), float(e[1]), float(e[2]))
        en = math.sqrt(self.earth_ut[0] ** 2 + self.earth_ut[1] ** 2 + self.earth_ut[2] ** 2)
        if not en > 0:
            raise ValueError("earth_ut must not be zero")
        self._e_dir = (self.earth_ut[0] / en, self.earth_ut[1] / en, self.earth_ut[2] / en)
        self.sensor_height_m = float(get(p, "sensor_height_m", 0.3))
        self.min_headway_s = float(get(p, "min_headway_s", 1.0))
        if not self.min_headway_s > 0:
            raise ValueError("min_headway_s must be > 0")
        self.jam_gap_m = float(get(p, "jam_gap_m", 2.0))
        self.follow_s = float(get(p, "follow_s", 3.0))
        if self.jam_gap_m < 0 or self.follow_s < 0:
            raise ValueError("jam_gap_m and follow_s must be >= 0")
        self.speed_mean = float(get(p, "speed_mean", 0.95))
        self.speed_sd = float(get(p, "speed_sd", 0.1))
        if not 0 < self.speed_mean <= 2 or not 0 <= self.speed_sd <= 1:
            raise ValueError("speed_mean must be in (0, 2], speed_sd in [0, 1]")
        self.moment_scale = float(get(p, "moment_scale", 1.0))
        if self.moment_scale < 0:
            raise ValueError("moment_scale must be >= 0")
        mix = get(p, "mix", _MIX)
        w = [0.0, 0.0, 0.0, 0.0]
        for k in mix:
            if k not in TYPES:
                raise ValueError("mix: unknown vehicle type %r" % (k,))
            if float(mix[k]) < 0:
                raise ValueError("mix: negative share")
            w[TYPES.index(k)] = float(mix[k])
        tot = w[0] + w[1] + w[2] + w[3]
        if not tot > 0:
            raise ValueError("mix: shares must not all be zero")
        self._mix_cum = []
        acc = 0.0
        for x in w:
            acc += x / tot
            self._mix_cum.append(acc)
        # A vehicle is counted within _rb[type] m (the largest its moment can be).
        self._rb = []
        for kt in _KT:
            k = kt * self.moment_scale * _K_SPREAD[1]
            self._rb.append(min(_R_CAP_M, (2.0 * k / _EPS_UT) ** (1.0 / 3.0)))

        # Demand: a fixed rate (benchmarks) or the daily and weekly profile scaled to "vph".
        fixed = p.get("rate_vph")
        self.fixed_rate = fixed is not None
        self.vph = float(get(p, "vph", 600))
        prof = get(p, "profile", {})
        self._prof = []
        top = 0.0
        for name in _DAY_TYPES:
            hw = prof.get(name)
            if hw is None:
                hw = _PROFILE[name]
            if len(hw) != 24:
                raise ValueError("profile %s: 24 values" % name)
            row = [float(x) for x in hw]
            for x in row:
                if x < 0:
                    raise ValueError("profile %s: negative weight" % name)
                top = max(top, x)
            self._prof.append(row)
        if not top > 0:
            raise ValueError("profile: weights must not all be zero")
        for row in self._prof:
            for i in range(24):
                row[i] /= top

        light = _opt(p.get("light"), _LIGHT, False, "light")
        queues = _opt(p.get("queues"), _QUEUES, not self.fixed_rate, "queues")
        if queues is not None:
            self._q_dur = _pair(queues["dur_min"], "queues.dur_min")
            self._q_speed = _pair(queues["speed_kmh"], "queues.speed_kmh")
        self._queues = queues
        self.speed_limit_kmh = float(get(p, "speed_limit_kmh", 50))
        sched = _scheduled_queues(p.get("queue"))

        lanes = get(p, "lanes", 2)
        if isinstance(lanes, int) and not isinstance(lanes, bool):
            if lanes not in (1, 2):
                raise ValueError("lanes: 1, 2 or a list of lanes")
            lanes = [{"direction": 1, "offset_m": 1.8}, {"direction": -1, "offset_m": 5.0}][:lanes]
        if not 1 <= len(lanes) <= 4:
            raise ValueError("lanes: 1 to 4 lanes")
        self.lanes = []
        for i in range(len(lanes)):
            self.lanes.append(self._lane(i, lanes[i], fixed, light, sched))

        park = _opt(p.get("parking"), _PARKING, not self.fixed_rate, "parking")
        if park is not None:
            self._pk_stay = _pair(park["stay_min"], "parking.stay_min")
            self._pk_v = float(park["speed_kmh"]) / 3.6
            self._pk_free_s = float(park["free_min"]) * 60.0
            if self._pk_v < _V_MIN or not self._pk_free_s > 0:
                raise ValueError("parking: speed_kmh >= 3.6 and free_min > 0")
            self._pk_x = float(park["x_m"])
            self._pk_y = float(park["offset_m"])
            if abs(self._pk_x) > 100 or not self._pk_y > 0:
                raise ValueError("parking: |x_m| <= 100, offset_m > 0")
            self._pk_dir = self.lanes[0]["dir"]
            # No parked car counts further (in time) from its stay than this.
            self._pk_reach = (_R_CAP_M + 8.0 + abs(self._pk_x) + self.spacing_m + 1.0) / self._pk_v
        self._parking = park
        self._pk = []  # [ta, tl, type, L, ws, we, dips]
        self._pk_we = []
        self._pk_next = (0, -float(DAY_S))  # (index, free from)

        # Baseline: the Earth's field, a fixed offset per sensor and axis (site: steel nearby,
        # mounting), a drift per degree C per sensor and axis.
        self.baseline_spread_ut = float(get(p, "baseline_spread_ut", 1.0))
        self.drift_ut_per_c = float(get(p, "drift_ut_per_c", 0.05))
        rs = _Rng(self._s32, 0, _S_SITE)
        self._site = []
        self._dcoef = []
        for n in range(2):
            self._site.append(tuple(self.earth_ut[a] + self.baseline_spread_ut * rs.uniform(-1.0, 1.0)
                                    for a in range(3)))
            self._dcoef.append(tuple(self.drift_ut_per_c * rs.uniform(-1.0, 1.0) for a in range(3)))
        self.air_min_c = float(get(p, "air_min_c", 8))
        self.air_max_c = float(get(p, "air_max_c", 22))
        self.air_peak_h = float(get(p, "air_peak_h", 15))
        self.air_jitter_c = float(get(p, "air_jitter_c", 2))
        self._air_mid = 0.5 * (self.air_min_c + self.air_max_c)
        self._toff = {}

        loc = int(start_unix) + int(float(get(p, "tz_h", 0)) * HOUR_S)
        self.start_unix = int(start_unix)
        self._d0 = loc // DAY_S
        self._s0 = loc - self._d0 * DAY_S  # seconds into day _d0 at t_s = 0

        # Per lane: chunk meta (its start state and time bounds), cached chunks, queue days.
        self._meta = [[] for _ in self.lanes]  # type: list
        self._chunks = [{} for _ in self.lanes]  # type: list
        self._qdays = [{} for _ in self.lanes]  # type: list
        self._use = 0
        # Per sensor: the vehicles that may be near in [lo, hi), and the drift knots.
        self._act = [[1.0, 0.0, [], []], [1.0, 0.0, [], []]]
        self._dk = [[None, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [None, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
        self.chips = []  # the fake magnetometers attach() put on the board

    def _lane(self, i, spec, fixed, light, sched):
        if not isinstance(spec, dict):
            raise ValueError("lanes[%d]: an object" % i)
        d = int(get(spec, "direction", 1 if i == 0 else -1))
        if d not in (1, -1):
            raise ValueError("lanes[%d].direction: 1 or -1" % i)
        y = float(get(spec, "offset_m", 1.8 + 3.2 * i))
        if not 0.3 <= y <= 30:
            raise ValueError("lanes[%d].offset_m: 0.3 to 30 m" % i)
        limit = float(get(spec, "speed_limit_kmh", self.speed_limit_kmh))
        if not 10 <= limit <= 200:
            raise ValueError("lanes[%d].speed_limit_kmh: 10 to 200" % i)
        h0 = float(get(spec, "min_headway_s", self.min_headway_s))
        if not h0 > 0:
            raise ValueError("lanes[%d].min_headway_s must be > 0" % i)
        lf = get(spec, "rate_vph", fixed)
        if lf is not None:
            lam = float(lf) / HOUR_S
            peak = lam
        else:
            lam = None
            peak = float(get(spec, "vph", self.vph)) / HOUR_S
        if peak < 0 or peak * h0 > 0.95:
            raise ValueError("lanes[%d]: the rate must be >= 0 and below 0.95 / min_headway_s" % i)
        lt = light
        if "light" in spec:
            lt = _opt(spec["light"], _LIGHT, False, "lanes[%d].light" % i)
        if lt is not None:
            lt = dict(lt)
            for k in ("cycle_s", "green_s", "offset_s", "distance_m", "sat_headway_s", "accel_mps2"):
                lt[k] = float(lt[k])
            if not 0 < lt["green_s"] <= lt["cycle_s"] or lt["distance_m"] < 0:
                raise ValueError("light: need 0 < green_s <= cycle_s and distance_m >= 0")
            if not lt["sat_headway_s"] > 0 or not lt["accel_mps2"] > 0:
                raise ValueError("light: sat_headway_s and accel_mps2 must be > 0")
        q = sched + _scheduled_queues(spec.get("queue"))
        return {"dir": d, "y": y, "v_mean": limit * self.speed_mean / 3.6,
                "v_sd": limit * self.speed_sd / 3.6, "limit": limit / 3.6, "h0": h0,
                "fixed": lam, "peak": peak, "mu_max": peak / (1.0 - peak * h0),
                "light": lt, "queue": q}

    # ---- calendar -----------------------------------------------------------------------
    def _day_of(self, t):
        return self._d0 + int(math.floor((self._s0 + t) / DAY_S))

    def _day_start(self, day):
        return float((day - self._d0) * DAY_S - self._s0)

    def weekday_hour(self, t_s):
        """(weekday 0 = Monday, local hour as a float) at t_s."""
        day = self._day_of(t_s)
        return (day + _EPOCH_WEEKDAY) % 7, (t_s - self._day_start(day)) / HOUR_S

    def _weight(self, day, h):
        return self._prof[_DAY_TYPE_OF_WEEKDAY[(day + _EPOCH_WEEKDAY) % 7]][h]

    def _lam(self, lane, t):
        """Demand of a lane at t, vehicles per second."""
        if lane["fixed"] is not None:
            return lane["fixed"]
        day = self._day_of(t)
        x = (t - self._day_start(day)) / HOUR_S - 0.5  # hours after the middle of hour 0
        if x < 0:
            day -= 1
            x += 24.0
        h = int(x)
        f = x - h
        if h > 23:
            h = 23
            f = 1.0
        w0 = self._weight(day, h)
        w1 = self._weight(day, h + 1) if h < 23 else self._weight(day + 1, 0)
        return lane["peak"] * (w0 + (w1 - w0) * f)

    def rate_vph(self, lane, t_s):
        """The demand of lane `lane` at t_s, vehicles per hour."""
        return self._lam(self.lanes[lane], float(t_s)) * HOUR_S

    # ---- temperature and baseline ---------------------------------------------------------
    def _day_offset(self, day):
        v = self._toff.get(day)
        if v is None:
            v = _Rng(self._s32, day, _S_TEMP).uniform(-self.air_jitter_c, self.air_jitter_c)
            self._toff[day] = v
        return v

    def temperature_c(self, t_s):
        """Air temperature at the node (deg C): a daily cycle plus day-to-day offsets."""
        t = float(t_s)
        day = self._day_of(t)
        hour = (t - self._day_start(day)) / HOUR_S
        amp = 0.5 * (self.air_max_c - self.air_min_c)
        if hour >= 12:
            a, f = day, (hour - 12) / 24.0
        else:
            a, f = day - 1, (hour + 12) / 24.0
        off = self._day_offset(a) * (1.0 - f) + self._day_offset(a + 1) * f
        return self._air_mid + off + amp * math.cos(2.0 * math.pi * (hour - self.air_peak_h) / 24.0)

    def _base_at_knot(self, n, k):
        dt = self.temperature_c(k * _DRIFT_KNOT_S) - self._air_mid
        s = self._site[n]
        c = self._dcoef[n]
        return (s[0] + c[0] * dt, s[1] + c[1] * dt, s[2] + c[2] * dt)

    def _knots(self, n, k):
        dk = self._dk[n]
        if dk[0] != k:
            a = self._base_at_knot(n, k)
            b = self._base_at_knot(n, k + 1)
            dk[0] = k
            dk[1], dk[2], dk[3] = a
            dk[4], dk[5], dk[6] = b
        return dk

    def baseline(self, sensor_index, t_s):
        """The field at a sensor with no vehicle near and no parked car: Earth + the sensor's
        offset + the temperature drift (exact at multiples of 10 s, linear in between)."""
        t = float(t_s)
        k = int(math.floor(t / _DRIFT_KNOT_S))
        dk = self._knots(sensor_index, k)
        f = (t - k * _DRIFT_KNOT_S) / _DRIFT_KNOT_S
        return (dk[1] + (dk[4] - dk[1]) * f, dk[2] + (dk[5] - dk[2]) * f, dk[3] + (dk[6] - dk[3]) * f)

    # ---- queues ----------------------------------------------------------------------------
    def _queue_day(self, li, day):
        v = self._qdays[li].get(day)
        if v is not None:
            return v
        v = []
        q = self._queues
        wd = (day + _EPOCH_WEEKDAY) % 7
        if q is not None and not (q["weekdays_only"] and wd >= 5):
            r = _Rng(self._s32, day, _S_QUEUE + 16 * li)
            t0 = self._day_start(day)
            for at in q["at_h"]:
                hit = r.u() < float(q["prob"])
                mid = float(at) + r.uniform(-1.0, 1.0) * float(q["spread_h"])
                dur = r.uniform(self._q_dur[0], self._q_dur[1]) * 60.0
                kmh = r.uniform(self._q_speed[0], self._q_speed[1])
                if hit:
                    s = t0 + mid * HOUR_S - 0.5 * dur
                    v.append((s, s + dur, max(kmh / 3.6, _V_MIN)))
        self._qdays[li][day] = v
        return v

    def _queue_speed(self, li, t):
        """The crawl speed (m/s) of a queue over the sensor in lane li at t, or 0."""
        for s, e, v in self.lanes[li]["queue"]:
            if s <= t < e:
                return v
        if self._queues is None:
            return 0.0
        day = self._day_of(t)
        for d in (day, day - 1):
            for s, e, v in self._queue_day(li, d):
                if s <= t < e:
                    return v
        return 0.0

    def queues(self, t0_s, t1_s):
        """[(lane, start_s, end_s, speed_kmh)] of the queue episodes overlapping [t0_s, t1_s)."""
        out = []
        for li in range(len(self.lanes)):
            eps = list(self.lanes[li]["queue"])
            if self._queues is not None:
                for d in range(self._day_of(t0_s) - 1, self._day_of(t1_s) + 1):
                    eps += self._queue_day(li, d)
            for s, e, v in eps:
                if s < t1_s and e > t0_s:
                    out.append((li, s, e, v * 3.6))
        out.sort(key=lambda x: (x[1], x[0]))
        return out

    # ---- traffic, chunk by chunk ----------------------------------------------------------
    def _pick_type(self, r):
        x = r.u()
        cum = self._mix_cum
        for i in range(3):
            if x < cum[i]:
                return i
        return 3

    def _gen(self, li, k, st):
        """The vehicles of lane li whose demand time falls in chunk k, from the state st the
        previous chunk ended in. Returns (vehicles, end state); a vehicle is (t, type, L, v, y):
        front at sensor 0 at t, speed v m/s, lateral offset y m."""
        lane = self.lanes[li]
        a0 = float(k * _CHUNK_S)
        a1 = a0 + _CHUNK_S
        idx = (k - _K0) * 8 + li
        ra = _Rng(self._s32, idx, _S_ARRIVE)
        rv = _Rng(self._s32, idx, _S_VEHICLE)
        a_last, t_last, v_last, l_last, d_last = st
        h0 = lane["h0"]
        mu_max = lane["mu_max"]
        lt = lane["light"]
        gap = self.jam_gap_m
        out = []  # type: list
        if mu_max <= 0:
            return out, st
        s = max(a0, a_last + h0)
        while True:
            # Demand: the first point of a Poisson process of rate mu(t) = lam / (1 - lam h0)
            # after s, by thinning; the next one starts h0 later (mean headway 1 / lam).
            s += ra.expo() / mu_max
            if s >= a1:
                break
            lam = self._lam(lane, s)
            if ra.u() * mu_max * (1.0 - lam * h0) >= lam:
                continue
            a = s
            a_last = a
            s = a + h0
            ti = self._pick_type(rv)
            ln = rv.uniform(_LEN[ti][0], _LEN[ti][1])
            v = lane["v_mean"] * _SPEED[ti] + lane["v_sd"] * _SD[ti] * rv.gauss()
            v = min(max(v, 0.5 * lane["limit"]), 1.5 * lane["limit"])
            y = lane["y"] + rv.uniform(-0.4, 0.4)
            t = a
            if lt is not None:
                # Upstream light: at the stop line at a - D / v; held while red or while the
                # queue ahead leaves at the saturation headway; a held vehicle starts from rest.
                dist = lt["distance_m"]
                sl = a - dist / v
                dep = max(sl, d_last + lt["sat_headway_s"])
                x = dep - lt["offset_s"]
                ph = x - lt["cycle_s"] * math.floor(x / lt["cycle_s"])
                if ph >= lt["green_s"]:
                    dep += lt["cycle_s"] - ph
                if dep > sl:
                    t = dep + dist / v + v / (2.0 * lt["accel_mps2"])
                d_last = dep
            qv = self._queue_speed(li, t)
            if qv > 0:
                v = min(v, qv * rv.uniform(0.8, 1.2))
            v = max(v, _V_MIN)
            # Car following: close behind a slower leader, the follower takes its speed; no
            # front ever closer than min_headway_s, nor a gap under jam_gap_m to the leader.
            if t - t_last < self.follow_s and v > v_last:
                v = v_last
            hreq = max(h0, (l_last + gap) / v_last)
            if t < t_last + hreq:
                t = t_last + hreq
                v = min(v, v_last)
            out.append((t, ti, ln, v, y))
            t_last, v_last, l_last = t, v, ln
        return out, (a_last, t_last, v_last, l_last, d_last)

    def _chunk_of(self, t):
        return int(math.floor(t / _CHUNK_S))

    def _bounds(self, li, vs):
        """(earliest window start, latest window end, pre, post) over both sensors: a vehicle
        at t counts from t - pre to t + post at the latest."""
        d = self.lanes[li]["dir"]
        s = self.spacing_m
        ws = _BIG
        we = -_BIG
        pre = 0.0
        post = 0.0
        for t, ti, ln, v, y in vs:
            r = self._rb[ti]
            a = (r + (s if d < 0 else 0.0)) / v
            b = (ln + r + (s if d > 0 else 0.0)) / v
            ws = min(ws, t - a)
            we = max(we, t + b)
            pre = max(pre, a)
            post = max(post, b)
        return ws, we, pre, post

    def _ensure(self, li, k):
        meta = self._meta[li]
        while len(meta) <= k - _K0:
            kk = len(meta) + _K0
            if meta:
                st = meta[-1][7]
            else:
                st = (-_BIG, -_BIG, 1.0, 0.0, -_BIG)
            vs, end = self._gen(li, kk, st)
            ws, we, pre, post = self._bounds(li, vs)
            cum = max(we, meta[-1][3]) if meta else we
            t_first = vs[0][0] if vs else _BIG
            t_last = vs[-1][0] if vs else -_BIG
            # [start state, ws, we, cummax we, t_first, t_last, (pre, post), end state]
            meta.append([st, ws, we, cum, t_first, t_last, (pre, post), end])
            self._store(li, kk, vs)

    def _store(self, li, k, vs):
        ch = self._chunks[li]
        self._use += 1
        c = [vs, None, self._use, [v[0] for v in vs]]
        ch[k] = c
        if len(ch) > _CACHE_CHUNKS:
            old = None
            for kk in ch:
                if old is None or ch[kk][2] < ch[old][2]:
                    old = kk
            del ch[old]
        return c

    def _chunk(self, li, k):
        """The chunk [vehicles, records or None, last use, times] (regenerated if dropped)."""
        self._ensure(li, k)
        c = self._chunks[li].get(k)
        if c is None:
            vs, _ = self._gen(li, k, self._meta[li][k - _K0][0])
            c = self._store(li, k, vs)
        else:
            self._use += 1
            c[2] = self._use
        return c

    def _records(self, li, k, c):
        """Per sensor, the field records (ws, we, t0, vd, dy, L, dips) of a chunk's vehicles:
        the vehicle counts at the sensor from ws to we; its front is at vd * (t - t0)."""
        if c[1] is not None:
            return c[1]
        lane = self.lanes[li]
        d = lane["dir"]
        rm = _Rng(self._s32, (k - _K0) * 8 + li, _S_MAGNET)
        r0 = []
        r1 = []
        for t, ti, ln, v, y in c[0]:
            kt = _KT[ti] * self.moment_scale * rm.loguniform(_K_SPREAD[0], _K_SPREAD[1])
            dips = _dipoles(rm, ti, kt, d, y, self.sensor_height_m, self._e_dir)
            r = min(_R_CAP_M, (2.0 * kt / _EPS_UT) ** (1.0 / 3.0))
            for n in range(2):
                tn = t + d * self._xs[n] / v
                rec = (tn - r / v, tn + (ln + r) / v, t, d * v, -y, ln, dips)
                if n:
                    r1.append(rec)
                else:
                    r0.append(rec)
        c[1] = (r0, r1)
        return c[1]

    def vehicles(self, t0_s, t1_s):
        """[(t_front_at_sensor0_s, lane, direction, type, length_m, speed_kmh)] of the vehicles
        whose front passes sensor 0 in [t0_s, t1_s), in time order."""
        t0 = float(t0_s)
        t1 = float(t1_s)
        out = []  # type: list
        if t1 <= t0:
            return out
        for li in range(len(self.lanes)):
            d = self.lanes[li]["dir"]
            kmax = self._chunk_of(t1)  # a vehicle passes no earlier than its demand time
            self._ensure(li, kmax)
            meta = self._meta[li]
            for k in range(_K0, kmax + 1):
                m = meta[k - _K0]
                if m[5] < t0 or m[4] >= t1:
                    continue
                for t, ti, ln, v, y in self._chunk(li, k)[0]:
                    if t0 <= t < t1:
                        out.append((t, li, d, TYPES[ti], ln, v * 3.6))
        out.sort()
        return out

    # ---- parked cars ----------------------------------------------------------------------
    def _park_ensure(self, t):
        if self._parking is None:
            return
        while not self._pk or self._pk[-1][0] - self._pk_reach <= t:
            i, free = self._pk_next
            r = _Rng(self._s32, i, _S_PARK)
            ta = free + r.expo() * self._pk_free_s
            tl = ta + 60.0 * r.loguniform(self._pk_stay[0], self._pk_stay[1])
            x = r.u()
            ti = 1 if x < _PARK_MIX[1] else 2
            ln = r.uniform(_LEN[ti][0], _LEN[ti][1])
            kt = _KT[ti] * self.moment_scale * r.loguniform(_K_SPREAD[0], _K_SPREAD[1])
            y = self._pk_y + r.uniform(-0.2, 0.2)
            d = self._pk_dir
            dips = _dipoles(r, ti, kt, d, y, self.sensor_height_m, self._e_dir)
            rad = min(_R_CAP_M, (2.0 * kt / _EPS_UT) ** (1.0 / 3.0))
            reach = (rad + ln + abs(self._pk_x) + self.spacing_m + 1.0) / self._pk_v
            xr = self._pk_x + d * 0.5 * ln  # the front, at rest
            self._pk.append((ta, tl, ti, ln, ta - reach, tl + reach, xr, d * self._pk_v, -y, dips))
            # the latest end so far (nondecreasing, for the search in _rebuild)
            self._pk_we.append(max(tl + reach, self._pk_we[-1]) if self._pk_we else tl + reach)
            self._pk_next = (i + 1, tl)

    def parked(self, t0_s, t1_s):
        """[(arrive_s, leave_s, type, length_m)] of the parked cars whose stay (at rest in the
        spot) overlaps [t0_s, t1_s)."""
        t0 = float(t0_s)
        t1 = float(t1_s)
        self._park_ensure(t1)
        out = []
        for e in self._pk:
            if e[0] < t1 and e[1] > t0:
                out.append((e[0], e[1], TYPES[e[2]], e[3]))
        return out

    # ---- the field ---------------------------------------------------------------------------
    def _rebuild(self, n, t):
        lo = t - 0.25
        hi = t + _SPAN_S
        recs = []
        for li in range(len(self.lanes)):
            kmax = self._chunk_of(hi + _PRE_MAX_S)
            self._ensure(li, kmax)
            meta = self._meta[li]
            found = []
            k = kmax
            while k >= _K0:
                m = meta[k - _K0]
                if m[3] < lo:
                    break
                if m[2] >= lo and m[1] <= hi:
                    found.append(k)
                k -= 1
            for j in range(len(found) - 1, -1, -1):
                k = found[j]
                m = meta[k - _K0]
                c = self._chunk(li, k)
                rr = self._records(li, k, c)[n]
                ts = c[3]
                i = _bisect(ts, lo - m[6][1])
                top = hi + m[6][0]
                while i < len(ts) and ts[i] <= top:
                    rec = rr[i]
                    if rec[1] >= lo and rec[0] <= hi:
                        recs.append(rec)
                    i += 1
        parked = []
        if self._parking is not None:
            self._park_ensure(hi)
            i = _bisect(self._pk_we, lo)
            while i < len(self._pk) and self._pk[i][0] - self._pk_reach <= hi:
                e = self._pk[i]
                if e[4] <= hi and e[5] >= lo:
                    parked.append(e)
                i += 1
        a = self._act[n]
        a[0] = lo
        a[1] = hi
        a[2] = recs
        a[3] = parked
        return a

    def field(self, sensor_index, t_us):
        """(bx, by, bz) in uT at sensor 0 or 1 at t_us (virtual microseconds)."""
        n = sensor_index
        t = t_us / 1000000.0
        a = self._act[n]
        if not a[0] <= t < a[1]:
            a = self._rebuild(n, t)
        k = int(math.floor(t / _DRIFT_KNOT_S))
        dk = self._dk[n]
        if dk[0] != k:
            dk = self._knots(n, k)
        f = (t - k * _DRIFT_KNOT_S) / _DRIFT_KNOT_S
        bx = dk[1] + (dk[4] - dk[1]) * f
        by = dk[2] + (dk[5] - dk[2]) * f
        bz = dk[3] + (dk[6] - dk[3]) * f
        xs = self._xs[n]
        sqrt = math.sqrt
        for ws, we, t0, vd, dy, ln, dips in a[2]:
            if ws <= t <= we:
                # _add_dipoles, inlined: this is the hot loop at 50-100 Hz
                dx0 = xs - vd * (t - t0)
                for u, rho2, dz, kx, ky, kz, c in dips:
                    dx = dx0 + u * ln
                    r2 = dx * dx + rho2
                    inv3 = 1.0 / (r2 * sqrt(r2))
                    q = 3.0 * (kx * dx + c) / r2
                    bx += (q * dx - kx) * inv3
                    by += (q * dy - ky) * inv3
                    bz += (q * dz - kz) * inv3
        for ta, tl, ti, ln, ws, we, xr, vpd, dy, dips in a[3]:
            if ws <= t <= we:
                if t < ta:
                    xf = xr - vpd * (ta - t)
                elif t > tl:
                    xf = xr + vpd * (t - tl)
                else:
                    xf = xr
                bx, by, bz = _add_dipoles(xs - xf, dy, ln, dips, bx, by, bz)
        return (bx, by, bz)

    def field_source(self, index):
        """callable(board, t_us) -> field(index, t_us): what the fake chip takes."""
        if index not in (0, 1):
            raise ValueError("sensor index 0 or 1")

        def source(board, t_us):
            return self.field(index, t_us)

        return source


def attach(board, params, seed, start_unix):
    """Create the road, keep it in board.extra["world"], and put two fake magnetometers on the
    board's traffic buses: sensor 0 on i2c_id, sensor 1 on i2c2_id, each
    chip_magnetometer.Magnetometer(board, bus, field, kind=params "sensor" (default
    "qmc5883l")), with params "noise_ut" passed on when given. The chip's temperature output
    follows the road's air temperature at each sample."""
    params = dict(params or {})
    r = Road(params, seed, start_unix)
    board.extra["world"] = r
    pins = board.profile["pins"]["traffic"]
    import chip_magnetometer  # type: ignore[import-not-found]  # a bare name in simulator/mp

    kw = {"kind": r.sensor}
    if params.get("noise_ut") is not None:
        kw["noise_ut"] = float(params["noise_ut"])
    chips = []  # type: list
    for n, bus in ((0, pins["i2c_id"]), (1, pins["i2c2_id"])):
        chips.append(chip_magnetometer.Magnetometer(board, bus, _sensed(r, n, chips), **kw))
    r.chips = chips
    return r


def _sensed(road, n, chips):
    # The field source of sensor n; it also sets the chip's temperature (its 0x07 register).
    def source(board, t_us):
        if len(chips) > n:
            chips[n].temp_c = road.temperature_c(t_us / 1000000.0)
        return road.field(n, t_us)

    return source
