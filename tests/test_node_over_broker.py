"""Nodes of a simulated town over a real mosquitto, through the firmware's own MQTT client:
what reaches the broker is every accepted reading exactly once, in the protocol's schemas, and
commands sent with paho are carried out and acknowledged."""

import json
import threading
import time

import paho.mqtt.client as paho

from host import schemas
from simulator import engine, scenario


def town(hours, faults=(), report_s=3600):
    return scenario.parse({"name": "e2e", "hours": hours, "seed": 5, "nodes": [
        {"id": "b-{n}", "count": 2, "type": "heartbeat", "board": "lolin-d32",
         "config": {"sample_s": 900, "report_s": report_s}},
        {"id": "m-{n}", "count": 1, "type": "heartbeat", "board": "esp32-devkitc",
         "config": {"sample_s": 600, "report_s": 1200}},
    ], "faults": list(faults)})


def run(sc, port):
    sim = engine.Simulation(sc, broker=("127.0.0.1", port))
    try:
        sim.run()
        return sim
    finally:
        sim.close()


def test_every_reading_reaches_the_broker_once_and_matches_the_schemas(mosquitto):
    sim = run(town(6, faults=[{"kind": "wifi_down", "at_h": 2.1, "for_h": 1.5}]), mosquitto.port)
    for node in sim.nodes:
        seqs = []
        for m in node.messages:
            kind, problems = schemas.check_message(m.topic, m.payload, "townsense")
            assert problems == [], (m.topic, m.payload, problems)
            if m.topic.endswith("/telemetry"):
                seqs += [r["seq"] for r in json.loads(m.payload)["r"]]
        assert seqs == list(range(len(seqs))), "%s: every reading once, in order" % node.id
        health = [json.loads(m.payload) for m in node.messages if m.topic.endswith("/health")]
        assert health and all(h["dropped"] == 0 for h in health)
        assert health[-1]["reset"] in ("power_on", "deep_sleep")
        statuses = [json.loads(m.payload)["state"] for m in node.messages if m.topic.endswith("/status")]
        if node.id.startswith("b-"):
            assert set(statuses) == {"sleeping"}, "a sleepy node says when it will be back"
        else:
            # the Wi-Fi outage drops the mains node's connection: the broker publishes its will
            assert statuses == ["online", "offline", "online"]
    b = sim.by_id["b-1"]
    assert len([r for m in b.messages if m.topic.endswith("/telemetry") for r in json.loads(m.payload)["r"]]) >= 6 * 4 - 4


def test_commands_sent_with_paho_are_acknowledged(mosquitto):
    acks = []
    got = threading.Event()
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="e2e-ops")
    c.on_message = lambda cl, u, msg: (acks.append(json.loads(msg.payload)), got.set())
    c.connect("127.0.0.1", mosquitto.port)
    c.subscribe("townsense/+/ack", 1)
    c.loop_start()
    try:
        time.sleep(0.2)
        # queued for the sleeping battery node by its persistent session (after its first
        # connect the broker knows the session), delivered live to the mains node
        sc = town(3)
        sim = engine.Simulation(sc, broker=("127.0.0.1", mosquitto.port))
        commands = [("m-1", {"id": "p1", "cmd": "ping"}), ("m-1", {"id": "x1", "cmd": "dance"}),
                    ("m-1", "not json"), ("b-1", {"id": "s1", "cmd": "spool"})]

        def send(board):
            for node, cmd in commands:
                payload = cmd if isinstance(cmd, str) else json.dumps(cmd)
                c.publish("townsense/%s/cmd" % node, payload, qos=1).wait_for_publish(5)
            time.sleep(0.05)

        # send once every node has connected once (1.5 virtual hours in)
        sim.by_id["m-1"].board.call_at(int(1.5 * 3.6e9), send)
        sim.run()
        sim.close()
        deadline = time.monotonic() + 5
        while len(acks) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        c.loop_stop()
        c.disconnect()
    by_id = {a["id"]: a for a in acks}
    for a in acks:
        assert schemas.validate("ack", a) == [], a
    assert by_id["p1"]["ok"] is True and by_id["p1"]["node"] == "m-1" and "uptime_s" in by_id["p1"]["result"]
    assert by_id["x1"]["ok"] is False and "unknown command" in by_id["x1"]["error"]
    assert by_id[None]["ok"] is False and "malformed" in by_id[None]["error"]
    assert by_id["s1"]["ok"] is True and by_id["s1"]["node"] == "b-1", "queued for the sleeping node"
