"""Faults against a real broker: after each, the broker's subscriber holds every reading the
nodes accepted exactly once by (node, seq), or the drop counter explains the difference."""

import json
import tempfile
import time
from pathlib import Path

from simulator import engine, scenario
from simulator.mp import simboard
from tests.brokers import Mosquitto, SilenceableProxy


def town(hours, faults=()):
    return scenario.parse({"name": "faults", "hours": hours, "seed": 4, "nodes": [
        {"id": "b-{n}", "count": 2, "type": "heartbeat", "board": "lolin-d32",
         "config": {"sample_s": 900, "report_s": 3600}},
        {"id": "m-{n}", "type": "heartbeat", "board": "esp32-devkitc",
         "config": {"sample_s": 600, "report_s": 1200}}], "faults": list(faults)})


def check_exactly_once(sim, redelivered_ok=False):
    """Every seq once (or, where a power cut can hit the acknowledgement after a PUBACK, the
    same reading again — identical, so the subscriber's (node, seq) dedupe absorbs it)."""
    for node in sim.nodes:
        readings = [r for m in node.messages if m.topic.endswith("/telemetry")
                    for r in json.loads(m.payload)["r"]]
        seqs = [r["seq"] for r in readings]
        if redelivered_ok:
            first = {}
            for r in readings:
                assert first.setdefault(r["seq"], r) == r, "%s: seq %d sent with other values" % (node.id, r["seq"])
        else:
            assert seqs and len(seqs) == len(set(seqs)), "%s: a reading counted twice" % node.id
        dropped = json.loads((node.flash_dir / "spool.pos").read_text())["drop"]
        missing = set(range(max(seqs) + 1)) - set(seqs)
        assert len(missing) <= dropped, "%s: readings %s lost with no drop counted" % (node.id, sorted(missing)[:5])


