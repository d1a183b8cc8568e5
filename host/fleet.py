"""`townsense fleet status|alerts|export`: what the collector's database (host/collector.py)
says about the fleet; the device registry (host/registry.py), when given, adds each node's type
and location. Read-only: the collector may be writing at the same time (WAL).

Times: node clocks (`ts`, Unix s) unless a record is flagged `u` (clock never set), where the
collector's receive time stands in. `--now` replaces the wall clock, for replayed or simulated
data.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_GRACE_S = 900            # a sleeping node may be this late before it is overdue
DEFAULT_SILENCE_S = 24 * 3600    # silence limit when a node's report interval is not known
INTERVAL_FACTOR = 3              # a node is overdue after 3 report intervals of silence


class FleetError(Exception):
    """A problem the user can fix (a missing database, a bad time); printed, exit status 2."""


# ---- small helpers ------------------------------------------------------------------------------

def iso(ts) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, now: float | None = None) -> int:
    """Unix seconds from "1780272000", "2026-06-01", "2026-06-01T06:00:00Z" (no zone: UTC),
    or a time back from now: "90m", "36h", "7d"."""
    now = time.time() if now is None else now
    t = str(text).strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if t[-1:] in units and t[:-1].replace(".", "", 1).isdigit():
            return int(now - float(t[:-1]) * units[t[-1]])
        if t.isdigit():
            return int(t)
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except (ValueError, IndexError):
        raise FleetError("cannot read the time %r: give Unix seconds, an ISO date or date-time "
                         "(UTC unless it says), or a span back from now such as 36h or 7d" % text) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def open_db(path) -> sqlite3.Connection:
    """The collector's database, read-only (a missing file is an error, never created here)."""
    p = Path(path)
    if not p.is_file():
        raise FleetError("no collector database at %s (townsense collect --db %s writes it)" % (p, p))
    db = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        db.execute("SELECT 1 FROM readings LIMIT 1")
    except sqlite3.DatabaseError as e:
        db.close()
        raise FleetError("%s is not a collector database: %s" % (p, e)) from None
    return db


def load_registry(path) -> dict[str, dict]:
    """{node id: registry row}, or {} without a registry."""
    if not path:
        return {}
    if not Path(path).is_file():
        raise FleetError("no registry at %s" % path)
    from host.registry import Registry

    with Registry(path) as reg:
        return {d["id"]: d for d in reg.all()}


# ---- status ---------------------------------------------------------------------------------------

def _per_node(db, sql, *params) -> dict:
    return {r[0]: r for r in db.execute(sql, params)}


def fleet_status(db: sqlite3.Connection, registry: dict | None = None, now: float | None = None,
                 grace_s: int = DEFAULT_GRACE_S, limit_s: int | None = None) -> list[dict]:
    """One dict per node known to the database or the registry, sorted by id."""
    registry = registry or {}
    now = time.time() if now is None else now
    seqs = _per_node(db, "SELECT node, MIN(seq), MAX(seq), COUNT(*) FROM "
                         "(SELECT node, seq FROM readings UNION ALL SELECT node, seq FROM events) GROUP BY node")
    last_ts: dict[str, int] = {}
    last_rx: dict[str, float] = {}
    for table in ("readings", "events", "health", "status"):
        for node, ts, rx in db.execute("SELECT node, MAX(CASE WHEN u = 0 THEN ts END), MAX(received_at) "
                                       "FROM %s GROUP BY node" % table):
            if ts is not None:
                last_ts[node] = max(ts, last_ts.get(node, ts))
            last_rx[node] = max(rx, last_rx.get(node, rx))
    types = _per_node(db, "SELECT node, type FROM readings "
                          "WHERE rowid IN (SELECT MAX(rowid) FROM readings GROUP BY node)")
    ev_types = _per_node(db, "SELECT node, type FROM events GROUP BY node")
    status = _per_node(db, "SELECT node, state, ts, u, next, reason FROM status_latest")
    health: dict[str, list] = {}
    for r in db.execute("SELECT node, ts, u, fields FROM health ORDER BY rowid"):
        health.setdefault(r["node"], []).append(r)

    nodes = sorted(set(registry) | set(last_rx))
    out = []
    for node in nodes:
        reg = registry.get(node, {})
        hs = health.get(node, [])
        last_h = json.loads(hs[-1]["fields"]) if hs else {}
        row = {
            "node": node,
            "type": reg.get("type") or (types[node]["type"] if node in types else
                                        ev_types[node]["type"] if node in ev_types else None),
            "location": reg.get("location"),
            "last_seen": last_ts.get(node),
            "last_received": last_rx.get(node),
            "batt_mv": last_h.get("batt_mv"),
            "rssi": last_h.get("rssi"),
            "state": status[node]["state"] if node in status else None,
            "next": status[node]["next"] if node in status else None,
        }
        row.update(_loss(seqs.get(node), hs))
        interval = _report_interval(hs)
        row["report_interval_s"] = interval
        row.update(_overdue(row, status.get(node), interval, now, grace_s, limit_s))
        out.append(row)
    return out


