"""`townsense collect` over TLS (mqtts://) against a real mosquitto with a TLS listener: the
collector verifies the broker's certificate with --ca (or the system trust store), stores what
nodes send over TLS exactly once, and a certificate it cannot trust (another CA, another name,
expired) ends the command with one clear line and exit code 2 before it takes any message: what
the broker queued for its session is still there for the next run.

The CA, the certificates and TLSMosquitto come from tests/test_mqtt_tls.py (the node's side of
TLS); the brokers with a wrong certificate are made here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sqlite3
import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host import collector
from host.broker_url import MQTTS_PORT, BrokerURL, parse
from host.collector import Collector
from simulator import engine, scenario
from simulator.broker import DEFAULT_PORT as MQTT_PORT
from tests.test_collector import collect_process
from tests.test_mqtt_tls import CA, HOST, LONG_AGO, UTC, CertMosquitto, TLSMosquitto

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("readings", "events", "health", "status", "status_latest", "acks", "quarantine")


# ---- the URL ------------------------------------------------------------------------------------
def test_the_url_names_plain_or_tls_and_the_port_defaults_by_scheme():
    assert parse("mqtt://broker.example.org") == BrokerURL("broker.example.org", MQTT_PORT, False)
    assert parse("mqtts://broker.example.org") == BrokerURL("broker.example.org", MQTTS_PORT, True)
    assert parse("MQTTS://Broker.Example.org:443") == BrokerURL("broker.example.org", 443, True)
    assert parse("mqtts://[::1]:8884") == BrokerURL("::1", 8884, True)
    assert str(parse("mqtts://[::1]")) == "mqtts://[::1]:8883"


@pytest.mark.parametrize("url, why", [
    ("http://h:1", "unsupported scheme 'http', expected mqtt://host[:port] or mqtts://host[:port]"),
    ("broker.example.org:8883", "has no scheme"),
    ("mqtts://", "has no host"),
    ("mqtts://h:0", "the port must be a number in 1..65535"),
    ("mqtts://h:x", "the port must be a number in 1..65535"),
    ("mqtts://h:", "leave out ':' for 8883"),
    ("mqtts://u:pw@h", "credentials in the URL are not supported"),
    ("mqtts://h/town", "nothing after the port"),
    ("mqtts://[::1", "Invalid IPv6 URL"),
    ("mqtts://bro ker", "is neither a host name nor an IP address"),
    ("mqtt://bro ker:1883", "is neither a host name nor an IP address"),
    ("mqtts://a..b", "is neither a host name nor an IP address"),
])
def test_a_bad_url_is_a_value_error_naming_it(url, why):
    with pytest.raises(ValueError) as e:
        parse(url)
    assert repr(url) in str(e.value) and why in str(e.value)


_good_hosts = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z][a-z0-9]{0,8}){0,3}", fullmatch=True),
    st.ip_addresses().map(lambda a: "[%s]" % a if a.version == 6 else str(a)),
)
_hosts = st.one_of(_good_hosts, st.text(max_size=12))
_urls = st.one_of(
    st.text(max_size=40),
    st.tuples(st.sampled_from(["mqtt", "mqtts", "MQTTS", "Mqtt", "http", "mqttx", "", "ws"]),
              st.sampled_from(["://", ":/", ":", ""]),
              _hosts,
              st.one_of(st.just(""), st.integers(-5, 70000).map(":{}".format), st.text(max_size=5).map(":".__add__)),
              st.one_of(st.just(""), st.sampled_from(["/", "/x", "?q", "#f", "@h", "]"]), st.text(max_size=4)),
              ).map("".join),
)


@settings(max_examples=600, deadline=None)
@given(_urls)
def test_any_url_is_parsed_and_round_trips_or_is_a_value_error(url):
    try:
        b = parse(url)
    except ValueError as e:  # and never another exception
        assert repr(url) in str(e), "the error names the URL"
        return
    assert parse(str(b)) == b, "host, port and tls survive the round trip"
    assert b.tls == url.lower().startswith("mqtts://")
    assert 1 <= b.port <= 65535
    assert str(b).startswith("mqtts://" if b.tls else "mqtt://")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["mqtt", "mqtts", "MQTT", "Mqtts"]), _good_hosts, st.one_of(st.none(), st.integers(1, 65535)))
def test_a_well_formed_url_gives_back_its_parts(scheme, host, port):
    b = parse("%s://%s%s" % (scheme, host, "" if port is None else ":%d" % port))
    tls = scheme.lower() == "mqtts"
    default = MQTTS_PORT if tls else MQTT_PORT
    assert b == BrokerURL(host.strip("[]"), default if port is None else port, tls)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_mqtts_follows_the_same_rules_as_mqtt(rest):
    def outcome(url):
        try:
            return parse(url).host
        except ValueError:
            return None

    assert outcome("mqtts://" + rest) == outcome("mqtt://" + rest)


# ---- the CLI, before any broker -------------------------------------------------------------------
def cli_args(*argv):
    p = argparse.ArgumentParser()
    collector.register(p.add_subparsers(dest="cmd"))
    return p.parse_args(["collect", *map(str, argv)])


def test_no_option_to_skip_verification_is_offered():
    with pytest.raises(SystemExit):
        cli_args("--broker", "mqtts://h", "--db", "x.db", "--insecure")


@pytest.mark.parametrize("broker, ca_text, why", [
    ("mqtt://127.0.0.1:1883", None, "is for a TLS broker (mqtts://)"),
    ("mqtts://127.0.0.1", "missing", "No such file or directory"),
    ("mqtts://127.0.0.1", b"not a certificate\n", "no PEM CA certificate could be read from it"),
])
def test_a_ca_option_that_cannot_work_is_refused_before_the_database_is_touched(tmp_path, capsys, broker, ca_text, why):
    ca_file = tmp_path / "ca.pem"
    if isinstance(ca_text, bytes):
        ca_file.write_bytes(ca_text)
    elif ca_text is None:
        ca_file.write_bytes(CA().pem)
    args = cli_args("--broker", broker, "--db", tmp_path / "town.db", "--ca", ca_file)
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("townsense collect: --ca %s" % ca_file) and why in err[0], err
    assert not (tmp_path / "town.db").exists()


# ---- brokers --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ca():
    return CA()


@pytest.fixture
def ca_file(tmp_path, ca):
    path = tmp_path / "town-ca.pem"
    path.write_bytes(ca.pem)
    return path


@pytest.fixture
def broker(tmp_path, ca):
    with TLSMosquitto(tmp_path / "tls-broker", ca) as b:
        yield b


def tls_publisher(port, ca_file, client_id="test-pub", user=None, password=None):
    """paho over TLS, verifying the broker as the collector does."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.tls_set(ca_certs=str(ca_file), cert_reqs=ssl.CERT_REQUIRED)
    if user:
        c.username_pw_set(user, password)
    c.connect(HOST, port)
    c.loop_start()
    return c


