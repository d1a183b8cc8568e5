# config.json: loading and validation. The schema below is the single definition of a valid
# config: the firmware checks it at boot and the host tools check it before writing one.
#
# A field spec is a tuple (type, required, default, lo, hi, allowed, fields): type is "str",
# "int", "bool", "obj" or "list"; lo/hi bound ints and the lengths of strings and lists;
# allowed lists the accepted values; fields is the schema of an "obj" (None: the node type
# checks it itself). Tuples, not dicts: this table lives in RAM on a small heap.
from telemetry import atomic

PATH = "config.json"
NODE_TYPES = ("heartbeat", "fill_level", "air_quality", "water_meter", "traffic")
T, REQ, DEF, LO, HI, ONE, FIELDS = 0, 1, 2, 3, 4, 5, 6

SCHEMA = {
    "node_id": ("str", True, None, 1, 32, None, None),
    "type": ("str", True, None, None, None, NODE_TYPES, None),
    "power": ("str", False, None, None, None, ("battery", "mains"), None),
    "sample_s": ("int", False, 900, 1, 86400, None, None),
    "report_s": ("int", False, 3600, 1, 604800, None, None),
    "wdt_s": ("int", False, 60, 5, 3600, None, None),
    "wifi": ("obj", False, None, None, None, None, {
        "ssid": ("str", True, None, 1, 32, None, None),
        "key": ("str", False, "", None, 64, None, None),
        "timeout_s": ("int", False, 15, 1, 120, None, None),
        "static": ("list", False, None, 4, 4, None, None),
    }),
    "mqtt": ("obj", False, None, None, None, None, {
        "host": ("str", True, None, 1, 64, None, None),
        "port": ("int", False, 1883, 1, 65535, None, None),
        "user": ("str", False, None, 1, 64, None, None),
        "password": ("str", False, None, 0, 128, None, None),
        "keepalive": ("int", False, 60, 10, 3600, None, None),
        "tls_ca": ("str", False, None, 1, 64, None, None),
        "timeout_ms": ("int", False, 5000, 500, 60000, None, None),
    }),
    "net_budget_s": ("int", False, 40, 5, 600, None, None),
    "backoff_max_s": ("int", False, 21600, 60, 86400, None, None),
    "ha": ("bool", False, False, None, None, None, None),
    "prefix": ("str", False, "townsense", 1, 64, None, None),
    "spool_bytes": ("int", False, 32768, 1024, 1048576, None, None),
    "batch": ("int", False, 24, 1, 200, None, None),
    "ntp_host": ("str", False, "pool.ntp.org", 1, 64, None, None),
    "node": ("obj", False, None, None, None, None, None),  # checked by node_schema(type)
}

_TYPES = {"str": str, "int": int, "bool": bool, "obj": dict, "list": list}
_NAMES = {"str": "a string", "int": "an integer", "bool": "true or false", "obj": "an object",
          "list": "a list"}


class ConfigError(Exception):
    pass


def _type_ok(t, v):
    if t == "int" and isinstance(v, bool):
        return False  # JSON true is not a count
    return isinstance(v, _TYPES[t])


def check(obj, schema, where=""):
    """A copy of obj with defaults filled in; ConfigError naming the field when it is wrong."""
    if not isinstance(obj, dict):
        raise ConfigError("%s: expected an object" % (where or "config"))
    out = {}
    for key in obj:
        if key not in schema:
            raise ConfigError("field '%s%s': unknown field" % (where, key))
    for key in schema:
        spec = schema[key]
        name = where + key
        if key not in obj:
            if spec[REQ]:
                raise ConfigError("field '%s': required" % name)
            out[key] = spec[DEF]
            continue
        v = obj[key]
        t = spec[T]
        if v is None and not spec[REQ]:
            out[key] = spec[DEF]  # null means "the default", never a None where a value belongs
            continue
        if not _type_ok(t, v):
            raise ConfigError("field '%s': expected %s, got %r" % (name, _NAMES[t], v))
        one = spec[ONE]
        if one is not None and v not in one:
            raise ConfigError("field '%s': %r is not one of %s" % (name, v, ", ".join(one)))
        n = len(v) if t in ("str", "list") else v if t == "int" else None
        if n is not None:
            lo = spec[LO]
            hi = spec[HI]
            if lo is not None and n < lo:
                raise ConfigError("field '%s': %r is below the minimum %d" % (name, v, lo))
            if hi is not None and n > hi:
                raise ConfigError("field '%s': %r is above the maximum %d" % (name, v, hi))
        if t == "obj" and spec[FIELDS] is not None:
            v = check(v, spec[FIELDS], name + ".")
        out[key] = v
    return out


def validate(obj):
    cfg = check(obj, SCHEMA)
    if cfg["report_s"] < cfg["sample_s"]:
        raise ConfigError("field 'report_s': %d is shorter than sample_s %d"
                          % (cfg["report_s"], cfg["sample_s"]))
    mod = _node_config(cfg["type"])
    cfg["node"] = check(cfg["node"] or {}, mod.SCHEMA if mod else {}, "node.")
    problem = getattr(mod, "problem", None)
    if problem is not None:
        p = problem(cfg["node"])
        if p is not None:
            raise ConfigError("field 'node.%s" % p)
    return cfg


def _node_config(node_type):
    # nodes/<type>_config.py: the table of the type's own section ("node") and, optionally,
    # problem(section) for what a table cannot say (a field against another)
    try:
        mod = __import__("nodes.%s_config" % node_type)
    except ImportError:
        return None
    return getattr(mod, node_type + "_config")


def node_schema(node_type):
    """The table of the node type's own section; a type without one takes no fields there."""
    mod = _node_config(node_type)
    return mod.SCHEMA if mod else {}


def load(path=PATH):
    """(config, None) or (None, message) — never raises for a bad file."""
    try:
        raw = atomic.read_json(path)
    except ValueError as e:
        return None, "config.json: not valid JSON (%s)" % e
    except Exception as e:  # a damaged filesystem entry
        return None, "config.json: unreadable (%r)" % e
    if raw is None:
        return None, "config.json: missing"
    try:
        return validate(raw), None
    except ConfigError as e:
        return None, "config.json: %s" % e