def _loss(seq_row, hs) -> dict:
    """Seq gaps over the span received, and how many of them the node says it dropped itself
    (the increase of health "dropped" over the health stored; all of it when the span starts
    at seq 0). lost: gaps the node does not account for, what went missing on the way."""
    if seq_row is None:
        return {"seq_min": None, "seq_max": None, "received": 0, "expected": 0, "gaps": 0,
                "dropped": 0, "lost": 0, "loss_pct": None}
    _, lo, hi, received = seq_row
    expected = hi - lo + 1
    gaps = expected - received
    drops = [json.loads(h["fields"]).get("dropped") for h in hs]
    drops = [d for d in drops if isinstance(d, int)]
    dropped = 0
    if drops:
        dropped = drops[-1] if lo == 0 else max(0, drops[-1] - drops[0])
    lost = max(0, gaps - dropped)
    return {"seq_min": lo, "seq_max": hi, "received": received, "expected": expected, "gaps": gaps,
            "dropped": dropped, "lost": lost, "loss_pct": 100.0 * lost / expected}


def _report_interval(hs) -> int | None:
    """The node's report interval: a health message comes with every report, so the median
    spacing of the last ones (node clock)."""
    ts = sorted(h["ts"] for h in hs[-21:] if not h["u"])
    gaps = [b - a for a, b in zip(ts, ts[1:]) if b > a]
    return int(statistics.median(gaps)) if gaps else None


def _overdue(row, st, interval, now, grace_s, limit_s) -> dict:
    """A sleeping node is due by its status' `next` (plus grace); any other node after
    INTERVAL_FACTOR report intervals of silence, or limit_s when given."""
    if st is not None and st["state"] == "sleeping" and st["next"] is not None and not st["u"]:
        due, why = st["next"] + grace_s, "next report was due"
    else:
        seen = row["last_seen"] if row["last_seen"] is not None else row["last_received"]
        if seen is None:
            return {"due": None, "overdue": True, "why": "never heard from"}
        limit = limit_s or (INTERVAL_FACTOR * interval if interval else DEFAULT_SILENCE_S)
        due, why = seen + limit, "silent for more than %s" % _span(limit)
    overdue = now > due
    return {"due": due, "overdue": overdue, "why": why if overdue else ""}


