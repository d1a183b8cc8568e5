"""The message schemas (schemas/, docs/protocol.md, host/schemas.py): the schemas are valid, the
documented examples pass, broken payloads are refused with a message naming the field, the
config schema is the firmware's table, and every message the simulated firmware publishes
passes."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from host import schemas

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "protocol.md"
NODE_TYPES = ["heartbeat", "fill_level", "air_quality", "water_meter", "traffic"]
T0 = 1_780_272_000  # 2026-06-01, a set clock
UNSET = 946_684_805  # an ESP32 RTC a few seconds after power-on, never set


# ---- the schema files ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", schemas.KINDS)
def test_schema_is_valid_draft_2020_12(kind):
    s = schemas.load_schema(kind)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(s)
    schemas.validator(kind)  # and with the strict-integer type checker


def test_shared_definitions_are_the_same_in_every_file():
    """Each file is self-contained (its own $defs); a definition that several files carry must
    be identical in all of them."""
    seen: dict = {}
    for kind in schemas.KINDS:
        for name, d in schemas.load_schema(kind).get("$defs", {}).items():
            if name in seen:
                assert d == seen[name][1], "$defs/%s differs between %s.json and %s.json" % (
                    name, seen[name][0], kind)
            else:
                seen[name] = (kind, d)


def test_every_schema_file_is_known():
    files = {p.stem for p in (ROOT / "schemas").glob("*.json")}
    assert files == set(schemas.KINDS)


@pytest.mark.parametrize("kind", schemas.TOPIC_KINDS)
def test_doc_names_every_field(kind):
    text = DOC.read_text()
    for field in schemas.load_schema(kind)["properties"]:
        assert "| `%s` |" % field in text, "docs/protocol.md has no row for %s field %r" % (kind, field)


# ---- the documented examples ----------------------------------------------------------------

def doc_examples():
    text = DOC.read_text()
    found = re.findall(r"<!-- example: (\w+) -->\s*```json\n(.*?)\n```", text, re.S)
    return [(kind, json.loads(body)) for kind, body in found]


EXAMPLES = doc_examples()


def test_doc_has_examples_of_every_kind():
    assert {k for k, _ in EXAMPLES} == set(schemas.KINDS)
    assert len(EXAMPLES) == DOC.read_text().count("<!-- example:")  # every marked block parsed


@pytest.mark.parametrize("kind, payload", EXAMPLES, ids=[k for k, _ in EXAMPLES])
def test_documented_example_is_valid(kind, payload):
    assert schemas.validate(kind, payload) == []


def test_will_payload_is_valid():
    assert schemas.validate("status", {"v": 1, "node": "hb-01", "state": "offline"}) == []


# ---- broken payloads ---------------------------------------------------------------------

TEL = {"v": 1, "node": "hb-01", "type": "heartbeat", "fw": "0.2.0",
       "r": [{"seq": 1, "ts": T0, "wakes": 2, "chip_c": 31}, {"seq": 2, "ts": T0 + 900, "wakes": 3, "chip_c": 30}]}
EVENT = {"v": 1, "node": "bin-017", "type": "fill_level", "seq": 9, "ts": T0, "event": "full",
         "level": "warning", "data": {"fill_pct": 96.0}}
HEALTH = {"v": 1, "node": "hb-01", "fw": "0.2.0", "ts": T0, "batt_mv": 4176, "rssi": -63, "heap_free": 110000,
          "reset": "deep_sleep", "uptime_s": 3604, "boots": 5, "spool": 0, "dropped": 0, "crashes": 0, "wifi_ms": 250}
STATUS = {"v": 1, "node": "hb-01", "state": "sleeping", "ts": T0, "next": T0 + 3600}
CMD = {"id": "c-1", "cmd": "ping"}
ACK = {"v": 1, "node": "hb-01", "id": "c-1", "cmd": "ping", "ok": True, "ts": T0, "result": {"seq": 6}}
CONFIG = {"node_id": "bin-017", "type": "fill_level", "sample_s": 900, "report_s": 3600,
          "wifi": {"ssid": "oakvale-iot", "key": "s3cret"}}
BASE = {"telemetry": TEL, "event": EVENT, "health": HEALTH, "status": STATUS, "cmd": CMD, "ack": ACK,
        "config": CONFIG}


def edit(kind, change):
    p = copy.deepcopy(BASE[kind])
    change(p)
    return p


def _set(path, value):
    def change(p):
        *head, last = path
        for k in head:
            p = p[k]
        p[last] = value
    return change


def _drop(path):
    def change(p):
        *head, last = path
        for k in head:
            p = p[k]
        del p[last]
    return change


BAD = [
    # kind, change, words the problem must contain
    ("telemetry", _drop(["v"]), "(payload): 'v' is required"),
    ("telemetry", _set(["v"], 2), "v: 2, must be 1"),
    ("telemetry", _set(["v"], 1.0), "v: 1.0"),
    ("telemetry", _set(["node"], "Bin/7"), "node: \"Bin/7\" does not match"),
    ("telemetry", _set(["node"], "a+b"), "node: \"a+b\" does not match"),
    ("telemetry", _set(["node"], "x" * 33), "node:"),
    ("telemetry", _set(["type"], "toaster"), "type: \"toaster\" is not one of"),
    ("telemetry", _set(["fw"], "1.2"), "fw: \"1.2\" does not match"),
    ("telemetry", _set(["r"], []), "r: 0 items: at least 1"),
    ("telemetry", _set(["r"], [{"seq": i, "ts": T0} for i in range(201)]), "r: 201 items: at most 200"),
    ("telemetry", _set(["r", 0, "seq"], "1"), "r[0].seq: \"1\" is not an integer"),
    ("telemetry", _set(["r", 0, "seq"], 1.0), "r[0].seq: 1.0 is not an integer"),
    ("telemetry", _set(["r", 0, "seq"], -1), "r[0].seq: -1 is below the minimum 0"),
    ("telemetry", _drop(["r", 1, "ts"]), "r[1]: 'ts' is required"),
    ("telemetry", _set(["r", 0, "ts"], UNSET), "r[0].ts: 946684805 is below the minimum 1704067200"),
    ("telemetry", _set(["r", 0, "u"], 0), "r[0].u: 0, must be 1"),
    ("telemetry", _set(["r", 0, "u"], True), "r[0].u: true, must be 1"),
    ("telemetry", _set(["r", 0, "level"], {"a": 1}), "r[0].level: {\"a\": 1} is not a number or true or false"),
    ("telemetry", _set(["r", 0, "name"], "x" * 65), "r[0].name:"),
    ("telemetry", _set(["r", 0, "Temp"], 3), "r[0]: \"Temp\" does not match"),
    ("telemetry", _set(["r", 0, "event"], "full"), "r[0].event: \"full\" is not allowed here"),
    ("telemetry", _set(["r", 0, "chip_c"], float("nan")), "r[0].chip_c: nan is not a JSON number"),
    ("telemetry", _set(["r", 1, "seq"], 1), "r[1].seq: 1 after 1"),
    ("telemetry", _set(["r", 1, "seq"], 0), "r[1].seq: 0 after 1"),
    ("event", _drop(["data"]), "'data' is required"),
    ("event", _set(["level"], "critical"), "level: \"critical\" is not one of"),
    ("event", _set(["event"], "Fire!"), "event: \"Fire!\" does not match"),
    ("event", _set(["data", "where"], ["x"]), "data.where:"),
    ("event", _drop(["seq"]), "'seq' is required"),
    ("health", _drop(["wifi_ms"]), "'wifi_ms' is required"),
    ("health", _set(["rssi"], 12), "rssi: 12 is above the maximum 0"),
    ("health", _set(["reset"], "brownout"), "reset: \"brownout\" is not one of"),
    ("health", _set(["batt_mv"], 3.7), "batt_mv: 3.7 is not an integer or null"),
    ("health", _set(["heap_free"], None), "heap_free: null is not an integer"),
    ("status", _drop(["next"]), "'next' is required (a sleeping node says when it reports next)"),
    ("status", _set(["state"], "dead"), "state: \"dead\" is not one of"),
    ("status", _set(["next"], UNSET), "next: 946684805 is below the minimum 1704067200"),
    ("status", _set(["reason"], ""), "reason: \"\" has 0 characters: at least 1"),
    ("cmd", _set(["cmd"], "explode"), "cmd: \"explode\" is not one of \"ping\", \"reboot\""),
    ("cmd", _drop(["id"]), "'id' is required"),
    ("cmd", _set(["id"], ""), "id: \"\" has 0 characters: at least 1"),
    ("cmd", _set(["id"], "x" * 41), "id:"),
    ("cmd", _set(["args"], []), "args: [] is not an object"),
    ("cmd", _set(["v"], 2), "v: 2, must be 1"),
    ("cmd", _set(["cmd"], "config"), "'args' is required"),
    ("ack", _set(["ok"], False), "'error' is required (a failed command says why)"),
    ("ack", _set(["error"], "oops"), "error: \"oops\" is not allowed here (only a failed command has an error)"),
    ("ack", _set(["id"], None), "ok: true, must be false (a command that could not be parsed did not run)"),
    ("ack", _drop(["cmd"]), "'cmd' is required"),
    ("ack", _set(["result"], 5), "result: 5 is not an object"),
    ("config", _drop(["node_id"]), "'node_id' is required"),
    ("config", _set(["smaple_s"], 5), "unknown field 'smaple_s'"),
    ("config", _set(["sample_s"], 900.0), "sample_s: 900.0 is not an integer"),
    ("config", _set(["sample_s"], True), "sample_s: true is not an integer"),
    ("config", _set(["prefix"], None), "prefix: null is not a string"),
    ("config", _set(["wifi", "ssid"], 5), "wifi.ssid: 5 is not a string"),
    ("config", _drop(["wifi", "ssid"]), "wifi: 'ssid' is required"),
    ("config", _set(["report_s"], 60), "report_s': 60 is shorter than sample_s 900"),
    ("config", _set(["node_id"], "bin/7"), "node_id: \"bin/7\" cannot be used in topics"),
    ("config", _set(["node_id"], "Bin-7"), "node_id: \"Bin-7\" cannot be used in topics"),
    ("config", _set(["prefix"], "town/#"), "prefix: \"town/#\" cannot be used in topics"),
    ("config", _set(["prefix"], "$SYS"), "prefix: \"$SYS\" cannot be used in topics"),
    ("config", _set(["prefix"], "town/"), "prefix: \"town/\" cannot be used in topics"),
]


@pytest.mark.parametrize("kind, change, words", [(k, c, w) for k, c, w in BAD],
                         ids=["%s-%d" % (k, i) for i, (k, _, _) in enumerate(BAD)])
def test_broken_payload_is_refused_naming_the_field(kind, change, words):
    assert schemas.validate(kind, BASE[kind]) == []
    problems = schemas.validate(kind, edit(kind, change))
    assert problems, "accepted"
    assert any(words in p for p in problems), problems


@pytest.mark.parametrize("args, words", [
    ({}, "args: {} should be non-empty"),
    ({"node_id": "x"}, "args.node_id: \"x\" is not allowed here (node_id is set by provisioning"),
    ({"type": "heartbeat"}, "args.type:"),
    ({"smaple_s": 5}, "args: unknown field 'smaple_s'"),
    ({"sample_s": "600"}, "args.sample_s: \"600\" is not an integer or null"),
    ({"wifi": {"ssid": None}}, "args.wifi.ssid: null is not a string"),
    ({"wifi": {"chanel": 6}}, "args.wifi: unknown field 'chanel'"),
])
def test_bad_config_patch_is_refused(args, words):
    problems = schemas.validate("cmd", {"id": "c-2", "cmd": "config", "args": args})
    assert any(words in p for p in problems), problems


@pytest.mark.parametrize("args", [
    {"report_s": 7200}, {"power": None}, {"wifi": {"key": "new"}}, {"wifi": None}, {"sample_s": None},
    {"node": {"empty_mm": 900}}, {"prefix": "oakvale/townsense"},
])
def test_good_config_patch_passes(args):
    assert schemas.validate("cmd", {"id": "c-2", "cmd": "config", "args": args}) == []


def test_spool_args():
    ok = {"id": "c-3", "cmd": "spool"}
    assert schemas.validate("cmd", ok) == []
    assert schemas.validate("cmd", dict(ok, args={"action": "info"})) == []
    assert any("args.action" in p for p in schemas.validate("cmd", dict(ok, args={"action": "drop"})))
    assert any("unknown field 'force'" in p for p in schemas.validate("cmd", dict(ok, args={"force": 1})))


def test_flagged_reading_may_have_an_unset_clock_time():
    p = edit("telemetry", _set(["r", 0], {"seq": 1, "ts": UNSET, "u": 1, "wakes": 1}))
    assert schemas.validate("telemetry", p) == []


def test_extra_top_level_fields_are_allowed():
    """Additive fields keep v=1: a v1 receiver ignores what it does not know."""
    for kind in schemas.TOPIC_KINDS:
        assert schemas.validate(kind, dict(BASE[kind], later_field=[1, {"x": 2}])) == [], kind


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown payload kind"):
        schemas.validate("weather", {})


# ---- topics and whole messages ---------------------------------------------------------------

@pytest.mark.parametrize("topic, prefix, kind", [
    ("townsense/hb-01/telemetry", "townsense", "telemetry"),
    ("townsense/hb-01/event", "townsense", "event"),
    ("townsense/hb-01/health", "townsense", "health"),
    ("townsense/hb-01/status", "townsense", "status"),
    ("townsense/hb-01/cmd", "townsense", "cmd"),
    ("townsense/hb-01/ack", "townsense", "ack"),
    ("oakvale/ts/bin_7/ack", "oakvale/ts", "ack"),
    ("townsense/hb-01/config", "townsense", None),
    ("townsense/hb-01/telemetry/x", "townsense", None),
    ("townsense/HB/telemetry", "townsense", None),
    ("townsense//telemetry", "townsense", None),
    ("other/hb-01/telemetry", "townsense", None),
    ("townsensex/hb-01/telemetry", "townsense", None),
    ("homeassistant/sensor/townsense_hb-01_wakes/config", "townsense", None),
])
def test_kind_for_topic(topic, prefix, kind):
    assert schemas.kind_for_topic(topic, prefix) == kind


def test_default_prefix():
    assert schemas.kind_for_topic("townsense/hb-01/health") == "health"


def test_check_message():
    assert schemas.check_message("townsense/hb-01/telemetry", json.dumps(TEL).encode()) == ("telemetry", [])
    kind, problems = schemas.check_message("townsense/hb-02/telemetry", json.dumps(TEL))
    assert kind == "telemetry" and problems == ["node: 'hb-01' does not match the topic's node 'hb-02'"]
    kind, problems = schemas.check_message("townsense/hb-01/health", b"{not json")
    assert kind == "health" and problems[0].startswith("(payload): not JSON")
    kind, problems = schemas.check_message("townsense/hb-01/health", b'{"v": NaN}')
    assert problems == ["(payload): NaN is not JSON"]
    kind, problems = schemas.check_message("townsense/hb-01/health", b'{"v": 1, "v": 2}')
    assert problems == ['(payload): key "v" appears twice in one object']
    kind, problems = schemas.check_message("townsense/hb-01/health", b"\xff\xfe")
    assert problems[0].startswith("(payload): not UTF-8")
    kind, problems = schemas.check_message("elsewhere/hb-01/health", b"{}")
    assert kind is None and "not <townsense>/<node_id>/" in problems[0]
    assert schemas.check_message("townsense/hb-01/cmd", CMD) == ("cmd", [])


# ---- hypothesis: random telemetry ------------------------------------------------------------

node_ids = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,31}\Z")
field_names = st.builds(lambda a, b: a + b, st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
                        st.text("abcdefghijklmnopqrstuvwxyz0123456789_", max_size=31)) \
    .filter(lambda k: k not in ("seq", "ts", "u", "event"))
scalars = st.one_of(st.integers(-2**40, 2**40), st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.booleans(), st.none(), st.text(max_size=64))


@st.composite
def telemetry_messages(draw):
    """A valid telemetry message: 1-200 readings with the fields of one node type, ascending
    seq with gaps (events), some taken before the clock was set."""
    n = draw(st.one_of(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), st.sampled_from([199, 200])))
    fields = draw(st.lists(field_names, max_size=6, unique=True))
    pool = draw(st.lists(scalars, min_size=1, max_size=8))
    rnd = draw(st.randoms(use_true_random=False))  # big batches: cheap choices, still replayable
    small = n < 10
    seq = draw(st.integers(0, 2**40))
    readings = []
    for _ in range(n):
        r = {"seq": seq}
        seq += draw(st.sampled_from([1, 1, 1, 2, 7])) if small else rnd.choice([1, 1, 1, 2, 7])
        if draw(st.booleans()) if small else rnd.random() < 0.5:
            r["ts"] = draw(st.integers(1704067200, 2**33)) if small else rnd.randint(1704067200, 2**33)
        else:
            r["ts"] = draw(st.integers(0, 2**33)) if small else rnd.randint(0, 2**33)
            r["u"] = 1
        for f in fields:
            if small:
                if draw(st.integers(0, 4)):
                    r[f] = draw(scalars)
            elif rnd.random() < 0.8:
                r[f] = rnd.choice(pool)
        readings.append(r)
    fw = "%d.%d.%d" % tuple(draw(st.integers(0, 99)) for _ in range(3))
    return {"v": 1, "node": draw(node_ids), "type": draw(st.sampled_from(NODE_TYPES)), "fw": fw, "r": readings}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(telemetry_messages())
def test_random_valid_telemetry_passes(msg):
    assert schemas.validate("telemetry", msg) == []
    assert schemas.validate("telemetry", json.loads(json.dumps(msg))) == []


WRONG = {
    "v": ["1", 1.0, True, 2, None], "node": [7, "", "Node", "a/b", "#", None], "type": ["toaster", 1, None],
    "fw": [1, "1.2", "", None], "r": [{}, [], "x", None],
    "seq": [-1, "3", 1.5, None, True], "ts": ["now", 1.5, None, -1, True], "u": [0, 2, True, "1"],
    "field": [{}, [], {"a": 1}, "x" * 65],
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(telemetry_messages(), st.data())
def test_mutated_telemetry_is_refused(msg, data):
    how = data.draw(st.sampled_from(["drop", "wrong", "drop_in_reading", "wrong_in_reading"]))
    if how == "drop":
        key = data.draw(st.sampled_from(["v", "node", "type", "fw", "r"]))
        del msg[key]
        words = "'%s' is required" % key
    elif how == "wrong":
        key = data.draw(st.sampled_from(["v", "node", "type", "fw", "r"]))
        msg[key] = data.draw(st.sampled_from(WRONG[key]))
        words = key
    else:
        i = data.draw(st.integers(0, len(msg["r"]) - 1))
        r = msg["r"][i]
        if how == "drop_in_reading":
            key = data.draw(st.sampled_from(["seq", "ts"]))
            del r[key]
            words = "r[%d]: '%s' is required" % (i, key)
        else:
            key = data.draw(st.sampled_from(["seq", "ts", "u", "field"]))
            r[key] = data.draw(st.sampled_from(WRONG[key]))
            words = "r[%d]" % i
    problems = schemas.validate("telemetry", msg)
    assert problems, "accepted after %s %s" % (how, key)
    assert any(words in p for p in problems), problems


# ---- config.json: generated from the firmware's table -----------------------------------------

def test_checked_in_config_schema_is_the_generated_one():
    on_disk = (ROOT / "schemas" / "config.json").read_text()
    assert json.loads(on_disk) == schemas.config_json_schema(), \
        "schemas/config.json is stale: run .venv/bin/python -m host.schemas --write-config"
    assert on_disk == schemas.config_json_text()


def test_config_schema_covers_every_field_of_the_table():
    table = schemas.firmware_config()["SCHEMA"]
    props = schemas.load_schema("config")["properties"]
    assert list(props) == list(table)


def test_generator_handles_any_table(tmp_path):
    """The table will grow (an "mqtt" object, booleans, ...): the generator follows it, and
    config.py's firmware imports are stubbed whatever they are."""
    src = tmp_path / "config.py"
    src.write_text(
        "from telemetry import atomic, something_new\n"
        "from micropython import const\n"
        "import telemetry.other\n"
        "T, REQ, DEF, LO, HI, ONE, FIELDS = 0, 1, 2, 3, 4, 5, 6\n"
        "N = const(3)\n"
        "SCHEMA = {\n"
        " 'node_id': ('str', True, None, 1, 32, None, None),\n"
        " 'ha': ('bool', False, False, None, None, None, None),\n"
        " 'mode': ('str', False, 'a', None, None, ('a', 'b'), None),\n"
        " 'static': ('list', False, None, 4, 4, None, None),\n"
        " 'mqtt': ('obj', False, None, None, None, None, {\n"
        "    'host': ('str', True, None, 1, 64, None, None),\n"
        "    'port': ('int', False, 1883, 1, 65535, None, None),\n"
        "    'password': ('str', False, None, 0, 128, None, None)}),\n"
        " 'node': ('obj', False, None, None, None, None, None),\n"
        "}\n")
    ns = schemas.load_firmware_config(src)
    s = schemas.config_json_schema(ns)
    Draft202012Validator.check_schema(s)
    p = s["properties"]
    assert s["required"] == ["node_id"] and s["additionalProperties"] is False
    assert p["ha"] == {"type": "boolean", "default": False}
    assert p["mode"] == {"type": "string", "enum": ["a", "b"], "default": "a"}
    assert p["static"] == {"type": ["array", "null"], "minItems": 4, "maxItems": 4}
    assert p["mqtt"]["required"] == ["host"] and p["mqtt"]["additionalProperties"] is False
    assert p["mqtt"]["properties"]["port"] == {"type": "integer", "minimum": 1, "maximum": 65535, "default": 1883}
    assert p["mqtt"]["properties"]["password"] == {"type": ["string", "null"], "minLength": 0, "maxLength": 128}
    assert p["node"] == {"type": ["object", "null"]}


