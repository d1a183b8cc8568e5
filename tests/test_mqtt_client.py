"""The firmware's MQTT client (firmware/lib/telemetry/mqtt.py) as the simulator runs it: loaded
through the node's module table, over the fake `socket` (real host sockets, virtual time) and a
connected fake Wi-Fi, against a real mosquitto, paho-mqtt and mosquitto_sub; and against small
scripted servers that stay silent, send garbage or oversized packets.
"""

from __future__ import annotations

import subprocess
import socket
import threading
import time

import paho.mqtt.client as paho
import pytest

from tests.brokers import Mosquitto, find_program
from tests.nodeenv import NodeEnv

HOST = "127.0.0.1"


# ---- helpers ----------------------------------------------------------------------------------
class Node:
    """One simulated board with Wi-Fi up and the firmware's mqtt module loaded."""

    def __init__(self, tmp_path, wifi=True):
        self.env = NodeEnv(tmp_path / "flash")
        self.board = self.env.board
        self.time = self.env.module("time")
        self.mqtt = self.env.module("telemetry.mqtt")
        self.codec = self.env.module("telemetry.mqttcodec")
        self.socket = self.env.module("socket")
        self.clients = []
        if wifi:
            net = self.env.module("network")
            wlan = net.WLAN(net.STA_IF)
            wlan.active(True)
            wlan.connect("townsense", "townsense-demo")
            while not wlan.isconnected():
                self.time.sleep_ms(50)

    def client(self, port, client_id="t-1", **kw):
        c = self.mqtt.MQTTClient(client_id, HOST, port, **kw)
        self.clients.append(c)
        return c

    def now_ms(self):
        return self.board.now_us() / 1000

    def wifi_down(self):
        now = self.board.now_us()
        self.board.network.outages["wifi"] = [(now, now + 3600 * 10**6)]

    def close(self):
        for c in self.clients:
            c.close()


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    yield n
    n.close()


