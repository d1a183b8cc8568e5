"""The SDS011 driver (firmware/lib/drivers/sds011.py) and its fake (simulator/mp/
chip_sds011.py): the frame parser finds every valid data frame and nothing else in any byte
stream, whatever the pieces it is fed in, and notes command replies; the driver switches the
sensor to query mode, sleeps and wakes it with acknowledged commands, reads the scene's values
in tenths of ug/m3, refuses readings during the warm-up, gives None for a dead sensor and loses
only the frames that line faults hit; the same run gives the same readings in real
MicroPython."""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator.mp  # noqa: F401  (registers `simboard` under its bare name)
from tests.nodeenv import NodeEnv

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = ROOT / "firmware" / "lib" / "drivers"
MP_DIR = str(ROOT / "simulator" / "mp")
if MP_DIR not in sys.path:
    sys.path.append(MP_DIR)
chip_sds011 = importlib.import_module("chip_sds011")

UART_ID, TX, RX = 1, 27, 14
SCENE = {"pm25": 14.37, "pm10": 23.81}


class Rig:
    def __init__(self, tmp: Path, seed=1, warm=False, query_mode=False, **scene):
        self.env = NodeEnv(tmp, install=False)
        (tmp / "lib" / "drivers").mkdir(parents=True)
        for name in ("__init__.py", "uartframe.py", "sds011.py"):
            shutil.copyfile(DRIVERS / name, tmp / "lib" / "drivers" / name)
        self.board = self.env.board
        self.board.seed = seed
        self.scene = dict(SCENE)
        self.scene.update(scene)
        self.chip = chip_sds011.SDS011(self.board, UART_ID, lambda b: self.scene, warm=warm,
                                       query_mode=query_mode)
        self.drv = self.env.module("drivers.sds011")
        self.machine = self.env.module("machine")
        self.time = self.env.module("time")

    def sensor(self):
        return self.drv.SDS011(UART_ID, TX, RX)

    def warm_sensor(self, query=True):
        s = self.sensor()
        if query:
            assert s.set_query_mode()
        self.time.sleep_ms(s.warm_left_ms())
        return s


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path / "flash")


_DRV = {}


def drv():
    if "m" not in _DRV:
        _DRV["m"] = Rig(Path(tempfile.mkdtemp()) / "flash").drv
    return _DRV["m"]


# ---- frames and commands, written here from the specification and protocol V1.3 ----------------
def data_frame(pm25_x10, pm10_x10, dev=0x60A1):
    d = [pm25_x10 & 0xFF, pm25_x10 >> 8, pm10_x10 & 0xFF, pm10_x10 >> 8, dev & 0xFF, dev >> 8]
    return bytes([0xAA, 0xC0] + d + [sum(d) & 0xFF, 0xAB])


def reply_frame(cmd, d2, d3, dev=0x60A1):
    d = [cmd, d2, d3, 0, dev & 0xFF, dev >> 8]
    return bytes([0xAA, 0xC5] + d + [sum(d) & 0xFF, 0xAB])


def valid_frames_in(stream: bytes):
    out = []
    for i in range(len(stream) - 9):
        f = stream[i:i + 10]
        if f[0] == 0xAA and f[1] == 0xC0 and f[9] == 0xAB and sum(f[2:8]) & 0xFF == f[8]:
            out.append((f[2] | f[3] << 8, f[4] | f[5] << 8))
    return out


def feed_in_pieces(parser, data: bytes, cuts):
    out = []
    pos = 0
    for c in sorted(set(cuts)) + [len(data)]:
        if c > pos:
            out += parser.feed(data[pos:c])
            pos = c
    return out


def is_subsequence(small, big):
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


values = st.tuples(st.integers(0, 65535), st.integers(0, 65535))