def plain_publisher(port):
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="plain-pub")
    c.connect(HOST, port)
    c.loop_start()
    return c


def publish(c, topic, payload):
    info = c.publish(topic, json.dumps(payload) if isinstance(payload, dict) else payload, qos=1)
    info.wait_for_publish(5)
    assert info.is_published()


def close(c):
    c.disconnect()
    c.loop_stop()


def event(seq, node="hb-1"):
    return {"v": 1, "node": node, "type": "heartbeat", "seq": seq, "ts": 1780272000 + seq, "event": "test",
            "level": "info", "data": {"n": seq}}


def wait_for(pred, limit_s=20.0):
    """A bound for waiting on the broker; the assertions that follow say what must be there."""
    deadline = time.monotonic() + limit_s
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.05)


def table_counts(db_path):
    db = sqlite3.connect(str(db_path))
    try:
        return {t: db.execute("SELECT COUNT(*) FROM %s" % t).fetchone()[0] for t in TABLES}
    finally:
        db.close()


# ---- (1) a town over TLS --------------------------------------------------------------------------
def town(hours=4):
    cfg = {"sample_s": 900, "report_s": 1800, "mqtt": {"tls_ca": "ca.pem"}}
    return scenario.parse({"name": "tls-collect", "hours": hours, "seed": 7, "nodes": [
        {"id": "b-{n}", "count": 2, "type": "heartbeat", "board": "lolin-d32", "config": cfg},
        {"id": "m-{n}", "count": 1, "type": "heartbeat", "board": "esp32-devkitc", "config": cfg}]})


