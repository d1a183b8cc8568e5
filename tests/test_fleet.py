"""The fleet tools (host/fleet.py) and the collection route (host/route.py) on what the collector
stored from a simulated town over a real mosquitto, and on small hand-made databases whose right
answers are known."""

import argparse
import csv
import io
import json
import random
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host import collector, fleet, route
from host.collector import Collector, Store
from host.registry import Registry
from simulator import engine, scenario
from tests.brokers import Mosquitto
from tests.test_collector import wait_for

HOURS = 30
HOME = {"sensor": "jsn-sr04t", "empty_mm": 1100, "full_mm": 300}


def cli(argv, capsys):
    """Run `townsense <argv>` through the modules' own register(); (exit status, stdout, stderr)."""
    p = argparse.ArgumentParser(prog="townsense")
    sub = p.add_subparsers(dest="cmd", required=True)
    for m in (collector, fleet, route):
        m.register(sub)
    args = p.parse_args([str(a) for a in argv])
    rc = args.func(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    """Three bins (one filling fast), a battery and a mains heartbeat node, 30 virtual hours,
    collected into SQLite. bin-3 loses power at 19 h and stays dark: overdue at the end."""
    d = tmp_path_factory.mktemp("fleet")
    broker = Mosquitto(d / "mosquitto").start()
    db_path = d / "town.db"
    sc = scenario.parse({"name": "fleet", "hours": HOURS, "seed": 3, "nodes": [
        {"id": "bin-{n}", "count": 3, "type": "fill_level", "board": "lolin-d32",
         "config": {"sample_s": 1800, "report_s": 21600, "node": HOME},
         "world": [{"use": "home", "litres_per_day": 200}, {"use": "shop"}, {"use": "home", "litres_per_day": 20}]},
        {"id": "b-{n}", "type": "heartbeat", "board": "lolin-d32", "config": {"sample_s": 900, "report_s": 3600}},
        {"id": "m-{n}", "type": "heartbeat", "board": "esp32-devkitc", "config": {"sample_s": 600, "report_s": 1200}},
    ], "faults": [{"kind": "power_cut", "node": "bin-3", "at_h": 19, "for_h": 20}]})
    col = Collector(broker.url, db_path).start()
    sim = engine.Simulation(sc, broker=("127.0.0.1", broker.port))
    try:
        sim.run()
        n_readings = sum(len(json.loads(m.payload)["r"]) for n in sim.nodes for m in n.messages
                         if m.topic.endswith("/telemetry"))
        wait_for(lambda: col.counts["readings"] >= n_readings)
        assert col.wait_quiet()
    finally:
        sim.close()
        col.stop()
        broker.stop()
    reg_path = d / "registry.db"
    with Registry(reg_path) as reg:
        for i, n in enumerate(("bin-1", "bin-2", "bin-3")):
            reg.upsert(n, type="fill_level", board="lolin-d32", location="Main St %d" % (i + 1),
                       lat=52.09 + 0.01 * i, lon=5.12 + 0.005 * i)
    yield SimpleNamespace(sc=sc, sim=sim, db=db_path, registry=reg_path, end=sc.start_unix + HOURS * 3600)


def bodies(node, kind):
    return [json.loads(m.payload) for m in node.messages if m.topic.endswith("/" + kind)]


def node_ts(node):
    """Every node-clock time in what the node sent (readings, events, health, status)."""
    out = [r["ts"] for b in bodies(node, "telemetry") for r in b["r"] if "u" not in r]
    for kind in ("event", "health", "status"):
        out += [b["ts"] for b in bodies(node, kind) if "ts" in b and "u" not in b]
    return out


# ---- status ------------------------------------------------------------------------------------------

def test_status_every_node_no_loss_last_seen_battery_and_rssi(town, capsys):
    db = fleet.open_db(town.db)
    rows = {r["node"]: r for r in fleet.fleet_status(db, fleet.load_registry(town.registry), now=town.end)}
    db.close()
    assert set(rows) == {n.id for n in town.sim.nodes}
    for node in town.sim.nodes:
        r = rows[node.id]
        seqs = {x["seq"] for x in bodies(node, "telemetry") for x in x["r"]} | {e["seq"] for e in bodies(node, "event")}
        assert (r["received"], r["expected"], r["gaps"], r["lost"]) == (len(seqs), max(seqs) + 1, 0, 0)
        assert r["loss_pct"] == 0.0
        assert r["last_seen"] == max(node_ts(node))
        health = bodies(node, "health")[-1]
        assert (r["batt_mv"], r["rssi"]) == (health["batt_mv"], health["rssi"])
        assert r["type"] == node.spec.type
    assert rows["bin-2"]["location"] == "Main St 2"
    assert rows["m-1"]["batt_mv"] is None and rows["b-1"]["batt_mv"] > 3000
    assert rows["m-1"]["report_interval_s"] == 1200

    # bin-3 lost power at 19 h: its last status promised a report by ~24 h, and none came
    overdue = {n for n, r in rows.items() if r["overdue"]}
    assert overdue == {"bin-3"}
    assert rows["bin-3"]["state"] == "sleeping" and rows["bin-3"]["next"] + fleet.DEFAULT_GRACE_S < town.end
    assert rows["bin-3"]["last_seen"] < town.sc.start_unix + 19 * 3600

    rc, out, _ = cli(["fleet", "status", "--db", town.db, "--registry", town.registry, "--now", town.end,
                      "--fail-overdue"], capsys)
    assert rc == 1
    line = next(x for x in out.splitlines() if x.startswith("bin-3 "))
    assert "OVERDUE: next report was due" in line
    assert not any("OVERDUE" in x for x in out.splitlines() if not x.startswith("bin-3 "))
    assert "5 nodes, 1 overdue" in out


def test_status_a_silent_mains_node_is_overdue_after_three_intervals(town, capsys):
    db = fleet.open_db(town.db)
    m1 = next(r for r in fleet.fleet_status(db, now=town.end) if r["node"] == "m-1")
    just_in = fleet.fleet_status(db, now=m1["last_seen"] + 3 * 1200)
    late = fleet.fleet_status(db, now=m1["last_seen"] + 3 * 1200 + 1)
    limited = fleet.fleet_status(db, now=m1["last_seen"] + 601, limit_s=600)
    db.close()

    def pick(rows):
        return next(r for r in rows if r["node"] == "m-1")

    assert m1["state"] == "online" and not m1["overdue"]
    assert not pick(just_in)["overdue"]
    assert pick(late)["overdue"] and "silent for more than 1.0 h" in pick(late)["why"]
    assert pick(limited)["overdue"] and "10 min" in pick(limited)["why"]
    rc, out, _ = cli(["fleet", "status", "--db", town.db, "--json", "--now", m1["last_seen"] + 3601], capsys)
    assert rc == 0 and next(r for r in json.loads(out) if r["node"] == "m-1")["overdue"] is True


def test_loss_counts_gaps_and_what_the_node_dropped(tmp_path):
    db = collector.open_db(tmp_path / "loss.db")
    s = Store(db)
    T = 1780272000

    def tele(node, seqs, t0=T):
        body = {"v": 1, "node": node, "type": "heartbeat", "fw": "0.2.0",
                "r": [{"seq": q, "ts": t0 + 60 * q, "wakes": 1, "chip_c": 30} for q in seqs]}
        assert s.message("townsense/%s/telemetry" % node, json.dumps(body).encode(), "townsense") == "telemetry"

    def health(node, ts, dropped):
        body = {"v": 1, "node": node, "fw": "0.2.0", "ts": ts, "batt_mv": 4000, "rssi": -60, "heap_free": 1,
                "reset": "deep_sleep", "uptime_s": 1, "boots": 1, "spool": 0, "dropped": dropped, "crashes": 0,
                "wifi_ms": None}
        assert s.message("townsense/%s/health" % node, json.dumps(body).encode(), "townsense") == "health"

    tele("a", [0, 1, 2, 5, 6, 8, 9])           # 3 and 4 and 7 missing
    health("a", T + 600, 2)                    # the node says it dropped 2 itself
    tele("b", [100, 101, 104])                 # 102, 103 missing; the span starts at 100
    health("b", T, 5)
    health("b", T + 600, 6)                    # one dropped within the span
    db.close()
    db = fleet.open_db(tmp_path / "loss.db")
    registry = {"new-1": {"id": "new-1", "type": "air_quality", "location": "School"}}
    rows = {r["node"]: r for r in fleet.fleet_status(db, registry, now=T)}
    db.close()
    assert rows["new-1"]["overdue"] and rows["new-1"]["why"] == "never heard from"
    assert rows["new-1"]["expected"] == 0 and rows["new-1"]["loss_pct"] is None
    a, b = rows["a"], rows["b"]
    assert (a["expected"], a["received"], a["gaps"], a["dropped"], a["lost"]) == (10, 7, 3, 2, 1)
    assert a["loss_pct"] == pytest.approx(10.0)
    assert (b["expected"], b["gaps"], b["dropped"], b["lost"]) == (5, 2, 1, 1)
    assert b["loss_pct"] == pytest.approx(20.0)


# ---- alerts ------------------------------------------------------------------------------------------

def test_alerts_are_the_warnings_and_alarms_the_nodes_sent_newest_first(town, capsys):
    sent = [e for n in town.sim.nodes for e in bodies(n, "event") if e["level"] in ("warning", "alarm")]
    assert any(e["event"] == "bin_full" and e["level"] == "alarm" for e in sent)
    db = fleet.open_db(town.db)
    got = fleet.fleet_alerts(db)
    want = sorted(sent, key=lambda e: (-e["ts"], e["node"], -e["seq"]))
    assert [(a["node"], a["seq"], a["event"], a["level"], a["data"]) for a in got] == \
        [(e["node"], e["seq"], e["event"], e["level"], e["data"]) for e in want]
    cut = want[len(want) // 2]["ts"]
    assert [a["seq"] for a in fleet.fleet_alerts(db, since=cut)] == [e["seq"] for e in want if e["ts"] >= cut]
    everything = fleet.fleet_alerts(db, level="info")
    db.close()
    n_events = sum(len(bodies(n, "event")) for n in town.sim.nodes)
    assert len(everything) == n_events
    rc, out, _ = cli(["fleet", "alerts", "--db", town.db, "--registry", town.registry, "--now", town.end,
                      "--since", "%dh" % HOURS], capsys)
    first = want[0]
    assert rc == 0 and "%d alerts" % len(want) in out
    assert out.splitlines()[0].startswith(fleet.iso(first["ts"]))
    assert first["event"] in out.splitlines()[0]


def test_alerts_levels_and_since(tmp_path, capsys):
    db = collector.open_db(tmp_path / "ev.db")
    s = Store(db)
    T = 1780272000
    for seq, (level, dt) in enumerate([("info", 0), ("warning", 100), ("alarm", 200), ("warning", 300)]):
        assert s.message("townsense/x/event", json.dumps({"v": 1, "node": "x", "type": "fill_level", "seq": seq,
                         "ts": T + dt, "event": "ev_" + "abcd"[seq], "level": level, "data": {}}).encode(),
                         "townsense") == "event"
    db.close()
    db = fleet.open_db(tmp_path / "ev.db")
    assert [a["seq"] for a in fleet.fleet_alerts(db)] == [3, 2, 1]
    assert [a["seq"] for a in fleet.fleet_alerts(db, level="alarm")] == [2]
    assert [a["seq"] for a in fleet.fleet_alerts(db, since=T + 200)] == [3, 2]
    assert [a["seq"] for a in fleet.fleet_alerts(db, level="info")] == [3, 2, 1, 0]
    db.close()
    assert fleet.parse_time("2026-06-01") == T
    assert fleet.parse_time("2026-06-01T02:00:00+02:00") == T
    assert fleet.parse_time("36h", now=T + 36 * 3600) == T
    rc, _, err = cli(["fleet", "alerts", "--db", tmp_path / "ev.db", "--since", "yesterday"], capsys)
    assert rc == 2 and "cannot read the time 'yesterday'" in err
    rc, _, err = cli(["fleet", "status", "--db", tmp_path / "none.db"], capsys)
    assert rc == 2 and "no collector database" in err and not (tmp_path / "none.db").exists()


# ---- export --------------------------------------------------------------------------------------------

def test_export_csv_has_every_reading_once(town, tmp_path, capsys):
    sent = {(n.id, r["seq"]): r for n in town.sim.nodes for b in bodies(n, "telemetry") for r in b["r"]}
    out_file = tmp_path / "all.csv"
    rc, _, err = cli(["fleet", "export", "--csv", "--db", town.db, "--out", out_file], capsys)
    assert rc == 0 and "%d readings written" % len(sent) in err
    rows = list(csv.DictReader(out_file.open()))
    fields = sorted({k for r in sent.values() for k in r} - {"seq", "ts", "u"})
    assert list(rows[0]) == ["node", "seq", "ts"] + fields
    assert len(rows) == len(sent) and {(r["node"], int(r["seq"])) for r in rows} == set(sent)
    for r in rows:
        want = sent[(r["node"], int(r["seq"]))]
        assert r["ts"] == fleet.iso(want["ts"])
        for k in fields:
            assert r[k] == ("" if want.get(k) is None else str(want[k])), (r, k)

    since = town.sc.start_unix + 20 * 3600
    rc, out, _ = cli(["fleet", "export", "--db", town.db, "--node", "bin-1", "--since",
                      fleet.iso(since)], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["seq"]) for r in rows] == sorted(q for (n, q), r in sent.items() if n == "bin-1" and r["ts"] >= since)
    assert "chip_c" not in rows[0] and "fill" in rows[0], "only the fields of the readings exported"


# ---- route ------------------------------------------------------------------------------------------------

T0 = 1780272000
DAY = 86400


def bin_db(tmp_path, readings):
    """A collector database with {node: [reading fields, ...]} as fill_level telemetry."""
    db = collector.open_db(tmp_path / "bins.db")
    s = Store(db)
    for node, rs in readings.items():
        payload = {"v": 1, "node": node, "type": "fill_level", "fw": "0.2.0",
                   "r": [dict(r, seq=i, ts=T0 + 1800 * i) for i, r in enumerate(rs)]}
        assert s.message("townsense/%s/telemetry" % node, json.dumps(payload).encode(), "townsense") == "telemetry"
    db.close()
    return tmp_path / "bins.db"


def test_route_takes_exactly_the_bins_that_need_emptying(tmp_path, capsys):
    reg_path = tmp_path / "reg.db"
    places = {"full": (52.100, 5.100), "edge": (52.110, 5.120), "soon": (52.090, 5.130),
              "later": (52.080, 5.090), "low": (52.095, 5.105), "failed": (52.105, 5.125),
              "emptied": (52.085, 5.115), "odd": (52.1, 5.1), "nowhere": None}
    with Registry(reg_path) as reg:
        for node, p in places.items():
            reg.upsert(node, type="fill_level", board="lolin-d32", **({"lat": p[0], "lon": p[1]} if p else {}))
        reg.upsert("hb-1", type="heartbeat", board="lolin-d32", lat=52.1, lon=5.1)
    last_ts = T0 + 1800  # every bin's latest reading is its second (seq 1)
    db_path = bin_db(tmp_path, {
        "full": [{"fill": 50}, {"fill": 92, "eta_h": 0}],
        "edge": [{"fill": 79}, {"fill": 80}],                       # at the threshold: in
        "soon": [{"fill": 40}, {"fill": 55, "eta_h": 10}],          # full 10 h after its reading
        "later": [{"fill": 40}, {"fill": 50, "eta_h": 48}],         # full after the collection
        "low": [{"fill": 90}, {"fill": 79.5}],                      # the latest counts
        "failed": [{"fill": 95, "mm": 340}, {"q": 0, "err": "sensor: timeout"}],  # last good fill: 95
        "emptied": [{"fill": 95}, {"fill": 3}],
        "odd": [{"fill": 99}, {"fill": "full"}],                    # not a number: said, not guessed
        "nowhere": [{"fill": 99}, {"fill": 99}],                    # no lat/lon in the registry
        "stranger": [{"fill": 99}, {"fill": 99}],                   # not in the registry at all
    })
    db = fleet.open_db(db_path)
    registry = fleet.load_registry(reg_path)
    collection = last_ts + DAY
    picked, problems = route.select_bins(db, registry, 80, collection)
    assert {s["node"] for s in picked} == {"full", "edge", "soon", "failed"}
    assert next(s for s in picked if s["node"] == "soon")["full_at"] == last_ts + 10 * 3600
    assert {p["node"] for p in problems} == {"nowhere", "stranger", "odd"}
    picked_no_date, _ = route.select_bins(db, registry, 80)
    assert {s["node"] for s in picked_no_date} == {"full", "edge", "failed"}
    picked_90, _ = route.select_bins(db, registry, 90)
    assert {s["node"] for s in picked_90} == {"full", "failed"}
    db.close()

    depot = (52.095, 5.110)
    plan = route.plan_route(picked, depot)
    assert sorted(s["node"] for s in plan["stops"]) == ["edge", "failed", "full", "soon"]
    assert len(plan["legs"]) == 5 and sum(plan["legs"]) == pytest.approx(plan["total_km"])
    assert plan["total_km"] <= plan["nn_km"] + 1e-9
    path = [depot] + [(s["lat"], s["lon"]) for s in plan["stops"]] + [depot]
    assert plan["legs"] == pytest.approx([route.haversine_km(a, b) for a, b in zip(path, path[1:])])

    rc, out, _ = cli(["route", "--db", db_path, "--registry", reg_path, "--depot", "52.095,5.110",
                      "--next-collection", fleet.iso(collection)], capsys)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("route: 4 bins")
    stops = [ln.split()[1] for ln in lines if ln[:2].strip().isdigit()]
    assert stops == [s["node"] for s in plan["stops"]]
    assert "total %.2f km" % plan["total_km"] in out
    assert "not routed: odd: its latest fill 'full' is not a number" in out
    assert "not routed: nowhere:" in out and "not routed: stranger: not in the registry" in out
    rc, _, err = cli(["route", "--db", db_path, "--registry", reg_path, "--depot", "52.1"], capsys)
    assert rc == 2 and "LAT,LON" in err


def test_route_on_the_collected_town(town, capsys):
    """The latest fill each bin sent decides; bin locations come from the registry."""
    latest = {}
    for n in town.sim.nodes:
        if n.spec.type == "fill_level":
            latest[n.id] = [r for b in bodies(n, "telemetry") for r in b["r"] if "fill" in r][-1]
    threshold = min(r["fill"] for r in latest.values()) + 1  # at least one bin in, one out
    want = {n for n, r in latest.items() if r["fill"] >= threshold}
    rc, out, _ = cli(["route", "--db", town.db, "--registry", town.registry, "--threshold", threshold,
                      "--depot", "52.08,5.11", "--json"], capsys)
    got = json.loads(out)
    assert rc == 0 and {s["node"] for s in got["stops"]} == want and 0 < len(want) < 3
    assert [s["fill"] for s in got["stops"]] == [latest[s["node"]]["fill"] for s in got["stops"]]
    assert got["not_routed"] == []


def _points(draw_lat, draw_lon, n, rnd):
    return [(draw_lat + rnd.uniform(-0.05, 0.05), draw_lon + rnd.uniform(-0.08, 0.08)) for _ in range(n)]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 25), st.integers(0, 2**32 - 1), st.booleans(),
       st.floats(-60, 60), st.floats(-170, 170))
