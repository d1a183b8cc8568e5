# Bootstrap of a node inside the WASI MicroPython (simulator/wasi.py starts it). Reads the
# node's spec from /sim/spec.json, attaches the fakes to a Board, puts them in sys.modules
# under the names the firmware imports, and runs the boot loop one boot at a time. Console
# lines go to stdout as "@<sim µs> <text>".
#
# The runner's script (wasi.py, RUNNER) drives it from its top level:
#     node = wasiboot.start()
#     while node.step():
#         if node.collect_due():
#             gc.collect()
#     node.finish()
#
# Why the collector runs only there: this WASI build scans linear memory (the C shadow stack)
# for roots, but WebAssembly keeps C locals in wasm locals, which no scan sees. The VM puts a
# Python call's frame state (locals, value stack) on the GC heap when it needs more than 11
# words (py/objfun.c, VM_MAX_STATE_ON_STACK), and only a C local points to it. A collection
# while such a call is in progress frees the frame under it: garbled locals, traps. So the
# automatic collector stays off (gc.disable(): no collection when an allocation fails), and the
# runner collects at the one point where no Python call is in progress: between two boots, at
# the top level of its -c script. Never call the real gc.collect() from inside a function
# (the one exception, _measure() below, has the runner put the whole memory back afterwards).
# See docs/micropython-proof.md.
import sys
import os
import builtins
import json
import gc as _realgc
import micropython as _realmp

_realgc.disable()

import simboard
import simnet
import simbattery
import bootloop

try:
    import host as _host  # the build's host-call bridge (wasi.py serves it)
except ImportError:
    _host = None


class _HostOS:
    pass


def _hostos():
    h = _HostOS()
    h.listdir = os.listdir
    h.stat = os.stat
    h.remove = os.remove
    h.rename = os.rename
    h.mkdir = os.mkdir
    h.rmdir = os.rmdir
    h.open = builtins.open
    return h


_print = builtins.print
_hostbuf = 0  # heap the host-call bridge holds (the heap figures leave it out)
_warmed = False


def _warm():
    """host.call keeps a result buffer on the heap from its first call on: take it now (before
    any heap figure, and before the firmware runs), and leave it out of every heap figure."""
    global _hostbuf, _warmed
    if not _warmed:
        _warmed = True
        a = _realgc.mem_alloc()
        _host.call("warm", "")
        _hostbuf = _realgc.mem_alloc() - a


_h = _hostos()
sys.modules["_hostos"] = _h


def _sink(b, text):
    _print("@%d %s" % (b.clock.now_us, text))
    if _sampler is not None:
        _sampler.sample("print", "")


def _reset(b):
    raise simboard.HardReset()


class Program:
    def __init__(self, keep):
        self.keep = keep

    def reset(self):
        for k in list(sys.modules.keys()):
            if k not in self.keep:
                del sys.modules[k]

    def run_main(self):
        with _h.open("/flash/main.py") as f:
            src = f.read()
        exec(src, {"__name__": "__main__"})

    def crashed(self, e):
        pass


