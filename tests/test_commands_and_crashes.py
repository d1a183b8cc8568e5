"""Config changes by command (applied, rejected, rolled back when the node loses the broker)
and the crash counter's safe mode, on simulated nodes."""

import json
import time

import paho.mqtt.client as paho

from simulator import engine, scenario


def mains(hours, extra=None):
    return scenario.parse({"name": "cmd", "hours": hours, "seed": 2, "nodes": [
        {"id": "m-{n}", "type": "heartbeat", "board": "esp32-devkitc",
         "config": dict({"sample_s": 300, "report_s": 600}, **(extra or {}))}]})


def send_at(sim, node_id, at_h, port, commands):
    def send(board):
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="ops-%d" % id(commands))
        c.connect("127.0.0.1", port)
        c.loop_start()
        for cmd in commands:
            c.publish("townsense/%s/cmd" % node_id, json.dumps(cmd), qos=1).wait_for_publish(5)
        time.sleep(0.05)
        c.loop_stop()
        c.disconnect()

    sim.by_id[node_id].board.call_at(int(at_h * 3.6e9), send)


def acks(node):
    return {json.loads(m.payload)["id"]: json.loads(m.payload) for m in node.messages if m.topic.endswith("/ack")}


def test_config_patch_is_applied_and_a_bad_one_rejected(mosquitto):
    sim = engine.Simulation(mains(2), broker=("127.0.0.1", mosquitto.port))
    node = sim.by_id["m-1"]
    send_at(sim, "m-1", 0.5, mosquitto.port, [
        {"id": "bad", "cmd": "config", "args": {"sample_s": "often"}},
        {"id": "id", "cmd": "config", "args": {"node_id": "other"}},
        {"id": "good", "cmd": "config", "args": {"report_s": 1200, "ntp_host": None}}])
    try:
        sim.run()
        a = acks(node)
        assert a["bad"]["ok"] is False and "'sample_s'" in a["bad"]["error"]
        assert a["id"]["ok"] is False and "cannot be changed" in a["id"]["error"]
        assert a["good"]["ok"] is True
        cfg = json.loads((node.flash_dir / "config.json").read_text())
        assert cfg["report_s"] == 1200 and "ntp_host" not in cfg and cfg["sample_s"] == 300
        assert node.board.boots == 2, "the new config applies from a restart"
        assert not (node.flash_dir / "config.trial").exists(), "reaching the broker confirmed it"
        tele = [m.t_us / 3.6e9 for m in node.messages if m.topic.endswith("/telemetry")]
        late = [t for t in tele if t > 0.6]
        assert all(b - a > 0.3 for a, b in zip(late, late[1:])), "reports every 20 min after the change"
    finally:
        sim.close()


def test_a_config_that_loses_the_broker_is_rolled_back(mosquitto):
    sim = engine.Simulation(mains(3), broker=("127.0.0.1", mosquitto.port))
    node = sim.by_id["m-1"]
    send_at(sim, "m-1", 0.5, mosquitto.port, [{"id": "oops", "cmd": "config", "args": {"mqtt": {"port": 1}}}])
    try:
        sim.run()
        assert acks(node)["oops"]["ok"] is True
        cfg = json.loads((node.flash_dir / "config.json").read_text())
        assert cfg["mqtt"]["port"] == mosquitto.port, "the previous config is back"
        assert any("the previous one is back" in t for _, t in node.log)
        statuses = [json.loads(m.payload)["state"] for m in node.messages if m.topic.endswith("/status")]
        assert statuses[-1] == "online", "and the node is back on the broker"
    finally:
        sim.close()


CRASHING_NODE = '''
class App:
    def __init__(self, ctx):
        self.ctx = ctx

    def sample(self):
        raise RuntimeError("sensor driver bug")


def setup(ctx):
    return App(ctx)
'''


def test_three_crashed_boots_enter_safe_mode_and_say_why():
    sc = scenario.parse({"name": "crash", "hours": 2, "seed": 2, "nodes": [
        {"id": "b-{n}", "type": "heartbeat", "board": "lolin-d32", "config": {"sample_s": 900, "report_s": 3600}}]})
    sim = engine.Simulation(sc)
    node = sim.nodes[0]
    (node.flash_dir / "lib/nodes/heartbeat.py").unlink()
    (node.flash_dir / "lib/nodes/heartbeat.py").write_text(CRASHING_NODE)
    try:
        sim.run()
        crashes = [t for _, t in node.log if t.startswith("CRASH:")]
        assert len(crashes) == 3
        assert any(t == "SAFE MODE: crashed 3 boots in a row" for _, t in node.log)
        status = [json.loads(m.payload) for m in node.messages if m.topic.endswith("/status")]
        assert status and status[0]["state"] == "safe_mode" and status[0]["reason"] == "crashed 3 boots in a row"
        health = [json.loads(m.payload) for m in node.messages if m.topic.endswith("/health")]
        assert health and health[0]["crashes"] == 3
        assert node.board.boots <= 5, "no crash loop"
    finally:
        sim.close()


def test_home_assistant_discovery_once_per_power_on_when_switched_on():
    def run(ha):
        sc = scenario.parse({"name": "ha", "hours": 3, "seed": 2, "nodes": [
            {"id": "b-{n}", "type": "heartbeat", "board": "lolin-d32",
             "config": {"sample_s": 900, "report_s": 3600, "ha": ha}}]})
        sim = engine.Simulation(sc)
        try:
            sim.run()
            return [m for m in sim.nodes[0].messages if m.topic.startswith("homeassistant/")]
        finally:
            sim.close()

    assert run(False) == []
    found = run(True)
    topics = sorted(m.topic for m in found)
    assert topics == ["homeassistant/sensor/townsense_b-1_batt_mv/config",
                      "homeassistant/sensor/townsense_b-1_chip_c/config"], "once per power-on, one per field"
    conf = json.loads(next(m.payload for m in found if "batt_mv" in m.topic))
    assert conf["state_topic"] == "townsense/b-1/telemetry" and conf["unit_of_measurement"] == "mV"