def test_write_config_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(schemas, "SCHEMA_DIR", tmp_path)
    assert schemas.main(["--write-config"]) == 0
    assert (tmp_path / "config.json").read_text() == schemas.config_json_text()


def test_check_command(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(TEL))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(TEL, r=[])))
    assert schemas.main(["--check", "telemetry", str(good)]) == 0
    assert schemas.main(["--check", "telemetry", str(bad)]) == 1
    assert "r: 0 items: at least 1" in capsys.readouterr().out


def _value(ns, spec, good):
    """Values for one config field: valid ones (good) or, mostly, not. Null only where the
    default is none (see schemas._field_json on why null is refused elsewhere)."""
    t, req, default, lo, hi, allowed, fields = schemas._spec(ns, spec)
    a = lo if lo is not None else -10
    b = hi if hi is not None else (a + 10 if t == "int" else 8)
    if t == "int":
        ok = st.one_of(st.integers(a, b), st.sampled_from([a, b]))
        bad = st.one_of(st.sampled_from([a - 1, b + 1]), st.booleans(), st.floats(allow_nan=False),
                        st.sampled_from([float(a), float(b)]), st.text(max_size=2))
    elif t == "str":
        if allowed:
            ok = st.sampled_from(list(allowed))
            bad = st.one_of(st.sampled_from(["nope", ""]), st.integers(0, 3))
        else:
            ok = st.text(min_size=lo or 0, max_size=b)
            bad = st.one_of(st.text(min_size=b + 1, max_size=b + 3), st.integers(0, 3))
            if lo:
                bad = st.one_of(bad, st.text(max_size=lo - 1))
    elif t == "bool":
        ok, bad = st.booleans(), st.one_of(st.integers(0, 1), st.just("true"))
    elif t == "list":
        ok = st.lists(st.text(max_size=3), min_size=lo or 0, max_size=b)
        bad = st.one_of(st.lists(st.integers(), min_size=b + 1, max_size=b + 2), st.text(max_size=2))
        if lo:
            bad = st.one_of(bad, st.lists(st.integers(), max_size=lo - 1))
    elif fields is not None:
        ok = configs(ns, fields, bad_rate=0)
        bad = st.one_of(configs(ns, fields, bad_rate=3), st.integers(0, 3), st.lists(st.integers(), max_size=1))
    else:
        ok = st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
        bad = st.one_of(st.integers(0, 3), st.text(max_size=2))
    if not req and default is None:
        ok = st.one_of(ok, st.none())
    elif not req:
        bad = st.one_of(bad, st.none())  # the firmware runs with None: refused (see above)
    return ok if good else bad


