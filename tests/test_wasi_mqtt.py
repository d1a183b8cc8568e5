"""The firmware's own MQTT client in real MicroPython (the WASI build) against a real mosquitto,
through the socket bridge (simulator/wasi.py SocketBridge, serving the guest's `_hostsocket`,
simulator/mp/_hostsocket_wasi.py): what reaches the broker matches the protocol's schemas and
what the same node publishes under CPython, and commands sent with paho are carried out and
acknowledged."""

import json
import threading
import time

import paho.mqtt.client as paho

from host import schemas
from simulator import engine, scenario, wasi


# node groups as in simulator/scenarios/heartbeat-town.json
BATTERY = {"id": "hb-{n:02d}", "type": "heartbeat", "board": "lolin-d32",
           "config": {"sample_s": 900, "report_s": 3600}}
MAINS = {"id": "hall-{n}", "type": "heartbeat", "board": "esp32-devkitc",
         "config": {"sample_s": 300, "report_s": 900}}


def town(node, hours, faults=()):
    return scenario.parse({"name": "wasi-mqtt", "hours": hours, "seed": 7,
                           "network": {"aps": [{"ssid": "townsense", "key": "townsense-demo"}]},
                           "nodes": [node], "faults": list(faults)})


def battery_town(hours=4, faults=()):
    return town(BATTERY, hours, faults)


class Listener:
    """A paho subscriber to everything under townsense/: (topic, payload text) as they arrive,
    retained copies left out (as engine.BrokerTap does). on_message(topic, payload) is called
    from paho's thread for each."""

    def __init__(self, port, on_message=None):
        self.messages = []
        self.on_message = on_message
        ready = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="wasi-listener-%x" % id(self))
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("townsense/#", 1)
        self.client.loop_start()
        assert ready.wait(10), "cannot subscribe"

    def _message(self, client, userdata, msg):
        if msg.retain:
            return
        self.messages.append((msg.topic, msg.payload.decode("utf-8", "replace")))
        if self.on_message is not None:
            self.on_message(msg.topic, msg.payload)

    def stop(self, settle_s=0.3):
        time.sleep(settle_s)  # the last PUBLISHes are on their way
        self.client.loop_stop()
        self.client.disconnect()
        return self.messages


def run_wasi(sc, port, **kw):
    listener = Listener(port)
    started = time.monotonic()
    res = wasi.run_node(sc.nodes[0], sc, broker=("127.0.0.1", port), **kw)
    wall = time.monotonic() - started
    return res, listener.stop(), wall


def run_cpython(sc, port):
    sim = engine.Simulation(sc, broker=("127.0.0.1", port))
    try:
        sim.run()
        node = sim.nodes[0]
        return [(m.topic, m.payload) for m in node.messages], dict(node.board.energy_us), node.board.boots
    finally:
        sim.close()


def readings(msgs):
    return [r for t, p in msgs if t.endswith("/telemetry") for r in json.loads(p)["r"]]


# What does not depend on the wall clock: everything but the times a message names (a broker
# that answers late costs the node virtual time: ts, next and uptime_s can move).
_TIMES = {"health": ("ts", "uptime_s"), "status": ("ts", "next")}


def comparable(msgs):
    out = []
    for topic, payload in msgs:
        kind = topic.rsplit("/", 1)[-1]
        body = json.loads(payload)
        for k in _TIMES.get(kind, ()):
            body.pop(k, None)
        out.append((topic, body))
    return out


def test_a_battery_node_in_micropython_reports_over_mosquitto_as_under_cpython(mosquitto):
    # a Wi-Fi outage over the third report: the readings wait in the spool while the node backs
    # off, then go together (reports at 0, 1, 4 and 5 h)
    sc = battery_town(hours=5.5, faults=[{"kind": "wifi_down", "at_h": 1.9, "for_h": 0.5}])
    res, got, wall = run_wasi(sc, mosquitto.port, heap_bytes=512 * 1024)
    assert not [t for _, t in res.lines if "Traceback" in t], res.lines
    assert res.messages() == [], "the messages went to the broker, not to the console"
    assert wall < 60, "a few virtual hours in seconds (%.1f s)" % wall

    kinds = [t.rsplit("/", 1)[-1] for t, _ in got]
    assert {"telemetry", "status", "health"} <= set(kinds), kinds
    for topic, payload in got:
        _, problems = schemas.check_message(topic, payload, "townsense")
        assert problems == [], (topic, payload, problems)
        assert json.loads(payload)["node"] == "hb-01"
    seqs = [r["seq"] for r in readings(got)]
    assert seqs == list(range(21)), "every reading once, in order: %s" % seqs
    assert max(len(json.loads(p)["r"]) for t, p in got if t.endswith("/telemetry")) > 4, "the backlog"
    health = [json.loads(p) for t, p in got if t.endswith("/health")]
    assert all(h["dropped"] == 0 for h in health) and health[0]["reset"] == "power_on"
    assert [json.loads(p)["state"] for t, p in got if t.endswith("/status")] == ["sleeping"] * len(health)
    assert len(res.heap_between_boots) > 2, "the runner collected between boots, sockets and all"

    # The same node under CPython, over a fresh broker (no session left from the run above).
    mosquitto.restart()
    cp_msgs, _, cp_boots = run_cpython(sc, mosquitto.port)
    assert [t for t, _ in cp_msgs] == [t for t, _ in got]
    assert readings(cp_msgs) == readings(got), "same seq, values and times"
    assert comparable(cp_msgs) == comparable(got)
    assert res.boots == cp_boots


