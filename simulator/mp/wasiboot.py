# Bootstrap of a node inside the WASI MicroPython (simulator/wasi.py starts it). Reads the
# node's spec from /sim/spec.json, attaches the fakes to a Board, puts them in sys.modules
# under the names the firmware imports, and runs the shared boot loop. Console lines go to
# stdout as "@<sim µs> <text>".
import sys
import os
import builtins
import json
import gc as _realgc

# The collector of this WASI build corrupts the heap once a scenario's boot loop is running
# (objects still in use are freed: traps and garbled state follow; see docs/micropython-proof.md).
# Runs are bounded, so the VM gets a large heap and the collector stays off.
_realgc.disable()

import simboard
import simnet
import simbattery
import bootloop


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
_h = _hostos()
sys.modules["_hostos"] = _h


def _sink(b, text):
    _print("@%d %s" % (b.clock.now_us, text))


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


def main():
    with open("/sim/spec.json") as f:
        spec = json.load(f)
    board = simboard.Board(spec["id"], spec["profile"], "/flash", spec["seed"], spec["rtc_epoch"])
    board.ticks_offset_ms = spec["ticks_offset_ms"]
    simbattery.attach(board)
    aps = []
    for a in spec["aps"]:
        aps.append(simnet.AccessPoint(a["ssid"], a.get("key", ""), bytes(a["bssid"]), a.get("channel", 6),
                                      a.get("rssi", -62)))
    outages = {}
    for k in spec["outages"]:
        outages[k] = [tuple(x) for x in spec["outages"][k]]
    board.network = simnet.NetworkWorld(aps, outages)
    board.console_sink = _sink
    for name in spec["fakes"]:
        m = __import__(spec["fakes"][name])
        m._attach(board)
        sys.modules[name] = m
    for f in spec["faults"]:
        if f[0] == "power_cut":
            board.call_at(f[1], lambda b, ms=f[2]: b.power_cut(ms))
        elif f[0] == "reset":
            board.call_at(f[1], _reset)

    def node_print(*args, sep=" ", end="\n"):
        for line in sep.join([str(a) for a in args]).split("\n"):
            board.print(line)

    builtins.print = node_print
    builtins.open = sys.modules["os"]._open
    sys.path[:] = ["/flash", "/flash/lib", "/sim"]
    program = Program(set(sys.modules.keys()))
    until = spec["until_us"]
    mode = spec.get("mode", "run")
    spec = None
    if mode == "imports":
        for name in ("json", "telemetry", "telemetry.atomic", "telemetry.config", "telemetry.boardinfo",
                     "telemetry.spool", "telemetry.clock", "telemetry.rtcstate", "telemetry.wifi",
                     "telemetry.transport", "telemetry.messages", "telemetry.battery", "telemetry.lifecycle",
                     "nodes.heartbeat"):
            a = _realgc.mem_alloc()
            __import__(name)
            _print("IMPORT %s %d" % (name, _realgc.mem_alloc() - a))
        a = _realgc.mem_alloc()
        b = sys.modules["telemetry.boardinfo"].load()
        _print("BOARDJSON %d" % (_realgc.mem_alloc() - a))
        a = _realgc.mem_alloc()
        c = sys.modules["telemetry.config"].load()
        _print("CONFIGJSON %d" % (_realgc.mem_alloc() - a))
    elif mode == "cycle":
        one_cycle(board, program)
    else:
        bootloop.run(board, program, until)
    _print("ENERGY " + json.dumps(board.energy_us))
    _print("BOOTS %d" % board.boots)


def one_cycle(board, program):
    """One power-on boot-to-sleep cycle, for the heap figure. With the collector off, every
    byte allocated during the cycle stays counted: ALLOC is an upper bound of the cycle's
    peak heap (the fakes' own allocations during the cycle are in it too)."""
    program.reset()
    base = _realgc.mem_alloc()
    board.boot(simboard.PWRON_RESET)
    result = "CYCLE ENDED WITHOUT SLEEP"
    try:
        program.run_main()
    except simboard.DeepSleep:
        result = "CYCLE OK"
    except MemoryError:
        result = "CYCLE OOM"
    used = _realgc.mem_alloc() - base
    _print(result)
    _print("BASE %d" % base)
    _print("ALLOC %d" % used)


main()
