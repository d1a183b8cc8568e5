# Message payloads: compact, versioned JSON (docs/protocol.md, schemas/).
import json

from telemetry import VERSION

V = 1


def topic(cfg, leaf):
    return "%s/%s/%s" % (cfg["prefix"], cfg["node_id"], leaf)


def telemetry(cfg, payloads, sync_off):
    """One telemetry message from spooled reading payloads (bytes of JSON). Readings taken
    before the clock was set carry "u": 1; they are stamped here when the offset the NTP
    sync found is known (same power-on), and stay flagged otherwise."""
    parts = []
    for p in payloads:
        if sync_off is not None and b'"u"' in p:
            r = json.loads(p)
            if r.get("u") and r.get("ts") is not None:
                r["ts"] = r["ts"] + sync_off
                del r["u"]
            p = json.dumps(r).encode()
        parts.append(p)
    head = '{"v":%d,"node":%s,"type":%s,"fw":%s,"r":[' % (
        V, json.dumps(cfg["node_id"]), json.dumps(cfg["type"]), json.dumps(VERSION))
    return head.encode() + b",".join(parts) + b"]}"
