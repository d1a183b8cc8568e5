"""The traffic replay (simulator/traffic_replay.py): the firmware's lane logic on the road
world's samples without the board. It must count what a node in the engine counts over the
same road, be deterministic, and its matcher must pair each true vehicle with at most one
detection inside the window."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import bench_traffic, traffic_replay


def test_the_replay_counts_what_the_node_counts():
    """A traffic node in the engine (fake I2C chips, its polling loop, MQTT) and the replay over
    the same 10 minutes of the same road at 800 veh/h: the same count within 3 % (the node's
    sample times are its polling times, the replay's the chip's), and both near the truth."""
    r = bench_traffic.run(800, minutes=10)
    assert r["truth"] > 80
    assert abs(r["counted"] - r["replay_counted"]) <= max(2, 0.03 * r["truth"]), r
    assert abs(r["replay_counted"] - r["truth"]) <= 0.05 * r["truth"], r


def test_the_replay_is_deterministic_and_self_consistent():
    world = {"rate_vph": 1200, "lanes": 1}
    a = traffic_replay.replay(world, 5, 0, 600)
    b = traffic_replay.replay(world, 5, 0, 600)
    assert a["vehicles"] == b["vehicles"] and a["intervals"] == b["intervals"]
    assert len(a["intervals"]) == 2 and [i["t_s"] for i in a["intervals"]] == [300.0, 600.0]
    assert all(0 <= v[0] < 600 and v[1] >= v[0] for v in a["vehicles"])
    # the intervals count the vehicles the replay reports, but for the edges: one that began
    # before t0 and settled after counts in the first interval (as on the node), one settled
    # after the last close in none
    n = sum(i["n"] for i in a["intervals"])
    assert abs(len(a["vehicles"]) - n) <= 3
    assert len(a["truth"]) > 150
    m = traffic_replay.match(a["vehicles"], a["truth"])
    assert m["matched"] >= 0.93 * len(a["truth"])
    # the node's defaults came with it (nodes/traffic_config.py), and a node section overrides them
    assert a["node"]["rel_pct"] == 30
    c = traffic_replay.replay(world, 5, 0, 300, {"thr_on": 400, "thr_off": 300})
    assert c["node"]["thr_on"] == 400 and len(c["vehicles"]) < len(a["vehicles"]) / 2


def test_the_replay_refuses_what_it_does_not_model():
    import pytest

    with pytest.raises(ValueError):
        traffic_replay.replay({"rate_vph": 100, "lanes": 1}, 1, 0, 60, {"sensor": "hmc5883l", "rate_hz": 75})


times = st.lists(st.floats(0, 1000, allow_nan=False), max_size=40).map(sorted)


@settings(max_examples=200, deadline=None)
@given(truth_t=times, det_t=times)
def test_match_pairs_each_truth_with_at_most_one_detection_in_its_window(truth_t, det_t):
    truth = [(t, 0, 1, "car", 4.5, 50.0) for t in truth_t]
    dets = [(t, t + 0.5, 1, 50.0, 4.5) for t in det_t]
    m = traffic_replay.match(dets, truth)
    assert m["matched"] + len(m["missed"]) == len(truth)
    assert m["matched"] + len(m["false"]) == len(dets)
    used = [id(v) for _, v in m["pairs"]]
    assert len(set(used)) == len(used)
    for tv, v in m["pairs"]:
        assert tv[0] - 0.9 <= v[0] <= tv[0] + 0.3
    # a missed vehicle had no detection left over in its window (greedy, in time order)
    for tv in m["missed"]:
        assert not any(tv[0] - 0.9 <= v[0] <= tv[0] + 0.3 for v in m["false"])
