# How messages leave the node. Every transport has open(cfg) -> bool, publish(topic,
# payload, qos, retain) -> bool, and close(). PrintTransport writes each message to the
# console as one line, "PUB <topic> <payload>", for bench work and the simulator.


class PrintTransport:
    def open(self, cfg):
        return True

    def publish(self, topic, payload, qos=0, retain=False):
        if isinstance(payload, bytes):
            payload = payload.decode()
        print("PUB", topic, payload)
        return True

    def close(self):
        pass