class Node:
    """The shared boot loop (bootloop.BootLoop), one boot per step(): the runner collects
    garbage at its top level between steps, where nothing of the firmware's calls is on the
    stack."""

    def __init__(self, board, program, until_us, mode, collect_every_boot=False):
        self.board = board
        self.program = program
        self.mode = mode
        self.collect_every_boot = collect_every_boot
        self.heap_size = _realgc.mem_free() + _realgc.mem_alloc()
        self.live = self.heap_size  # in use after the last collection (none yet)
        self.total_then = _realmp.mem_total()
        self.loop = bootloop.BootLoop(board, program, until_us)
        self.done = False
        self.started = False

    def step(self):
        """Run the next boot; False when the run is over."""
        if self.done:
            return False
        if not self.started:
            # Return once before the first boot: the runner's collection then leaves exactly
            # what the fakes hold (the baseline of the heap figures).
            self.started = True
            return True
        if self.mode == "imports":
            _imports()
            self.done = True
            return False
        if self.mode == "cycle":
            self.done = True
            _one_cycle(self.board, self.program)
            return False
        self.done = not self.loop.step()
        # RAM is gone at the next boot anyway: forget the firmware now, so that the collection
        # the runner does next frees its modules.
        self.program.reset()
        return not self.done

    def collect_due(self):
        """Whether the runner collects now: after every boot if asked (and before the first,
        for the baseline), else once more than half of the heap may be in use. A collection
        sweeps the whole heap, and gc.mem_alloc() walks it too: with a large heap, doing
        either after every boot costs more than the boot. micropython.mem_total() (bytes
        allocated so far) is a counter: cheap."""
        if self.collect_every_boot or self.mode != "run":
            return True
        since = (_realmp.mem_total() - self.total_then) & 0xFFFFFFFF
        return self.live + since > self.heap_size // 2

    def heap(self):
        """Right after the runner's collection: the heap the node holds between boots."""
        self.live = _realgc.mem_alloc()
        self.total_then = _realmp.mem_total()
        _print("HEAP %d" % (self.live - _hostbuf))

    def finish(self):
        _print("ENERGY " + json.dumps(self.board.energy_us))
        _print("BOOTS %d" % self.board.boots)


def start():
    with open("/sim/spec.json") as f:
        spec = json.load(f)
    board = simboard.Board(spec["id"], spec["profile"], "/flash", spec["seed"], spec["rtc_epoch"])
    board.ticks_offset_ms = spec["ticks_offset_ms"]
    simbattery.attach(board)
    w = spec.get("world")
    if w:  # the node type's world: its fake chips on the board (simulator/worlds.py)
        __import__(w["module"]).attach(board, w["params"], w["seed"], w["start_unix"])
    aps = []
    for a in spec["aps"]:
        aps.append(simnet.AccessPoint(a["ssid"], a.get("key", ""), bytes(a["bssid"]), a.get("channel", 6),
                                      a.get("rssi", -62)))
    outages = {}
    for k in spec["outages"]:
        outages[k] = [tuple(x) for x in spec["outages"][k]]
    board.network = simnet.NetworkWorld(aps, outages)
    board.console_sink = _sink
    if spec.get("hostsocket") and _host is not None:
        # The run has a broker: fake_socket's host facility is the socket bridge (wasi.py
        # serves it). Registered before the fakes load (fake_socket imports it) and before the
        # fakes replace `time` (the bridge keeps the real one); it stays across boots, like the
        # fakes (Program keeps what sys.modules holds now).
        import _hostsocket_wasi

        sys.modules["_hostsocket"] = _hostsocket_wasi
        _warm()
    for name in spec["fakes"]:
        m = __import__(spec["fakes"][name])
        m._attach(board)
        sys.modules[name] = m
    for f in spec["faults"]:
        if f[0] == "power_cut":
            board.call_at(f[1], lambda b, ms=f[2]: b.power_cut(ms))
        elif f[0] == "reset":
            board.call_at(f[1], _reset)
    global _sampler
    if spec.get("sample"):
        _sampler = _Sampler(board, spec["sample"])

    def node_print(*args, sep=" ", end="\n"):
        for line in sep.join([str(a) for a in args]).split("\n"):
            board.print(line)

    builtins.print = node_print
    builtins.open = sys.modules["os"]._open
    if _sampler is not None:
        _sampler.wrap(sys.modules["os"]._open)
    sys.path[:] = ["/flash", "/flash/lib", "/sim"]
    program = Program(set(sys.modules.keys()))
    return Node(board, program, spec["until_us"], spec.get("mode", "run"), spec.get("collect_every_boot", False))


