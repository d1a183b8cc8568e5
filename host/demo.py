"""`townsense demo`: the whole product on one machine, nothing installed by hand. A town's
nodes (the demo-town scenario: bins, air-quality posts, water meters) run their real firmware
in the simulator and publish through their own MQTT client to a broker started in-process;
the town's collector stores what arrives in SQLite; then the fleet status, the alerts and
today's bin route are printed, as the town's engineer would see them."""

from __future__ import annotations

import logging
import math
import sqlite3
import tempfile
import time
from pathlib import Path

# Oakvale, a made-up town: its depot and where its nodes stand (about 300 m apart)
DEPOT = (52.0900, 5.1200)


def _place(i: int) -> tuple[float, float]:
    ring, k = divmod(i, 6)
    r_km = 0.3 * (ring + 1)
    a = 2 * math.pi * (k + ring * 0.5) / 6
    return (DEPOT[0] + r_km * math.cos(a) / 111.2, DEPOT[1] + r_km * math.sin(a) / (111.2 * math.cos(math.radians(DEPOT[0]))))


def register_town(sc, registry_path: Path) -> None:
    from host.provision import firmware_version
    from host.registry import Registry

    version = firmware_version()
    with Registry(registry_path) as reg:
        for i, n in enumerate(sc.nodes):
            lat, lon = _place(i)
            reg.upsert(n.id, type=n.type, board=n.board, location="Oakvale %s" % n.id, lat=lat, lon=lon,
                       firmware=version, micropython="1.29.0", mqtt_user=n.id)


def run(workdir: Path | None = None, hours: float | None = None, out=None) -> int:
    import sys

    from host import cli, fleet, route
    from host.collector import Collector
    from simulator import engine, scenario
    from simulator.broker import EmbeddedBroker

    out = out or sys.stdout
    work = Path(workdir or tempfile.mkdtemp(prefix="townsense-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    db_path, reg_path = work / "town.db", work / "registry.db"
    sc = scenario.load("demo-town", hours=hours)
    register_town(sc, reg_path)
    broker = EmbeddedBroker(log_level=logging.ERROR).start()
    print("embedded MQTT broker at %s; collector database %s" % (broker.url, db_path), file=out)
    collector = Collector(broker.url, db_path).start()
    try:
        sim = engine.Simulation(sc, broker=(broker.host, broker.port))
        t0 = time.perf_counter()
        try:
            rows = sim.run()
        finally:
            sim.close()
        cli.print_summary(sc, rows, time.perf_counter() - t0, out)
        collector.wait_quiet()
        c = collector.counts
        print("\ncollector: %s" % ", ".join("%s %d" % kv for kv in sorted(c.items())), file=out)
    finally:
        collector.stop()
        broker.stop()
    now = sc.start_unix + sc.duration_us / 1e6
    registry = fleet.load_registry(str(reg_path))
    db = fleet.open_db(str(db_path))
    try:
        print("\n$ townsense fleet status", file=out)
        fleet.print_status(fleet.fleet_status(db, registry, now), now, out)
        print("\n$ townsense fleet alerts", file=out)
        fleet.print_alerts(fleet.fleet_alerts(db), registry, out)
        print("\n$ townsense route --threshold 75", file=out)
        stops, problems = route.select_bins(db, registry, 75)
        route.print_route(route.plan_route(stops, DEPOT), problems, 75, None, out)
    except sqlite3.Error as e:
        print("demo: the collector's database: %s" % e, file=out)
        return 1
    finally:
        db.close()
    print("\nfiles: %s (readings), %s (registry); try: townsense fleet status --db %s" % (db_path, reg_path, db_path),
          file=out)
    return 0


def cmd_demo(args) -> int:
    return run(Path(args.dir) if args.dir else None, args.hours)


def register(sub) -> None:
    s = sub.add_parser("demo", help="the demo town: simulated nodes, broker, collector, fleet and route")
    s.add_argument("--dir", help="keep the database and registry here (default: a temporary directory)")
    s.add_argument("--hours", type=float, help="virtual hours (default: the scenario's)")
    s.set_defaults(func=cmd_demo)
