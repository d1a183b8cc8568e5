"""The message schemas of docs/protocol.md, for the host tools (collector, provisioning, tests).

    from host import schemas
    schemas.validate("telemetry", obj)            # -> [] or ["r[2].seq: ...", ...]
    schemas.kind_for_topic("townsense/bin-7/ack")  # -> "ack" (None: not one of ours)
    kind, problems = schemas.check_message(topic, payload_bytes, prefix="townsense")

The JSON Schema files (draft 2020-12) live in schemas/, one per payload. Validation here is
that schema plus what JSON Schema cannot say:
- integers are JSON integers: 1.0 where an integer is expected is rejected (a JSON Schema
  "integer" accepts it; the firmware's config check and the collector's counters do not);
- numbers are finite (Python's json module lets NaN and Infinity through);
- telemetry readings are in ascending seq order, each seq once;
- a "config" command's args is a merge patch that only names known config fields, with values
  of the right shape (the node still validates the patched config as a whole);
- a config.json also passes the firmware's own cross-field checks (report_s >= sample_s), and
  its node_id and prefix can be used in topics (the firmware's table allows any string).

schemas/config.json is generated from the SCHEMA table in firmware/lib/telemetry/config.py,
the single definition of a valid config: `python -m host.schemas --write-config`.
"""

from __future__ import annotations

import argparse
import builtins
import json
import math
import re
import sys
import types
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft202012Validator, validators

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "schemas"
CONFIG_SOURCE = ROOT / "firmware" / "lib" / "telemetry" / "config.py"

DEFAULT_PREFIX = "townsense"
TOPIC_KINDS = ("telemetry", "event", "health", "status", "cmd", "ack")
KINDS = TOPIC_KINDS + ("config",)
NODE_TO_HOST = ("telemetry", "event", "health", "status", "ack")  # payloads that carry "node"
NODE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


# ---- validators ---------------------------------------------------------------------------

def _is_integer(checker, instance) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))


