"""`make bench`: figures, one a line as `name: value unit`. Never assertions: these machines are
shared and noisy; targets are in docs/bench.md."""

from __future__ import annotations

import os
import sys
import time

from simulator import engine, scenario, wasi


def fig(name: str, value, unit: str) -> None:
    if isinstance(value, float):
        value = "%.1f" % value if abs(value) >= 10 else "%.3g" % value
    print("%s: %s %s" % (name, value, unit), flush=True)


def heartbeat(n: int, hours: float = 24) -> scenario.Scenario:
    return scenario.parse({"name": "bench-%d" % n, "hours": hours, "seed": 1, "nodes": [
        {"id": "hb-{n:04d}", "count": n, "type": "heartbeat", "board": "lolin-d32",
         "config": {"sample_s": 900, "report_s": 3600}}]})


def sim_speed(n: int, jobs: int = 1) -> tuple[float, float]:
    sc = heartbeat(n)
    t0 = time.perf_counter()
    engine.run_sharded(sc, jobs)
    wall = time.perf_counter() - t0
    return wall, sc.hours * 3600 / wall


CYCLE_HEAP = 2 * 1024 * 1024  # room for the whole cycle with the collector off


def wasi_cycle(sample: bool, mpy: bool = True) -> wasi.WasiResult:
    """One power-on boot-to-sleep cycle (the heaviest: it connects, sets the clock and reports)
    of a battery heartbeat node, firmware installed as .mpy, in the WASI MicroPython."""
    sc = heartbeat(1, hours=1)
    res = wasi.run_node(sc.nodes[0], sc, heap_bytes=CYCLE_HEAP, mode="cycle", mpy=mpy,
                        sample_every=1 if sample else 0)
    if not any(t == "CYCLE OK" for _, t in res.lines):
        raise RuntimeError("the cycle did not end in deep sleep:\n%s" % "\n".join(t for _, t in res.lines[-20:]))
    return res


def peak_heap() -> dict[str, int]:
    """Heap figures of one cycle, in bytes (docs/micropython-proof.md):
    baseline: what the simulator (fakes, boot loop) holds before the firmware starts: collected
      between boots at the runner's top level, exact;
    peak: the most the firmware holds at once: the heap in use, right after a collection, read
      at every blocking call, console line, import and open() of the cycle (the VM's memory is
      put back after each reading), minus the same reading at boot; it misses the frames of
      the calls in progress that the VM keeps on the heap (64-160 bytes each, few);
    ceiling: between two readings the heap in use grows at most by what is allocated: the
      largest reading-plus-allocations-until-the-next, minus the boot reading;
    alloc: bytes allocated during the cycle with the collector off, garbage included."""
    plain = wasi_cycle(sample=False)
    figures = {}
    for _, t in plain.lines:
        if t.startswith("BASE ") or t.startswith("ALLOC "):
            key, value = t.split()
            figures[{"BASE": "baseline", "ALLOC": "alloc"}[key]] = int(value)
    samples = wasi_cycle(sample=True).samples
    boot = samples[0][1]
    figures["peak"] = max(used for _, used, _, _ in samples) - boot
    figures["ceiling"] = max(samples[i][1] + samples[i + 1][2] - samples[i][2]
                             for i in range(len(samples) - 1)) - boot
    return figures


def main() -> int:
    wall1, speed1 = sim_speed(1)
    fig("sim_speed_1_node_24h", speed1, "virtual s per wall s")
    jobs = os.cpu_count() or 1
    wall, speed = sim_speed(1000, jobs)
    fig("sim_wall_1000_nodes_24h", wall, "s (%d processes)" % jobs)
    fig("sim_speed_1000_nodes_24h", speed, "virtual s per wall s")
    fig("sim_node_speed_1000_nodes_24h", speed * 1000, "node-virtual s per wall s")
    heap = peak_heap()
    fig("mp_heap_fakes_baseline", heap["baseline"] / 1024, "KB (simulator, before the firmware starts)")
    fig("mp_heap_peak_cycle", heap["peak"] / 1024, "KB (firmware, most in use at once; target < 32)")
    fig("mp_heap_peak_cycle_ceiling", heap["ceiling"] / 1024, "KB (most the peak can be between readings)")
    fig("mp_heap_alloc_cycle_upper_bound", heap["alloc"] / 1024, "KB (allocated in the cycle, garbage included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