def _imports():
    for name in ("json", "telemetry", "telemetry.atomic", "telemetry.config", "telemetry.boardinfo",
                 "telemetry.spool", "telemetry.clock", "telemetry.rtcstate", "telemetry.wifi",
                 "telemetry.transport", "telemetry.messages", "telemetry.battery", "telemetry.lifecycle",
                 "nodes.heartbeat"):
        a = _realgc.mem_alloc()
        __import__(name)
        _print("IMPORT %s %d" % (name, _realgc.mem_alloc() - a))
    a = _realgc.mem_alloc()
    sys.modules["telemetry.boardinfo"].load()
    _print("BOARDJSON %d" % (_realgc.mem_alloc() - a))
    a = _realgc.mem_alloc()
    sys.modules["telemetry.config"].load()
    _print("CONFIGJSON %d" % (_realgc.mem_alloc() - a))


def _one_cycle(board, program):
    """One power-on boot-to-sleep cycle, for the heap figures (make bench). BASE: the heap in use
    before the boot (the runner collected just before: exact). ALLOC: bytes allocated during the
    cycle with the collector off, garbage included: an upper bound of the cycle's peak."""
    program.reset()
    base = _realgc.mem_alloc() - _hostbuf
    board.boot(simboard.PWRON_RESET)
    result = "CYCLE ENDED WITHOUT SLEEP"
    try:
        program.run_main()
    except simboard.DeepSleep:
        result = "CYCLE OK"
    except MemoryError:
        result = "CYCLE OOM"
    used = _realgc.mem_alloc() - _hostbuf - base
    _print(result)
    _print("BASE %d" % base)
    _print("ALLOC %d" % used)


class _Sampler:
    """Heap in use at many points of the firmware's run, for make bench: every blocking call
    (Board.advance), every console line, every import and every open().

    A collection here, deep in the firmware's calls, frees the heap-held frames of the calls in
    progress (see the top of this file). So the runner's host call "snap" copies the VM's whole
    linear memory first, and "restore" puts it back after the reading: the run goes on as if
    no collection had happened (tests/test_wasi_heap.py checks it). A reading misses those
    frames. With each reading goes micropython.mem_total(), the bytes allocated so far: the heap
    in use between two readings is at most the first reading plus what was allocated since."""

    def __init__(self, board, every):
        self.every = every
        self.n = 0
        _warm()
        board.sample_hook = self.at_advance
        # The real files open now. A reading's collection finalises (closes, for real: the host
        # does not take that back) a file that only a frame in progress holds: keep them all.
        self.files = [None] * 8
        hopen = _h.open
        files = self.files

        def kept_open(path, mode="r"):
            f = hopen(path, mode)
            for i in range(len(files)):
                if files[i] is None:
                    files[i] = f
                    return f
            files.append(f)
            return f

        _h.open = kept_open

    def wrap(self, opn):
        """Sample at every import and open() too (the firmware's own blocking calls are few).
        opn: the open() the firmware gets (reading builtins.open gives MicroPython's own, not
        an override). The wrappers allocate nothing that outlives them."""
        sample = self.sample
        imp = builtins.__import__

        def sampled_import(name, globals=None, locals=None, fromlist=None, level=0):
            m = imp(name, globals, locals, fromlist, level)
            sample("import:", name)
            return m

        def sampled_open(path, mode="r", buffering=-1, encoding=None):
            f = opn(path, mode, buffering, encoding)
            sample("open:", path)
            return f

        builtins.__import__ = sampled_import
        builtins.open = sampled_open

    def at_advance(self, board):
        self.sample("advance", "")

    def sample(self, kind, name):
        self.n += 1
        if self.n % self.every == 0:
            self.forget_closed()
            _measure(_host.call, _realmp.mem_total(), kind + name)

    def forget_closed(self):
        files = self.files
        for i in range(len(files)):
            if files[i] is not None:
                try:
                    files[i].fileno()
                except ValueError:
                    files[i] = None


def _measure(call, total, label):
    # Between the collection and the restore, the callers' frames may be freed memory: this
    # function reads none of them, and its own frame is small enough (11 words at most: see
    # the top of this file) to sit on the C stack, which the collector scans.
    call("snap", "")
    _realgc.collect()
    call("restore", "%d %d %s" % (_realgc.mem_alloc() - _hostbuf, total, label))


_sampler = None
