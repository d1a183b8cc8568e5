"""The embedded broker (simulator/broker.py), the default of `make demo`, seen from paho-mqtt:
QoS 0/1, retained messages, last will, a persistent session's queued messages, a clean stop,
and parse_url. Each broker here is new for its test, on a free loopback port.
"""

from __future__ import annotations

import gc
import queue
import socket
import threading
import time
import warnings

import paho.mqtt.client as paho
import pytest

from simulator.broker import EmbeddedBroker, EmbeddedBrokerError, parse_url

TIMEOUT_S = 2.0


# ---- helpers ----------------------------------------------------------------------------------
class Client:
    """A paho client whose received messages and connect results land in queues."""

    def __init__(self, broker: EmbeddedBroker, client_id: str, clean_session: bool = True,
                 will: tuple[str, bytes, int, bool] | None = None, threaded: bool = True):
        self.broker = broker
        self.paho = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                clean_session=clean_session)
        if will is not None:
            topic, payload, qos, retain = will
            self.paho.will_set(topic, payload, qos=qos, retain=retain)
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.connacks: queue.Queue[tuple[bool, int]] = queue.Queue()
        self.subacks: queue.Queue[int] = queue.Queue()
        self.paho.on_message = lambda c, u, msg: self.messages.put(msg)
        self.paho.on_connect = lambda c, u, flags, rc, props: self.connacks.put(
            (bool(flags.session_present), rc.value))
        self.paho.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put(mid)
        self.disconnects: queue.Queue[int] = queue.Queue()
        self.paho.on_disconnect = lambda c, u, flags, rc, props: self.disconnects.put(rc.value)
        self.paho.reconnect_delay_set(min_delay=0.05, max_delay=0.1)  # type: ignore[arg-type]
        self.threaded = threaded
        self.running = False

    def connect(self) -> bool:
        """Connect and wait for CONNACK; returns the session-present flag."""
        self.paho.connect(self.broker.host, self.broker.port, keepalive=30)
        if self.threaded:
            self.paho.loop_start()
            self.running = True
            session_present, rc = self.connacks.get(timeout=TIMEOUT_S)
        else:  # driven by hand, so that its socket can be closed under it
            deadline = time.monotonic() + TIMEOUT_S
            while self.connacks.empty():
                assert time.monotonic() < deadline, "no CONNACK"
                self.paho.loop(timeout=0.05)
            session_present, rc = self.connacks.get_nowait()
        assert rc == 0, "connection refused: %d" % rc
        return session_present

    def subscribe(self, topic: str, qos: int) -> None:
        result, mid = self.paho.subscribe(topic, qos=qos)
        assert result == paho.MQTT_ERR_SUCCESS
        assert self.subacks.get(timeout=TIMEOUT_S) == mid

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False):
        info = self.paho.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(TIMEOUT_S)
        assert info.is_published(), "no PUBACK for %s" % topic
        return info

    def next(self) -> paho.MQTTMessage:
        return self.messages.get(timeout=TIMEOUT_S)

    def disconnect(self) -> None:
        if self.running:
            self.paho.disconnect()
            self.paho.loop_stop()
            self.running = False

    def drop(self) -> None:
        """Close the socket with no DISCONNECT, as a board losing power does."""
        sock = self.paho.socket()
        assert sock is not None
        sock.close()