def schema_path(kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError("unknown payload kind %r (known: %s)" % (kind, ", ".join(KINDS)))
    return SCHEMA_DIR / ("%s.json" % kind)


@lru_cache(maxsize=None)
def load_schema(kind: str) -> dict:
    return json.loads(schema_path(kind).read_text())


@lru_cache(maxsize=None)
def validator(kind: str):
    """The jsonschema validator of one payload kind: the schema file only (strict integers)."""
    schema = load_schema(kind)
    Validator.check_schema(schema)
    return Validator(_inline_refs(schema), format_checker=None)


def _inline_refs(schema: dict) -> dict:
    """The schema with its local {"$ref": "#/$defs/x"} replaced by the definitions: the same
    meaning (the files have no recursive definitions), validated about 2.5 times faster."""
    defs = schema.get("$defs", {})

    def walk(node, depth=0):
        if depth > 50:
            raise ValueError("recursive $defs: cannot inline")
        if isinstance(node, dict):
            ref = node.get("$ref")
            if len(node) == 1 and isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs:
                return walk(defs[ref[8:]], depth + 1)
            return {k: walk(v, depth + 1) for k, v in node.items() if not (k == "$defs" and depth == 0)}
        if isinstance(node, list):
            return [walk(v, depth + 1) for v in node]
        return node

    return walk(schema)


@lru_cache(maxsize=None)
def _patch_validator():
    return Validator(config_patch_schema(), format_checker=None)


def _where(path) -> str:
    out = ""
    for p in path:
        out += "[%d]" % p if isinstance(p, int) else ("." if out else "") + str(p)
    return out or "(payload)"


def _say(err) -> str:
    if err.validator is None or (err.validator == "not" and err.validator_value == {}):
        # a `false` subschema, or {"not": {}} (the same, with room for a "$comment")
        msg = "%s is not allowed here" % _short(err.instance)
    elif err.validator == "required":
        msg = err.message.replace(" is a required property", " is required")
    elif err.validator == "additionalProperties" and err.schema.get("additionalProperties") is False:
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        msg = "unknown field%s %s" % ("s" if len(extra) > 1 else "", ", ".join(repr(k) for k in extra))
    elif err.validator in ("minItems", "maxItems") and isinstance(err.instance, list):
        msg = "%d items: %s %d" % (len(err.instance), "at least" if err.validator == "minItems"
                                   else "at most", err.validator_value)
    elif err.validator in ("minLength", "maxLength") and isinstance(err.instance, str):
        msg = "%s has %d characters: %s %d" % (_short(err.instance), len(err.instance), "at least"
                                               if err.validator == "minLength" else "at most",
                                               err.validator_value)
    elif err.validator == "pattern":
        msg = "%s does not match %s" % (_short(err.instance), err.validator_value)
    elif err.validator == "enum":
        msg = "%s is not one of %s" % (_short(err.instance), ", ".join(map(json.dumps, err.validator_value)))
    elif err.validator == "const":
        msg = "%s, must be %s" % (_short(err.instance), json.dumps(err.validator_value))
    elif err.validator in ("minimum", "maximum"):
        msg = "%s is %s the %s %s" % (_short(err.instance), "below" if err.validator == "minimum"
                                      else "above", err.validator, err.validator_value)
    elif err.validator == "type":
        want = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        msg = "%s is not %s" % (_short(err.instance), " or ".join(_A.get(str(w), str(w)) for w in want))
    else:
        msg = err.message
    why = err.schema.get("$comment") if isinstance(err.schema, dict) else None
    return "%s: %s%s" % (_where(err.absolute_path), msg, " (%s)" % why if why else "")


_A = {"integer": "an integer", "string": "a string", "number": "a number", "boolean": "true or false",
      "object": "an object", "array": "an array", "null": "null"}


def _short(v) -> str:
    s = json.dumps(v, default=repr) if not isinstance(v, float) or math.isfinite(v) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _schema_problems(validator, obj, prefix=()) -> list[str]:
    errs = sorted(validator.iter_errors(obj), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    out = []
    for e in errs:
        if prefix:
            e.path.extendleft(reversed(prefix))
        s = _say(e)
        if s not in out:
            out.append(s)
    return out


def _non_finite(obj, path=()) -> list[str]:
    if isinstance(obj, float) and not math.isfinite(obj):
        return ["%s: %r is not a JSON number (a failed measurement is null)" % (_where(path), obj)]
    if isinstance(obj, dict):
        return [p for k in obj for p in _non_finite(obj[k], path + (k,))]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _non_finite(v, path + (i,))]
    return []


def seq_order_problems(payload) -> list[str]:
    """Readings of one telemetry message come in ascending seq order, each seq once."""
    out: list[str] = []
    rs = payload.get("r") if isinstance(payload, dict) else None
    if not isinstance(rs, list):
        return out
    last = None
    for i, r in enumerate(rs):
        seq = r.get("seq") if isinstance(r, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool):
            continue
        if last is not None and seq <= last:
            out.append("r[%d].seq: %d after %d (readings are in ascending seq order, each seq once)"
                       % (i, seq, last))
        last = seq
    return out


def validate(kind: str, payload) -> list[str]:
    """Readable problems with one parsed payload of this kind; [] when it is valid."""
    problems = _schema_problems(validator(kind), payload) + _non_finite(payload)
    if kind == "telemetry":
        problems += seq_order_problems(payload)
    elif kind == "cmd" and isinstance(payload, dict) and payload.get("cmd") == "config" \
            and isinstance(payload.get("args"), dict):
        problems += _schema_problems(_patch_validator(), payload["args"], ("args",))
    elif kind == "config" and not problems:
        problems += topic_name_problems(payload.get("node_id"), payload.get("prefix"))
        fw = firmware_config()
        try:
            fw["validate"](json.loads(json.dumps(payload)))
        except fw["ConfigError"] as e:
            problems.append("(config): %s" % e)
        except Exception as e:  # the firmware's check itself failed: say so, never pass it
            problems.append("(config): the firmware's check raised %r" % e)
    return problems


def loads(data: bytes | bytearray | str):
    """Parse a payload as strict JSON (UTF-8, no NaN/Infinity, no key twice in an object);
    ValueError says what is wrong."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError("not UTF-8: %s" % e) from None

    def bad_constant(name):
        raise ValueError("%s is not JSON" % name)

    def no_repeats(pairs):
        d = dict(pairs)
        if len(d) != len(pairs):
            seen: set = set()
            twice = [k for k, _ in pairs if k in seen or seen.add(k)]
            raise ValueError("key %s appears twice in one object" % json.dumps(twice[0]))
        return d

    try:
        return json.loads(data, parse_constant=bad_constant, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as e:
        raise ValueError("not JSON: %s" % e) from None


# ---- topics ---------------------------------------------------------------------------------

def topic_name_problems(node_id, prefix=None) -> list[str]:
    """What makes a config's node_id or prefix unusable in topics (the firmware's config check
    allows any string of the right length)."""
    out = []
    if isinstance(node_id, str) and not NODE_ID.match(node_id):
        out.append("node_id: %s cannot be used in topics: 1-32 of a-z 0-9 _ -, starting with a "
                   "letter or digit (%s)" % (_short(node_id), NODE_ID.pattern))
    if isinstance(prefix, str) and ("+" in prefix or "#" in prefix or prefix.startswith(("$", "/"))
                                    or prefix.endswith("/") or "//" in prefix):
        out.append("prefix: %s cannot be used in topics: no '+', '#', empty levels, or leading '$'"
                   % _short(prefix))
    return out


def split_topic(topic: str, prefix: str = DEFAULT_PREFIX):
    """(node_id, kind) for `<prefix>/<node_id>/<kind>`, or None when the topic is not ours."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head):].split("/")
    if len(parts) != 2 or parts[1] not in TOPIC_KINDS or not NODE_ID.match(parts[0]):
        return None
    return parts[0], parts[1]