def test_a_collector_over_tls_stores_what_nodes_send_over_tls_once(broker, ca, ca_file, tmp_path):
    db_path = tmp_path / "town.db"
    url = "mqtts://%s:%d" % (HOST, broker.tls_port)
    col = Collector(url, db_path, ca=ca_file).start()
    assert col.tls and col.port == broker.tls_port
    # the nodes publish through the firmware's client over TLS (the CA on their flash); the
    # simulator's own tap listens on the plain listener
    sim = engine.Simulation(town(), broker=(HOST, broker.tls_port), tap=(HOST, broker.port))
    for node in sim.nodes:
        (node.flash_dir / "ca.pem").write_bytes(ca.pem)
    try:
        sim.run()
    finally:
        sim.close()
    sent = {(n.id, r["seq"]): r for n in sim.nodes for m in n.messages if m.topic.endswith("/telemetry")
            for r in json.loads(m.payload)["r"]}
    assert len(sent) >= 3 * 4 * 3, "every node reported over TLS"
    # one telemetry message again, over TLS from paho, as after a lost PUBACK
    again = next(m for m in sim.by_id["b-1"].messages if m.topic.endswith("/telemetry"))
    n_again = len(json.loads(again.payload)["r"])
    pub = tls_publisher(broker.tls_port, ca_file)
    publish(pub, again.topic, again.payload)
    close(pub)
    wait_for(lambda: col.counts["duplicates"] >= n_again)
    assert col.wait_quiet()
    counts = col.counts
    col.stop()

    db = sqlite3.connect(str(db_path))
    rows = db.execute("SELECT node, seq, ts, fields FROM readings").fetchall()
    db.close()
    assert len(rows) == len(sent), "each reading once"
    assert {(node, seq) for node, seq, _, _ in rows} == set(sent)
    for node, seq, ts, fields in rows:
        r = sent[(node, seq)]
        assert ts == r["ts"] and json.loads(fields) == {k: v for k, v in r.items() if k not in ("seq", "ts", "u")}
    assert counts["duplicates"] == n_again and counts["quarantined"] == 0


