"""`townsense route`: which bins to empty and in what order. A bin (a fill_level node of the
registry) is on the route when its latest fill is at or above the threshold, or when its latest
reading's forecast (`eta_h`: hours from that reading's ts until full) says it fills before the
next collection. The stops are ordered from the depot by nearest neighbour and then improved by
2-opt on great-circle (haversine) distances; the tour returns to the depot. Without a depot the
route is an open path starting at the fullest bin.
"""

from __future__ import annotations

import json
import math
import sqlite3
import sys
from pathlib import Path

from host import fleet

EARTH_KM = 6371.0088  # mean Earth radius (IUGG)
DEFAULT_THRESHOLD = 80.0


# ---- geometry and tours ------------------------------------------------------------------------

def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(h)))


def distance_matrix(points) -> list[list[float]]:
    return [[haversine_km(p, q) for q in points] for p in points]


def tour_length(dist, order, closed: bool) -> float:
    legs = sum(dist[a][b] for a, b in zip(order, order[1:]))
    return legs + (dist[order[-1]][order[0]] if closed and len(order) > 1 else 0.0)


def nearest_neighbour(dist, start: int = 0) -> list[int]:
    """Visit every point once: from start, always to the nearest point not yet visited."""
    left = set(range(len(dist))) - {start}
    order = [start]
    while left:
        here = order[-1]
        nxt = min(left, key=lambda j: (dist[here][j], j))
        order.append(nxt)
        left.remove(nxt)
    return order


def two_opt(dist, order: list[int], closed: bool) -> list[int]:
    """2-opt: reverse a stretch of the tour whenever that shortens it, until no reversal does.
    order[0] (the depot, or the start) stays first. Only strictly improving moves are taken,
    so the result is never longer than the tour given."""
    order = list(order)
    n = len(order)
    improved = True
    while improved:
        improved = False
        for i in range(1, n - 1):
            for k in range(i + 1, n):
                a, b, c = order[i - 1], order[i], order[k]
                if k + 1 < n:
                    d = order[k + 1]
                elif closed:
                    d = order[0]
                else:
                    d = None
                before = dist[a][b] + (dist[c][d] if d is not None else 0.0)
                after = dist[a][c] + (dist[b][d] if d is not None else 0.0)
                if after < before - 1e-12:
                    order[i:k + 1] = reversed(order[i:k + 1])
                    improved = True
    return order


# ---- which bins ---------------------------------------------------------------------------------

def latest_fill(db: sqlite3.Connection, node: str) -> dict | None:
    """The node's latest reading that has a fill value (a failed sample has none)."""
    r = db.execute(
        "SELECT seq, ts, u, fields FROM readings WHERE node = ? AND "
        "COALESCE(json_extract(fields, '$.fill'), json_extract(fields, '$.fill_pct')) IS NOT NULL "
        "ORDER BY seq DESC LIMIT 1", (node,)).fetchone()
    if r is None:
        return None
    f = json.loads(r["fields"])
    fill = f.get("fill", f.get("fill_pct"))
    return {"seq": r["seq"], "ts": r["ts"], "u": r["u"], "fill": fill, "eta_h": f.get("eta_h")}


def select_bins(db, registry: dict, threshold: float = DEFAULT_THRESHOLD,
                next_collection: int | None = None) -> tuple[list[dict], list[dict]]:
    """(bins to empty, bins that cannot be judged or routed, each with a reason)."""
    chosen, problems = [], []
    bins = [d for d in registry.values() if d.get("type") == "fill_level"]
    for d in sorted(bins, key=lambda d: d["id"]):
        last = latest_fill(db, d["id"])
        if last is None:
            problems.append({"node": d["id"], "why": "no fill reading in the database"})
            continue
        if not isinstance(last["fill"], (int, float)) or isinstance(last["fill"], bool):
            problems.append({"node": d["id"], "why": "its latest fill %r is not a number" % (last["fill"],)})
            continue
        why = None
        full_at = None
        if isinstance(last["eta_h"], (int, float)) and not last["u"]:
            full_at = last["ts"] + int(last["eta_h"]) * 3600
        if last["fill"] >= threshold:
            why = "fill %g %% >= %g %%" % (last["fill"], threshold)
        elif next_collection is not None and full_at is not None and full_at < next_collection:
            why = "full by %s, before the next collection" % fleet.iso(full_at)
        if why is None:
            continue
        stop = {"node": d["id"], "fill": last["fill"], "ts": last["ts"], "full_at": full_at, "why": why,
                "location": d.get("location"), "lat": d.get("lat"), "lon": d.get("lon")}
        if stop["lat"] is None or stop["lon"] is None:
            problems.append(dict(stop, why="%s, but the registry has no lat/lon: not routed" % why))
            continue
        chosen.append(stop)
    # bins the collector knows but the registry does not: no place on a map
    known = set(registry)
    for (node,) in db.execute("SELECT DISTINCT node FROM readings WHERE type = 'fill_level' ORDER BY node"):
        if node not in known:
            problems.append({"node": node, "why": "not in the registry: no location"})
    return chosen, problems