@st.composite
def configs(draw, ns, table, bad_rate=1):
    """A config for this table: each field present or not, and with bad_rate in 20 a field is
    wrong (a value of the wrong type or range, a required field missing, an unknown field)."""
    out = {}
    for k, spec in table.items():
        req = schemas._spec(ns, spec)[1]
        wrong = draw(st.integers(0, 19)) < bad_rate
        if req and not wrong or draw(st.booleans()):
            out[k] = draw(_value(ns, spec, good=not wrong))
    if draw(st.integers(0, 19)) < bad_rate:
        out[draw(st.sampled_from(["smaple_s", "extra", "Wifi"]))] = 1
    return out


FW = schemas.firmware_config()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(FW, FW["SCHEMA"]))
def test_config_schema_agrees_with_the_firmware_check(cfg):
    """The generated schema accepts exactly what the firmware's own check() accepts, except
    null for a field with a default (refused by the schema, see schemas._field_json)."""
    try:
        checked = FW["check"](copy.deepcopy(cfg), FW["SCHEMA"])
        FW["check"](checked["node"] or {}, FW["node_schema"](checked["type"]), "node.")  # the type's section
        firmware_ok = True
    except FW["ConfigError"]:
        firmware_ok = False
    schema_ok = schemas.validator("config").is_valid(cfg)
    event("valid" if schema_ok else "invalid")
    if firmware_ok and not schema_ok and _null_for_a_default(FW, FW["SCHEMA"], cfg):
        return
    assert schema_ok == firmware_ok, (cfg, list(schemas.validator("config").iter_errors(cfg))[:3])


