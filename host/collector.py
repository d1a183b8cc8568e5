"""`townsense collect`: the town's MQTT collector. One paho-mqtt subscriber with a persistent
session (clean_session=False, a fixed client id, QoS 1) stores everything the nodes send in
SQLite; docs/collector.md describes the tables.

    c = Collector("mqtt://127.0.0.1:1883", "town.db").start()   # returns once subscribed
    ...
    c.stop()

    Collector("mqtts://broker.example.org", "town.db", ca="town-ca.pem")   # TLS, port 8883

Why nothing is lost:
- every message is validated (host.schemas.check_message); an invalid one goes to the
  `quarantine` table with its raw bytes and the reason, never dropped;
- a message is committed to SQLite inside paho's on_message, and paho sends the QoS 1 PUBACK
  only after on_message returns: a crash before the commit means the broker delivers it again;
- the broker keeps the session (subscription and queued QoS 1 messages) while the collector is
  away, and paho reconnects by itself after a broker restart;
- redelivered readings and events are recognised by (node, seq) and counted, not stored twice.

Over TLS (mqtts://) the broker's certificate must chain to the CA file given (else the system
trust store) and name the host of the URL. A certificate that fails is final: the collector
stops (BrokerCertificateError, exit 2) instead of retrying, before any message was taken.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import ssl
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho

from host import schemas
from host.broker_url import parse as parse_broker_url

DEFAULT_CLIENT_ID = "townsense-collector"
PASSWORD_ENV = "TOWNSENSE_MQTT_PASSWORD"

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    node TEXT NOT NULL, seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,            -- node clock, Unix s, as sent
    u INTEGER NOT NULL DEFAULT 0,   -- 1: ts is from a clock never set
    type TEXT NOT NULL, fw TEXT,
    fields TEXT NOT NULL,           -- JSON object: the reading less seq, ts and u
    received_at REAL NOT NULL,      -- collector clock, Unix s
    UNIQUE (node, seq)
);
CREATE TABLE IF NOT EXISTS events (
    node TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL, u INTEGER NOT NULL DEFAULT 0,
    type TEXT, event TEXT NOT NULL, level TEXT NOT NULL,
    data TEXT NOT NULL,             -- JSON object
    received_at REAL NOT NULL,
    UNIQUE (node, seq)
);
CREATE TABLE IF NOT EXISTS health (
    node TEXT NOT NULL, ts INTEGER NOT NULL, u INTEGER NOT NULL DEFAULT 0,
    fields TEXT NOT NULL,           -- JSON object: the whole payload less v, node, ts, u
    received_at REAL NOT NULL,
    UNIQUE (node, ts, fields)
);
CREATE TABLE IF NOT EXISTS status (   -- every status message, in arrival order
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL, state TEXT NOT NULL, ts INTEGER, u INTEGER NOT NULL DEFAULT 0,
    next INTEGER, reason TEXT, payload TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS status_latest (  -- the last status per node
    node TEXT PRIMARY KEY, state TEXT NOT NULL, ts INTEGER, u INTEGER NOT NULL DEFAULT 0,
    next INTEGER, reason TEXT, payload TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS acks (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL, cmd_id TEXT, cmd TEXT, ok INTEGER NOT NULL, ts INTEGER,
    u INTEGER NOT NULL DEFAULT 0, error TEXT, result TEXT, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,          -- the raw bytes as they arrived
    reason TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_node_ts ON readings (node, ts);
CREATE INDEX IF NOT EXISTS events_level ON events (level, ts);
CREATE INDEX IF NOT EXISTS health_node ON health (node, ts);
"""


class BrokerCertificateError(ConnectionError):
    """The broker's TLS certificate failed verification (unknown CA, another host's name,
    expired): retrying does not mend it, so the collector stops."""


# OpenSSL's X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code) grouped by remedy
_UNTRUSTED = {2, 18, 19, 20, 21, 27}   # issuer unknown, self-signed, not trusted
_WRONG_NAME = {62, 64}                 # host name / IP address mismatch
_EXPIRED, _NOT_YET_VALID = 10, 9