def plan_route(stops: list[dict], depot: tuple[float, float] | None = None) -> dict:
    """Order the stops: nearest neighbour, then 2-opt. Returns the ordered stops with their
    legs (km), the total, and the nearest-neighbour total for comparison."""
    if not stops:
        return {"stops": [], "legs": [], "total_km": 0.0, "nn_km": 0.0, "depot": depot}
    if depot is not None:
        points = [depot] + [(s["lat"], s["lon"]) for s in stops]
        closed, offset = True, 1
    else:
        stops = sorted(stops, key=lambda s: (-s["fill"], s["node"]))  # start at the fullest
        points = [(s["lat"], s["lon"]) for s in stops]
        closed, offset = False, 0
    dist = distance_matrix(points)
    nn = nearest_neighbour(dist, 0)
    best = two_opt(dist, nn, closed)
    path = best + ([best[0]] if closed else [])
    legs = [dist[a][b] for a, b in zip(path, path[1:])]
    ordered = [stops[i - offset] for i in best if i >= offset]
    return {"stops": ordered, "legs": legs, "total_km": tour_length(dist, best, closed),
            "nn_km": tour_length(dist, nn, closed), "depot": depot}


def print_route(route: dict, problems: list[dict], threshold: float, next_collection, out=None) -> None:
    out = out or sys.stdout
    depot = route["depot"]
    print("route: %d bins (fill >= %g %%%s), %s" % (
        len(route["stops"]), threshold,
        "" if next_collection is None else ", or full before %s" % fleet.iso(next_collection),
        "from the depot at %.5f,%.5f and back" % depot if depot else "from the fullest bin (no depot given)"),
        file=out)
    if route["stops"]:
        print(" #  %-14s %6s  %8s %9s  %s" % ("stop", "fill", "leg km", "total km", "why"), file=out)
        run = 0.0
        legs = list(route["legs"])
        for i, s in enumerate(route["stops"], 1):
            leg = legs.pop(0) if (depot or i > 1) else 0.0
            run += leg
            where = "  @ %s" % s["location"] if s.get("location") else ""
            print("%2d  %-14s %5g%%  %8.2f %9.2f  %s%s" % (i, s["node"], s["fill"], leg, run, s["why"], where),
                  file=out)
        if depot:
            run += legs.pop(0)
            print("    %-14s %6s  %8.2f %9.2f" % ("depot", "", route["legs"][-1], run), file=out)
        print("total %.2f km (nearest neighbour alone: %.2f km)" % (route["total_km"], route["nn_km"]), file=out)
    for p in problems:
        print("not routed: %s: %s" % (p["node"], p["why"]), file=out)


def parse_depot(text: str) -> tuple[float, float]:
    try:
        lat, lon = (float(x) for x in text.split(","))
    except ValueError:
        raise fleet.FleetError("--depot wants LAT,LON in degrees, e.g. 52.0907,5.1214; got %r" % text) from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise fleet.FleetError("--depot %r is not a place: latitude -90..90, longitude -180..180" % text)
    return lat, lon


def cmd_route(args) -> int:
    try:
        depot = parse_depot(args.depot) if args.depot else None
        next_collection = fleet.parse_time(args.next_collection) if args.next_collection else None
        if not Path(args.registry).is_file():
            raise fleet.FleetError("no registry at %s" % args.registry)
        registry = fleet.load_registry(args.registry)
        db = fleet.open_db(args.db)
    except (fleet.FleetError, sqlite3.Error) as e:
        print("townsense route: %s" % e, file=sys.stderr)
        return 2
    try:
        stops, problems = select_bins(db, registry, args.threshold, next_collection)
    finally:
        db.close()
    route = plan_route(stops, depot)
    if args.json:
        json.dump(dict(route, not_routed=problems), sys.stdout, indent=1)
        print()
    else:
        print_route(route, problems, args.threshold, next_collection)
    return 0


def register(sub) -> None:
    p = sub.add_parser("route", help="the bins to empty, in a short route",
                       description="Bins (fill_level nodes of the registry) whose latest fill is at or above "
                                   "the threshold, or forecast full before the next collection, ordered from "
                                   "the depot by nearest neighbour + 2-opt on great-circle distances.")
    p.add_argument("--db", required=True, help="the collector's SQLite database")
    p.add_argument("--registry", required=True, help="the device registry (types and lat/lon)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, metavar="PCT",
                   help="fill %% at which a bin is emptied (default %(default)g)")
    p.add_argument("--next-collection", metavar="DATE",
                   help="also take bins forecast full before this date (ISO date or date-time, UTC)")
    p.add_argument("--depot", metavar="LAT,LON", help="where the truck starts and ends")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_route)