def _null_for_a_default(ns, table, cfg):
    for k, v in cfg.items():
        if k not in table:
            continue
        t, req, default, *_rest, fields = schemas._spec(ns, table[k])
        if v is None and default is not None:
            return True
        if fields is not None and isinstance(v, dict) and _null_for_a_default(ns, fields, v):
            return True
    return False


def test_config_parity_sees_valid_and_invalid_configs():
    seen = {True: 0, False: 0}

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(configs(FW, FW["SCHEMA"]))
    def count(cfg):
        seen[schemas.validator("config").is_valid(cfg)] += 1

    count()
    assert seen[True] > 30 and seen[False] > 30, seen


# ---- what the firmware really publishes ------------------------------------------------------

def _run(scn):
    from simulator import engine

    sim = engine.Simulation(scn)
    try:
        sim.run()
        return [(n.id, m) for n in sim.nodes for m in n.messages]
    finally:
        close = getattr(sim, "close", None)
        if close:
            close()


@pytest.mark.parametrize("hours", [3, None], ids=["3h", "24h"])
def test_simulated_town_messages_are_valid(hours):
    from simulator import scenario

    msgs = _run(scenario.load("heartbeat-town", hours=hours))
    kinds = set()
    bad = []
    for node, m in msgs:
        kind, problems = schemas.check_message(m.topic, m.payload)
        kinds.add(kind)
        if problems:
            bad.append((m.topic, problems, m.payload[:300]))
    assert "telemetry" in kinds
    assert not bad, "%d of %d messages invalid, first: %r" % (len(bad), len(msgs), bad[:3])