@pytest.mark.parametrize("args,expect", [
    # The examples of protocol V1.3, section 3 (device ID FF FF).
    ((2, 1, 1), "AA B4 02 01 01 00 00 00 00 00 00 00 00 00 00 FF FF 02 AB"),
    ((4, 0, 0), "AA B4 04 00 00 00 00 00 00 00 00 00 00 00 00 FF FF 02 AB"),
    ((6, 1, 0), "AA B4 06 01 00 00 00 00 00 00 00 00 00 00 00 FF FF 05 AB"),
    ((6, 1, 1), "AA B4 06 01 01 00 00 00 00 00 00 00 00 00 00 FF FF 06 AB"),
])
def test_commands_are_the_protocols(args, expect):
    buf = bytearray(19)
    drv().fill_command(buf, *args)
    assert bytes(buf) == bytes.fromhex(expect)


def test_frames_match_the_chips():
    assert chip_sds011.frame(0xC0, (0xD4, 0x04, 0x3A, 0x0A, 0xA1, 0x60)) == data_frame(0x4D4, 0xA3A)


# ---- the parser -------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=12))
def test_any_bytes_give_only_valid_frames(data, cuts):
    p = drv().Parser()
    out = feed_in_pieces(p, data, cuts)
    assert is_subsequence(out, valid_frames_in(data))


near_frames = st.lists(st.one_of(
    st.sampled_from([b"\xaa", b"\xc0", b"\xc5", b"\xab", b"\xaa\xc0", b"\xaa\xc5"]),
    values.map(lambda v: data_frame(*v)),
    st.tuples(values, st.integers(0, 9), st.integers(1, 255)).map(
        lambda t: bytes(b ^ t[2] if i == t[1] else b for i, b in enumerate(data_frame(*t[0])))),
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)).map(
        lambda t: reply_frame(*t)),
    st.binary(max_size=6)), max_size=40).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=near_frames, cuts=st.lists(st.integers(0, 400), max_size=20))
def test_frame_like_bytes_give_only_valid_frames(data, cuts):
    p = drv().Parser()
    out = feed_in_pieces(p, data, cuts)
    assert is_subsequence(out, valid_frames_in(data))
    assert all(len(r) == 2 and all(isinstance(v, int) and 0 <= v <= 65535 for v in r) for r in out)


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(values, min_size=1, max_size=10), cuts=st.lists(st.integers(0, 100)))
def test_frames_split_anywhere_are_reassembled(frames, cuts):
    data = b"".join(data_frame(*v) for v in frames)
    p = drv().Parser()
    assert feed_in_pieces(p, data, cuts) == list(frames)
    assert p.bad == 0 and p.skipped == 0 and p.frames == len(frames)


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(values, min_size=1, max_size=6),
       garbage=st.lists(st.binary(max_size=30).map(lambda g: g.replace(b"\xaa", b"\xa9")),
                        min_size=7, max_size=7),
       cuts=st.lists(st.integers(0, 300)))
def test_frames_among_garbage_are_all_found(frames, garbage, cuts):
    data = b"".join(garbage[i] + data_frame(*v) for i, v in enumerate(frames)) + garbage[-1]
    p = drv().Parser()
    assert feed_in_pieces(p, data, cuts) == list(frames)


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(values, min_size=1, max_size=6),
       garbage=st.lists(st.one_of(st.binary(max_size=30), near_frames), min_size=7, max_size=7),
       cuts=st.lists(st.integers(0, 2000)))
def test_frames_among_any_garbage_are_found_unless_it_forms_a_frame(frames, garbage, cuts):
    data = b"".join(garbage[i] + data_frame(*v) for i, v in enumerate(frames)) + garbage[-1]
    p = drv().Parser()
    out = feed_in_pieces(p, data, cuts)
    real = list(frames)
    assert is_subsequence(out, valid_frames_in(data))
    # A frame is lost only to a valid frame, or a valid reply, made by garbage overlapping it.
    assert is_subsequence(real, out) or any(r not in real for r in out) or p.replies > 0


def test_replies_are_noted_not_returned():
    p = drv().Parser()
    assert p.feed(reply_frame(6, 1, 0, dev=0x1234) + data_frame(5, 9)) == [(5, 9)]
    assert p.replies == 1 and bytes(p.reply) == bytes([6, 1, 0, 0, 0x34, 0x12])
    assert p.device_id == 0x60A1