@pytest.fixture
def broker():
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture
def clients(broker):
    made: list[Client] = []

    def make(client_id: str, **kw) -> Client:
        c = Client(broker, client_id, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.disconnect()


def drain(c: Client) -> list[tuple[str, bytes]]:
    """Everything received so far, after a marker has proved the pipe is empty up to now."""
    out: list[tuple[str, bytes]] = []
    while True:
        try:
            msg = c.messages.get_nowait()
        except queue.Empty:
            return out
        out.append((msg.topic, bytes(msg.payload)))


# ---- delivery ---------------------------------------------------------------------------------
def test_address(broker):
    assert broker.host == "127.0.0.1"
    assert 0 < broker.port < 65536
    assert broker.url == "mqtt://127.0.0.1:%d" % broker.port
    assert parse_url(broker.url) == (broker.host, broker.port)
    with socket.create_connection((broker.host, broker.port), timeout=TIMEOUT_S):
        pass


def test_qos0_and_qos1_are_delivered(clients):
    sub = clients("sub")
    sub.connect()
    sub.subscribe("town/+/telemetry", qos=1)
    pub = clients("pub")
    pub.connect()

    pub.publish("town/n1/telemetry", b"q0", qos=0)
    msg = sub.next()
    assert (msg.topic, msg.payload) == ("town/n1/telemetry", b"q0")

    info = pub.publish("town/n2/telemetry", b"q1", qos=1)  # asserts the PUBACK came
    assert info.rc == paho.MQTT_ERR_SUCCESS
    msg = sub.next()
    assert (msg.topic, msg.payload, msg.qos) == ("town/n2/telemetry", b"q1", 1)

    pub.publish("elsewhere/x", b"not matched", qos=1)
    pub.publish("town/n3/telemetry", b"marker", qos=1)
    assert sub.next().payload == b"marker"
    assert drain(sub) == []


@pytest.mark.xfail(strict=True, reason=(
    "amqtt 0.12 delivers at the subscription's QoS, not min(publish, subscription): a QoS 0 "
    "publish reaches a QoS 1 subscriber as QoS 1 (and is queued for an offline persistent "
    "session); mosquitto downgrades. strict: this starts failing when amqtt fixes it"))
def test_delivery_qos_is_the_lower_of_publish_and_subscription(clients):
    sub = clients("sub")
    sub.connect()
    sub.subscribe("town/+/telemetry", qos=1)
    pub = clients("pub")
    pub.connect()
    pub.publish("town/n1/telemetry", b"q0", qos=0)
    assert sub.next().qos == 0


def test_retained_message_reaches_a_later_subscriber_only(clients):
    pub = clients("node-7")
    pub.connect()
    pub.publish("town/node-7/status", b"online", qos=1, retain=True)
    pub.publish("town/node-8/status", b"gone", qos=1, retain=True)
    pub.publish("town/node-8/status", b"", qos=1, retain=True)  # clears node-8's

    first = clients("collector")
    first.connect()
    first.subscribe("town/+/status", qos=1)
    msg = first.next()
    assert (msg.topic, msg.payload, msg.retain) == ("town/node-7/status", b"online", True)

    # a client that never subscribed to it must not get it (amqtt 0.12 replays retained
    # messages for every client's filters on connect; simulator.broker corrects that)
    other = clients("node-9")
    other.connect()
    other.subscribe("town/node-9/cmd", qos=1)
    pub.publish("town/node-9/cmd", b"marker", qos=1)
    assert other.next().payload == b"marker"
    assert drain(other) == []

    # a live message after the retained one is not flagged retained
    pub.publish("town/node-7/status", b"online again", qos=1, retain=True)
    msg = first.next()
    assert (msg.payload, msg.retain) == (b"online again", False)
    assert drain(first) == []


def test_last_will_is_published_when_the_socket_closes_without_disconnect(clients):
    watcher = clients("collector")
    watcher.connect()
    watcher.subscribe("town/+/status", qos=1)

    node = clients("node-3", will=("town/node-3/status", b"offline", 1, True), threaded=False)
    node.connect()
    node.drop()

    msg = watcher.next()
    assert (msg.topic, msg.payload, msg.qos) == ("town/node-3/status", b"offline", 1)
    # retained, as the will asked: a later subscriber sees the node offline
    later = clients("fleet-cli")
    later.connect()
    later.subscribe("town/node-3/status", qos=1)
    msg = later.next()
    assert (msg.payload, msg.retain) == (b"offline", True)


def test_no_last_will_after_a_clean_disconnect(clients):
    watcher = clients("collector")
    watcher.connect()
    watcher.subscribe("town/#", qos=1)
    node = clients("node-4", will=("town/node-4/status", b"offline", 1, False))
    node.connect()
    node.disconnect()
    time.sleep(0.1)  # give a wrongly sent will the time to arrive before the marker
    marker = clients("marker")
    marker.connect()
    marker.publish("town/marker", b"marker", qos=1)
    assert watcher.next().payload == b"marker"
    assert drain(watcher) == []


def test_persistent_session_gets_qos1_messages_sent_while_it_was_away(clients):
    node = clients("node-5", clean_session=False)
    assert node.connect() is False
    node.subscribe("town/node-5/cmd", qos=1)
    node.disconnect()

    pub = clients("fleet-cli")
    pub.connect()
    pub.publish("town/node-5/cmd", b'{"cmd":"reboot"}', qos=1)
    pub.publish("town/node-5/cmd", b'{"cmd":"ping"}', qos=1)
    time.sleep(0.1)  # let the broker route them while node-5 is away

    again = clients("node-5", clean_session=False)
    assert again.connect() is True  # session present
    got = [again.next(), again.next()]
    assert [(m.topic, m.payload, m.qos) for m in got] == [
        ("town/node-5/cmd", b'{"cmd":"reboot"}', 1),
        ("town/node-5/cmd", b'{"cmd":"ping"}', 1),
    ]
    # queued messages are not retained messages (amqtt 0.12 flags them; corrected here)
    assert [m.retain for m in got] == [False, False]
    # the subscription itself survived too
    pub.publish("town/node-5/cmd", b"live", qos=1)
    assert again.next().payload == b"live"
    assert drain(again) == []


def test_clean_session_drops_the_old_session(clients):
    node = clients("node-6", clean_session=False)
    node.connect()
    node.subscribe("town/node-6/cmd", qos=1)
    node.disconnect()
    clean = clients("node-6", clean_session=True)
    assert clean.connect() is False
    clean.disconnect()
    pub = clients("fleet-cli")
    pub.connect()
    pub.publish("town/node-6/cmd", b"lost", qos=1)
    time.sleep(0.1)
    again = clients("node-6", clean_session=False)
    assert again.connect() is False
    again.subscribe("town/node-6/marker", qos=1)
    pub.publish("town/node-6/marker", b"marker", qos=1)
    assert again.next().payload == b"marker"
    assert drain(again) == []


# ---- life cycle -------------------------------------------------------------------------------
def _broker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "townsense-embedded-broker"]


