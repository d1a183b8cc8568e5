"""The water-meter node end to end: the firmware (nodes/water_meter.py, drivers/pulse.py,
water_total, water_logic) counting a fake reed switch driven by the water world."""

import json

import pytest

from host import schemas
from simulator import engine, scenario, wasi


def meter(hours, world, faults=(), node_cfg=None, seed=4, sample_s=60, report_s=3600):
    return scenario.parse({"name": "water", "hours": hours, "seed": seed, "nodes": [
        {"id": "wm-1", "type": "water_meter", "board": "lolin-d32",
         "config": {"sample_s": sample_s, "report_s": report_s, "node": node_cfg or {}}, "world": world}],
        "faults": list(faults)})


def readings(n):
    return [r for m in n.messages if m.topic.endswith("/telemetry") for r in json.loads(m.payload)["r"]]


def events(n, name=None):
    out = [json.loads(m.payload) for m in n.messages if m.topic.endswith("/event")]
    return [e for e in out if name is None or e["event"] == name]


def node_totals(n):
    """(fwd, rev) pulses the node holds in RTC memory at the end (water_total keeps them there)."""
    rs = json.loads(n.board.rtc_memory or b"{}")
    return tuple(rs["wt"]["wt"][:2])  # the app's Totals keep [fwd, rev, dirty] under "wt"


@pytest.fixture(scope="module")
def soak():
    """45 days of a household with showers, garden watering and backflow, three resets: the
    run crosses three ticks_ms wrap-arounds (2**30 ms = 12.4 days)."""
    # ends at 03:00 on day 46, when nobody draws water: no pulse is between the reed and the total
    sc = meter(45 * 24 + 3, {"persons": 4, "backflow": [[291, 0.3, 40]]},
               faults=[{"kind": "reset", "node": "wm-1", "at_h": h} for h in (100.3, 500.7, 900.1)],
               sample_s=300, report_s=21600)
    sim = engine.Simulation(sc)
    sim.run()
    yield sc, sim
    sim.close()


def test_soak_counts_every_pulse_across_resets_and_tick_wraps(soak):
    sc, sim = soak
    n = sim.nodes[0]
    assert n.board.boots == 4 and n.crashes == 0
    chip = n.world.chip
    assert chip.pulses_fwd > 10000 and chip.pulses_rev > 0
    assert node_totals(n) == (chip.pulses_fwd, chip.pulses_rev), "every pulse, not one more"
    assert n.board.clock.now_us / 1000 > 3 * 2 ** 30


def test_soak_intervals_add_up_to_the_totals(soak):
    sc, sim = soak
    rs = readings(sim.nodes[0])
    assert len(rs) > 44 * 96, "reports went on past the ticks_ms half-period (6.2 days)"
    for a, b in zip(rs, rs[1:]):
        assert b["iv_start"] - a["iv_start"] == 900
    # an observation's volume is shared between the intervals it spans by time, so intervals
    # and the pulse total agree up to what one sample period (5 min) holds at either end
    spread = sum(r["iv_fwd_ml"] for r in rs[1:]) - (rs[-1]["fwd_ml"] - rs[0]["fwd_ml"])
    assert abs(spread) <= 20000, spread
    for m in sim.nodes[0].messages:
        assert schemas.check_message(m.topic, m.payload, "townsense")[1] == []


def test_a_normal_household_raises_no_alarm(soak):
    sc, sim = soak
    names = {e["event"] for e in events(sim.nodes[0])}
    health = [json.loads(m.payload) for m in sim.nodes[0].messages if m.topic.endswith("/health")]
    last = health[-1]
    assert abs(last["uptime_s"] - (last["ts"] - sc.start_unix)) < 600 * 4, "uptime across resets and tick wraps"
    assert "leak" not in names and "burst" not in names and "no_consumption" not in names
    assert "backflow" in names  # the one scheduled


def test_power_cuts_lose_at_most_the_stated_bound():
    every = 50
    cuts = (30.2, 61.5, 95.9)
    sc = meter(120, {"persons": 5}, node_cfg={"save_every_pulses": every},
               faults=[{"kind": "power_cut", "node": "wm-1", "at_h": h} for h in cuts])
    sim = engine.Simulation(sc)
    try:
        sim.run()
        n = sim.nodes[0]
        fwd, rev = node_totals(n)
        truth = n.world.chip.pulses_fwd
        assert truth - len(cuts) * (every - 1) <= fwd <= truth, (fwd, truth)
        assert n.board.boots == 1 + len(cuts)
    finally:
        sim.close()


def test_alarms_each_with_their_evidence():
    world = {"persons": 2, "leaks": [[20, None, 6]], "bursts": [[70, 1.0, 1500]],
             "wire_cut": [[80, 0.5]]}
    sc = meter(100, world)
    sim = engine.Simulation(sc)
    try:
        sim.run()
        n = sim.nodes[0]
        leak = events(n, "leak")
        assert len(leak) == 1 and leak[0]["level"] == "alarm"
        t = (leak[0]["ts"] - sc.start_unix) / 3600
        assert 20 < t <= 20 + 25, "a leak is found within a day (%.1f h after it began)" % (t - 20)
        assert 5000 <= leak[0]["data"]["mnf_ml_h"] <= 7000, leak[0]["data"]
        burst = events(n, "burst")
        assert len(burst) == 1 and 70.4 <= (burst[0]["ts"] - sc.start_unix) / 3600 <= 70.7
        assert burst[0]["data"]["peak_ml_h"] >= 1400000
        tamper = events(n, "tamper")
        assert len(tamper) == 1 and tamper[0]["data"]["wire_cut"] is True
        # events go out at once, not with the next report
        sent = [m.t_us / 1e6 for m in n.messages if m.topic.endswith("/event")]
        stamped = [e["ts"] - sc.start_unix for e in events(n)]
        assert all(s - t < 300 for s, t in zip(sent, stamped))
    finally:
        sim.close()


def test_battery_node_sleeps_between_pulses():
    sc = meter(48, {"persons": 3})
    sim = engine.Simulation(sc)
    try:
        row = sim.run()[0]
        e = sim.nodes[0].board.energy_us
        assert e.get("light_sleep", 0) > 0.9 * sc.duration_us, "the CPU light-sleeps nearly all the time"
        statuses = {json.loads(m.payload)["state"] for m in sim.nodes[0].messages if m.topic.endswith("/status")}
        assert statuses == {"sleeping"}, "the session closes after each report"
        assert row["mah_per_day"] < 60
    finally:
        sim.close()


def test_same_messages_in_micropython():
    sc = meter(8, {"persons": 3, "leaks": [[1, None, 20]]}, sample_s=300)
    sim = engine.Simulation(sc)
    try:
        sim.run()
        res = wasi.run_node(sc.nodes[0], sc)
        mp = [(t, topic, json.loads(p)) for t, topic, p in res.messages()]
        cp = [(m.t_us, m.topic, json.loads(m.payload)) for m in sim.nodes[0].messages]
        assert mp == cp and len(cp) > 5
    finally:
        sim.close()
