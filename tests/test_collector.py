"""The collector (host/collector.py) against a real mosquitto, fed by simulated nodes that publish
through the firmware's own MQTT client: every reading once by (node, seq), redeliveries counted
and ignored, invalid payloads quarantined with their raw bytes and the reason, nothing lost
across a broker restart or the collector's own downtime."""

import argparse
import json
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho

from host import collector
from host.collector import Collector
from simulator import engine, scenario
from tests.brokers import Mosquitto

ROOT = Path(__file__).resolve().parent.parent


def town(hours, seed=5):
    return scenario.parse({"name": "collect", "hours": hours, "seed": seed, "nodes": [
        {"id": "b-{n}", "count": 2, "type": "heartbeat", "board": "lolin-d32",
         "config": {"sample_s": 900, "report_s": 3600}},
        {"id": "m-{n}", "count": 1, "type": "heartbeat", "board": "esp32-devkitc",
         "config": {"sample_s": 600, "report_s": 1200}},
    ]})


def publisher(port, client_id="test-pub"):
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def publish(c, topic, payload, retain=False):
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)


def close(c):
    c.disconnect()
    c.loop_stop()


def wait_for(pred, limit_s=20.0):
    """Wait (bounded) for the collector to have taken what the broker queued; the assertions
    that follow say what must be there, not how fast."""
    deadline = time.monotonic() + limit_s
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.05)


def sent_readings(sim):
    """{(node, seq): reading} of every telemetry message that reached the broker."""
    return {(n.id, r["seq"]): r for n in sim.nodes for m in n.messages if m.topic.endswith("/telemetry")
            for r in json.loads(m.payload)["r"]}


def stored_readings(db_path):
    db = sqlite3.connect(str(db_path))
    rows = db.execute("SELECT node, seq, ts, u, fields FROM readings").fetchall()
    db.close()
    return rows