# ---- (2) and (3): a certificate it cannot trust -----------------------------------------------------
def refused_run(db_path, url, plain_port, ca_file, capsys):
    """Give the collector's session a backlog, run `townsense collect` over TLS (it must end
    by itself: a thread with a bound, so that a collector retrying for ever fails the test
    instead of hanging it) and return (status, stderr lines)."""
    Collector("mqtt://%s:%d" % (HOST, plain_port), db_path).start().stop()  # the session exists
    pub = plain_publisher(plain_port)
    for seq in range(3):
        publish(pub, "townsense/hb-1/event", event(seq))
    close(pub)
    before = table_counts(db_path)
    argv = ["--broker", url, "--db", db_path, "--every", "0.2"] + (["--ca", ca_file] if ca_file else [])
    args = cli_args(*argv)
    capsys.readouterr()
    result = []
    t = threading.Thread(target=lambda: result.append(args.func(args)), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the collector kept retrying a certificate that cannot be trusted"
    assert table_counts(db_path) == before, "nothing new in the database"
    return result[0], capsys.readouterr()


def assert_nothing_was_lost(db_path, plain_port):
    """The backlog is still queued for the session: the next run (here on the plain listener)
    gets each message once."""
    col = Collector("mqtt://%s:%d" % (HOST, plain_port), db_path).start()
    wait_for(lambda: col.counts["events"] >= 3)
    assert col.wait_quiet()
    col.stop()
    db = sqlite3.connect(str(db_path))
    assert [r[0] for r in db.execute("SELECT seq FROM events ORDER BY seq")] == [0, 1, 2]
    db.close()


def one_error_line(captured):
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("townsense collect: cannot trust the broker mqtts://"), lines
    return lines[0]


@pytest.mark.parametrize("which_ca", ["another CA", "the system trust store"])
def test_a_broker_certificate_from_an_unknown_ca_ends_the_command(broker, tmp_path, capsys, which_ca):
    other = None
    if which_ca == "another CA":
        other = tmp_path / "other-ca.pem"
        other.write_bytes(CA("Somebody else's CA").pem)
    url = "mqtts://%s:%d" % (HOST, broker.tls_port)
    status, out = refused_run(tmp_path / "town.db", url, broker.port, other, capsys)
    assert status == 2
    line = one_error_line(out)
    where = "the CA file %s" % other if other else "the system trust store"
    assert ("cannot trust the broker %s: its certificate is not signed by a CA in %s" % (url, where)) in line
    assert "give the broker's CA with --ca FILE" in line
    assert "connected to" not in out.out and line.split(": ", 1)[1] in out.out, "the log says it too"
    assert_nothing_was_lost(tmp_path / "town.db", broker.port)


@pytest.mark.parametrize("host", [HOST, "localhost"])
def test_a_broker_certificate_for_another_name_ends_the_command(ca, ca_file, tmp_path, capsys, host):
    cert = ca.server(names=("broker.elsewhere.example",), ips=())
    with CertMosquitto(tmp_path / "b", cert) as b:
        url = "mqtts://%s:%d" % (host, b.tls_port)
        status, out = refused_run(tmp_path / "town.db", url, b.port, ca_file, capsys)
        assert status == 2
        line = one_error_line(out)
        assert "its certificate is not issued for %r" % host in line
        assert ("IP address mismatch" if host == HOST else "Hostname mismatch") in line
        assert_nothing_was_lost(tmp_path / "town.db", b.port)


def test_an_expired_broker_certificate_ends_the_command(ca, ca_file, tmp_path, capsys):
    cert = ca.server(not_before=LONG_AGO, not_after=datetime.datetime(2021, 1, 1, tzinfo=UTC))
    with CertMosquitto(tmp_path / "b", cert) as b:
        status, out = refused_run(tmp_path / "town.db", "mqtts://%s:%d" % (HOST, b.tls_port), b.port, ca_file, capsys)
        assert status == 2
        assert "its certificate has expired" in one_error_line(out)
        assert_nothing_was_lost(tmp_path / "town.db", b.port)


def test_in_python_an_untrusted_broker_is_an_error_at_start(broker, tmp_path):
    other = tmp_path / "other-ca.pem"
    other.write_bytes(CA("Somebody else's CA").pem)
    col = Collector("mqtts://%s:%d" % (HOST, broker.tls_port), tmp_path / "x.db", ca=other)
    with pytest.raises(RuntimeError, match="cannot trust the broker") as e:
        col.start(timeout=30)
    assert isinstance(e.value.__cause__, collector.BrokerCertificateError)


# ---- the CLI over TLS, with the collector service user ----------------------------------------------
def test_cli_collects_over_tls_as_the_collector_service_user(ca, ca_file, tmp_path):
    """`townsense collect --broker mqtts://... --ca FILE --mosquitto-dir DIR` as a process, behind
    the broker's ACL (allow_anonymous false): it logs in over TLS, stores what a node publishes
    over TLS, and stops cleanly on SIGTERM."""
    from host import credentials as cr

    files = cr.BrokerFiles(tmp_path / "auth")
    node_pw = cr.new_password()
    files.add_node("bin-a", cr.hash_password(node_pw), "townsense")
    auth = "allow_anonymous false\npassword_file %s\nacl_file %s\n" % (files.passwd, files.acl)
    db_path = tmp_path / "cli.db"
    with CertMosquitto(tmp_path / "b", ca.server(), extra=auth) as b:
        url = "mqtts://%s:%d" % (HOST, b.tls_port)
        proc, until, seen = collect_process(["--broker", url, "--ca", str(ca_file), "--mosquitto-dir",
                                             str(tmp_path / "auth"), "--db", str(db_path), "--every", "0.2"])
        try:
            assert until("connected to %s (session new)" % url), seen
            assert until("subscribed to townsense/+/+"), seen
            node = tls_publisher(b.tls_port, ca_file, client_id="bin-a", user="bin-a", password=node_pw)
            publish(node, "townsense/bin-a/event", {"v": 1, "node": "bin-a", "type": "fill_level", "seq": 0,
                                                    "ts": 1780272000, "event": "bin_full", "level": "alarm",
                                                    "data": {"fill": 84}})
            close(node)
            assert until("connected; 1 messages: 0 readings, 1 events"), seen
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert until("stopped: 1 messages"), seen
    db = sqlite3.connect(str(db_path))
    assert db.execute("SELECT node, seq, event FROM events").fetchall() == [("bin-a", 0, "bin_full")]
    db.close()
