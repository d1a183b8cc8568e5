"""TLS with a CA certificate (config mqtt.tls_ca): the firmware's own MQTT client over the fake
`ssl` (simulator/mp/fake_ssl.py: real TLS by CPython's ssl, records through the fake socket in
virtual time) against a real mosquitto with a TLS listener, and against a small TLS server for
the certificate faults. The CA and the server certificates are made here, at test time.
"""

from __future__ import annotations

import datetime
import errno
import ipaddress
import json
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from host import schemas
from simulator import engine, scenario, wasi
from simulator.mp import simboard
from tests.brokers import Mosquitto, free_port
from tests.nodeenv import NodeEnv

HOST = "127.0.0.1"
UTC = datetime.timezone.utc
LONG_AGO = datetime.datetime(2020, 1, 1, tzinfo=UTC)
FAR_AHEAD = datetime.datetime(2099, 1, 1, tzinfo=UTC)
NOT_TRUSTED = "The certificate is not correctly signed by the trusted CA"


# ---- certificates -----------------------------------------------------------------------------
def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


class CA:
    """A certificate authority of the test's own (EC P-256, as small as TLS certificates get)."""

    def __init__(self, cn="TownSense test CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(LONG_AGO).not_valid_after(FAR_AHEAD)
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = _pem(self.cert)

    def server(self, names=("localhost",), ips=(HOST,), not_before=LONG_AGO, not_after=FAR_AHEAD):
        """(certificate PEM, key PEM) of a server with these DNS names and IP addresses."""
        key = ec.generate_private_key(ec.SECP256R1())
        san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (x509.CertificateBuilder().subject_name(_name((names + ips)[0])).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .sign(self.key, hashes.SHA256()))
        return _pem(cert), key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())


# ---- brokers ----------------------------------------------------------------------------------
class CertMosquitto:
    """A mosquitto with its plain listener (port) and a TLS listener (tls_port) that presents the
    given server certificate, whatever it says; ca_pem: also the CA file of the listener;
    extra: more mosquitto config."""

    def __init__(self, workdir: Path, cert_and_key: tuple[bytes, bytes], extra: str = "",
                 ca_pem: bytes | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "server.pem").write_bytes(cert_and_key[0])
        (workdir / "server.key").write_bytes(cert_and_key[1])
        cafile = ""
        if ca_pem is not None:
            (workdir / "ca.pem").write_bytes(ca_pem)
            cafile = "cafile %s\n" % (workdir / "ca.pem")
        self.tls_port = free_port()
        self.broker = Mosquitto(workdir / "mosquitto", extra_config="listener %d %s\n%scertfile %s\nkeyfile %s\n%s" % (
            self.tls_port, HOST, cafile, workdir / "server.pem", workdir / "server.key", extra))
        self.port = self.broker.port

    def __enter__(self):
        self.broker.start()
        return self

    def __exit__(self, *exc):
        self.broker.stop()


class TLSMosquitto(CertMosquitto):
    """A CertMosquitto whose server certificate (127.0.0.1 and localhost) is signed by `ca`."""

    def __init__(self, workdir: Path, ca: CA):
        super().__init__(workdir, ca.server(), ca_pem=ca.pem)


@pytest.fixture(scope="module")
def ca():
    return CA()


@pytest.fixture
def broker(tmp_path, ca):
    with TLSMosquitto(tmp_path / "tls-broker", ca) as b:
        yield b