def test_every_reading_is_stored_once_and_redeliveries_are_ignored(mosquitto, tmp_path):
    db_path = tmp_path / "town.db"
    col = Collector(mosquitto.url, db_path).start()
    sim = engine.Simulation(town(6), broker=("127.0.0.1", mosquitto.port))
    try:
        sim.run()
    finally:
        sim.close()
    sent = sent_readings(sim)
    # a redelivery, as after a lost PUBACK: the same telemetry message again
    again = next(m for m in sim.by_id["b-1"].messages if m.topic.endswith("/telemetry"))
    n_again = len(json.loads(again.payload)["r"])
    pub = publisher(mosquitto.port)
    publish(pub, again.topic, again.payload)
    close(pub)
    wait_for(lambda: col.counts["duplicates"] >= n_again)
    assert col.wait_quiet()
    counts = col.counts
    col.stop()

    rows = stored_readings(db_path)
    assert len(rows) == len(sent) and len(sent) > 3 * 6 * 3
    assert {(r[0], r[1]) for r in rows} == set(sent), "every reading the nodes published, and no other"
    for node, seq, ts, u, fields in rows:
        r = sent[(node, seq)]
        assert ts == r["ts"] and u == r.get("u", 0)
        assert json.loads(fields) == {k: v for k, v in r.items() if k not in ("seq", "ts", "u")}
    assert counts["duplicates"] == n_again and counts["quarantined"] == 0

    db = sqlite3.connect(str(db_path))
    for node in sim.nodes:
        health = [json.loads(m.payload) for m in node.messages if m.topic.endswith("/health")]
        stored = db.execute("SELECT ts, fields FROM health WHERE node = ? ORDER BY rowid", (node.id,)).fetchall()
        assert [ts for ts, _ in stored] == [h["ts"] for h in health]
        assert json.loads(stored[-1][1])["batt_mv"] == health[-1]["batt_mv"]
        statuses = [json.loads(m.payload) for m in node.messages if m.topic.endswith("/status")]
        state, nxt = db.execute("SELECT state, next FROM status_latest WHERE node = ?", (node.id,)).fetchone()
        assert (state, nxt) == (statuses[-1]["state"], statuses[-1].get("next"))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_invalid_payloads_are_quarantined_with_the_reason(mosquitto, tmp_path):
    db_path = tmp_path / "q.db"
    col = Collector(mosquitto.url, db_path).start()
    good = {"v": 1, "node": "hb-1", "type": "heartbeat", "fw": "0.2.0",
            "r": [{"seq": 0, "ts": 1780272000, "wakes": 1, "chip_c": 30},
                  {"seq": 1, "ts": 946684805, "u": 1, "wakes": 2, "chip_c": 30}]}
    bad = [
        ("townsense/hb-1/telemetry", b"{not json", "not JSON"),
        ("townsense/hb-1/health", b"\xff\xfe\x00", "not UTF-8"),
        ("townsense/hb-1/telemetry", json.dumps({k: v for k, v in good.items() if k != "fw"}).encode(), "fw"),
        ("townsense/hb-2/telemetry", json.dumps(good).encode(), "does not match the topic"),
        ("townsense/HB_1/telemetry", json.dumps(good).encode(), "is not <townsense>/<node_id>/"),
        ("townsense/hb-1/telemetry", json.dumps(dict(good, r=good["r"][::-1])).encode(), "ascending seq"),
        ("townsense/hb-1/event", json.dumps({"v": 1, "node": "hb-1", "type": "heartbeat", "seq": 5,
                                              "ts": 1780272000, "event": "x", "level": "panic",
                                              "data": {}}).encode(), "level"),
    ]
    pub = publisher(mosquitto.port)
    publish(pub, "townsense/hb-1/telemetry", good)
    # the same seq 0 with other values: kept once (the first), the copy quarantined
    publish(pub, "townsense/hb-1/telemetry", dict(good, r=[dict(good["r"][0], chip_c=99)]))
    # seq 1 again, now with the clock set: the stamped copy replaces the flagged one
    publish(pub, "townsense/hb-1/telemetry", dict(good, r=[{"seq": 1, "ts": 1780272900, "wakes": 2, "chip_c": 30}]))
    # a command is valid and not ours to store
    publish(pub, "townsense/hb-1/cmd", {"id": "c1", "cmd": "ping"})
    for topic, payload, _ in bad:
        publish(pub, topic, payload)
    close(pub)
    wait_for(lambda: col.counts["messages"] >= 4 + len(bad))
    counts = col.counts
    col.stop()

    db = sqlite3.connect(str(db_path))
    q = db.execute("SELECT topic, payload, reason, received_at FROM quarantine ORDER BY id").fetchall()
    assert len(q) == 1 + len(bad) == counts["quarantined"]
    assert q[0][0] == "townsense/hb-1/telemetry" and "seq 0 is already stored with other values" in q[0][2]
    for (topic, payload, reason, received_at), (want_topic, want_payload, why) in zip(q[1:], bad):
        assert topic == want_topic and bytes(payload) == want_payload, "the raw bytes, as they came"
        assert why in reason, (why, reason)
        assert received_at > 0
    rows = db.execute("SELECT seq, ts, u, fields FROM readings WHERE node = 'hb-1' ORDER BY seq").fetchall()
    assert [(s, ts, u) for s, ts, u, _ in rows] == [(0, 1780272000, 0), (1, 1780272900, 0)]
    assert json.loads(rows[0][3])["chip_c"] == 30, "the first copy is kept"
    assert counts["restamped"] == 1 and counts["commands"] == 1 and counts["readings"] == 2
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0
    db.close()


