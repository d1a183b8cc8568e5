"""host/credentials.py against a real mosquitto with `allow_anonymous false`, the password file
and the ACL file it writes: each node publishes only under its own subtree, reads only its own
commands; the collector reads everything, the operator sends commands.

Absence is proved without timing: messages from one client reach a subscriber in the order the
client sent them, so when a marker published after a forbidden message arrives, the forbidden
one would have arrived before it had the broker let it through."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

from host import credentials as cr
from tests.brokers import Mosquitto, find_program

PREFIX = "oakvale/townsense"


class Client:
    """A paho client that records CONNACK and messages, with waits that fail loudly."""

    def __init__(self, port, user=None, password=None, client_id="", will=None):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if user is not None:
            self.c.username_pw_set(user, password)
        if will:
            self.c.will_set(*will)
        self.msgs: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.rc = None
        self.subscribed = False
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        self.wait(lambda: self.rc is not None, "CONNACK")

    def _on_connect(self, c, u, flags, rc, props=None):
        with self.cond:
            self.rc = rc
            self.cond.notify_all()

    def _on_subscribe(self, c, u, mid, rcs, props=None):
        with self.cond:
            self.subscribed = True
            self.cond.notify_all()

    def _on_message(self, c, u, msg):
        with self.cond:
            self.msgs.append((msg.topic, msg.payload))
            self.cond.notify_all()

    @property
    def accepted(self) -> bool:
        return self.rc is not None and not self.rc.is_failure

    def wait(self, pred, what, limit_s=10):
        with self.cond:
            if not self.cond.wait_for(pred, limit_s):
                raise AssertionError("no %s within %d s" % (what, limit_s))

    def subscribe(self, *topics):
        self.subscribed = False
        self.c.subscribe([(t, 1) for t in topics])
        self.wait(lambda: self.subscribed, "SUBACK")

    def publish(self, topic, payload):
        self.c.publish(topic, payload, qos=1).wait_for_publish(10)

    def wait_for(self, payload: bytes):
        self.wait(lambda: any(p == payload for _, p in self.msgs), "message %r" % payload)

    def payloads(self):
        return [p for _, p in self.msgs]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def secured(tmp_path):
    """Two nodes, the service users, and a broker with auth and the ACL."""
    files = cr.BrokerFiles(tmp_path / "auth")
    pw = {n: cr.new_password() for n in ("bin-a", "bin-b")}
    for node, p in pw.items():
        files.add_node(node, cr.hash_password(p), PREFIX)
    users = files.service_users(PREFIX)
    broker = Mosquitto(tmp_path / "mosquitto", extra_config="allow_anonymous false\npassword_file %s\n"
                       "acl_file %s\n" % (files.passwd, files.acl)).start()
    clients: list[Client] = []

    def client(*a, **kw):
        c = Client(broker.port, *a, **kw)
        clients.append(c)
        return c

    try:
        yield broker, files, pw, users, client
    finally:
        for c in clients:
            c.close()
        broker.stop()


def test_node_publishes_only_under_its_own_subtree(secured):
    broker, files, pw, users, client = secured
    col = client(*users["collector"], client_id="col")
    assert col.accepted
    col.subscribe(PREFIX + "/#")
    a = client("bin-a", pw["bin-a"], client_id="bin-a")
    assert a.accepted
    for kind in ("telemetry", "event", "status", "health", "ack", "cmd"):
        a.publish("%s/bin-b/%s" % (PREFIX, kind), b"forged " + kind.encode())
    a.publish(PREFIX + "/bin-a/cmd", b"self-command")  # its own cmd topic is the operator's
    a.publish(PREFIX + "/bin-a/telemetry", b"marker")
    col.wait_for(b"marker")
    assert col.msgs == [(PREFIX + "/bin-a/telemetry", b"marker")]
    for kind in ("event", "health", "status", "ack"):
        a.publish("%s/bin-a/%s" % (PREFIX, kind), kind.encode())
        col.wait_for(kind.encode())


def test_a_forged_last_will_is_dropped(secured):
    broker, files, pw, users, client = secured
    col = client(*users["collector"], client_id="col")
    col.subscribe(PREFIX + "/#")
    for target, payload in (("bin-b", b"forged will"), ("bin-a", b"own will")):
        a = client("bin-a", pw["bin-a"], client_id="bin-a",
                   will=("%s/%s/status" % (PREFIX, target), payload, 1, True))
        assert a.accepted
        a.c.loop_stop()
        a.c.socket().shutdown(socket.SHUT_RDWR)  # no DISCONNECT: the broker sends the will
        a.c.socket().close()
    col.wait_for(b"own will")
    assert b"forged will" not in col.payloads()


def test_node_reads_only_its_own_commands(secured):
    broker, files, pw, users, client = secured
    a = client("bin-a", pw["bin-a"], client_id="bin-a")
    # mosquitto 2.0 grants the subscriptions and filters each message by the read ACL
    a.subscribe(PREFIX + "/bin-b/cmd", PREFIX + "/+/cmd", PREFIX + "/#")
    b = client("bin-b", pw["bin-b"], client_id="bin-b")
    b.subscribe(PREFIX + "/bin-b/cmd")
    op = client(*users["operator"], client_id="op")
    assert op.accepted
    op.publish(PREFIX + "/bin-b/cmd", b'{"id":"1","cmd":"ping"}')
    b.wait_for(b'{"id":"1","cmd":"ping"}')
    b.publish(PREFIX + "/bin-b/ack", b"b's ack")
    op.publish(PREFIX + "/bin-a/cmd", b'{"id":"2","cmd":"ping"}')
    a.wait_for(b'{"id":"2","cmd":"ping"}')
    assert a.msgs == [(PREFIX + "/bin-a/cmd", b'{"id":"2","cmd":"ping"}')]


def test_operator_sends_commands_and_reads_answers_but_cannot_pose_as_a_node(secured):
    broker, files, pw, users, client = secured
    col = client(*users["collector"], client_id="col")
    col.subscribe(PREFIX + "/#")
    op = client(*users["operator"], client_id="op")
    op.subscribe(PREFIX + "/+/ack")
    a = client("bin-a", pw["bin-a"], client_id="bin-a")
    op.publish(PREFIX + "/bin-a/telemetry", b"operator forging telemetry")
    op.publish(PREFIX + "/bin-a/cmd", b"cmd")
    col.wait_for(b"cmd")
    a.publish(PREFIX + "/bin-a/ack", b"ack")
    op.wait_for(b"ack")
    assert b"operator forging telemetry" not in col.payloads()
    # the collector only listens
    col.publish(PREFIX + "/bin-a/cmd", b"collector cmd")
    col.publish(PREFIX + "/bin-b/telemetry", b"collector telemetry")
    op.publish(PREFIX + "/bin-b/cmd", b"marker")
    col.wait_for(b"marker")
    assert b"collector cmd" not in col.payloads() and b"collector telemetry" not in col.payloads()


def test_wrong_password_unknown_user_and_anonymous_are_refused(secured):
    broker, files, pw, users, client = secured
    assert not client("bin-a", pw["bin-b"], client_id="x1").accepted
    assert not client("bin-c", pw["bin-a"], client_id="x2").accepted
    assert not client(client_id="x3").accepted
    assert client("bin-b", pw["bin-b"], client_id="x4").accepted


def test_a_node_added_while_the_broker_runs_connects_after_a_reload(secured):
    broker, files, pw, users, client = secured
    p = cr.new_password()
    files.add_node("bin-c", cr.hash_password(p), PREFIX)
    os.kill(broker.proc.pid, signal.SIGHUP)  # what provisioning tells the installer to do
    col = client(*users["collector"], client_id="col")
    col.subscribe(PREFIX + "/#")
    for _ in range(100):  # the broker reloads between two passes of its loop
        c = client("bin-c", p, client_id="bin-c")
        if c.accepted:
            break
    assert c.accepted
    c.publish(PREFIX + "/bin-c/telemetry", b"hello from c")
    col.wait_for(b"hello from c")


# ---- the files, without a broker --------------------------------------------------------------

def test_hash_format_matches_mosquitto_passwd(tmp_path):
    h = cr.hash_password("s3cret", salt=b"\x00" * 12)
    _, seven, it, salt, digest = h.split("$")
    assert (seven, it, salt) == ("7", str(cr.ITERATIONS), "AAAAAAAAAAAAAAAA")
    assert len(digest) == 88  # 64 bytes in base64
    assert cr.verify_password("s3cret", h) and not cr.verify_password("s3cret ", h)
    # and a hash written by mosquitto's own tool verifies here
    f = tmp_path / "pw"
    subprocess.run([find_program("mosquitto_passwd"), "-b", "-c", str(f), "op", "hunter2"], check=True)
    theirs = cr.read_passwd(f)["op"]
    assert theirs.startswith("$7$")
    assert cr.verify_password("hunter2", theirs) and not cr.verify_password("hunter3", theirs)


def test_merging_keeps_foreign_entries_and_replaces_a_node_s_own(tmp_path):
    files = cr.BrokerFiles(tmp_path)
    admin = "admin:" + cr.hash_password("admin-pw")
    files.passwd.write_text("# managed by hand too\n" + admin + "\n")
    files.acl.write_text("# the town's ACL\npattern read $SYS/#\n\nuser admin\ntopic readwrite #\n")
    files.set_acl("bin-a", cr.node_topics("bin-a", "townsense"))
    with files.acl.open("a") as f:
        f.write("pattern write $SYS/broker/connection/%c/state\n")  # after bin-a's block: everyone's
    files.add_node("bin-a", cr.hash_password("one"), "townsense")
    files.add_node("bin-a", cr.hash_password("two"), "oakvale")  # re-provisioned elsewhere
    files.add_node("bin-b", cr.hash_password("three"), "townsense")
    text = files.passwd.read_text()
    assert text.startswith("# managed by hand too\n" + admin + "\n")
    hashes = cr.read_passwd(files.passwd)
    assert sum(1 for line in text.splitlines() if line.startswith("bin-a:")) == 1
    assert cr.verify_password("two", hashes["bin-a"]) and cr.verify_password("three", hashes["bin-b"])
    head, blocks = cr.parse_acl(files.acl.read_text())
    assert head[:2] == ["# the town's ACL", "pattern read $SYS/#"]
    blocks = dict((u, [ln for ln in body if ln.strip()]) for u, body in blocks)
    assert blocks["admin"] == ["topic readwrite #"]
    assert blocks["bin-a"] == cr.node_topics("bin-a", "oakvale") + [  # the old prefix is gone
        "pattern write $SYS/broker/connection/%c/state"]
    assert "topic read townsense/#" in blocks[cr.COLLECTOR] and "topic read oakvale/#" in blocks[cr.COLLECTOR]
    assert "topic write oakvale/+/cmd" in blocks[cr.OPERATOR]
    # the service users' passwords are stable and private
    assert files.service_users("townsense") == files.read_service_users()
    assert (files.users_file.stat().st_mode & 0o077) == 0


def test_names_that_would_widen_or_forge_a_grant_are_refused(tmp_path):
    files = cr.BrokerFiles(tmp_path)
    for node, prefix in (("bin-#", "t"), ("bin-a", "t/+"), ("a/b", "t"), ("bin-a\nuser x", "t"),
                         ("bin-a", "t/")):
        with pytest.raises(cr.CredentialsError):
            files.add_node(node, cr.hash_password("x"), prefix)
    with pytest.raises(cr.CredentialsError):
        files.set_password("bin:a", cr.hash_password("x"))
    with pytest.raises(cr.CredentialsError):
        files.set_password("bin-a", "plain-text")
    assert not files.passwd.exists() and not files.acl.exists()
