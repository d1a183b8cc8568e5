# config.json: loading and validation. The schema below is the single definition of a valid
# config: the firmware checks it at boot and the host tools check it before writing one.
#
# A field spec is a dict: t = type ("str", "int", "bool", "obj", "list", "num"), req = required,
# d = default, lo/hi = bounds (ints, string and list lengths), one = allowed values,
# f = the fields of an "obj", open = an "obj" whose fields the node type checks itself.
from telemetry import atomic

PATH = "config.json"
NODE_TYPES = ("heartbeat", "fill_level", "air_quality", "water_meter", "traffic")

SCHEMA = {
    "node_id": {"t": "str", "req": True, "lo": 1, "hi": 32},
    "type": {"t": "str", "req": True, "one": NODE_TYPES},
    "power": {"t": "str", "d": None, "one": ("battery", "mains")},
    "sample_s": {"t": "int", "d": 900, "lo": 1, "hi": 86400},
    "report_s": {"t": "int", "d": 3600, "lo": 1, "hi": 604800},
    "wdt_s": {"t": "int", "d": 60, "lo": 5, "hi": 3600},
    "wifi": {"t": "obj", "d": None, "f": {
        "ssid": {"t": "str", "req": True, "lo": 1, "hi": 32},
        "key": {"t": "str", "d": "", "hi": 64},
        "timeout_s": {"t": "int", "d": 15, "lo": 1, "hi": 120},
        "static": {"t": "list", "d": None, "lo": 4, "hi": 4},
    }},
    "prefix": {"t": "str", "d": "townsense", "lo": 1, "hi": 64},
    "spool_bytes": {"t": "int", "d": 32768, "lo": 1024, "hi": 1048576},
    "batch": {"t": "int", "d": 24, "lo": 1, "hi": 200},
    "ntp_host": {"t": "str", "d": "pool.ntp.org", "lo": 1, "hi": 64},
    "node": {"t": "obj", "d": None, "open": True},
}

_TYPES = {"str": str, "int": int, "bool": bool, "obj": dict, "list": list}
_NAMES = {"str": "a string", "int": "an integer", "bool": "true or false", "obj": "an object",
          "list": "a list", "num": "a number"}


class ConfigError(Exception):
    pass


def _type_ok(t, v):
    if t == "num":
        return (isinstance(v, int) or isinstance(v, float)) and not isinstance(v, bool)
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
            if spec.get("req"):
                raise ConfigError("field '%s': required" % name)
            out[key] = spec.get("d")
            continue
        v = obj[key]
        t = spec["t"]
        if v is None and not spec.get("req"):
            out[key] = None
            continue
        if not _type_ok(t, v):
            raise ConfigError("field '%s': expected %s, got %r" % (name, _NAMES[t], v))
        one = spec.get("one")
        if one is not None and v not in one:
            raise ConfigError("field '%s': %r is not one of %s" % (name, v, ", ".join(one)))
        n = len(v) if t in ("str", "list") else v if t in ("int", "num") else None
        if n is not None:
            lo = spec.get("lo")
            hi = spec.get("hi")
            if lo is not None and n < lo:
                raise ConfigError("field '%s': %r is below the minimum %d" % (name, v, lo))
            if hi is not None and n > hi:
                raise ConfigError("field '%s': %r is above the maximum %d" % (name, v, hi))
        if t == "obj" and "f" in spec:
            v = check(v, spec["f"], name + ".")
        out[key] = v
    return out


def validate(obj):
    cfg = check(obj, SCHEMA)
    if cfg["report_s"] < cfg["sample_s"]:
        raise ConfigError("field 'report_s': %d is shorter than sample_s %d"
                          % (cfg["report_s"], cfg["sample_s"]))
    if cfg["node"] is None:
        cfg["node"] = {}
    return cfg


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