def test_bad_checksum_or_tail_is_counted_and_dropped():
    p = drv().Parser()
    f = bytearray(data_frame(100, 200))
    f[8] ^= 4
    g = bytearray(data_frame(100, 200))
    g[9] = 0xAC
    assert p.feed(bytes(f) + bytes(g)) == [] and p.bad == 2
    assert p.feed(data_frame(100, 200)) == [(100, 200)]


# ---- the driver against the fake --------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(pm25=st.floats(0, 900), d10=st.floats(0, 99), query=st.booleans(),
       rh=st.one_of(st.none(), st.floats(0, 70)))
def test_reads_the_scene_within_quantisation(tmp_path_factory, pm25, d10, query, rh):
    r = Rig(tmp_path_factory.mktemp("s") / "flash", pm25=pm25, pm10=pm25 + d10, rh=rh)
    s = r.warm_sensor(query)
    got = s.query()
    assert got is not None
    assert abs(got[0] / 10 - pm25) <= 0.05 + 1e-9
    assert abs(got[1] / 10 - (pm25 + d10)) <= 0.05 + 1e-9
    assert got == r.chip.last_reading


def test_query_mode_is_acknowledged_and_kept(rig):
    s = rig.sensor()
    assert not rig.chip.query_mode
    assert s.set_query_mode()
    assert rig.chip.query_mode
    sent = rig.chip.frames_sent
    rig.time.sleep_ms(31000)
    assert s.query() is not None
    assert rig.chip.frames_sent == sent + 1 and rig.chip.requests == 1
    assert s.set_active_mode() and not rig.chip.query_mode


def test_active_mode_read_takes_a_fresh_frame(rig):
    s = rig.warm_sensor(query=False)
    rig.time.sleep_ms(3000)
    assert s._uart.any() > 0, "frames wait in the rx buffer"
    rig.scene["pm25"] = 50.0
    rig.scene["pm10"] = 70.0
    rig.time.sleep_ms(1500)
    assert s.query() == (500, 700)
    assert rig.chip.requests == 0


@pytest.mark.parametrize("rh,ratio", [(60.0, 1.0), (90.0, 1.85)])
def test_humid_air_makes_the_sensor_over_read(tmp_path, rh, ratio):
    r = Rig(tmp_path / "flash", pm25=30.0, pm10=30.0, rh=rh)
    got = r.warm_sensor().query()
    assert got[0] / 300.0 == pytest.approx(ratio, abs=0.01)


def test_noise_varies_around_the_truth(tmp_path):
    r = Rig(tmp_path / "flash", pm25=40.0, pm10=60.0, noise=0.1)
    s = r.warm_sensor()
    vals = [s.query()[0] for _ in range(40)]
    assert len(set(vals)) > 10
    assert 370 <= sum(vals) / len(vals) <= 430


# ---- warm-up, sleep ----------------------------------------------------------------------------
def test_no_reading_during_the_warm_up(rig):
    s = rig.sensor()
    assert s.set_query_mode()
    assert s.query() is None
    rig.time.sleep_ms(29000)
    assert s.query() is None and s.refused == 2
    assert rig.chip.requests == 0
    rig.time.sleep_ms(s.warm_left_ms())
    assert s.query() == (144, 238)
    assert rig.chip.warm_frames == 0


def test_the_fake_punishes_reading_during_the_warm_up(rig):
    s = rig.sensor()
    s.warm_up_ms = 0
    assert s.set_query_mode()
    rig.time.sleep_ms(2000)
    got = s.query()
    assert got is not None and got[0] < 144 // 2
    assert rig.chip.warm_frames == 1


def test_sleep_and_wake_are_acknowledged_and_stop_the_laser(rig):
    s = rig.warm_sensor()
    assert s.query() is not None
    assert s.sleep()
    assert not rig.chip.awake()
    assert s.query() is None and s.warm_left_ms() == 30000
    laser = rig.chip.laser_on_us
    q0 = rig.chip.charge_ma_us()
    rig.time.sleep_ms(60000)
    assert rig.chip.laser_on_us == laser
    assert rig.chip.charge_ma_us() - q0 == pytest.approx(60e6 * 4.0)
    assert s.wake()
    assert rig.chip.awake() and rig.chip.query_mode, "the reporting mode is kept"
    assert s.query() is None, "warming up again"
    rig.time.sleep_ms(30001)
    assert s.query() == (144, 238)
    assert rig.chip.laser_on_us >= laser + 30000000
    assert rig.chip.warm_frames == 0