def test_broker_restarted_mid_run():
    broker = Mosquitto(Path(tempfile.mkdtemp()), persistence=True)
    broker.start()
    sc = town(8)
    sim = engine.Simulation(sc, broker=("127.0.0.1", broker.port))
    sim.by_id["b-1"].board.call_at(int(2.5 * 3.6e9), lambda b: broker.stop())
    sim.by_id["b-1"].board.call_at(int(3.5 * 3.6e9), lambda b: (broker.start(), time.sleep(2.5)))
    try:
        sim.run()
        check_exactly_once(sim)
        m = sim.by_id["m-1"]
        statuses = [json.loads(x.payload)["state"] for x in m.messages if x.topic.endswith("/status")]
        assert statuses.count("online") >= 2, "the mains node reconnected after the restart"
        for node in sim.nodes:
            seqs = [r["seq"] for x in node.messages if x.topic.endswith("/telemetry") for r in json.loads(x.payload)["r"]]
            assert max(seqs) >= (8 * 3600 // node.spec.config["sample_s"]) - 6, "%s caught up" % node.id
    finally:
        sim.close()
        broker.stop()


def test_wifi_down_for_six_hours(mosquitto):
    sim = engine.Simulation(town(14, [{"kind": "wifi_down", "at_h": 1.2, "for_h": 6}]),
                            broker=("127.0.0.1", mosquitto.port))
    try:
        sim.run()
        check_exactly_once(sim)
        for node in sim.nodes:
            tele = [x for x in node.messages if x.topic.endswith("/telemetry")]
            assert not any(1.25 < x.t_us / 3.6e9 < 7.2 for x in tele), "nothing while the AP was down"
            seqs = [r["seq"] for x in tele for r in json.loads(x.payload)["r"]]
            assert max(seqs) >= 14 * 3600 // node.spec.config["sample_s"] - 8, "%s caught up" % node.id
            assert json.loads((node.flash_dir / "spool.pos").read_text())["drop"] == 0
    finally:
        sim.close()


def test_flash_full_drops_readings_counted_and_keeps_running(mosquitto):
    # a node sampling every minute: its spool soon needs a new flash block, and there is none
    sc = scenario.parse({"name": "full", "hours": 3, "seed": 4, "nodes": [
        {"id": "b-{n}", "type": "heartbeat", "board": "lolin-d32", "config": {"sample_s": 60, "report_s": 3600}}],
        "faults": [{"kind": "flash_full", "node": "b-1", "at_h": 1.05, "bytes": 0}]})
    sim = engine.Simulation(sc, broker=("127.0.0.1", mosquitto.port))
    try:
        sim.run()
        node = sim.by_id["b-1"]
        assert node.crashes == 0 and not any(t.startswith(("CRASH", "SAFE MODE")) for _, t in node.log)
        assert any("flash write failed" in t for _, t in node.log)
        health = [json.loads(x.payload) for x in node.messages if x.topic.endswith("/health")]
        assert health[-1]["dropped"] > 0, "the loss is counted and reported"
        seqs = [r["seq"] for x in node.messages if x.topic.endswith("/telemetry") for r in json.loads(x.payload)["r"]]
        assert len(seqs) == len(set(seqs)) and seqs[:6] == list(range(6)), "what was accepted went out once"
        assert node.board.boots >= 170, "it kept waking on schedule"
    finally:
        sim.close()


def test_power_cut_during_spool_writes(mosquitto):
    """Power fails in the middle of spool and spool-position writes (torn records, torn
    position files) on two nodes; every reading accepted before a cut still arrives once."""
    sim = engine.Simulation(town(10), broker=("127.0.0.1", mosquitto.port))
    cuts = {}

    def cutter(node_id, every):
        count = [0]

        def hook(board, path, nbytes):
            if "spool" not in str(path):
                return None
            count[0] += 1
            if count[0] % every == 0 and nbytes > 1:
                cuts[node_id] = cuts.get(node_id, 0) + 1
                return (count[0] * 7) % nbytes  # a different byte each time
            return None
        return hook

    sim.by_id["b-1"].board.flash_write_hook = cutter("b-1", 13)
    sim.by_id["m-1"].board.flash_write_hook = cutter("m-1", 17)
    try:
        sim.run()
        assert cuts.get("b-1", 0) >= 3 and cuts.get("m-1", 0) >= 3, cuts
        check_exactly_once(sim, redelivered_ok=True)
        for node in sim.nodes:
            assert node.crashes == 0, "%s: a torn write crashed the firmware" % node.id
    finally:
        sim.close()


def test_broker_that_accepts_and_never_answers(mosquitto):
    """For three hours the broker accepts TCP connections and never answers a byte. Battery
    nodes give up within their wake budget and sleep; afterwards every reading arrives once."""
    proxy = SilenceableProxy(mosquitto.port)
    # the nodes go through the relay; the town's subscriber talks to the broker itself
    sim = engine.Simulation(town(9), broker=("127.0.0.1", proxy.port), tap=("127.0.0.1", mosquitto.port))
    anchor = sim.by_id["b-1"].board
    anchor.call_at(int(1.5 * 3.6e9), lambda b: proxy.go_silent())
    anchor.call_at(int(4.5 * 3.6e9), lambda b: proxy.speak())
    snaps = {}
    for nid in ("b-1", "b-2"):
        for at in (1.6, 4.4):
            sim.by_id[nid].board.call_at(int(at * 3.6e9), lambda b, at=at: snaps.__setitem__((b.node_id, at), dict(b.energy_us)))
    try:
        sim.run()
        assert proxy.accepted_while_silent > 0, "the nodes tried the silent broker"
        check_exactly_once(sim)
        for node in sim.nodes:
            tele = [x for x in node.messages if x.topic.endswith("/telemetry")]
            seqs = [r["seq"] for x in tele for r in json.loads(x.payload)["r"]]
            assert max(seqs) >= 9 * 3600 // node.spec.config["sample_s"] - 8, "%s caught up" % node.id
            assert node.crashes == 0
        for nid in ("b-1", "b-2"):
            node = sim.by_id[nid]
            # awake time while the broker was silent: bounded per wake, not a drained battery
            awake_s = sum(us - snaps[(nid, 1.6)].get(st, 0) for st, us in snaps[(nid, 4.4)].items()
                          if st not in (simboard.DEEP_SLEEP, simboard.OFF)) / 1e6
            assert awake_s < 0.1 * 2.8 * 3600, "%s stayed awake %.0f s of 2.8 h" % (nid, awake_s)
    finally:
        sim.close()
        proxy.close()


def test_backlog_over_a_slow_link_respects_the_wake_budget(mosquitto):
    """Ten hours of readings wait for the broker behind a slow link (300 ms round trips): a
    battery node sends what fits in net_budget_s per wake and the rest at the next ones."""
    sc = scenario.parse({"name": "slow", "hours": 16, "seed": 4, "nodes": [
        {"id": "b-{n}", "type": "heartbeat", "board": "lolin-d32",
         "config": {"sample_s": 120, "report_s": 3600, "batch": 10, "net_budget_s": 8}}],
        "faults": [{"kind": "wifi_down", "at_h": 0.5, "for_h": 10}]})
    sim = engine.Simulation(sc, broker=("127.0.0.1", mosquitto.port))
    node = sim.by_id["b-1"]
    node.board.net_latency_us = 150_000
    wakes = []  # awake µs of each wake
    node.board.boot_hooks.append(lambda b: wakes.append(sum(
        us for st, us in b.energy_us.items() if st not in (simboard.DEEP_SLEEP, simboard.OFF))))
    try:
        sim.run()
        assert any("budget of 8 s spent" in t for _, t in node.log), "the backlog outgrew one wake"
        longest = max(b - a for a, b in zip(wakes, wakes[1:]))
        assert longest < 8e6 + 3e6, "a wake ran %.1f s, past its budget and the goodbye" % (longest / 1e6)
        check_exactly_once(sim)
        seqs = [r["seq"] for m in node.messages if m.topic.endswith("/telemetry") for r in json.loads(m.payload)["r"]]
        assert max(seqs) >= 16 * 30 - 31, "the backlog drained over the following wakes"
    finally:
        sim.close()