def test_two_opt_never_longer_than_nearest_neighbour(n, seed, with_depot, lat, lon):
    rnd = random.Random(seed)
    pts = _points(lat, lon, n, rnd)
    stops = [{"node": "b%02d" % i, "fill": rnd.uniform(0, 100), "lat": p[0], "lon": p[1]} for i, p in enumerate(pts)]
    depot = (lat, lon) if with_depot else None
    plan = route.plan_route(stops, depot)
    assert sorted(s["node"] for s in plan["stops"]) == sorted(s["node"] for s in stops), "each bin once"
    assert plan["total_km"] <= plan["nn_km"] + 1e-9
    assert sum(plan["legs"]) == pytest.approx(plan["total_km"])
    assert len(plan["legs"]) == (n + 1 if depot and n else max(n - 1, 0))


@settings(max_examples=50, deadline=None)
@given(st.integers(4, 14), st.integers(0, 2**32 - 1))
def test_two_opt_untangles_points_on_a_circle(n, seed):
    """Points in convex position: a tour without crossings is the circle's order, the shortest;
    2-opt removes every crossing, so it must find it whatever nearest neighbour did."""
    import math
    rnd = random.Random(seed)
    angles = sorted(rnd.uniform(0, 2 * math.pi) for _ in range(n))
    angles = [a for i, a in enumerate(angles) if i == 0 or a - angles[i - 1] > 0.05]
    pts = [(52.0 + 0.01 * math.sin(a), 5.0 + 0.01 * math.cos(a) / math.cos(math.radians(52))) for a in angles]
    stops = [{"node": "b%02d" % i, "fill": 90, "lat": p[0], "lon": p[1]} for i, p in enumerate(pts)]
    depot, stops = (stops[0]["lat"], stops[0]["lon"]), stops[1:]
    plan = route.plan_route(stops, depot)
    ring = [depot] + [(s["lat"], s["lon"]) for s in stops] + [depot]
    best = sum(route.haversine_km(a, b) for a, b in zip(ring, ring[1:]))
    assert plan["total_km"] == pytest.approx(best, rel=1e-9)