def kind_for_topic(topic: str, prefix: str = DEFAULT_PREFIX):
    """The payload kind a topic carries ("telemetry", ..., "ack"), or None."""
    t = split_topic(topic, prefix)
    return t[1] if t else None


def check_message(topic: str, payload, prefix: str = DEFAULT_PREFIX):
    """(kind or None, problems) for one MQTT message as it arrived: topic, then payload bytes
    (or text, or an already parsed object), then the node id in the payload against the topic."""
    t = split_topic(topic, prefix)
    if t is None:
        return None, ["topic %r is not <%s>/<node_id>/<%s>" % (topic, prefix, "|".join(TOPIC_KINDS))]
    node, kind = t
    if isinstance(payload, (bytes, bytearray, str)):
        try:
            payload = loads(payload)
        except ValueError as e:
            return kind, ["(payload): %s" % e]
    problems = validate(kind, payload)
    if kind in NODE_TO_HOST and isinstance(payload, dict) and isinstance(payload.get("node"), str) \
            and payload["node"] != node:
        problems.append("node: %r does not match the topic's node %r" % (payload["node"], node))
    return kind, problems


# ---- config.json, generated from the firmware's table -----------------------------------------

class _Stub(types.ModuleType):
    """Stands in for the firmware modules config.py imports: only its table is wanted."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub("%s.%s" % (self.__name__, name))


NODES_DIR = ROOT / "firmware" / "lib" / "nodes"


def _node_config_module(name: str) -> types.ModuleType:
    """`nodes.<type>_config` (a node type's table for its "node" section), loaded for real:
    as `__import__` gives it, the package `nodes` with the module as an attribute."""
    leaf = name.split(".", 1)[1]
    path = NODES_DIR / (leaf + ".py")
    if not path.exists():
        raise ImportError("no module named %r" % name)
    mod = types.ModuleType(name)
    exec(compile(path.read_text(), str(path), "exec"), mod.__dict__)
    pkg = types.ModuleType("nodes")
    setattr(pkg, leaf, mod)
    return pkg


def _stub_import(name, globals=None, locals=None, fromlist=(), level=0):
    top = name.split(".")[0]
    if top == "nodes" and name.endswith("_config"):
        return _node_config_module(name)
    if top in ("telemetry", "nodes", "drivers"):
        return _Stub(name if fromlist else top)
    if top == "micropython":
        m = _Stub("micropython")
        m.const = lambda x: x
        return m
    return builtins.__import__(name, globals, locals, fromlist, level)


def load_firmware_config(source: Path = CONFIG_SOURCE) -> dict:
    """The namespace of firmware/lib/telemetry/config.py, run with its firmware imports stubbed."""
    ns = {"__name__": "firmware_config", "__file__": str(source),
          "__builtins__": dict(vars(builtins), __import__=_stub_import)}
    exec(compile(Path(source).read_text(), str(source), "exec"), ns)
    return ns


@lru_cache(maxsize=None)
def firmware_config() -> dict:
    return load_firmware_config()


_JS_TYPE = {"str": "string", "int": "integer", "bool": "boolean", "obj": "object", "list": "array"}


def _spec(ns, spec):
    g = lambda name, i: spec[ns.get(name, i)]  # noqa: E731 - the table's own index names
    return (g("T", 0), g("REQ", 1), g("DEF", 2), g("LO", 3), g("HI", 4), g("ONE", 5), g("FIELDS", 6))


def _field_json(ns, spec, patch=False) -> dict:
    t, req, default, lo, hi, allowed, fields = _spec(ns, spec)
    # null: the firmware takes it as "not given" for an optional field. Only where the default
    # is none is that the same as leaving the field out; elsewhere (e.g. "prefix": null) the
    # firmware would run with None instead of the default, so the schema refuses it. In a
    # merge patch, null removes the field (the default comes back): fine unless required.
    nullable = (not req) and (default is None or patch)
    s: dict = {"type": [_JS_TYPE[t], "null"] if nullable else _JS_TYPE[t]}
    if allowed is not None:
        s["enum"] = list(allowed) + ([None] if nullable else [])
    if t == "str":
        if lo is not None:
            s["minLength"] = lo
        if hi is not None:
            s["maxLength"] = hi
    elif t == "int":
        if lo is not None:
            s["minimum"] = lo
        if hi is not None:
            s["maximum"] = hi
    elif t == "list":
        if lo is not None:
            s["minItems"] = lo
        if hi is not None:
            s["maxItems"] = hi
    elif t == "obj" and fields is not None:
        s.update(_object_json(ns, fields, patch))
    if default is not None and not patch:
        s["default"] = default
    return s


def _object_json(ns, table, patch=False) -> dict:
    out: dict = {"properties": {k: _field_json(ns, table[k], patch) for k in table}}
    req = [k for k in table if _spec(ns, table[k])[1]]
    if req and not patch:
        out["required"] = req
    out["additionalProperties"] = False
    return out


def config_json_schema(ns: dict | None = None) -> dict:
    """schemas/config.json as the firmware's SCHEMA table defines it."""
    ns = ns if ns is not None else firmware_config()
    s = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "TownSense device config (config.json on the node's flash)",
        "description": "Generated from SCHEMA in firmware/lib/telemetry/config.py by "
                       "`python -m host.schemas --write-config`; do not edit by hand. "
                       "Not expressible here, checked by the firmware and host/schemas.py: "
                       "report_s >= sample_s.",
        "type": "object",
    }
    s.update(_object_json(ns, ns["SCHEMA"]))
    # the "node" section belongs to the node type (firmware/lib/nodes/<type>_config.py)
    sections = []
    for node_type in ns.get("NODE_TYPES", ()):
        section = _object_json(ns, ns["node_schema"](node_type))
        sections.append({"if": {"properties": {"type": {"const": node_type}}, "required": ["type"]},
                           "then": {"properties": {"node": {"anyOf": [{"type": "null"},
                                                                      dict(section, type="object")]}}}})
    if sections:
        s["allOf"] = sections
    return s