def test_collector_away_gets_what_was_queued_for_its_session(mosquitto, tmp_path):
    db_path = tmp_path / "away.db"
    Collector(mosquitto.url, db_path).start().stop()   # the broker now knows the session
    pub = publisher(mosquitto.port)
    for seq in range(5):
        publish(pub, "townsense/hb-1/event", {"v": 1, "node": "hb-1", "type": "heartbeat", "seq": seq,
                                               "ts": 1780272000 + seq, "event": "test", "level": "info",
                                               "data": {"n": seq}})
    close(pub)
    col = Collector(mosquitto.url, db_path).start()
    wait_for(lambda: col.counts["events"] >= 5)
    col.stop()
    db = sqlite3.connect(str(db_path))
    assert [r[0] for r in db.execute("SELECT seq FROM events ORDER BY seq")] == [0, 1, 2, 3, 4]
    db.close()


def test_a_broker_restart_mid_run_loses_nothing(tmp_path):
    broker = Mosquitto(tmp_path / "mosquitto", persistence=True)
    broker.start()
    db_path = tmp_path / "restart.db"
    col = Collector(broker.url, db_path, reconnect_max_s=2).start()
    # A gate in front of the store: while it is shut, the collector holds one message
    # unacknowledged and the broker queues the rest for its session, over the restart.
    gate, held = threading.Event(), threading.Event()
    gate.set()
    store = col.store.message

    def gated(*a, **k):
        if not gate.is_set():
            held.set()
            gate.wait(30)
        return store(*a, **k)

    col.store.message = gated

    def restart_while_busy(board):
        wait_for(held.is_set)
        broker.restart()
        gate.set()
        wait_for(lambda: col.connects >= 2)

    sc = town(8)
    sim = engine.Simulation(sc, broker=("127.0.0.1", broker.port))
    board = sim.by_id["b-1"].board
    board.call_at(int(2.0 * 3.6e9), lambda b: gate.clear())
    board.call_at(int(3.0 * 3.6e9), restart_while_busy)
    # then down for a virtual hour: the nodes spool and retry
    board.call_at(int(4.5 * 3.6e9), lambda b: broker.stop())
    board.call_at(int(5.5 * 3.6e9), lambda b: (broker.start(), wait_for(lambda: col.connects >= 3)))
    try:
        sim.run()
        wait_for(lambda: {(n, s) for n, s, *_ in stored_readings(db_path)} >= set(sent_readings(sim)))
        assert col.wait_quiet()
        counts, connects = col.counts, col.connects
    finally:
        gate.set()
        sim.close()
        col.stop()
        broker.stop()
    assert held.is_set() and connects >= 3, "the collector lived through both restarts"
    stored = {}
    for node, seq, *_ in stored_readings(db_path):
        stored.setdefault(node, set()).add(seq)
    assert set(sent_readings(sim)) <= {(n, s) for n in stored for s in stored[n]}
    for node in sim.nodes:
        seqs = stored[node.id]
        assert seqs == set(range(max(seqs) + 1)), "%s: no seq missing" % node.id
        assert max(seqs) >= 8 * 3600 // node.spec.config["sample_s"] - 6, "%s caught up" % node.id
    # the message in hand at the restart was stored but never acknowledged: it came again
    assert counts["duplicates"] >= 1
    assert counts["quarantined"] == 0


def test_cli_refuses_a_bad_broker_url(tmp_path, capsys):
    p = argparse.ArgumentParser()
    collector.register(p.add_subparsers(dest="cmd"))
    args = p.parse_args(["collect", "--broker", "http://x:1", "--db", str(tmp_path / "x.db")])
    assert args.func(args) == 2
    assert "unsupported scheme 'http'" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()


class _Lines:
    """A process's output lines, read in a thread; until(text) waits for one containing text."""

    def __init__(self, proc):
        self.q: queue.Queue = queue.Queue()
        self.seen: list = []
        threading.Thread(target=lambda: [self.q.put(x) for x in proc.stdout], daemon=True).start()

    def until(self, text, limit_s=20.0):
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            try:
                self.seen.append(self.q.get(timeout=0.2))
            except queue.Empty:
                continue
            if text in self.seen[-1]:
                return True
        return False


