"""Per-sample cost of the magnetometer drivers in real MicroPython (the WASI build), for the
traffic node, which calls read_into() 50-100 times a second.

Figures (wall µs per call on this host, inside the WASI VM; an ESP32 at 160/240 MHz is slower
and not measured here), for each driver:
- driver_us: read_into() against a do-nothing bus (a Python object whose readfrom_mem_into
  returns at once): the driver's own work, plus one Python method call that a board's native
  I2C replaces with the bus transfer itself;
- null_call_us: that do-nothing bus call alone (subtract it for the driver's decoding alone);
- driver_alloc_bytes: heap bytes allocated per read_into() against that bus, measured with
  micropython.mem_total() (the null call's own allocation subtracted): 0 means the driver
  feeds nothing to the garbage collector;
- sim_read_into_us / sim_ready_us: read_into() and ready() against the fake chip on the fake
  bus (the simulator's cost per sample, chip model included; over at most 200 samples).

read_into_cost_us(kind) is the one figure other code asks for; measure(kind) gives them all.
`python -m simulator.bench_traffic_cost` prints them. Never asserted on (shared, noisy hosts)."""

from __future__ import annotations

import sys
from pathlib import Path

from simulator import wasi
from simulator.loader import MP_DIR

FW_LIB = Path(__file__).resolve().parent.parent / "firmware" / "lib"
KINDS = ("qmc5883l", "hmc5883l")

SCRIPT = r'''
import sys
import gc
import time as rt
import micropython as mp
gc.disable()
sys.path[:] = ['/sim', '/fw']
import simboard
import array
b = simboard.Board("bench-1", {"boot_ms": 0}, "/nonexistent", seed=1)
for name, mod in (("machine", "fake_machine"), ("time", "fake_time")):
    m = __import__(mod)
    m._attach(b)
    sys.modules[name] = m
b.boot(simboard.PWRON_RESET)
import machine
import chip_magnetometer
KIND = %(kind)r
N = %(n)d
NSIM = %(nsim)d
if KIND == "qmc5883l":
    from drivers import qmc5883l as drv
    make = drv.QMC5883L
else:
    from drivers import hmc5883l as drv
    make = drv.HMC5883L


class NullBus:
    def readfrom_mem_into(self, addr, memaddr, buf):
        pass

    def writeto_mem(self, addr, memaddr, buf):
        pass


def driver_cost(d, nb, buf):
    # in a function: locals, so no global dict grows in the middle of a count
    nbuf = bytearray(6)
    for i in range(50):
        d.read_into(buf)
        nb.readfrom_mem_into(0, 0, nbuf)
    m0 = mp.mem_total()
    t0 = rt.ticks_us()
    for i in range(N):
        nb.readfrom_mem_into(0, 0, nbuf)
    t1 = rt.ticks_us()
    m1 = mp.mem_total()
    for i in range(N):
        d.read_into(buf)
    t2 = rt.ticks_us()
    m2 = mp.mem_total()
    null_us = rt.ticks_diff(t1, t0) / N
    return rt.ticks_diff(t2, t1) / N, null_us, ((m2 - m1) - (m1 - m0)) / N


buf = array.array('h', [0, 0, 0])
nb = NullBus()
drv_us, null_us, drv_alloc = driver_cost(make(nb), nb, buf)

i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
chip = chip_magnetometer.Magnetometer(b, 0, lambda bb, t: (21.0, -4.0, 40.0), kind=KIND)
s = make(i2c)
s.init()
ready_t = 0
ready_n = 0
read_t = 0
got = 0
while got < NSIM:
    a = rt.ticks_us()
    r = s.ready()
    ready_t += rt.ticks_diff(rt.ticks_us(), a)
    ready_n += 1
    if r:
        a = rt.ticks_us()
        s.read_into(buf)
        read_t += rt.ticks_diff(rt.ticks_us(), a)
        got += 1
    else:
        b.advance(1000)
print("COST", repr({"kind": KIND, "n": N, "driver_us": drv_us, "null_call_us": null_us,
                    "driver_alloc_bytes": drv_alloc, "sim_read_into_us": read_t / NSIM,
                    "sim_ready_us": ready_t / ready_n}))
'''