def _span(s) -> str:
    s = int(s)
    if s >= 86400 and s % 3600 == 0:
        return "%.1f d" % (s / 86400)
    if s >= 3600:
        return "%.1f h" % (s / 3600)
    return "%d min" % (s // 60)


def print_status(rows, now, out=None) -> None:
    out = out or sys.stdout
    head = "%-14s %-12s %-20s %-9s %7s %5s %12s %5s %7s %5s %6s  %s" % (
        "node", "type", "last seen", "state", "batt mV", "RSSI", "seqs", "gaps", "dropped", "lost",
        "loss%", "overdue")
    print(head, file=out)
    for r in rows:
        seqs = "%d/%d" % (r["received"], r["expected"]) if r["expected"] else "-"
        flag = "OVERDUE: %s (%s)" % (r["why"], iso(r["due"])) if r["overdue"] else ""
        print("%-14s %-12s %-20s %-9s %7s %5s %12s %5d %7d %5d %6s  %s" % (
            r["node"], r["type"] or "-", iso(r["last_seen"]), r["state"] or "-",
            "-" if r["batt_mv"] is None else r["batt_mv"], "-" if r["rssi"] is None else r["rssi"],
            seqs, r["gaps"], r["dropped"], r["lost"],
            "-" if r["loss_pct"] is None else "%.1f" % r["loss_pct"], flag), file=out)
    n_over = sum(r["overdue"] for r in rows)
    print("%d nodes, %d overdue (now %s)" % (len(rows), n_over, iso(now)), file=out)


# ---- alerts ---------------------------------------------------------------------------------------

LEVELS = {"alarm": ("alarm",), "warning": ("alarm", "warning"), "info": ("alarm", "warning", "info")}


def fleet_alerts(db, since: int | None = None, level: str = "warning", node: str | None = None) -> list[dict]:
    """Events at `level` or above, newest first. since: on the node's ts (on the receive time
    for an event whose clock was never set)."""
    levels = LEVELS[level]
    sql = "SELECT * FROM events WHERE level IN (%s)" % ",".join("?" * len(levels))
    params: list = list(levels)
    if since is not None:
        sql += " AND ((u = 0 AND ts >= ?) OR (u = 1 AND received_at >= ?))"
        params += [since, since]
    if node:
        sql += " AND node = ?"
        params.append(node)
    sql += " ORDER BY CASE WHEN u = 0 THEN ts ELSE received_at END DESC, node, seq DESC"
    return [dict(r, data=json.loads(r["data"])) for r in db.execute(sql, params)]


def print_alerts(rows, registry, out=None) -> None:
    out = out or sys.stdout
    for r in rows:
        where = (registry.get(r["node"]) or {}).get("location")
        print("%s%s  %-7s %-14s %-16s %s%s" % (
            iso(r["ts"]), " (clock unset)" if r["u"] else "", r["level"].upper(), r["node"], r["event"],
            json.dumps(r["data"], sort_keys=True) if r["data"] else "", "  @ %s" % where if where else ""),
              file=out)
    print("%d alerts" % len(rows), file=out)


# ---- export ---------------------------------------------------------------------------------------

def _cell(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def export_csv(db, out, node: str | None = None, since: int | None = None) -> int:
    """Readings as CSV: node, seq, ts (ISO 8601 UTC), u (only when some reading is flagged),
    then the union of the readings' fields, sorted. Returns the number of rows."""
    where: list[str] = []
    params: list = []
    if node:
        where.append("node = ?")
        params.append(node)
    if since is not None:
        where.append("((u = 0 AND ts >= ?) OR (u = 1 AND received_at >= ?))")
        params += [since, since]
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    keys = [k for (k,) in db.execute("SELECT DISTINCT j.key FROM readings, json_each(readings.fields) AS j%s "
                                     "ORDER BY j.key" % cond, params)]
    flagged = db.execute("SELECT 1 FROM readings%s%s u = 1 LIMIT 1" % (cond, " AND" if cond else " WHERE"),
                         params).fetchone() is not None
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["node", "seq", "ts"] + (["u"] if flagged else []) + keys)
    n = 0
    for r in db.execute("SELECT node, seq, ts, u, fields FROM readings%s ORDER BY node, seq" % cond, params):
        f = json.loads(r["fields"])
        cells: list = [r["node"], r["seq"], iso(r["ts"])] + ([r["u"] or ""] if flagged else [])
        w.writerow(cells + [_cell(f.get(k)) for k in keys])
        n += 1
    return n


# ---- CLI ------------------------------------------------------------------------------------------

def cmd_fleet(args) -> int:
    try:
        now = parse_time(args.now) if getattr(args, "now", None) else time.time()
        since = parse_time(args.since, now) if getattr(args, "since", None) else None
        registry = load_registry(getattr(args, "registry", None))
        db = open_db(args.db)
    except (FleetError, sqlite3.Error) as e:
        print("townsense fleet: %s" % e, file=sys.stderr)
        return 2
    try:
        if args.fleet_cmd == "status":
            rows = fleet_status(db, registry, now, args.grace, args.limit)
            if args.json:
                json.dump(rows, sys.stdout, indent=1)
                print()
            else:
                print_status(rows, now)
            return 1 if args.fail_overdue and any(r["overdue"] for r in rows) else 0
        if args.fleet_cmd == "alerts":
            rows = fleet_alerts(db, since, args.level, args.node)
            if args.json:
                json.dump(rows, sys.stdout, indent=1)
                print()
            else:
                print_alerts(rows, registry)
            return 0
        # export
        if args.out:
            tmp = Path(args.out + ".part")
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                n = export_csv(db, f, args.node, since)
            tmp.replace(args.out)  # a half-written file never takes the name
            print("%d readings written to %s" % (n, args.out), file=sys.stderr)
        else:
            try:
                export_csv(db, sys.stdout, args.node, since)
            except BrokenPipeError:  # `| head`: the reader has what it wanted
                # Python would complain again when it flushes stdout at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        db.close()


def register(sub) -> None:
    p = sub.add_parser("fleet", help="the fleet's state from the collector's database",
                       description="Read the database `townsense collect` writes: nodes and their health "
                                   "(status), warnings and alarms (alerts), readings as CSV (export).")
    fs = p.add_subparsers(dest="fleet_cmd", required=True)

    def common(q, registry=True):
        q.add_argument("--db", required=True, help="the collector's SQLite database")
        if registry:
            q.add_argument("--registry", help="the device registry (types and locations)")
        q.add_argument("--now", help="the time to judge against (default: the clock); for replayed data")
        q.set_defaults(func=cmd_fleet)

    s = fs.add_parser("status", help="every node: last seen, battery, RSSI, loss, overdue")
    common(s)
    s.add_argument("--grace", type=int, default=DEFAULT_GRACE_S, metavar="S",
                   help="how late a sleeping node may be past its announced next report (default %(default)s s)")
    s.add_argument("--limit", type=int, metavar="S",
                   help="silence after which any node without a `next` is overdue "
                        "(default: %d report intervals, or %d h when unknown)" % (INTERVAL_FACTOR,
                                                                              DEFAULT_SILENCE_S // 3600))
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.add_argument("--fail-overdue", action="store_true", help="exit 1 when a node is overdue (for cron/monitoring)")

    a = fs.add_parser("alerts", help="warnings and alarms, newest first")
    common(a)
    a.add_argument("--since", help="from this time: ISO date or date-time, Unix s, or back from now (36h, 7d)")
    a.add_argument("--level", choices=sorted(LEVELS), default="warning",
                   help="lowest level shown (default: %(default)s, i.e. warnings and alarms)")
    a.add_argument("--node", help="only this node")
    a.add_argument("--json", action="store_true", help="print JSON")

    e = fs.add_parser("export", help="readings as CSV")
    common(e, registry=False)
    e.add_argument("--csv", action="store_true", default=True, help="CSV (the only format; the default)")
    e.add_argument("--out", help="write to this file (default: standard output)")
    e.add_argument("--node", help="only this node")
    e.add_argument("--since", help="from this time: ISO date or date-time, Unix s, or back from now (36h, 7d)")