def collect_process(args):
    """`townsense collect ARGS` as its own process (the collector's CLI alone): (process,
    until(text) -> bool, the lines seen so far)."""
    script = ("import argparse, sys\nfrom host import collector\np = argparse.ArgumentParser()\n"
              "collector.register(p.add_subparsers(dest='cmd'))\na = p.parse_args(sys.argv[1:])\n"
              "sys.exit(a.func(a))\n")
    proc = subprocess.Popen([sys.executable, "-c", script, "collect"] + list(args), cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = _Lines(proc)
    return proc, lines.until, lines.seen


def test_cli_collects_until_stopped(mosquitto, tmp_path):
    """`townsense collect` as a process: it says when it is connected, prints its counts, and a
    SIGTERM (a service manager's stop) ends it cleanly with status 0."""
    db_path = tmp_path / "cli.db"
    proc, until, seen = collect_process(["--broker", mosquitto.url, "--db", str(db_path), "--every", "0.2"])
    try:
        assert until("connected to %s (session new)" % mosquitto.url), seen
        assert until("subscribed to townsense/+/+"), seen
        pub = publisher(mosquitto.port)
        publish(pub, "townsense/hb-1/telemetry", {"v": 1, "node": "hb-1", "type": "heartbeat", "fw": "0.2.0",
                                                  "r": [{"seq": 0, "ts": 1780272000, "wakes": 1, "chip_c": 30}]})
        close(pub)
        assert until("connected; 1 messages: 1 readings"), seen
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert until("stopped: 1 messages, 1 readings, 0 duplicates, 0 quarantined"), seen
    assert [r[:2] for r in stored_readings(db_path)] == [("hb-1", 0)]


def test_with_the_brokers_acl_it_logs_in_as_the_collector_service_user(tmp_path, capsys):
    """A broker with `allow_anonymous false` and provisioning's ACL: the collector's service user
    (DIR/service-users.json) reads every node; a wrong password is refused at once, not retried."""
    from host import credentials as cr

    files = cr.BrokerFiles(tmp_path / "auth")
    node_pw = cr.new_password()
    files.add_node("bin-a", cr.hash_password(node_pw), "townsense")
    broker = Mosquitto(tmp_path / "mosquitto", extra_config="allow_anonymous false\npassword_file %s\n"
                       "acl_file %s\n" % (files.passwd, files.acl)).start()
    try:
        p = argparse.ArgumentParser()
        collector.register(p.add_subparsers(dest="cmd"))
        args = p.parse_args(["collect", "--broker", broker.url, "--db", str(tmp_path / "a.db"),
                             "--mosquitto-dir", str(tmp_path / "auth")])
        user, pw = collector.credentials(args)
        assert user == cr.COLLECTOR
        col = Collector(broker.url, tmp_path / "a.db", username=user, password=pw).start()
        node = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bin-a")
        node.username_pw_set("bin-a", node_pw)
        node.connect("127.0.0.1", broker.port)
        node.loop_start()
        publish(node, "townsense/bin-a/event", {"v": 1, "node": "bin-a", "type": "fill_level", "seq": 0,
                                                "ts": 1780272000, "event": "bin_full", "level": "alarm",
                                                "data": {"fill": 84}})
        close(node)
        wait_for(lambda: col.counts["events"] >= 1)
        col.stop()
        assert col.counts["events"] == 1

        refused = Collector(broker.url, tmp_path / "b.db", username=user, password="wrong")
        try:
            refused.start(timeout=20)
            raise AssertionError("a wrong password was accepted")
        except RuntimeError as e:
            assert "refused the connection" in str(e)
        args = p.parse_args(["collect", "--broker", broker.url, "--db", str(tmp_path / "c.db"), "--user", "x"])
        assert args.func(args) == 2 and collector.PASSWORD_ENV in capsys.readouterr().err
    finally:
        broker.stop()
