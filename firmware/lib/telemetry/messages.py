# Message payloads: compact, versioned JSON (docs/protocol.md, schemas/).
import json

from telemetry import VERSION, clock

V = 1


def topic(cfg, leaf):
    return "%s/%s/%s" % (cfg["prefix"], cfg["node_id"], leaf)


def stamp(p, sync):
    """A spooled record (bytes of JSON). Records taken before the clock was set carry "u": 1;
    they are stamped here when the offset the NTP sync found applies to them: sync is None or
    (offset, first seq of this power-on). A record of an earlier power-on keeps its flag (its
    RTC count restarted at that power cut: no offset is known for it)."""
    if sync is None or b'"u"' not in p:
        return p
    r = json.loads(p)
    if r.get("u") and r.get("ts") is not None and r.get("seq", -1) >= sync[1]:
        r["ts"] = r["ts"] + sync[0]
        del r["u"]
    return json.dumps(r).encode()


def _head(cfg):
    return '{"v":%d,"node":%s,"type":%s' % (V, json.dumps(cfg["node_id"]), json.dumps(cfg["type"]))


def telemetry(cfg, payloads, sync):
    """One telemetry message from spooled reading payloads."""
    parts = [stamp(p, sync) for p in payloads]
    return (_head(cfg) + ',"fw":%s,"r":[' % json.dumps(VERSION)).encode() + b",".join(parts) + b"]}"


def event(cfg, payload, sync):
    """An event record from the spool ({"seq","ts","event","level","data"}) as its message."""
    return _head(cfg).encode() + b"," + stamp(payload, sync)[1:]


def health(cfg, fields):
    d = clock.stamp({"v": V, "node": cfg["node_id"], "fw": VERSION})
    for k in fields:
        d[k] = fields[k]
    return json.dumps(d)


def status(cfg, state, ts=False, next_ts=None, reason=None):
    """ts=False: no time (the last will, written long before it is published)."""
    d = {"v": V, "node": cfg["node_id"], "state": state}
    if ts:
        clock.stamp(d)
    if next_ts is not None:
        d["next"] = next_ts
    if reason is not None:
        d["reason"] = reason
    return json.dumps(d)


def ack(cfg, cmd_id, cmd, ok, error=None, result=None):
    if isinstance(cmd, str) and len(cmd) > 40:
        cmd = cmd[:40]  # an ack never grows with what a sender made up
    d = clock.stamp({"v": V, "node": cfg["node_id"], "id": cmd_id, "cmd": cmd, "ok": ok})
    if error is not None:
        d["error"] = error[:200]
    if result is not None:
        d["result"] = result
    return json.dumps(d)


def ha_discovery(cfg, fields):
    """Home Assistant MQTT discovery (retained configs): one sensor per reading field.
    fields: [(key, unit, device_class)]."""
    node = cfg["node_id"]
    out = []
    for key, unit, dclass in fields:
        uid = "townsense_%s_%s" % (node, key)
        conf = {"name": key, "unique_id": uid, "state_topic": topic(cfg, "telemetry"),
                "value_template": "{{ value_json.r[-1].%s }}" % key,
                "availability_topic": topic(cfg, "status"),
                "availability_template": "{{ 'online' if value_json.state in ['online', 'sleeping'] else 'offline' }}",
                "device": {"identifiers": ["townsense_" + node], "name": node, "manufacturer": "TownSense",
                           "model": cfg["type"], "sw_version": VERSION}}
        if unit:
            conf["unit_of_measurement"] = unit
        if dclass:
            conf["device_class"] = dclass
        out.append(("homeassistant/sensor/%s/config" % uid, json.dumps(conf)))
    return out