def test_a_mains_node_in_micropython_keeps_its_session_as_under_cpython(mosquitto):
    # One boot all along: a live session, keepalive pings, the will when Wi-Fi drops it.
    sc = town(MAINS, hours=1.5, faults=[{"kind": "wifi_down", "at_h": 0.5, "for_h": 0.3}])
    res, got, wall = run_wasi(sc, mosquitto.port)
    assert not [t for _, t in res.lines if "Traceback" in t], res.lines
    assert res.boots == 1 and wall < 60
    for topic, payload in got:
        assert schemas.check_message(topic, payload, "townsense")[1] == [], (topic, payload)
    # The end of the WASI run closes the node's connection (the VM is gone): the broker then
    # publishes its will. The CPython engine's tap leaves before that happens.
    assert json.loads(got[-1][1])["state"] == "offline"
    got = got[:-1]
    statuses = [json.loads(p)["state"] for t, p in got if t.endswith("/status")]
    # the will when the Wi-Fi outage cut the session, then online again. On a heavily loaded
    # machine a broker's answer can come later than fake_socket's wall-clock wait allows, and
    # the node reconnects once more (under CPython too): the whole message lists are compared
    # only when neither run had such a reconnect.
    assert statuses[:2] == ["online", "offline"] and statuses[-1] == "online", statuses
    assert statuses == ["online", "offline"] * (len(statuses) // 2) + ["online"], statuses
    seqs = [r["seq"] for r in readings(got)]
    assert seqs == list(range(len(seqs))) and len(seqs) >= 17, seqs

    mosquitto.restart()
    cp_msgs, _, cp_boots = run_cpython(sc, mosquitto.port)
    assert cp_boots == 1
    assert readings(cp_msgs) == readings(got), "same seq, values and times"
    cp_statuses = [json.loads(p)["state"] for t, p in cp_msgs if t.endswith("/status")]
    if len(statuses) == len(cp_statuses) == 3:
        assert comparable(cp_msgs) == comparable(got)


def test_commands_sent_with_paho_reach_the_micropython_node_and_are_acknowledged(mosquitto):
    ops = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="wasi-ops")
    ops.connect("127.0.0.1", mosquitto.port)
    ops.loop_start()
    sent = threading.Event()

    def send_once(topic, payload):
        # after the node's first report its persistent session holds its subscription: the
        # commands wait at the broker for its next connect (or reach it live if still there)
        if topic.endswith("/status") and not sent.is_set():
            sent.set()
            for cmd in ({"id": "p1", "cmd": "ping"}, {"id": "x1", "cmd": "dance"}, "not json",
                        {"id": "c1", "cmd": "config", "args": {"report_s": 1800}}):
                ops.publish("townsense/hb-01/cmd", cmd if isinstance(cmd, str) else json.dumps(cmd), qos=1)

    try:
        sc = battery_town(hours=4)
        listener = Listener(mosquitto.port, send_once)
        res = wasi.run_node(sc.nodes[0], sc, broker=("127.0.0.1", mosquitto.port), heap_bytes=512 * 1024)
        got = listener.stop()
    finally:
        ops.loop_stop()
        ops.disconnect()
    assert sent.is_set()
    assert not [t for _, t in res.lines if "Traceback" in t], res.lines
    acks = [json.loads(p) for t, p in got if t.endswith("/ack")]
    for a in acks:
        assert schemas.validate("ack", a) == [], a
    by_id = {a["id"]: a for a in acks}
    assert set(by_id) == {"p1", "x1", None, "c1"}, acks
    assert by_id["p1"]["ok"] is True and by_id["p1"]["node"] == "hb-01" and "uptime_s" in by_id["p1"]["result"]
    assert by_id["x1"]["ok"] is False and "unknown command" in by_id["x1"]["error"]
    assert by_id[None]["ok"] is False and "malformed" in by_id[None]["error"]
    assert by_id["c1"]["ok"] is True
    # the new config took effect (restart, then reports every 30 min: two readings a batch)
    batches = [len(json.loads(p)["r"]) for t, p in got if t.endswith("/telemetry")]
    assert batches[-2:] == [2, 2], batches
    seqs = [r["seq"] for r in readings(got)]
    assert seqs == list(range(len(seqs))), seqs