def certificate_problem(url: str, ca: str | None, e: ssl.SSLCertVerificationError) -> str:
    """One line: what was wrong with the broker's certificate and what to do about it."""
    detail = (e.verify_message or e.reason or str(e)).rstrip(".")
    host = parse_broker_url(url).host
    code = e.verify_code
    if code in _UNTRUSTED:
        why = "its certificate is not signed by a CA in %s (%s); give the broker's CA with --ca FILE" % (
            "the CA file %s" % ca if ca else "the system trust store", detail)
    elif code in _WRONG_NAME:
        why = "its certificate is not issued for %r (%s); use a host name the certificate names" % (host, detail)
    elif code == _EXPIRED:
        why = "its certificate has expired (%s); the broker needs a renewed certificate" % detail
    elif code == _NOT_YET_VALID:
        why = "its certificate is not valid yet (%s); check this computer's clock" % detail
    else:
        why = "its certificate failed verification (%s)" % detail
    return "cannot trust the broker %s: %s" % (url, why)


def tls_context(ca: str | None, on_handshake_error) -> ssl.SSLContext:
    """The context paho's tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED) builds (a
    PROTOCOL_TLS_CLIENT context: certificate required, host name checked; the CA file, else the
    system trust store), built here so that its sockets can report a failed handshake:
    paho catches the error and retries for ever without passing it on."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    try:
        if ca is not None:
            ctx.load_verify_locations(cafile=ca)
        else:
            ctx.load_default_certs()
    except ssl.SSLError as e:
        raise ValueError("--ca %s: no PEM CA certificate could be read from it (%s)" % (ca, e.reason or e)) from None
    except OSError as e:
        raise ValueError("--ca %s: %s" % (ca, e.strerror or e)) from None

    class ReportingSSLSocket(ssl.SSLSocket):
        def do_handshake(self, *args, **kwargs):
            try:
                return super().do_handshake(*args, **kwargs)
            except OSError as e:  # ssl.SSLError, or a timeout of a peer that speaks no TLS
                on_handshake_error(e)
                raise

    ctx.sslsocket_class = ReportingSSLSocket  # documented: may be set on an instance
    return ctx


COUNTERS = ("messages", "readings", "events", "health", "status", "acks", "commands",
            "duplicates", "restamped", "quarantined")


def open_db(path: str | Path) -> sqlite3.Connection:
    """The collector's database, created if missing; WAL so that fleet tools read while the
    collector writes."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True)
    db = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # a PUBACK is sent after the commit: make it durable
    db.executescript(SCHEMA)
    return db


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class Store:
    """Writes validated messages into the database; one transaction per MQTT message."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.counts = dict.fromkeys(COUNTERS, 0)

    def quarantine(self, topic: str, raw: bytes, reason: str, now: float) -> None:
        with self.db:
            self.db.execute("INSERT INTO quarantine (topic, payload, reason, received_at) VALUES (?,?,?,?)",
                            (topic, sqlite3.Binary(bytes(raw)), reason, now))
        self.counts["quarantined"] += 1

    def message(self, topic: str, raw: bytes, prefix: str, now: float | None = None) -> str:
        """Validate and store one message; returns its kind or "quarantine"."""
        now = time.time() if now is None else now
        self.counts["messages"] += 1
        kind, problems = schemas.check_message(topic, bytes(raw), prefix)
        if problems:
            self.quarantine(topic, raw, "; ".join(problems), now)
            return "quarantine"
        msg = schemas.loads(raw)
        conflicts: list[str] = []
        with self.db:
            if kind == "telemetry":
                for r in msg["r"]:
                    fields = {k: v for k, v in r.items() if k not in ("seq", "ts", "u")}
                    conflicts += self._record("readings", msg["node"], r, {
                        "type": msg["type"], "fw": msg["fw"], "fields": _json(fields)}, now)
            elif kind == "event":
                conflicts += self._record("events", msg["node"], msg, {
                    "type": msg["type"], "event": msg["event"], "level": msg["level"],
                    "data": _json(msg["data"])}, now)
            elif kind == "health":
                fields = {k: v for k, v in msg.items() if k not in ("v", "node", "ts", "u")}
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO health (node, ts, u, fields, received_at) VALUES (?,?,?,?,?)",
                    (msg["node"], msg["ts"], msg.get("u", 0), _json(fields), now))
                self.counts["health" if cur.rowcount else "duplicates"] += 1
            elif kind == "status":
                self._status(msg, raw, now)
            elif kind == "ack":
                self.db.execute(
                    "INSERT INTO acks (node, cmd_id, cmd, ok, ts, u, error, result, received_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?)",
                    (msg["node"], msg["id"], msg["cmd"], int(msg["ok"]), msg["ts"], msg.get("u", 0),
                     msg.get("error"), _json(msg["result"]) if "result" in msg else None, now))
                self.counts["acks"] += 1
            else:  # cmd: host -> node, seen because we subscribe to every level; nothing to keep
                self.counts["commands"] += 1
        if conflicts:
            self.quarantine(topic, raw, "; ".join(conflicts), now)
        return kind

    def _record(self, table: str, node: str, rec: dict, cols: dict, now: float) -> list[str]:
        """Insert one reading or event, once per (node, seq). A copy may differ from the stored
        record only in ts/u (a flagged reading sent again stamped: keep the stamped one); any
        other difference is a conflict, returned to be quarantined."""
        seq = rec["seq"]
        other = "events" if table == "readings" else "readings"
        if self.db.execute("SELECT 1 FROM %s WHERE node = ? AND seq = ?" % other, (node, seq)).fetchone():
            return ["%s seq %d is already stored in %s" % (node, seq, other)]
        row = dict(node=node, seq=seq, ts=rec["ts"], u=rec.get("u", 0), received_at=now, **cols)
        names = list(row)
        cur = self.db.execute("INSERT OR IGNORE INTO %s (%s) VALUES (%s)" % (
            table, ", ".join(names), ", ".join("?" * len(names))), [row[k] for k in names])
        if cur.rowcount:
            self.counts[table] += 1
            return []
        old = self.db.execute("SELECT * FROM %s WHERE node = ? AND seq = ?" % table, (node, seq)).fetchone()
        # fw is the message's, not the record's: a node updated between two sends may differ
        if any(old[k] != row[k] for k in cols if k != "fw"):
            return ["%s seq %d is already stored with other values" % (node, seq)]
        if old["u"] and not row["u"]:
            self.db.execute("UPDATE %s SET ts = ?, u = 0 WHERE node = ? AND seq = ?" % table,
                            (row["ts"], node, seq))
            self.counts["restamped"] += 1
        elif old["u"] == row["u"] and old["ts"] != row["ts"]:
            return ["%s seq %d is already stored with ts %d, not %d" % (node, seq, old["ts"], row["ts"])]
        else:
            self.counts["duplicates"] += 1
        return []

    def _status(self, msg: dict, raw: bytes, now: float) -> None:
        payload = bytes(raw).decode("utf-8")
        node = msg["node"]
        last = self.db.execute("SELECT payload FROM status_latest WHERE node = ?", (node,)).fetchone()
        # the retained status comes again at every (re)subscribe: the same message, not news
        if last is not None and schemas.loads(last["payload"]) == msg:
            self.counts["duplicates"] += 1
            return
        row = (node, msg["state"], msg.get("ts"), msg.get("u", 0), msg.get("next"), msg.get("reason"),
               payload, now)
        self.db.execute("INSERT INTO status (node, state, ts, u, next, reason, payload, received_at) "
                        "VALUES (?,?,?,?,?,?,?,?)", row)
        self.db.execute("INSERT OR REPLACE INTO status_latest (node, state, ts, u, next, reason, payload, "
                        "received_at) VALUES (?,?,?,?,?,?,?,?)", row)
        self.counts["status"] += 1


class Collector:
    """The subscriber. start()/stop() for tests and embedding; run() for the CLI."""

    def __init__(self, broker_url: str, db_path: str | Path, prefix: str = schemas.DEFAULT_PREFIX,
                 client_id: str = DEFAULT_CLIENT_ID, reconnect_max_s: int = 30, log=None,
                 username: str | None = None, password: str | None = None, ca: str | Path | None = None):
        url = parse_broker_url(broker_url)  # ValueError names a bad URL
        self.host, self.port, self.tls = url.host, url.port, url.tls
        if ca is not None and not self.tls:
            raise ValueError("--ca %s is for a TLS broker (mqtts://); %s is plain MQTT" % (ca, broker_url))
        bad = schemas.topic_name_problems(None, prefix)
        if bad:
            raise ValueError(bad[0])
        self.ca = str(ca) if ca is not None else None
        self.url = broker_url
        self.prefix = prefix
        self.db_path = Path(db_path)
        self.log = log or (lambda line: None)
        self.db: sqlite3.Connection | None = None
        self.store: Store | None = None
        self.subscribed = threading.Event()
        self.connected = False
        self.connects = 0        # successful connections: more than 1 means it reconnected
        self.last_message = 0.0  # monotonic time of the last message
        self.error: BaseException | None = None
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(min_delay=1, max_delay=reconnect_max_s)
        if username is not None:
            self.client.username_pw_set(username, password)
        if self.tls:
            self.client.tls_set_context(tls_context(self.ca, self._on_handshake_error))
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @property
    def counts(self) -> dict:
        return dict(self.store.counts) if self.store else dict.fromkeys(COUNTERS, 0)

    # ---- paho callbacks (paho's network thread) -----------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            # bad credentials or a banned client id do not mend by retrying: stop and say so
            self.error = ConnectionRefusedError("the broker %s refused the connection: %s" % (self.url, reason_code))
            self.log(str(self.error))
            client.disconnect()
            return
        self.connected = True
        self.connects += 1
        self.log("connected to %s (session %s)" % (self.url, "resumed" if flags.session_present else "new"))
        # subscribing again is harmless with a resumed session and needed with a new one
        client.subscribe(self.prefix + "/+/+", qos=1)

    def _on_handshake_error(self, e: OSError) -> None:
        if isinstance(e, ssl.SSLCertVerificationError):
            self.error = BrokerCertificateError(certificate_problem(self.url, self.ca, e))
            self.log(str(self.error))
        elif self.error is None:
            # no TLS on that port, a broker shutting down mid-handshake: may mend, keep trying
            self.log("TLS handshake with %s failed (%s); retrying" % (self.url, getattr(e, "reason", None) or e))

    def _on_connect_fail(self, client, userdata):
        if isinstance(self.error, BrokerCertificateError):
            client.disconnect()  # stop paho's retries: the next handshake fails the same way

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None):
        if any(rc.is_failure for rc in reason_codes):
            self.log("the broker refused the subscription to %s/+/+" % self.prefix)
            return
        if not self.subscribed.is_set():
            self.log("subscribed to %s/+/+" % self.prefix)
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        if self.connected:
            self.log("disconnected from %s (%s); reconnecting" % (self.url, reason_code))
        self.connected = False
        self.subscribed.clear()

    def _on_message(self, client, userdata, msg):
        self.last_message = time.monotonic()
        try:
            self.store.message(msg.topic, msg.payload, self.prefix)
        except Exception as e:
            # a database failure (disk full, locked): paho sends the PUBACK only after this
            # returns, so raising leaves the message unacknowledged and the broker keeps it for
            # the next run; the loop thread ends and run() exits non-zero.
            self.error = e
            self.log("cannot store a message on %s: %r; stopping" % (msg.topic, e))
            client.disconnect()
            raise

    # ---- life cycle ------------------------------------------------------------------------
    def start(self, wait: bool = True, timeout: float = 10.0) -> "Collector":
        """Open the database and connect. wait: return once subscribed (RuntimeError after
        timeout s); otherwise keep trying in the background (paho's reconnect)."""
        self.db = open_db(self.db_path)
        self.store = Store(self.db)
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if wait:
            deadline = time.monotonic() + timeout
            while not self.subscribed.wait(0.05) and self.error is None and time.monotonic() < deadline:
                pass
            if not self.subscribed.is_set():
                self.stop()
                raise RuntimeError(str(self.error) if self.error else
                                   "cannot subscribe at the broker %s within %.0f s" % (self.url, timeout)
                                   ) from self.error
        return self

    def wait_quiet(self, quiet_s: float = 0.5, limit_s: float = 30.0) -> bool:
        """Wait until subscribed and no message has come for quiet_s (the broker has handed over
        what it queued); False if that did not happen within limit_s."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.subscribed.is_set() and time.monotonic() - self.last_message >= quiet_s:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Disconnect cleanly (the broker keeps the session and queues for us) and close."""
        self.client.disconnect()
        self.client.loop_stop()
        if self.db is not None:
            self.db.close()
            self.db = None

    def __enter__(self) -> "Collector":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def run(self, every_s: float = 60.0, out=None) -> int:
        """The CLI loop: a line of counts every every_s seconds until Ctrl-C."""
        out = out or sys.stdout
        self.log = lambda line: print(time.strftime("%H:%M:%S ") + line, file=out, flush=True)
        old_term = None
        if threading.current_thread() is threading.main_thread():
            # a service manager stops us with SIGTERM: leave as cleanly as after Ctrl-C
            old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self.start(wait=False)
            self.log("collecting %s/+/+ from %s into %s" % (self.prefix, self.url, self.db_path))
            next_line = time.monotonic() + every_s
            while self.error is None:
                time.sleep(min(0.5, every_s))
                if time.monotonic() < next_line:
                    continue
                next_line += every_s
                c = self.counts
                self.log("%s; %d messages: %d readings, %d events, %d health, %d status, %d acks, "
                         "%d duplicates, %d quarantined" % (
                             "connected" if self.connected else "NOT CONNECTED", c["messages"], c["readings"],
                             c["events"], c["health"], c["status"], c["acks"], c["duplicates"], c["quarantined"]))
        except KeyboardInterrupt:
            self.log("stopping")
        finally:
            self.stop()
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
        c = self.counts
        self.log("stopped: %d messages, %d readings, %d duplicates, %d quarantined" % (
            c["messages"], c["readings"], c["duplicates"], c["quarantined"]))
        if isinstance(self.error, BrokerCertificateError):
            return 2
        return 1 if self.error else 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


# ---- CLI ----------------------------------------------------------------------------------------

def credentials(args) -> tuple[str | None, str | None]:
    """(user, password) for the broker: the collector's service user from --mosquitto-dir
    (written by provisioning, host/credentials.py), or --user with the password from the
    environment (never on the command line, where `ps` shows it); (None, None): anonymous."""
    if args.mosquitto_dir:
        from host.credentials import BrokerFiles

        users = BrokerFiles(args.mosquitto_dir).read_service_users()
        if not users or "collector" not in users:
            raise ValueError("no collector user in %s/service-users.json: provisioning creates it "
                             "(townsense provision --mosquitto-dir %s)" % (args.mosquitto_dir, args.mosquitto_dir))
        return users["collector"]
    if args.user:
        pw = os.environ.get(PASSWORD_ENV)
        if pw is None:
            raise ValueError("--user %s: set the password in the environment variable %s" % (args.user, PASSWORD_ENV))
        return args.user, pw
    return None, None


def cmd_collect(args) -> int:
    try:
        user, pw = credentials(args)
        c = Collector(args.broker, args.db, args.prefix, client_id=args.client_id, username=user, password=pw,
                      ca=args.ca)
    except (ValueError, OSError) as e:
        print("townsense collect: %s" % e, file=sys.stderr)
        return 2
    try:
        status = c.run(every_s=args.every)
    except (sqlite3.Error, OSError) as e:
        print("townsense collect: %s: %s" % (args.db, e), file=sys.stderr)
        return 1
    if isinstance(c.error, BrokerCertificateError):
        print("townsense collect: %s" % c.error, file=sys.stderr)
    return status


def register(sub) -> None:
    p = sub.add_parser("collect", help="store what the nodes send (MQTT) in an SQLite database",
                       description="Subscribe to <prefix>/+/+ with a persistent session (QoS 1) and store "
                                   "readings, events, health, status and acks in SQLite; invalid messages "
                                   "go to the quarantine table. Ctrl-C stops.")
    p.add_argument("--broker", required=True,
                   help="mqtt://HOST[:PORT] (port 1883) or, over TLS, mqtts://HOST[:PORT] (port 8883)")
    # no way to skip verification is offered on purpose: a town must not be nudged into it
    p.add_argument("--ca", metavar="FILE",
                   help="mqtts:// only: PEM file of the CA(s) that signed the broker's certificate "
                        "(default: the system trust store)")
    p.add_argument("--db", required=True, help="the SQLite database (created if missing)")
    p.add_argument("--prefix", default=schemas.DEFAULT_PREFIX, help="topic prefix (default: %(default)s)")
    p.add_argument("--client-id", default=DEFAULT_CLIENT_ID,
                   help="MQTT client id: keep it fixed, the broker keeps this session's queue "
                        "(default: %(default)s)")
    p.add_argument("--mosquitto-dir", metavar="DIR",
                   help="log in as the collector service user of DIR/service-users.json (see provisioning)")
    p.add_argument("--user", help="log in as USER, the password taken from $%s" % PASSWORD_ENV)
    p.add_argument("--every", type=float, default=60.0, metavar="S", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_collect)
