"""`townsense`: the one command-line entry point, with subcommands."""

from __future__ import annotations

import argparse
import sys
import time


def _fmt_days(d):
    if d is None:
        return "mains"
    if d == float("inf"):
        return "-"
    return "%.0f d (%.1f y)" % (d, d / 365.25)


def print_summary(scenario, rows, wall_s: float, out=None) -> None:
    out = out or sys.stdout
    print("scenario %s: %d nodes, %.1f virtual hours, seed %d, %.2f s wall (%.0f virtual s per wall s)"
          % (scenario.name, len(rows), scenario.hours, scenario.seed, wall_s,
             scenario.hours * 3600 / max(wall_s, 1e-9)), file=out)
    head = "%-12s %-10s %-15s %8s %8s %6s %9s %10s  %s" % (
        "node", "type", "board", "readings", "reports", "boots", "awake s", "mAh/day", "battery life")
    print(head, file=out)
    for r in rows:
        print("%-12s %-10s %-15s %8d %8d %6d %9.1f %10.2f  %s" % (
            r["node"], r["type"], r["board"], r["readings"], r["reports"], r["boots"],
            r["awake_s"], r["mah_per_day"], _fmt_days(r["battery_days"])), file=out)
    print("total: %d readings in %d reports" % (sum(r["readings"] for r in rows), sum(r["reports"] for r in rows)),
          file=out)


def print_timeline(node, scenario, out=None) -> None:
    """Each report of one node: when, how many readings, which seqs, and the faults around."""
    import json

    out = out or sys.stdout
    print("\n%s reported:" % node.id, file=out)
    for m in node.messages:
        body = json.loads(m.payload)
        seqs = [r["seq"] for r in body.get("r", [])]
        h = m.t_us / 3.6e9
        if not m.topic.endswith("/telemetry"):
            continue
        print("  %02d:%02d  %-10s %2d readings  seq %s" % (
            int(h), int(h * 60) % 60, m.topic.rsplit("/", 1)[-1], len(seqs),
            "%d-%d" % (seqs[0], seqs[-1]) if seqs else "-"), file=out)
    for f in scenario.faults:
        if f.node in (None, node.id):
            print("  fault: %s at %.1f h for %.0f s%s" % (f.kind, f.at_us / 3.6e9, f.for_us / 1e6,
                                                      "" if f.node else " (all nodes)"), file=out)


def cmd_simulate(args) -> int:
    from simulator import engine, scenario

    if args.list:
        for name, path in scenario.bundled().items():
            sc = scenario.load(str(path))
            print("%-18s %4d nodes  %s" % (name, len(sc.nodes), sc.description))
        return 0
    if not args.scenario:
        print("townsense simulate: name a scenario (a file, or one of --list)", file=sys.stderr)
        return 2
    try:
        sc = scenario.load(args.scenario, hours=args.hours, seed=args.seed)
    except scenario.ScenarioError as e:
        print("townsense simulate: %s" % e, file=sys.stderr)
        return 2
    unknown = [n for n in args.timeline or [] if n not in {s.id for s in sc.nodes}]
    if unknown:
        print("townsense simulate: no node %s in %s" % (", ".join(unknown), sc.name), file=sys.stderr)
        return 2
    from simulator import broker as brokers

    embedded = None
    broker = None
    if args.broker == "embedded":
        import logging

        embedded = brokers.EmbeddedBroker(log_level=logging.ERROR).start()
        broker = (embedded.host, embedded.port)
        print("embedded MQTT broker at %s" % embedded.url)
    elif args.broker:
        try:
            broker = brokers.parse_url(args.broker)
        except ValueError as e:
            print("townsense simulate: %s" % e, file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    try:
        sim = engine.Simulation(sc, broker=broker)
    except (OSError, RuntimeError) as e:
        print("townsense simulate: broker %s:%d: %s" % (broker[0], broker[1], e), file=sys.stderr)
        if embedded:
            embedded.stop()
        return 2
    try:
        rows = sim.run()
        wall = time.perf_counter() - t0
        print_summary(sc, rows, wall)
        if args.messages:
            for node in sim.nodes:
                for m in node.messages[: args.messages]:
                    print("%10.1f s  %s  %s" % (m.t_us / 1e6, m.topic, m.payload))
        for node_id in args.timeline or []:
            print_timeline(sim.by_id[node_id], sc)
    finally:
        sim.close()
        if embedded:
            embedded.stop()
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="townsense", description="TownSense: sensor nodes for small towns.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("simulate", help="run a scenario in the simulator, in virtual time")
    s.add_argument("scenario", nargs="?", help="a scenario file, or the name of a bundled scenario")
    s.add_argument("--hours", type=float, help="virtual hours to run (default: the scenario's)")
    s.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
    s.add_argument("--broker", help="mqtt://HOST:PORT to publish to through the firmware's MQTT client, "
                                    "or 'embedded' for an in-process broker")
    s.add_argument("--list", action="store_true", help="name the bundled scenarios")
    s.add_argument("--messages", type=int, default=0, metavar="N",
                   help="also print each node's first N messages")
    s.add_argument("--timeline", action="append", metavar="NODE",
                   help="also print each report of NODE (repeatable)")
    s.set_defaults(func=cmd_simulate)
    # the host tools, each in its own module
    from host import boardserve, collector, demo, fleet, provision, route

    for tool in (demo, boardserve, collector, fleet, route, provision):
        tool.register(sub)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