DETECTOR_SCRIPT = r'''
import gc
gc.disable()  # this build collects only between boots (simulator/wasi.py)
import sys, time, micropython
sys.path[:] = ["/fw"]
from array import array
from nodes import traffic_detect as td
RULES = %(rules)r
N = %(n)d
RATE = 50
# A road at 50 Hz: the background, noise from a fixed table, and a vehicle-like bump (up to
# 600 counts, 0.8 s long) every 2 s, so every path of the detector runs (rise, present,
# relative end, tail, block and baseline work).
noise = array("i", [(i * 7919) %% 13 - 6 for i in range(97)])
bump = array("i", [int(600 * (1 - abs(i - 20) / 20.0) ** 2) for i in range(40)])
xs = array("i", [0] * N)
for i in range(N):
    k = i %% 100
    xs[i] = 600 + noise[i %% 97] + (bump[k] if k < 40 else 0)
det = td.Detector(RATE, RULES)

def feed_all(lo, hi):
    for i in range(lo, hi):
        det.feed(xs[i], -300 + noise[(i + 31) %% 97], 1200 + noise[(i + 57) %% 97], (i * 20) & 0x3FFFFFFF)

feed_all(0, 500)  # warm-up: the baseline is set
m0 = micropython.mem_total()
feed_all(N, N)  # the call alone
fixed = micropython.mem_total() - m0
m0 = micropython.mem_total()
t0 = time.ticks_us()
feed_all(500, N)
us = time.ticks_diff(time.ticks_us(), t0)
m1 = micropython.mem_total()
print("COST", repr({"us_per_sample": us / (N - 500), "alloc_bytes_per_sample": (m1 - m0 - fixed) / (N - 500),
                    "vehicles": det.count}))
'''


def detector_cost(rules: dict | None = None, n: int = 20000) -> dict:
    """The detector's own per-sample cost in the WASI MicroPython (Detector.feed with the node's
    default rules unless `rules`): us_per_sample (wall, this host), alloc_bytes_per_sample
    (0: nothing for the collector), vehicles seen."""
    if rules is None:
        rules = {"thr_on": 22, "thr_off": 15, "min_gap_ms": 200, "rel_pct": 30, "smooth": 2, "warm_s": 5}
    code = DETECTOR_SCRIPT % {"rules": rules, "n": n}
    out, _ = wasi.run_micropython(code, {FW_LIB: "/fw"}, heap_bytes=16 * 1024 * 1024)
    for line in out.decode().splitlines():
        if line.startswith("COST "):
            return eval(line[5:], {"__builtins__": {}})
    raise RuntimeError("no figures from MicroPython: %r" % out[-500:])


def measure(kind: str = "qmc5883l", n: int = 2000) -> dict:
    """Run n read_into() calls of the `kind` driver in the WASI MicroPython; the figures in the
    module docstring, as a dict."""
    if kind not in KINDS:
        raise ValueError("kind must be one of %s" % (KINDS,))
    # The simulated part allocates (the fake bus: about 1 KB per transaction) and this build
    # collects only between boots: a few hundred samples keep the heap small.
    code = SCRIPT % {"kind": kind, "n": n, "nsim": min(n, 200)}
    out, _ = wasi.run_micropython(code, {MP_DIR: "/sim", FW_LIB: "/fw"}, heap_bytes=16 * 1024 * 1024)
    for line in out.decode().splitlines():
        if line.startswith("COST "):
            return eval(line[5:], {"__builtins__": {}})
    raise RuntimeError("no figures from MicroPython: %r" % out[-500:])


def read_into_cost_us(kind: str = "qmc5883l", n: int = 2000) -> float:
    """Wall µs per read_into() of the driver in the WASI MicroPython, against a do-nothing bus."""
    return float(measure(kind, n)["driver_us"])


def main() -> int:
    for kind in KINDS:
        r = measure(kind)
        for k in ("driver_us", "null_call_us", "driver_alloc_bytes", "sim_read_into_us", "sim_ready_us"):
            unit = "bytes/call" if k.endswith("bytes") else "us/call"
            print("%s %s: %.3g %s" % (kind, k, r[k], unit), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