def test_stop_frees_the_port_and_leaves_no_thread():
    non_daemon_before = {t for t in threading.enumerate() if not t.daemon}
    b = EmbeddedBroker().start()
    port = b.port
    # a live MQTT client and a socket that never sent CONNECT must not hold up the stop
    c = Client(b, "lingering")
    c.connect()
    c.subscribe("x", qos=1)
    silent = socket.create_connection((b.host, port), timeout=TIMEOUT_S)
    try:
        t0 = time.monotonic()
        b.stop()
        assert time.monotonic() - t0 < 3.0
        b.stop()  # idempotent
        assert c.disconnects.get(timeout=TIMEOUT_S) != 0  # the broker closed its connection
        assert not b.running
        assert _broker_threads() == []
        assert {t for t in threading.enumerate() if not t.daemon} == non_daemon_before
        # the port is free: a new broker binds it and serves
        with EmbeddedBroker(port=port) as b2:
            assert b2.port == port
            c2 = Client(b2, "after")
            c2.connect()
            c2.disconnect()
        assert _broker_threads() == []
    finally:
        silent.close()
        c.paho.loop_stop()


def test_stop_closes_every_socket_it_opened():
    """Broker-side sockets of clients that left cleanly, left abruptly, or never sent CONNECT
    are all closed (a leaked one shows as a ResourceWarning when collected)."""
    gc.collect()  # what earlier tests left for the collector is not this broker's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with EmbeddedBroker() as b:
            clean = Client(b, "clean")
            clean.connect()
            clean.disconnect()
            dropped = Client(b, "dropped", will=("w", b"x", 0, False), threaded=False)
            dropped.connect()
            dropped.drop()
            live = Client(b, "live")
            live.connect()
            silent = socket.create_connection((b.host, b.port), timeout=TIMEOUT_S)
            time.sleep(0.1)  # let the broker see the dropped one go
        silent.close()
        live.paho.loop_stop()
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)
             and ":%d" % b.port in str(w.message).replace("', ", ":")]  # this broker's sockets only
    assert leaks == [], "broker port %d" % b.port


def test_restart_listens_on_the_same_port():
    b = EmbeddedBroker()
    with b:
        port = b.port
    assert b.url == "mqtt://127.0.0.1:%d" % port
    with b:
        assert b.port == port
        c = Client(b, "again")
        c.connect()
        c.disconnect()
    assert _broker_threads() == []


def test_start_on_a_taken_port_fails_clearly():
    with EmbeddedBroker() as b:
        other = EmbeddedBroker(port=b.port)
        with pytest.raises(EmbeddedBrokerError, match="could not listen on 127.0.0.1:%d" % b.port):
            other.start()
        assert not other.running
        other.stop()  # still harmless
        assert len(_broker_threads()) == 1
    assert _broker_threads() == []


def test_start_twice_is_an_error():
    with EmbeddedBroker() as b:
        with pytest.raises(RuntimeError, match="already running"):
            b.start()


# ---- parse_url --------------------------------------------------------------------------------
@pytest.mark.parametrize("url, expected", [
    ("mqtt://127.0.0.1:1883", ("127.0.0.1", 1883)),
    ("mqtt://localhost:41000", ("localhost", 41000)),
    ("mqtt://broker.town.example", ("broker.town.example", 1883)),
    ("mqtt://broker.town.example/", ("broker.town.example", 1883)),
    ("MQTT://Host:1884", ("host", 1884)),
    ("mqtt://[::1]:1885", ("::1", 1885)),
])
def test_parse_url(url, expected):
    assert parse_url(url) == expected


@pytest.mark.parametrize("url, message", [
    ("mqtts://127.0.0.1:8883", "unsupported scheme 'mqtts'"),
    ("ws://127.0.0.1:8080", "unsupported scheme 'ws'"),
    ("tcp://127.0.0.1:1883", "unsupported scheme 'tcp'"),
    ("127.0.0.1:1883", "no scheme"),
    ("localhost", "no scheme"),
    ("", "no scheme"),
    ("mqtt://:1883", "no host"),
    ("mqtt://", "no host"),
    ("mqtt://host:", "empty port"),
    ("mqtt://host:abc", "port must be a number"),
    ("mqtt://host:0", "port must be a number"),
    ("mqtt://host:70000", "port must be a number"),
    ("mqtt://user:pw@host:1883", "credentials"),
    ("mqtt://host:1883/town", "nothing after the port"),
    ("mqtt://host:1883?x=1", "nothing after the port"),
])
def test_parse_url_errors(url, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_url(url)
    assert repr(url) in str(err.value)


def test_parse_url_rejects_non_strings():
    with pytest.raises(ValueError, match="must be a string"):
        parse_url(None)  # type: ignore[arg-type]
