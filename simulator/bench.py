"""`make bench`: figures, one a line as `name: value unit`. Never assertions: these machines are
shared and noisy; targets are in docs/bench.md."""

from __future__ import annotations

import sys
import time

from simulator import engine, scenario, wasi
from simulator.mp import simboard


def fig(name: str, value, unit: str) -> None:
    if isinstance(value, float):
        value = "%.1f" % value if abs(value) >= 10 else "%.3g" % value
    print("%s: %s %s" % (name, value, unit), flush=True)


def heartbeat(n: int, hours: float = 24) -> scenario.Scenario:
    return scenario.parse({"name": "bench-%d" % n, "hours": hours, "seed": 1, "nodes": [
        {"id": "hb-{n:04d}", "count": n, "type": "heartbeat", "board": "lolin-d32",
         "config": {"sample_s": 900, "report_s": 3600}}]})


def sim_speed(n: int) -> tuple[float, float]:
    sc = heartbeat(n)
    t0 = time.perf_counter()
    sim = engine.Simulation(sc)
    try:
        sim.run()
    finally:
        sim.close()
    wall = time.perf_counter() - t0
    return wall, sc.hours * 3600 / wall


def wasi_cycle(heap: int) -> tuple[bool, int, str]:
    sc = heartbeat(1, hours=1)
    try:
        res = wasi.run_node(sc.nodes[0], sc, heap_bytes=heap, mode="cycle")
    except wasi.MicroPythonError as e:
        return False, 0, str(e)
    text = "\n".join(t for _, t in res.lines)
    base = 0
    for _, t in res.lines:
        if t.startswith("BASE "):
            base = int(t[5:])
    return "CYCLE OK" in text, base, text


def peak_heap() -> tuple[int, int]:
    """Smallest MicroPython heap (bytes) that completes one power-on boot-to-sleep cycle (the
    heaviest: it connects, sets the clock and reports), and the heap the simulator's own fakes
    hold before the firmware starts. Found by bisection on `-X heapsize`."""
    ok, base, text = wasi_cycle(1024 * 1024)
    if not ok:
        raise RuntimeError("the cycle fails even with 1 MB of heap:\n" + text[-2000:])
    lo, hi = 8 * 1024, 256 * 1024
    while hi - lo > 512:
        mid = (lo + hi) // 2
        if wasi_cycle(mid)[0]:
            hi = mid
        else:
            lo = mid
    return hi, base


def main() -> int:
    wall1, speed1 = sim_speed(1)
    fig("sim_speed_1_node_24h", speed1, "virtual s per wall s")
    wall, speed = sim_speed(1000)
    fig("sim_wall_1000_nodes_24h", wall, "s")
    fig("sim_speed_1000_nodes_24h", speed, "virtual s per wall s")
    fig("sim_node_speed_1000_nodes_24h", speed * 1000, "node-virtual s per wall s")
    heap, base = peak_heap()
    fig("mp_heap_min_boot_to_sleep_cycle", heap / 1024, "KB (includes simulator fakes)")
    fig("mp_heap_fakes_baseline", base / 1024, "KB")
    fig("mp_heap_firmware_peak_cycle", (heap - base) / 1024, "KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
