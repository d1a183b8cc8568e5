# Traffic-counter node: one lane watched by two magnetometers, from samples to interval
# statistics. The app (nodes/traffic.py) reads the chips and feeds the detectors; this module
# owns what follows a detection: pairing the two sensors, the counting rule and the interval's
# statistics. No hardware here, so the simulator's week-long bench (simulator/traffic_replay.py)
# runs exactly this code on the road world's samples.
from nodes import traffic_detect, traffic_stats

RULES = ("thr_on", "thr_off", "min_gap_ms", "rel_pct", "smooth", "warm_s", "zone_mm")  # node keys the detector takes


class Lane:
    """dets[0] (sensor A, the counting loop) and dets[1] (sensor B, spacing_mm further along
    the lane) take the samples: call dets[i].feed(x, y, z, t_ms) and, when it returns nonzero,
    detected(i). flush(now_ms) now and then settles detections that can no longer pair;
    close(span_ms) returns the interval's fields (traffic_stats.Interval.close, Nones dropped).
    n: the node section of the config (nodes/traffic_config.py)."""

    def __init__(self, n):
        rules = {}
        for k in RULES:
            rules[k] = n[k]
        self.rules = rules
        self.dets = [traffic_detect.Detector(n["rate_hz"], rules), traffic_detect.Detector(n["rate_hz"], rules)]
        self.pairs = traffic_detect.PairMatcher(n["spacing_mm"], rules)
        self.stats = traffic_stats.Interval(n["interval_s"])
        self.on_vehicle = None  # optional callable(vehicle tuple), e.g. for a bench's log

    def detected(self, i):
        last = self.dets[i].last
        for v in self.pairs.add(i, last[0], last[1], last[4]):
            self._vehicle(v)

    def flush(self, now_ms):
        for v in self.pairs.flush(now_ms):
            self._vehicle(v)

    def _vehicle(self, v):
        # A paired vehicle counts with its speed, length and direction. Of the unpaired ones
        # only sensor A's count (a vehicle B alone saw is counted by A or lost, never twice):
        # sensor A is the counting loop, B only times it.
        if v[2] == 0 and v[5] != 0:
            return
        self.stats.add(v[0], v[1], v[2], v[3], v[4])
        if self.on_vehicle is not None:
            self.on_vehicle(v)

    def close(self, span_ms):
        r = self.stats.close(span_ms)
        for k in list(r):
            if r[k] is None:
                del r[k]
        return r