def test_sleep_stops_the_active_stream(rig):
    s = rig.warm_sensor(query=False)
    assert s.sleep()
    n = rig.chip.frames_sent
    rig.time.sleep_ms(20000)
    assert s._uart.any() == 0
    assert rig.chip.frames_sent == n
    assert s.wake()
    rig.time.sleep_ms(5000)
    assert s._uart.any() >= 40 and rig.chip.frames_sent >= n + 4


def test_asleep_only_sleep_and_work_are_heard(rig):
    s = rig.warm_sensor(query=False)
    assert s.sleep()
    ignored = rig.chip.ignored
    assert not s.set_query_mode(timeout_ms=300)
    assert rig.chip.ignored >= ignored + 1 and not rig.chip.query_mode
    assert s.wake()


def test_supply_current_is_booked_on_the_board(rig):
    assert rig.chip in rig.board.peripherals
    rig.time.sleep_ms(1000)
    assert rig.chip.charge_ma_us() == pytest.approx(1e6 * 70.0)
    assert rig.chip.laser_on_us == 1000000


def test_commands_for_another_device_are_ignored(rig):
    u = rig.machine.UART(UART_ID, 9600, tx=TX, rx=RX)
    buf = bytearray(19)
    rig.drv.fill_command(buf, 2, 1, 1)
    other = (rig.chip.device_id + 1) & 0xFFFF
    buf[15], buf[16] = other & 0xFF, other >> 8
    buf[17] = sum(buf[2:17]) & 0xFF
    u.write(buf)
    assert not rig.chip.query_mode and rig.chip.commands == 0
    buf[15], buf[16] = rig.chip.device_id & 0xFF, rig.chip.device_id >> 8
    buf[17] = sum(buf[2:17]) & 0xFF
    u.write(buf)
    assert rig.chip.query_mode
    buf[17] ^= 1
    u.write(buf)
    assert rig.chip.bad_commands == 1


# ---- faults ------------------------------------------------------------------------------------
def test_dead_sensor_gives_none_within_the_timeout(tmp_path):
    for query in (True, False):
        r = Rig(tmp_path / ("f%d" % query), warm=True, query_mode=query, dead=True)
        s = r.sensor()
        s._query = query
        s.warm_up_ms = 0
        t0 = r.board.clock.now_us
        assert s.query(timeout_ms=1200) is None
        assert 1200000 <= r.board.clock.now_us - t0 <= 1200000 + 30000
        assert not s.set_query_mode(timeout_ms=200), "no acknowledgement either"
        r.scene["dead"] = False
        assert s.set_query_mode() and s.query() == (144, 238)


@pytest.mark.parametrize("corrupt,drop", [(0.02, 0.0), (0.0, 0.02), (0.02, 0.02)])
def test_line_faults_lose_only_the_frames_they_hit(tmp_path, corrupt, drop):
    r = Rig(tmp_path / "flash", corrupt=corrupt, drop=drop, noise=0.3, seed=5)
    r.chip.log = []
    u = r.machine.UART(UART_ID, 9600, tx=TX, rx=RX, timeout=100)
    p = r.drv.Parser()
    out = []
    buf = bytearray(32)
    for _ in range(4000):
        n = u.readinto(buf)
        if n:
            out += p.feed(buf, n)
    r.scene["dead"] = True  # no new frames: take the rest of the last one
    out += p.feed(u.read() or b"")
    log = r.chip.log
    clean = [(c[2] | c[3] << 8, c[4] | c[5] << 8) for c, sent in log if c == sent]
    damaged = sum(1 for c, sent in log if c != sent)
    assert len(log) > 300 and damaged >= 10
    assert is_subsequence(clean, out), "every undamaged frame found"
    # An 8-bit sum misses some double damage: such frames are valid on the wire, and rare.
    assert is_subsequence(out, valid_frames_in(b"".join(sent for _, sent in log)))
    assert len(out) - len(clean) <= 3


