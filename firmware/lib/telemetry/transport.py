# How messages leave the node. A transport has open(will) -> bool, publish(topic, payload,
# qos, retain) -> bool, poll(ms) (incoming commands go to the handler given at creation) and
# close(clean). publish() returning False means "not delivered": the caller keeps the data.
#
# MqttTransport is the real one. PrintTransport writes each message to the console as one line,
# "PUB <topic> <payload>": a node without a broker in its config (bench work, the simulator's
# offline runs) still shows what it would send.
import time

from telemetry import messages


class PrintTransport:
    def __init__(self, cfg, on_message):
        self.connected = False

    def open(self, will):
        self.connected = True
        return True

    def publish(self, topic, payload, qos=0, retain=False):
        if isinstance(payload, bytes):
            payload = payload.decode()
        print("PUB", topic, payload)
        return True

    def poll(self, ms):
        time.sleep_ms(ms)  # nothing ever arrives: waiting is all there is
        return False

    def close(self, clean=True):
        self.connected = False


class MqttTransport:
    def __init__(self, cfg, on_message):
        from telemetry import mqtt

        m = cfg["mqtt"]
        self._mqtt = mqtt
        self.client = mqtt.MQTTClient(cfg["node_id"], m["host"], m["port"], m["user"], m["password"],
                                      m["keepalive"], m["tls_ca"], 4096, m["timeout_ms"])
        self.client.set_callback(on_message)
        self.cmd_topic = messages.topic(cfg, "cmd")
        self.connected = False
        self.error = None

    def open(self, will):
        """Connect with a persistent session (the broker keeps commands for a sleeping node)
        and the retained last will; subscribe to our commands. False on any failure."""
        try:
            present = self.client.connect(False, will)
            if not present:
                self.client.subscribe(self.cmd_topic, 1)
            self.connected = True
            self.error = None
        except self._mqtt.MQTTError as e:
            self.error = str(e)
            self.connected = False
        return self.connected

    def publish(self, topic, payload, qos=0, retain=False):
        if not self.connected:
            return False
        try:
            return self.client.publish(topic, payload, qos, retain)
        except self._mqtt.MQTTError as e:
            self.error = str(e)
            self.connected = False
            return False

    def poll(self, ms):
        """Handle incoming messages for up to ms; True if one was handled."""
        if not self.connected:
            return False
        try:
            return self.client.wait_msg(ms)
        except self._mqtt.MQTTError as e:
            self.error = str(e)
            self.connected = False
            return False

    def close(self, clean=True):
        if clean:
            self.client.disconnect()
        else:
            self.client.close()
        self.connected = False


def make(cfg, on_message):
    return MqttTransport(cfg, on_message) if cfg["mqtt"] else PrintTransport(cfg, on_message)