def _acks_from_firmware(tmp_path, payloads, set_clock=True):
    """The acks the firmware's command handler makes for these command payloads."""
    from simulator.mp import simboard
    from tests.nodeenv import NodeEnv

    env = NodeEnv(tmp_path / "flash")
    if set_clock:
        env.board.set_rtc_seconds(T0 - simboard.SECONDS_1970_TO_2000)
    lifecycle = env.module("telemetry.lifecycle")
    cfg, err = env.module("telemetry.config").load()
    assert err is None
    node = lifecycle.Node(cfg, env.module("telemetry.boardinfo").load(), {}, True)
    for p in payloads:
        node._on_message("townsense/t-1/cmd", p, False)
    return [json.loads(a) for a in node.acks]


COMMANDS = [b'{"id":"a","cmd":"ping"}', b'{"id":"b","cmd":"sample"}',
            b'{"id":"c","cmd":"spool","args":{"action":"flush"}}', b'{"id":"d","cmd":"spool"}',
            b'{"id":"e","cmd":"config","args":{"report_s":60}}', b'{"id":"f","cmd":"config","args":{"report_s":7200}}',
            b'{"id":"g","cmd":"config","args":{"node_id":"other"}}', b'{"id":"h","cmd":"explode"}',
            b'{"id":"i","cmd":"calibrate_empty"}', b'{"id":"j","cmd":"reboot"}',
            b"not json", b"[1,2]", b'{"cmd":"ping"}', b'{"id":"k","cmd":"ping","args":5}']