class TLSServer:
    """A TLS server (CPython's ssl) that completes handshakes and then holds the connection:
    enough for the client's certificate checks."""

    def __init__(self, cert_pem: bytes, key_pem: bytes, workdir: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "cert.pem").write_bytes(cert_pem)
        (workdir / "key.pem").write_bytes(key_pem)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(workdir / "cert.pem", workdir / "key.pem")
        self.sock = socket.create_server((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.settimeout(5)
            try:
                self.conns.append(self.ctx.wrap_socket(c, server_side=True))
            except (OSError, ssl.SSLError):
                c.close()

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


# ---- one board, the firmware's client ---------------------------------------------------------
class Node:
    """A board with Wi-Fi up, its clock set by NTP (unless told), the firmware's mqtt module."""

    def __init__(self, flash_dir: Path, ntp=True):
        self.env = NodeEnv(flash_dir)
        self.board = self.env.board
        self.time = self.env.module("time")
        net = self.env.module("network")
        wlan = net.WLAN(net.STA_IF)
        wlan.active(True)
        wlan.connect("townsense", "townsense-demo")
        while not wlan.isconnected():
            self.time.sleep_ms(50)
        if ntp:
            self.env.module("ntptime").settime()
        self.mqtt = self.env.module("telemetry.mqtt")
        self.clients = []

    def put(self, name: str, data: bytes) -> str:
        (self.env.flash_dir / name).write_bytes(data)
        return name

    def client(self, port, ssl_ca=None, server=HOST, client_id="t-1"):
        c = self.mqtt.MQTTClient(client_id, server, port, ssl_ca=ssl_ca, timeout_ms=3000)
        self.clients.append(c)
        return c

    def awake_us(self):
        return sum(us for st, us in self.board.energy_us.items() if st not in ("deep_sleep", "off"))

    def close(self):
        for c in self.clients:
            c.close()


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "flash")
    yield n
    n.close()


class Subscriber:
    """paho on the broker's plain listener, collecting (topic, payload)."""

    def __init__(self, port, topic="#"):
        import paho.mqtt.client as paho

        self.got = []
        self.cv = threading.Condition()
        ready = threading.Event()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_message = self._on_message
        self.c.connect(HOST, port)
        self.c.subscribe(topic, 1)
        self.c.loop_start()
        assert ready.wait(10)

    def _on_message(self, client, userdata, msg):
        with self.cv:
            self.got.append((msg.topic, msg.payload))
            self.cv.notify_all()

    def wait(self, n, timeout=5.0):
        with self.cv:
            self.cv.wait_for(lambda: len(self.got) >= n, timeout)
        return list(self.got)

    def stop(self):
        self.c.loop_stop()
        self.c.disconnect()


# ---- the client over TLS ----------------------------------------------------------------------
def test_the_client_publishes_over_tls_with_the_ca_file_from_flash(broker, ca, node):
    sub = Subscriber(broker.port, "town/#")
    try:
        c = node.client(broker.tls_port, ssl_ca=node.put("ca.pem", ca.pem))
        assert c.connect(clean_session=True) is False
        assert c.publish("town/t-1/telemetry", b'{"v":1}', qos=1) is True
        assert c.publish("town/t-1/health", b"ok", qos=0) is True
        c.disconnect()
        assert sub.wait(2) == [("town/t-1/telemetry", b'{"v":1}'), ("town/t-1/health", b"ok")]
    finally:
        sub.stop()
    # the bytes that went through the fake socket were TLS records, not MQTT packets: the
    # handshake's certificate came in, and each packet grew by the record's own bytes
    assert node.board.net_bytes[1] > 300


def test_an_idle_wait_over_tls_keeps_the_session_and_takes_commands(broker, ca, node):
    # wait_msg waits with non-blocking reads over TLS: a read timing out under mbedTLS would
    # leave the port's TLS socket failed (see the next section)
    sub = Subscriber(broker.port, "town/t-1/telemetry")
    try:
        c = node.client(broker.tls_port, ssl_ca=ca.pem)
        got = []
        c.set_callback(lambda topic, payload, retain: got.append((topic, payload)))
        c.connect(clean_session=True)
        c.subscribe("town/t-1/cmd", 1)
        t0 = node.board.now_us()
        assert c.wait_msg(2000) is False
        assert node.board.now_us() - t0 >= 2_000_000, "the wait is spent in virtual time"
        assert c.publish("town/t-1/telemetry", b"after the wait", 1) is True
        sub.c.publish("town/t-1/cmd", b"ping", qos=1).wait_for_publish(5)
        time.sleep(0.2)  # the broker forwards it over the node's TLS connection
        assert c.wait_msg(1000) is True and got == [("town/t-1/cmd", b"ping")]
        assert sub.wait(1) == [("town/t-1/telemetry", b"after the wait")]
        c.disconnect()
    finally:
        sub.stop()


def test_the_ca_may_be_given_as_bytes_pem_or_der(broker, ca, node):
    der = ca.cert.public_bytes(serialization.Encoding.DER)
    for ssl_ca in (ca.pem, der):
        c = node.client(broker.tls_port, ssl_ca=ssl_ca)
        c.connect(clean_session=True)
        assert c.isconnected()
        c.disconnect()


def test_a_tls_connect_costs_round_trips_bytes_and_crypto_time(broker, ca, node):
    def connect(port, ssl_ca):
        t0, b0 = node.board.now_us(), list(node.board.net_bytes)
        c = node.client(port, ssl_ca=ssl_ca)
        c.connect(clean_session=True)
        c.disconnect()
        return node.board.now_us() - t0, sum(node.board.net_bytes) - sum(b0)

    plain_us, plain_bytes = connect(broker.port, None)
    tls_us, tls_bytes = connect(broker.tls_port, node.put("ca.pem", ca.pem))
    lat = 2 * 5000  # one round trip at the default net_latency_us
    # two handshake round trips more, the crypto (800 ms by default), the certificate's airtime
    assert tls_us >= plain_us + 2 * lat + 800_000
    assert tls_bytes > plain_bytes + 500


def test_a_broker_certificate_from_another_ca_is_a_failed_connect(broker, node):
    sub = Subscriber(broker.port, "town/#")
    try:
        c = node.client(broker.tls_port, ssl_ca=node.put("ca.pem", CA("Somebody else's CA").pem))
        with pytest.raises(node.mqtt.MQTTError) as e:
            c.connect()
        # ssl_socket_make_new: ValueError with mbedtls_x509_crt_verify_info's text
        assert "cannot reach %s:%d" % (HOST, broker.tls_port) in str(e.value)
        assert "ValueError" in str(e.value) and NOT_TRUSTED in str(e.value)
        assert not c.isconnected()
        with pytest.raises(node.mqtt.MQTTError):
            c.publish("town/t-1/telemetry", b"x", 1)
        assert sub.wait(1, timeout=0.5) == []
    finally:
        sub.stop()


def test_ca_data_that_does_not_parse_is_a_failed_connect(broker, node):
    c = node.client(broker.tls_port, ssl_ca=b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    with pytest.raises(node.mqtt.MQTTError, match="invalid cert"):
        c.connect()


def test_the_host_name_must_match_the_certificate(ca, node, tmp_path):
    server = TLSServer(*ca.server(names=("broker.elsewhere.example",), ips=()), tmp_path / "srv")
    try:
        c = node.client(server.port, ssl_ca=ca.pem)
        with pytest.raises(node.mqtt.MQTTError, match="does not match with the expected CN"):
            c.connect()
    finally:
        server.close()


def test_certificate_dates_go_by_the_nodes_clock(broker, ca, tmp_path):
    # The RTC starts at 2000-01-01 after power-on: before NTP every certificate is "from the
    # future" (MBEDTLS_HAVE_TIME_DATE on the ESP32 build), whatever the host's clock says.
    n = Node(tmp_path / "flash", ntp=False)
    try:
        c = n.client(broker.tls_port, ssl_ca=ca.pem)
        with pytest.raises(n.mqtt.MQTTError, match="validity starts in the future"):
            c.connect()
        n.env.module("ntptime").settime()
        c.connect()
        assert c.isconnected()
    finally:
        n.close()


def test_an_expired_broker_certificate_is_refused(ca, node, tmp_path):
    old = ca.server(not_before=LONG_AGO, not_after=datetime.datetime(2021, 1, 1, tzinfo=UTC))
    server = TLSServer(*old, tmp_path / "srv")
    try:
        c = node.client(server.port, ssl_ca=ca.pem)
        with pytest.raises(node.mqtt.MQTTError, match="validity has expired"):
            c.connect()
        # expired by the node's clock, not the host's: a node whose RTC shows mid-2020 takes it
        june_2020 = int(datetime.datetime(2020, 6, 1, tzinfo=UTC).timestamp())
        node.board.set_rtc_seconds(june_2020 - simboard.SECONDS_1970_TO_2000)
        raw, s = _tls_socket(node, server.port, ca.pem)
        s.close()
    finally:
        server.close()


def test_without_host_tls_the_connect_fails_cleanly(broker, ca, node):
    # The WASI MicroPython has no `_hostssl`: wrap_socket raises OSError(EOPNOTSUPP)
    node.env.module("ssl")._host = None
    c = node.client(broker.tls_port, ssl_ca=ca.pem)
    with pytest.raises(node.mqtt.MQTTError, match=r"\[Errno %d\]" % errno.EOPNOTSUPP):
        c.connect()
    assert not c.isconnected()


# ---- the fake ssl's stream, as the port's ------------------------------------------------------
def _tls_socket(node, port, ca_pem):
    sock_mod, ssl_mod = node.env.module("socket"), node.env.module("ssl")
    raw = sock_mod.socket()
    raw.settimeout(3)
    raw.connect(sock_mod.getaddrinfo(HOST, port)[0][-1])
    return raw, ssl_mod.wrap_socket(raw, cert_reqs=ssl_mod.CERT_REQUIRED, cadata=ca_pem, server_hostname=HOST)


def test_a_read_timeout_leaves_the_tls_socket_failed_as_on_the_port(broker, ca, node):
    # extmod/modtls_mbedtls.c socket_read: a socket error under mbedtls_ssl_read (ETIMEDOUT
    # included) is kept in last_error, negated, and every later read and write raises it; only
    # EAGAIN (a non-blocking socket) is "want read".
    raw, s = _tls_socket(node, broker.tls_port, ca.pem)
    codec = node.env.module("telemetry.mqttcodec")
    s.write(codec.connect("t-1", None, None, 60, True, None))
    assert s.read(4) == bytes([0x20, 2, 0, 0])  # CONNACK, accepted
    raw.settimeout(0)
    assert s.read(1) is None  # non-blocking, nothing there: the session lives on
    s.write(codec.pingreq())
    raw.settimeout(3)
    assert s.read(2) == bytes([0xD0, 0])  # PINGRESP
    raw.settimeout(0.2)
    t0 = node.board.now_us()
    for op in (lambda: s.read(1), lambda: s.write(codec.pingreq()), lambda: s.readinto(bytearray(2))):
        with pytest.raises(OSError) as e:
            op()
        assert e.value.args[0] == -errno.ETIMEDOUT
    assert node.board.now_us() - t0 >= 200_000, "the timeout was spent once, in virtual time"
    s.close()


def test_the_broker_closing_the_connection_is_end_of_stream(tmp_path, ca, node):
    with TLSMosquitto(tmp_path / "b", ca) as b:
        raw, s = _tls_socket(node, b.tls_port, ca.pem)
        b.broker.stop()
        raw.settimeout(3)
        assert s.read(1) == b""
        s.close()


# ---- nodes of a town over TLS (engine) ---------------------------------------------------------
def town(hours=3, config=None, board="lolin-d32"):
    cfg = {"sample_s": 900, "report_s": 1800}
    cfg.update(config or {})
    return scenario.parse({"name": "tls", "hours": hours, "seed": 11, "nodes": [
        {"id": "hb-{n}", "count": 1, "type": "heartbeat", "board": board, "config": cfg}]})


def simulate(sc, broker_port, tap_port, ca_pem=None, before_run=None):
    sim = engine.Simulation(sc, broker=(HOST, broker_port), tap=(HOST, tap_port))
    node = sim.nodes[0]
    if ca_pem is not None:
        (node.flash_dir / "ca.pem").write_bytes(ca_pem)
    if before_run is not None:
        before_run(sim)
    try:
        summary = sim.run()
    finally:
        sim.close()
    return node, summary[0]


def seqs(node):
    return [r["seq"] for r in node.readings()]


def test_a_node_with_the_ca_on_its_flash_reports_over_tls(broker, ca):
    node, summary = simulate(town(config={"mqtt": {"tls_ca": "ca.pem"}}), broker.tls_port, broker.port, ca.pem)
    assert node.crashes == 0
    assert not [t for _, t in node.log if "unreachable" in t], node.log
    kinds = {m.topic.rsplit("/", 1)[-1] for m in node.messages}
    assert {"telemetry", "health"} <= kinds
    for m in node.messages:
        _, problems = schemas.check_message(m.topic, m.payload, "townsense")
        assert problems == [], (m.topic, m.payload, problems)
    assert seqs(node) == list(range(len(seqs(node)))) and len(seqs(node)) >= 11, seqs(node)
    health = [json.loads(m.payload) for m in node.messages if m.topic.endswith("/health")]
    assert all(h["dropped"] == 0 for h in health)
    assert summary["reports"] >= 6
    # each session ends with the retained status and a clean DISCONNECT, not the will
    statuses = [json.loads(m.payload)["state"] for m in node.messages if m.topic.endswith("/status")]
    assert statuses == ["sleeping"] * summary["reports"], statuses


def test_a_node_with_the_wrong_ca_keeps_its_readings_until_its_ca_is_fixed(broker, ca):
    fix_us = int(1.25 * 3600e6)

    def fix_later(sim):
        node = sim.nodes[0]
        # an installer puts the right CA on the flash (as `mpremote cp` would): the next
        # connect reads it
        node.board.call_at(fix_us, lambda b: (node.flash_dir / "ca.pem").write_bytes(ca.pem))

    sc = town(hours=3.5, config={"mqtt": {"tls_ca": "ca.pem"}, "sample_s": 600, "report_s": 600,
                                 "backoff_max_s": 900})
    node, _ = simulate(sc, broker.tls_port, broker.port, CA("Somebody else's CA").pem, fix_later)
    assert node.crashes == 0
    refused = [(t, text) for t, text in node.log if t < fix_us]
    assert any("broker unreachable" in text for _, text in refused), node.log
    assert any(NOT_TRUSTED in text for _, text in refused)
    assert not [m for m in node.messages if m.t_us < fix_us], "nothing got through before the fix"
    # every reading taken while the CA was wrong waited in the spool and went out after the fix
    got = seqs(node)
    assert got == list(range(len(got))) and len(got) >= 18, got
    early = [r for r in node.readings() if r["seq"] < 5]
    assert len(early) == 5
    health = [json.loads(m.payload) for m in node.messages if m.topic.endswith("/health")]
    assert health and all(h["dropped"] == 0 for h in health)


def test_a_tls_session_keeps_a_node_awake_longer_than_a_plain_one(broker, ca):
    plain, plain_sum = simulate(town(), broker.port, broker.port)
    tls, tls_sum = simulate(town(config={"mqtt": {"tls_ca": "ca.pem"}}), broker.tls_port, broker.port, ca.pem)
    assert plain_sum["reports"] == tls_sum["reports"] > 0
    assert seqs(tls) == seqs(plain)
    assert tls_sum["awake_s"] > plain_sum["awake_s"]
    assert tls_sum["mah_per_day"] > plain_sum["mah_per_day"]
    assert sum(tls.board.net_bytes) > sum(plain.board.net_bytes)


# ---- the WASI MicroPython: no host TLS ---------------------------------------------------------
def test_in_micropython_a_tls_node_without_host_tls_fails_to_connect_cleanly(broker, ca):
    sc = town(hours=1, config={"mqtt": {"tls_ca": "ca.pem"}})
    res = wasi.run_node(sc.nodes[0], sc, broker=(HOST, broker.tls_port), overlay={"ca.pem": ca.pem.decode()})
    text = [t for _, t in res.lines]
    assert not [t for t in text if "Traceback" in t], text
    assert any("broker unreachable" in t for t in text), text
    assert res.boots >= 2, "it slept and woke as usual"