class Paho:
    """A paho-mqtt client on the broker, collecting what it receives."""

    def __init__(self, port, topic=None, client_id="", clean_session=True):
        self.messages = []
        self._cv = threading.Condition()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        self.c.on_message = self._on_message
        self._subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: self._subscribed.set()
        self.c.connect(HOST, port)
        self.c.loop_start()
        if topic is not None:
            self.c.subscribe(topic, qos=1)
            assert self._subscribed.wait(5), "paho: no SUBACK"

    def _on_message(self, client, userdata, msg):
        with self._cv:
            self.messages.append((msg.topic, msg.payload, msg.qos, bool(msg.retain)))
            self._cv.notify_all()

    def wait_for(self, n, timeout=5.0):
        with self._cv:
            self._cv.wait_for(lambda: len(self.messages) >= n, timeout)
            return list(self.messages)

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()
        # An idle simulated node sees what has reached its socket (fake_socket does not wait
        # in wall time for data nobody asked for): give the broker a moment to forward it.
        time.sleep(0.05)

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def pahos():
    made = []

    def make(*a, **kw):
        p = Paho(*a, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


class Scripted:
    """A plain TCP server on loopback that plays `script(server, conn)` with each connection
    (in a thread) and records the packets the client sent."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.packets = []  # raw packets from the client
        self.client_closed = threading.Event()
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.conns.append(conn)
        conn.settimeout(20)
        try:
            self.script(self, conn)
        except OSError:
            pass

    @staticmethod
    def _recv(conn, n):
        try:
            return conn.recv(n)
        except ConnectionResetError:
            return b""  # closed with our data unread: the kernel resets instead of FIN

    def read_packet(self, conn):
        """One whole packet from the client, or None once it closed the connection."""
        first = self._recv(conn, 1)
        if not first:
            self.client_closed.set()
            return None
        head = bytearray(first)
        while True:
            b = self._recv(conn, 1)
            if not b:
                self.client_closed.set()
                return None
            head += b
            if not b[0] & 0x80:
                break
        n = 0
        for i, b in enumerate(head[1:]):
            n |= (b & 0x7F) << (7 * i)
        body = b""
        while len(body) < n:
            chunk = self._recv(conn, n - len(body))
            if not chunk:
                self.client_closed.set()
                return None
            body += chunk
        pkt = bytes(head) + body
        self.packets.append(pkt)
        return pkt

    def drain(self, conn):
        """Read (and record) until the client closes the connection."""
        while self.read_packet(conn) is not None:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def scripted():
    made = []

    def make(script):
        s = Scripted(script)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


CONNACK_OK = b"\x20\x02\x00\x00"


# ---- publishing to a real broker ---------------------------------------------------------------
def test_qos0_and_qos1_publishes_reach_paho(node, mosquitto, pahos):
    sub = pahos(mosquitto.port, "ts/#")
    c = node.client(mosquitto.port)
    assert c.connect(clean_session=True) is False
    assert c.publish("ts/t-1/telemetry", b'{"seq":1}') is True
    assert c.publish("ts/t-1/telemetry", '{"seq":2}', qos=1) is True
    c.disconnect()
    got = sub.wait_for(2)
    assert sorted(got) == [("ts/t-1/telemetry", b'{"seq":1}', 0, False),
                           ("ts/t-1/telemetry", b'{"seq":2}', 1, False)]
    log = mosquitto.log_text()
    assert "Received PUBLISH from t-1 (d0, q1" in log and "Sending PUBACK to t-1" in log


def test_publishes_reach_mosquitto_sub(node, mosquitto):
    sub = subprocess.Popen([find_program("mosquitto_sub"), "-h", HOST, "-p", str(mosquitto.port), "-i", "cli-sub",
                            "-t", "ts/#", "-q", "1", "-v", "-C", "3", "-W", "15"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while "Received SUBSCRIBE from cli-sub" not in mosquitto.log_text():
            assert time.monotonic() < deadline, "mosquitto_sub did not subscribe"
            time.sleep(0.02)
        c = node.client(mosquitto.port)
        c.connect()
        assert c.publish("ts/t-1/health", b"h0", qos=0)
        assert c.publish("ts/t-1/telemetry", b"t1", qos=1)
        assert c.publish("ts/t-1/event", "é", qos=1)
        c.disconnect()
        out, err = sub.communicate(timeout=15)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert sub.returncode == 0, err
    assert out.splitlines() == ["ts/t-1/health h0", "ts/t-1/telemetry t1", "ts/t-1/event é"]


def test_retained_last_will_when_the_connection_drops(node, mosquitto, pahos):
    live = pahos(mosquitto.port, "ts/t-1/status")
    c = node.client(mosquitto.port)
    c.connect(will=("ts/t-1/status", b'{"state":"lost"}', 1, True))
    assert c.publish("ts/t-1/status", b'{"state":"online"}', qos=1, retain=True)
    assert live.wait_for(1)[0][1] == b'{"state":"online"}'
    c.close()  # the link goes away without DISCONNECT
    assert [m[:2] for m in live.wait_for(2)] == [("ts/t-1/status", b'{"state":"online"}'),
                                                ("ts/t-1/status", b'{"state":"lost"}')]
    late = pahos(mosquitto.port, "ts/t-1/status")  # subscribes after the fact: the retained copy
    assert late.wait_for(1) == [("ts/t-1/status", b'{"state":"lost"}', 1, True)]


def test_no_will_after_a_clean_disconnect(node, mosquitto, pahos):
    live = pahos(mosquitto.port, "ts/t-1/status")
    c = node.client(mosquitto.port)
    c.connect(will=("ts/t-1/status", b"lost", 1, True))
    c.disconnect()
    deadline = time.monotonic() + 10
    while "Client t-1 disconnected" not in mosquitto.log_text():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)
    assert live.messages == []


def test_wifi_drop_ends_the_connection_and_the_broker_sends_the_will(node, mosquitto, pahos):
    live = pahos(mosquitto.port, "ts/t-1/status")
    c = node.client(mosquitto.port)
    c.connect(will=("ts/t-1/status", b"lost", 1, True))
    node.wifi_down()
    with pytest.raises(node.mqtt.MQTTError, match="ECONNABORTED"):
        c.publish("ts/t-1/telemetry", b"x", qos=1)
    assert not c.isconnected()
    assert live.wait_for(1) == [("ts/t-1/status", b"lost", 1, False)]
    with pytest.raises(node.mqtt.MQTTError, match="EHOSTUNREACH"):
        c.connect()


def test_persistent_session_delivers_what_came_while_offline(node, mosquitto, pahos):
    c = node.client(mosquitto.port, client_id="sleepy-1")
    assert c.connect(clean_session=False) is False
    assert c.subscribe("ts/sleepy-1/cmd/#", qos=1) == 1
    c.disconnect()
    pub = pahos(mosquitto.port)
    pub.publish("ts/sleepy-1/cmd/ping", b'{"id":7}', qos=1)  # the node is asleep
    got = []
    c.set_callback(lambda topic, payload, retain: got.append((topic, payload, retain)))
    assert c.connect(clean_session=False) is True  # session_present
    assert c.wait_msg(2000) is True
    assert got == [("ts/sleepy-1/cmd/ping", b'{"id":7}', False)]
    c.disconnect()
    # a clean session drops the subscription and the queue
    assert c.connect(clean_session=True) is False
    c.disconnect()
    pub.publish("ts/sleepy-1/cmd/ping", b'{"id":8}', qos=1)
    assert c.connect(clean_session=False) is False
    assert c.wait_msg(300) is False
    assert len(got) == 1


def test_command_from_paho_reaches_the_callback_and_is_acked(node, mosquitto, pahos):
    c = node.client(mosquitto.port)
    got = []
    c.set_callback(lambda topic, payload, retain: got.append((topic, payload, retain)))
    c.connect()
    c.subscribe("ts/t-1/cmd/#", qos=1)
    pub = pahos(mosquitto.port)
    pub.publish("ts/t-1/cmd/reboot", b'{"id":1}', qos=1)
    pub.publish("ts/t-1/cmd/sample", b'{"id":2}', qos=0)
    assert c.wait_msg(2000) is True
    assert c.wait_msg(2000) is True
    assert got == [("ts/t-1/cmd/reboot", b'{"id":1}', False), ("ts/t-1/cmd/sample", b'{"id":2}', False)]
    assert c.check_msg() is False
    deadline = time.monotonic() + 5
    while "Received PUBACK from t-1" not in mosquitto.log_text():
        assert time.monotonic() < deadline, "the client never acknowledged the QoS 1 command"
        time.sleep(0.02)


def test_a_command_whose_handler_fails_is_not_acked_and_comes_again(node, mosquitto, pahos):
    c = node.client(mosquitto.port)
    c.connect(clean_session=False)
    c.subscribe("ts/t-1/cmd/#", qos=1)

    def crash(topic, payload, retain):
        raise RuntimeError("handler bug")

    c.set_callback(crash)
    pahos(mosquitto.port).publish("ts/t-1/cmd/config", b'{"id":3}', qos=1)
    with pytest.raises(RuntimeError):
        c.wait_msg(2000)
    c.close()  # e.g. the node resets
    got = []
    c.set_callback(lambda topic, payload, retain: got.append(payload))
    assert c.connect(clean_session=False) is True
    assert c.wait_msg(2000) is True
    assert got == [b'{"id":3}']


def test_publish_while_a_command_arrives_keeps_both(node, mosquitto, pahos):
    # a command that lands while publish() waits for its PUBACK is kept for wait_msg()
    c = node.client(mosquitto.port)
    got = []
    c.set_callback(lambda topic, payload, retain: got.append(payload))
    c.connect()
    c.subscribe("ts/t-1/#", qos=1)
    assert c.publish("ts/t-1/cmd/echo", b"self", qos=1)  # comes back to us before the PUBACK
    assert got == []
    assert c.wait_msg(1000) is True
    assert got == [b"self"]


def test_keepalive_pings_while_waiting(node, mosquitto):
    c = node.client(mosquitto.port, keepalive=1)
    c.connect()
    t0 = node.now_ms()
    assert c.wait_msg(2000) is False
    assert node.now_ms() - t0 >= 2000
    assert mosquitto.log_text().count("Received PINGREQ from t-1") >= 3
    c.ping()
    c.disconnect()


def test_broker_outage_and_restart(node, mosquitto):
    c = node.client(mosquitto.port)
    c.connect()
    mosquitto.stop()
    with pytest.raises(node.mqtt.MQTTError):
        c.publish("ts/t-1/telemetry", b"x", qos=1)  # the broker closed the connection
    with pytest.raises(node.mqtt.MQTTError, match="ECONNRESET"):
        c.connect()  # nothing listens: refused
    mosquitto.restart()
    c.connect()
    assert c.publish("ts/t-1/telemetry", b"y", qos=1) is True
    c.disconnect()


def test_a_persistent_broker_keeps_the_session_across_its_restart(node, tmp_path, pahos):
    broker = Mosquitto(tmp_path / "persistent", persistence=True).start()
    try:
        c = node.client(broker.port, client_id="sleepy-2")
        c.connect(clean_session=False)
        c.subscribe("ts/sleepy-2/cmd/#", qos=1)
        c.disconnect()
        broker.restart()  # saves its database on the way down, loads it on the way up
        pahos(broker.port).publish("ts/sleepy-2/cmd/sample", b"now", qos=1)
        got = []
        c.set_callback(lambda topic, payload, retain: got.append(payload))
        assert c.connect(clean_session=False) is True
        assert c.wait_msg(2000) is True
        assert got == [b"now"]
        c.disconnect()
    finally:
        broker.stop()


# ---- the fake socket's model -------------------------------------------------------------------
def test_no_wifi_means_no_route(tmp_path, mosquitto):
    n = Node(tmp_path, wifi=False)
    c = n.client(mosquitto.port)
    t0 = n.now_ms()
    with pytest.raises(n.mqtt.MQTTError, match="EHOSTUNREACH"):
        c.connect()
    assert n.now_ms() - t0 < 1
    with pytest.raises(OSError) as e:
        n.socket.getaddrinfo("broker.example", 1883)
    assert e.value.args[0] == -202
    assert n.socket.getaddrinfo("10.1.2.3", 1883)[0][-1] == ("10.1.2.3", 1883)
    assert "Client t-1" not in mosquitto.log_text()


def test_airtime_and_round_trip_are_booked(node, mosquitto):
    c = node.client(mosquitto.port)
    c.connect()
    before = dict(node.board.energy_us)
    t0 = node.board.now_us()
    payload = b"x" * 1000
    assert c.publish("ts/t-1/telemetry", payload, qos=1)
    spent = node.board.now_us() - t0
    pkt = len(node.codec.publish("ts/t-1/telemetry", payload, 1, False, False, 1))
    kbps = node.board.profile["wifi"]["tx_kbps"]
    tx = node.board.energy_us["wifi_tx"] - before["wifi_tx"]
    rx = node.board.energy_us["wifi_rx"] - before["wifi_rx"]
    assert tx == (pkt + 40) * 8000 // kbps  # the PUBLISH's airtime at the profile's rate
    assert rx == 10000 + (4 + 40) * 8000 // kbps  # the rest of a 10 ms round trip + the PUBACK
    assert spent == tx + rx
    node.board.net_latency_us = 50000  # a slow link: the same publish takes a 100 ms round trip
    t0 = node.board.now_us()
    assert c.publish("ts/t-1/telemetry", payload, qos=1)
    assert node.board.now_us() - t0 == tx + 100000 + (4 + 40) * 8000 // kbps
    c.disconnect()


# ---- servers that misbehave --------------------------------------------------------------------
def test_a_broker_that_never_answers_costs_virtual_time_not_wall_time(node, scripted):
    srv = scripted(lambda s, conn: s.drain(conn))  # accepts, reads, never answers
    c = node.client(srv.port)
    node.board.net_wall_cap_ms = 200  # how long the fake waits in wall time for the owed answer
    t0, w0 = node.now_ms(), time.monotonic()
    with pytest.raises(node.mqtt.MQTTError, match="no CONNACK within 7000 ms"):
        c.connect(timeout_ms=7000)
    virtual, wall = node.now_ms() - t0, time.monotonic() - w0
    assert 7000 <= virtual < 7100
    assert wall < 3.5, "the 7 s timeout was waited in wall time (%.1f s), not in virtual time" % wall
    assert srv.client_closed.wait(5), "the client left the connection open"
    assert srv.packets and srv.packets[0][0] == 0x10  # it did send its CONNECT
    e = node.board.energy_us  # the radio stays on, listening, through the timeout
    assert e["wifi_rx"] + e["wifi_idle"] >= 7000 * 1000


def test_unacknowledged_qos1_is_retransmitted_with_dup_then_given_up(node, scripted):
    def script(s, conn):
        s.read_packet(conn)  # CONNECT
        conn.sendall(CONNACK_OK)
        s.drain(conn)  # then silence

    srv = scripted(script)
    c = node.client(srv.port, timeout_ms=2000, retries=2)
    c.connect()
    node.board.net_wall_cap_ms = 200  # how long the fake waits in wall time for an owed answer
    t0, w0 = node.now_ms(), time.monotonic()
    assert c.publish("ts/t-1/telemetry", b"r", qos=1) is False  # never raises for a lost ack
    assert 6000 <= node.now_ms() - t0 < 6200  # three waits of 2 s
    assert time.monotonic() - w0 < 3.0, "the waits were spent in wall time"
    assert c.isconnected()
    c.close()
    assert srv.client_closed.wait(5)
    pubs = [p for p in srv.packets if p[0] >> 4 == 3]
    assert [p[0] for p in pubs] == [0x32, 0x3A, 0x3A]  # QoS 1, then DUP set twice
    assert len({p[2:] for p in pubs}) == 1  # the same packet id and bytes each time


def test_a_late_puback_for_a_retransmission_counts(node, scripted):
    def script(s, conn):
        s.read_packet(conn)
        conn.sendall(CONNACK_OK)
        s.read_packet(conn)  # first PUBLISH: ignored
        p = s.read_packet(conn)  # the DUP copy: acknowledged
        conn.sendall(b"\x40\x02" + p[-5:-3])
        s.drain(conn)

    srv = scripted(script)
    c = node.client(srv.port, timeout_ms=1000, retries=2)
    c.connect()
    assert c.publish("ts/t-1/x", b"abc", qos=1) is True


GARBAGE = {
    "noise instead of CONNACK": (b"\xff\xfe\xfd\xfc\xfb\xfa", None),
    "CONNACK return code 6": (b"\x20\x02\x00\x06", None),
    "PUBLISH before CONNACK": (b"\x30\x03\x00\x01a", None),
    "refused: not authorized": (b"\x20\x02\x00\x05", "not authorized"),
    "CONNACK then a 5-byte remaining length": (CONNACK_OK + b"\x30\xff\xff\xff\xff\x01", "remaining length"),
    "CONNACK then a 256 MB PUBLISH header": (CONNACK_OK + b"\x30\xff\xff\xff\x7f", "limit"),
    "CONNACK then an oversized PUBLISH": (CONNACK_OK + b"\x30\x8a\x27\x00\x01a" + b"x" * 5003, "limit"),
    "CONNACK then QoS 3": (CONNACK_OK + b"\x36\x05\x00\x01a\x00\x01", "QoS 3"),
    "CONNACK then a PUBLISH cut short": (CONNACK_OK + b"\x30\x10\x00\x01a", "closed"),
    "CONNACK twice": (CONNACK_OK + CONNACK_OK, "unexpected"),
    "CONNACK then PUBREC": (CONNACK_OK + b"\x50\x02\x00\x01", "unexpected"),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_from_the_server_raises_mqtterror(node, scripted, name):
    data, match = GARBAGE[name]

    def script(s, conn):
        s.read_packet(conn)
        conn.sendall(data)
        if name.endswith("cut short"):
            conn.shutdown(socket.SHUT_WR)
        s.drain(conn)

    srv = scripted(script)
    c = node.client(srv.port, max_packet=4096, timeout_ms=2000)
    w0 = time.monotonic()
    with pytest.raises(node.mqtt.MQTTError, match=match) as e:
        if data.startswith(CONNACK_OK):
            assert c.connect() is False
            c.wait_msg(1000)
        else:
            c.connect()
    assert isinstance(e.value, node.codec.MQTTError)
    assert not c.isconnected()
    assert srv.client_closed.wait(5), "the connection was not closed"
    assert time.monotonic() - w0 < 3.0


def test_after_garbage_the_client_reconnects(node, scripted, mosquitto):
    srv = scripted(lambda s, conn: (s.read_packet(conn), conn.sendall(b"\x20\x02\x00\x06"), s.drain(conn)))
    c = node.client(srv.port)
    with pytest.raises(node.mqtt.MQTTError):
        c.connect()
    c.port = mosquitto.port  # the next attempt (say, the broker came back)
    c.connect()
    assert c.publish("ts/t-1/x", b"ok", qos=1) is True
    c.disconnect()


# ---- the same client in real MicroPython ---------------------------------------------------
MP_CLIENT = r'''
import sys
import errno
import gc
import binascii
gc.disable()
sys.path[:] = ["/lib"]

INBOX = [b""]


class Sock:
    # a canned connection: reads come from INBOX, a read with nothing left times out as on
    # the ESP32 port (OSError(ETIMEDOUT); None when non-blocking)
    def __init__(self, *args):
        self.inbox = INBOX[0]
        self.t = None
        SENT.clear()

    def settimeout(self, t):
        self.t = t

    def connect(self, addr):
        pass

    def write(self, b):
        SENT.append(bytes(b))
        return len(b)

    def read(self, n):
        if not self.inbox:
            if self.t == 0:
                return None
            raise OSError(errno.ETIMEDOUT)
        out = self.inbox[:n]
        self.inbox = self.inbox[n:]
        return out

    def readinto(self, mv):
        n = min(len(mv), len(self.inbox))
        mv[:n] = self.inbox[:n]
        self.inbox = self.inbox[n:]
        return n

    def close(self):
        SENT.append(b"CLOSED")


class socketmod:
    SOCK_STREAM = 1
    socket = Sock

    @staticmethod
    def getaddrinfo(host, port, af=0, type=0):
        return [(2, 1, 6, "", (host, port))]


SENT = []
sys.modules["socket"] = socketmod
from telemetry import mqtt

out = []
INBOX[0] = binascii.unhexlify("__INBOX__")
c = mqtt.MQTTClient("n", "broker", 1883, keepalive=0, timeout_ms=30)
out.append(str(c.connect(False, ("s", b"lost", 1, True))))
out.append(str(c.publish("t", b"x", 1)))
out.append(str(c.subscribe("cmd/#", 1)))
got = []
c.set_callback(lambda t, p, r: got.append("%s %s %s" % (t, binascii.hexlify(p).decode(), r)))
out.append(str(c.wait_msg(30)))
out.append(";".join(got))
c.ping()
out.append(str(c.publish("t", b"y", 1)))
out.append(str(c.check_msg()))
c.disconnect()
out.append(",".join([binascii.hexlify(p).decode() for p in SENT]))
for bad in (b"\x20\x02\x00\x06", b"\x20\x02\x00\x00\x30\xff\xff\xff\x7f", b"\xff\xff\xff\xff\xff\xff"):
    INBOX[0] = bad
    c = mqtt.MQTTClient("n", "broker", 1883, keepalive=0, timeout_ms=30)
    try:
        c.connect()
        c.wait_msg(30)
        out.append("no error")
    except mqtt.MQTTError as e:
        out.append("MQTTError " + str(c.isconnected()) + " " + SENT[-1].decode())
with open("/work/out.txt", "w") as f:
    f.write("\n".join(out))
'''


def test_the_client_runs_in_micropython(tmp_path, node):
    """The client's logic in real MicroPython (the WASI build has no network: a canned socket
    with the ESP32 port's read/timeout behaviour stands in)."""
    from tests.test_mqtt_codec import _run_micropython

    k = node.codec
    inbox = (bytes(k.connack(True, 0)) + bytes(k.puback(1)) + bytes(k.suback(2, [1]))
             + bytes(k.publish("cmd/a", b"go", 1, False, False, 7)) + k.pingresp())
    _run_micropython(MP_CLIENT.replace("__INBOX__", inbox.hex()), tmp_path)
    out = (tmp_path / "out.txt").read_text().split("\n")
    assert out[:6] == ["True", "True", "1", "True", "cmd/a 676f False", "False"]
    assert out[6] == "False"  # check_msg with nothing there
    pub3 = bytes(k.publish("t", b"y", 1, False, False, 3))
    want = [k.connect("n", None, None, 0, False, ("s", b"lost", 1, True)), k.publish("t", b"x", 1, False, False, 1),
            k.subscribe(2, [("cmd/#", 1)]), k.puback(7), k.pingreq(), pub3, k.set_dup(bytearray(pub3)),
            k.set_dup(bytearray(pub3)), k.disconnect(), b"CLOSED"]
    assert out[7] == ",".join(bytes(p).hex() for p in want)
    assert out[8:] == ["MQTTError False CLOSED"] * 3


def test_missing_mosquitto_fails_with_the_install_hint():
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y mosquitto"):
        find_program("mosquitto-not-installed-here")