def test_firmware_acks_are_valid(tmp_path):
    acks = _acks_from_firmware(tmp_path, COMMANDS)
    assert len(acks) == len(COMMANDS)
    for a in acks:
        assert schemas.validate("ack", a) == [], a


def test_messages_before_the_clock_is_set_are_flagged(tmp_path):
    from simulator import scenario

    scn = scenario.parse({
        "name": "no-ntp", "hours": 3, "seed": 3,
        "nodes": [{"id": "p-{n}", "count": 1, "type": "heartbeat", "board": "lolin-d32",
                   "config": {"sample_s": 900, "report_s": 3600}},
                  {"id": "m-{n}", "count": 1, "type": "heartbeat", "board": "esp32-devkitc",
                   "config": {"sample_s": 300, "report_s": 900}}],
        "faults": [{"kind": "ntp_down", "at_h": 0, "for_h": 3},
                   {"kind": "power_cut", "node": "p-1", "at_h": 0.5, "for_s": 60},
                   {"kind": "power_cut", "node": "m-1", "at_h": 0.5, "for_s": 60}]})
    bad = [(m.topic, schemas.check_message(m.topic, m.payload)[1]) for _, m in _run(scn)]
    acks = _acks_from_firmware(tmp_path, [b'{"id":"a","cmd":"ping"}'], set_clock=False)
    bad += [("ack", schemas.validate("ack", a)) for a in acks]
    bad = [b for b in bad if b[1]]
    assert not bad, bad[:4]


def test_ack_text_stays_within_bounds(tmp_path):
    acks = _acks_from_firmware(tmp_path, [b'{"id":"l","cmd":"' + b"y" * 100 + b'"}',
                                          b'{"id":"m","cmd":"config","args":{"wifi":{"ssid":"' + b"x" * 300 + b'"}}}'])
    for a in acks:
        assert schemas.validate("ack", a) == [], a
