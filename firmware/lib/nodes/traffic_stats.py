# Traffic-counter node: the statistics of one reporting interval, from the vehicles that the
# detector (nodes/traffic_detect.py) and the pair matcher settle. Pure logic, integers only;
# called once per vehicle and once per interval, never per sample.
# Fields, classes and their reasons: docs/traffic_detection.md.
#
# Length classes: a four-bin scheme (two-wheelers, cars, vans, trucks and buses) in the shape
# of the length-based schemes recommended for the US Traffic Monitoring Guide (motorcycles /
# short / medium / long: "Length-Based Vehicle Classification Schemes and Length Bin
# Boundaries", Transportation Research Record 2339, pp. 19-29, 2013), with metric boundaries of
# our own choosing for European vehicles: below 2.5 m no car fits (the shortest city cars are
# about 2.5 m), 5.5 m is beyond the longest cars and 7.5 m is the usual length of a rigid 3.5 t
# van or motorhome; a boundary belongs to the longer class.
from nodes.traffic_detect import tdiff as _tdiff  # ticks_ms differences, wrap-safe

CLASS_MM = (2500, 5500, 7500)  # class boundaries, mm
CLASS_KEYS = ("n_2w", "n_car", "n_van", "n_hgv")  # two-wheeler, car, van, truck/bus


def length_class(length_mm):
    """0 two-wheeler (< 2500 mm), 1 car (< 5500), 2 van (< 7500), 3 truck/bus; None if unknown."""
    if length_mm is None or length_mm < 0:
        return None
    c = 0
    while c < 3 and length_mm >= CLASS_MM[c]:
        c += 1
    return c


def _div(a, b):
    """a / b rounded half up, for a >= 0, b > 0."""
    return (2 * a + b) // (2 * b)


class Interval:
    """Accumulates the vehicles of one interval; close() returns the telemetry fields and
    starts the next interval. Times are ticks_ms (time.ticks_ms()); a vehicle belongs to the
    interval in which it was added (its whole occupancy too)."""

    def __init__(self, interval_s=300):
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.interval_ms = interval_s * 1000
        self.prev_on = None  # t_on of the latest vehicle, across intervals (headways)
        self._clear()

    def _clear(self):
        self.n = 0
        self.n_fwd = 0
        self.n_rev = 0
        self.occ_ms = 0
        self.spd_n = 0
        self.spd_sum = 0  # mm/s
        self.hw_n = 0
        self.hw_sum = 0  # ms
        self.hw_min = None
        self.cls = [0, 0, 0, 0]
        self.n_unk = 0

    def add(self, t_on_ms, t_off_ms, direction, speed_mm_s=None, length_mm=None):
        """One vehicle: its detection times, direction (+1 forward, -1 reverse, 0 or None
        unknown), speed in mm/s and length in mm (None: not measured, e.g. seen by one
        sensor only; a speed <= 0 or a negative length counts as not measured)."""
        self.n += 1
        if direction == 1:
            self.n_fwd += 1
        elif direction == -1:
            self.n_rev += 1
        occ = _tdiff(t_off_ms, t_on_ms)
        if occ > 0:
            self.occ_ms += occ
        if speed_mm_s is not None and speed_mm_s > 0:
            self.spd_n += 1
            self.spd_sum += speed_mm_s
        c = length_class(length_mm)
        if c is None:
            self.n_unk += 1
        else:
            self.cls[c] += 1
        # Headway: front to front (t_on to t_on) of consecutive vehicles. A vehicle settled out
        # of order (older than the latest, e.g. one that only one sensor saw) has none.
        if self.prev_on is not None:
            h = _tdiff(t_on_ms, self.prev_on)
            if h < 0:
                return
            self.hw_n += 1
            self.hw_sum += h
            if self.hw_min is None or h < self.hw_min:
                self.hw_min = h
        self.prev_on = t_on_ms

    def close(self, length_ms=None):
        """The interval's fields, then a new interval. length_ms: the interval's real length
        (default interval_s). Fields: n, n_fwd, n_rev; occ_pm occupancy in per mille of the
        interval (capped at 1000); spd_kmh10 mean speed of the vehicles with one (km/h x 10),
        n_spd how many; hw_mean_s10 / hw_min_s10 headways (s x 10); n_2w, n_car, n_van, n_hgv
        by length, n_unk without a length. A mean without data is None."""
        span = length_ms if length_ms is not None and length_ms > 0 else self.interval_ms
        occ = _div(self.occ_ms * 1000, span)
        out = {
            "n": self.n,
            "n_fwd": self.n_fwd,
            "n_rev": self.n_rev,
            "occ_pm": occ if occ < 1000 else 1000,
            # mm/s -> km/h x 10: x 36 / 1000
            "spd_kmh10": _div(self.spd_sum * 36, self.spd_n * 1000) if self.spd_n else None,
            "n_spd": self.spd_n,
            "hw_mean_s10": _div(self.hw_sum, self.hw_n * 100) if self.hw_n else None,
            "hw_min_s10": _div(self.hw_min, 100) if self.hw_min is not None else None,
            "n_unk": self.n_unk,
        }
        for i in range(4):
            out[CLASS_KEYS[i]] = self.cls[i]
        self._clear()
        return out