def config_patch_schema(ns: dict | None = None) -> dict:
    """A "config" command's args: a JSON merge patch (RFC 7396) of config.json. Every field
    optional; null removes a field (its default returns) except where the field is required;
    node_id and type are set by provisioning, never by a command."""
    ns = ns if ns is not None else firmware_config()
    s: dict = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
               "minProperties": 1}
    s.update(_object_json(ns, ns["SCHEMA"], patch=True))
    for k in ("node_id", "type"):
        if k in s["properties"]:
            s["properties"][k] = False
    return s


def config_json_text() -> str:
    return json.dumps(config_json_schema(), indent=2) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host.schemas", description=__doc__.split("\n\n")[0])
    ap.add_argument("--write-config", action="store_true",
                    help="regenerate schemas/config.json from firmware/lib/telemetry/config.py")
    ap.add_argument("--check", nargs=2, metavar=("KIND", "FILE"),
                    help="validate a JSON file as a payload of KIND (%s)" % ", ".join(KINDS))
    a = ap.parse_args(argv)
    if a.write_config:
        path = schema_path("config")
        path.write_text(config_json_text())
        print("wrote %s" % path)
    if a.check:
        kind, file = a.check
        try:
            obj = loads(Path(file).read_bytes())
        except ValueError as e:
            print("%s: %s" % (file, e))
            return 1
        problems = validate(kind, obj)
        for p in problems:
            print("%s: %s" % (file, p))
        if not problems:
            print("%s: a valid %s payload" % (file, kind))
        return 1 if problems else 0
    if not (a.write_config or a.check):
        ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