def test_reads_through_line_faults(tmp_path):
    r = Rig(tmp_path / "flash", corrupt=0.02, drop=0.02, seed=3)
    s = r.warm_sensor()
    got = [s.query() for _ in range(20)]
    assert r.chip.frames_damaged >= 3
    assert sum(1 for g in got if g == (144, 238)) >= 19


def test_same_seed_same_readings(tmp_path):
    def run(tmp, seed):
        r = Rig(tmp, seed=seed, noise=0.2, corrupt=0.01)
        s = r.warm_sensor()
        return [s.query() for _ in range(10)], r.chip.device_id

    a, b, c = run(tmp_path / "a", 7), run(tmp_path / "b", 7), run(tmp_path / "c", 8)
    assert a == b and a != c


# ---- the same readings in real MicroPython ----------------------------------------------------
_SCENARIO = r'''
scene = {"pm25": 17.3, "pm10": 29.9, "noise": 0.05, "corrupt": 0.01, "drop": 0.01}
chip = chip_sds011.SDS011(b, 1, lambda bb: scene)
s = sds011.SDS011(1, 27, 14)
acks = [s.set_query_mode()]
got = [s.query()]
time.sleep_ms(s.warm_left_ms())
scene["rh"] = 88.0
for i in range(4):
    got.append(s.query())
acks.append(s.sleep())
got.append(s.query())
time.sleep_ms(5000)
acks.append(s.wake())
time.sleep_ms(30001)
got.append(s.query())
acks.append(s.set_active_mode())
got.append(s.query())
scene["dead"] = True
got.append(s.query(1000))
res = (acks, got, chip.frames_sent, chip.frames_damaged, chip.laser_on_us,
       int(chip.charge_ma_us()), s.parser.bad, s.parser.replies, b.clock.now_us)
'''

_MP_SCRIPT = r'''
import sys
import gc
gc.disable()
sys.path[:] = ['/sim', '/fw']
import simboard
import fake_machine
import fake_time
b = simboard.Board("s-1", {"boot_ms": 0}, "/nonexistent", seed=6)
fake_machine._attach(b)
fake_time._attach(b)
sys.modules["machine"] = fake_machine
sys.modules["time"] = fake_time
import chip_sds011
time = fake_time
from drivers import sds011
''' + _SCENARIO + r'''
print(repr(res))
'''


def test_micropython_gives_the_same_readings(tmp_path):
    pytest.importorskip("wasmtime")
    from simulator import wasi
    from simulator.loader import NodeModules
    from simulator.mp import simboard

    out, _ = wasi.run_micropython(_MP_SCRIPT, {Path(MP_DIR): "/sim", DRIVERS.parent: "/fw"},
                                  heap_bytes=32 * 1024 * 1024)
    mp = eval(out.decode().strip().splitlines()[-1])

    (tmp_path / "lib").mkdir()
    shutil.copytree(DRIVERS, tmp_path / "lib" / "drivers")
    b = simboard.Board("s-1", {"boot_ms": 0}, str(tmp_path), seed=6)
    mods = NodeModules(b)
    ns = {"b": b, "chip_sds011": chip_sds011,
          "sds011": mods._import("drivers.sds011", fromlist=("SDS011",)),
          "time": mods._import("time", fromlist=("sleep_ms",))}
    exec(_SCENARIO, ns)
    cp = ns["res"]
    assert mp == cp
    acks, got = cp[0], cp[1]
    assert acks == [True, True, True, True], "every command acknowledged (resent if need be)"
    assert got[0] is None and got[5] is None and got[-1] is None, "warm-up, asleep, dead"
    assert all(g is not None for g in got[1:5]) and got[6] is not None
    assert max(g[0] for g in got[1:5]) > 173 * 1.4, "humid air over-read"
