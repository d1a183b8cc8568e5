"""The air-quality node end to end: firmware (nodes/air_quality.py, aq_index, PMS5003/SDS011
and BME280 drivers) against the air world's fake chips, in virtual time."""

import json
import statistics

import pytest

from host import schemas
from simulator import engine, scenario, wasi
from simulator.bench_air import truth_category

WINTER = "2026-01-12T00:00:00Z"


def town(hours, nodes, start=WINTER):
    return scenario.parse({"name": "air", "hours": hours, "seed": 9, "start": start, "nodes": nodes})


def node(node_id, world, node_cfg=None, board="esp32-devkitc", sample_s=600, report_s=600):
    return {"id": node_id, "type": "air_quality", "board": board,
            "config": {"sample_s": sample_s, "report_s": report_s, "node": node_cfg or {}}, "world": world}


def readings(n):
    return [r for m in n.messages if m.topic.endswith("/telemetry") for r in json.loads(m.payload)["r"]]


def events(n):
    return [json.loads(m.payload) for m in n.messages if m.topic.endswith("/event")]


@pytest.fixture(scope="module")
def week():
    sc = town(5 * 24, [
        node("road", {"street": "main_road", "weather_seed": 2, "episodes": [[40, 30, 160]]}),
        node("sds", {"street": "residential", "pm_sensor": "sds011", "weather_seed": 2}, {"pm_sensor": "sds011"}),
        node("dead", {"street": "centre", "weather_seed": 2, "pm_dead": [[30, 12]]}),
        node("corr", {"street": "residential", "weather_seed": 2}, {"correction": "kohler", "kappa_x100": 30}),
    ])
    sim = engine.Simulation(sc)
    rows = {r["node"]: r for r in sim.run()}
    yield sc, sim, rows
    sim.close()


def test_messages_match_the_schemas_and_mains_nodes_never_reset(week):
    sc, sim, rows = week
    for n in sim.nodes:
        assert n.crashes == 0 and n.board.boots == 1, "%s: the warm-up must not starve the watchdog" % n.id
        for m in n.messages:
            kind, problems = schemas.check_message(m.topic, m.payload, "townsense")
            assert problems == [], (m.topic, m.payload, problems)


def test_pm_sensor_sleeps_between_cycles(week):
    sc, sim, rows = week
    for nid in ("road", "sds"):
        share = rows[nid]["laser_on_s"] / (sc.hours * 3600)
        # warm-up 30 s + 5 readings 1 s (PMS5003) or 3 s (SDS011) apart, every 10 minutes
        assert 0.04 < share < 0.09, "%s: laser on %.1f %% of the time" % (nid, 100 * share)


def test_dry_readings_follow_the_world(week):
    sc, sim, rows = week
    for n in sim.nodes:
        errs, env = [], []
        for r in readings(n):
            if "pm25" not in r:
                continue
            st = n.world.state_at(r["ts"] - sc.start_unix)
            if st["rh"] < 60:
                errs.append(abs(r["pm25"] - st["pm25"]) / max(st["pm25"], 5))
            env.append((abs(r["t"] - st["temp_c"]), abs(r["hpa"] - st["hpa"]), abs(r["rh"] - st["rh"])))
        assert len(errs) > 20, n.id
        assert statistics.median(errs) < 0.15, "%s: median PM2.5 error %.0f %%" % (n.id, 100 * statistics.median(errs))
        # the readings are taken a few tens of seconds into the cycle; the weather moves slowly
        assert statistics.median(e[0] for e in env) < 0.2 and statistics.median(e[1] for e in env) < 0.3
        assert statistics.median(e[2] for e in env) < 1.5


def test_humid_readings_are_flagged(week):
    sc, sim, rows = week
    for n in sim.nodes:
        for r in readings(n):
            if "rh" in r and "pm25" in r:
                assert ("wet" in r) == (int(r["rh"]) > 85), r


def test_hourly_aqi_agrees_with_the_truth_in_dry_hours(week):
    sc, sim, rows = week
    agree = total = 0
    for n in sim.nodes:
        for r in readings(n):
            if "aqi_cat" not in r:
                continue
            hour_end = (r["ts"] // 3600) * 3600 - sc.start_unix
            if max(n.world.hourly_mean("rh", hour_end, 12)) >= 70:
                continue
            t = truth_category(n.world, hour_end)
            if t is not None:
                total += 1
                agree += t == r["aqi_cat"]
    assert total > 30 and agree / total > 0.85, (agree, total)


def test_episode_raises_air_quality_and_recovery_clears_it(week):
    sc, sim, rows = week
    ev = [e for e in events(sim.by_id["road"]) if e["event"] == "air_quality"]
    assert ev and ev[0]["level"] == "alarm" and ev[0]["data"]["category"] >= 3
    t0 = (ev[0]["ts"] - sc.start_unix) / 3600
    assert 40 <= t0 <= 46, "alarm %.1f h in, the episode began at 40 h" % t0
    clears = [e for e in ev if e["level"] == "info"]
    assert clears and (clears[0]["ts"] - sc.start_unix) / 3600 > 70
    levels = [e["level"] for e in ev]
    assert all(a != b for a, b in zip(levels, levels[1:])), "alarm and all-clear alternate"


def test_a_dead_pm_sensor_is_reported_and_the_rest_goes_on(week):
    sc, sim, rows = week
    n = sim.by_id["dead"]
    gap = [r for r in readings(n) if 30.2 * 3600 < r["ts"] - sc.start_unix < 41.8 * 3600]
    assert gap and all("pm_err" in r and "pm25" not in r and "t" in r for r in gap)
    after = [r for r in readings(n) if r["ts"] - sc.start_unix > 43 * 3600]
    assert after and all("pm25" in r for r in after)


def test_correction_only_when_configured(week):
    sc, sim, rows = week
    assert any("pm25_corr" in r for r in readings(sim.by_id["corr"]))
    assert not any("pm25_corr" in r for r in readings(sim.by_id["road"]))
    wet = [(r["pm25"], r["pm25_corr"], sim.by_id["corr"].world.state_at(r["ts"] - sc.start_unix)["pm25"])
           for r in readings(sim.by_id["corr"]) if "pm25_corr" in r and r["rh"] > 90]
    if wet:  # the corrected value is nearer the truth than the raw one on foggy readings
        raw = statistics.median(abs(a - t) for a, _, t in wet)
        corr = statistics.median(abs(c - t) for _, c, t in wet)
        assert corr < raw


def test_same_messages_in_micropython():
    sc = town(3, [node("road", {"street": "main_road"}), node("sds", {"street": "residential", "pm_sensor": "sds011"},
                                                              {"pm_sensor": "sds011"})])
    sim = engine.Simulation(sc)
    try:
        sim.run()
        for i, spec in enumerate(sc.nodes):
            res = wasi.run_node(spec, sc)
            mp = [(t, topic, json.loads(p)) for t, topic, p in res.messages()]
            cp = [(m.t_us, m.topic, json.loads(m.payload)) for m in sim.nodes[i].messages]
            assert mp == cp and len(cp) > 10, spec.id
    finally:
        sim.close()
