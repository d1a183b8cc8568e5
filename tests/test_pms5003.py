"""The PMS5003 driver (firmware/lib/drivers/pms5003.py) and its fake (simulator/mp/
chip_pms5003.py): the frame parser finds every valid frame and nothing else in any byte stream,
whatever the pieces it is fed in; the driver reads the scene's values through the fake's real
byte stream in virtual time, refuses readings during the warm-up, puts the fan and laser to
sleep (by command and by the SET pin), gives None for a dead sensor, and loses only the frames
that line faults hit; the same run gives the same readings in real MicroPython."""

from __future__ import annotations

import importlib
import shutil
import struct
import sys
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
    sys.path.append(MP_DIR)  # chips are imported by bare name, as simulator/worlds.py does
chip_pms5003 = importlib.import_module("chip_pms5003")

UART_ID, TX, RX, SET = 2, 17, 16, 4
SCENE = {"pm1": 7.6, "pm25": 12.4, "pm10": 20.3}


class Rig:
    """One board with the fake sensor on UART 2 and the driver module as the node loads it."""

    def __init__(self, tmp: Path, seed=1, set_pin=None, warm=False, **scene):
        self.env = NodeEnv(tmp, install=False)
        (tmp / "lib" / "drivers").mkdir(parents=True)
        for name in ("__init__.py", "uartframe.py", "pms5003.py"):
            shutil.copyfile(DRIVERS / name, tmp / "lib" / "drivers" / name)
        self.board = self.env.board
        self.board.seed = seed
        self.scene = dict(SCENE)
        self.scene.update(scene)
        self.chip = chip_pms5003.PMS5003(self.board, UART_ID, lambda b: self.scene,
                                         set_pin=set_pin, warm=warm)
        self.drv = self.env.module("drivers.pms5003")
        self.machine = self.env.module("machine")
        self.time = self.env.module("time")

    def sensor(self, set_pin=None):
        return self.drv.PMS5003(UART_ID, TX, RX, set_pin=set_pin)

    def warm_sensor(self, passive=True, set_pin=None):
        s = self.sensor(set_pin)
        if passive:
            s.passive()
        self.time.sleep_ms(s.warm_left_ms())
        return s


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path / "flash")


_DRV = {}


def drv():
    """The driver module (for its parser), loaded once."""
    if "m" not in _DRV:
        import tempfile

        _DRV["m"] = Rig(Path(tempfile.mkdtemp()) / "flash").drv
    return _DRV["m"]


# ---- frames, written here from the data manual (Appendix I), independently of the code ------
def encode(words13):
    body = b"\x42\x4d\x00\x1c" + struct.pack(">13H", *words13)
    return body + struct.pack(">H", sum(body) & 0xFFFF)


def reading_of(words13):
    w = words13
    return (w[3], w[4], w[5], w[0], w[1], w[2], w[6], w[7], w[8], w[9], w[10], w[11])


def valid_frames_in(stream: bytes):
    """Every reading of a valid frame at any offset of the stream."""
    out = []
    for i in range(len(stream) - 31):
        f = stream[i:i + 32]
        check = struct.unpack(">H", f[30:])[0]
        if f[:4] == b"\x42\x4d\x00\x1c" and (sum(f[:30]) & 0xFFFF) == check:
            out.append(reading_of(struct.unpack(">13H", f[4:30])))
    return out


def feed_in_pieces(parser, data: bytes, cuts):
    out = []
    pos = 0
    for c in sorted(set(cuts)) + [len(data)]:
        if c > pos:
            out += parser.feed(data[pos:c])
            pos = c
    return out


words13 = st.lists(st.integers(0, 65535), min_size=13, max_size=13)


def is_subsequence(small, big):
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


# ---- commands ----------------------------------------------------------------------------------
def test_commands_carry_their_check_code():
    d = drv()
    cmds = {d.CMD_READ: (0xE2, 0), d.CMD_PASSIVE: (0xE1, 0), d.CMD_ACTIVE: (0xE1, 1),
            d.CMD_SLEEP: (0xE4, 0), d.CMD_WAKE: (0xE4, 1)}
    for c, (cmd, datal) in cmds.items():
        assert len(c) == 7 and c[:2] == b"\x42\x4d" and c[2] == cmd and c[3] == 0 and c[4] == datal
        assert struct.unpack(">H", c[5:])[0] == sum(c[:5])


def test_encoded_frame_matches_the_chips_encoder():
    w = list(range(100, 113))
    assert chip_pms5003.encode(w) == encode(w)


# ---- the parser -------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=12))
def test_any_bytes_give_only_valid_frames(data, cuts):
    p = drv().Parser()
    out = feed_in_pieces(p, data, cuts)
    assert is_subsequence(out, valid_frames_in(data))


# Streams that look like frames: header bytes, lengths, real frames with a byte changed.
near_frames = st.lists(st.one_of(
    st.sampled_from([b"\x42", b"\x4d", b"\x00", b"\x1c", b"\x42\x4d", b"\x42\x4d\x00\x1c",
                     b"\x42\x4d\x00\x04\xe1\x00\x01\x74"]),
    words13.map(encode),
    st.tuples(words13, st.integers(0, 31), st.integers(1, 255)).map(
        lambda t: bytes(b ^ t[2] if i == t[1] else b for i, b in enumerate(encode(t[0])))),
    st.binary(max_size=8)), max_size=30).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=near_frames, cuts=st.lists(st.integers(0, 600), max_size=20))
def test_frame_like_bytes_give_only_valid_frames(data, cuts):
    p = drv().Parser()
    out = feed_in_pieces(p, data, cuts)
    everything = valid_frames_in(data)
    assert is_subsequence(out, everything)
    for r in out:
        assert all(isinstance(v, int) and 0 <= v <= 65535 for v in r) and len(r) == 12


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(words13, min_size=1, max_size=8), cuts=st.lists(st.integers(0, 256)))
def test_frames_split_anywhere_are_reassembled(frames, cuts):
    data = b"".join(encode(w) for w in frames)
    p = drv().Parser()
    assert feed_in_pieces(p, data, cuts) == [reading_of(w) for w in frames]
    assert p.bad == 0 and p.skipped == 0 and p.frames == len(frames)


def test_one_byte_at_a_time():
    w = [3, 5, 8, 3, 5, 8, 900, 300, 80, 9, 2, 1, 0]
    data = b"junk" + encode(w) + b"\x42" + encode(w)
    p = drv().Parser()
    out = []
    for b in data:
        out += p.feed(bytes([b]))
    assert out == [reading_of(w)] * 2


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(words13, min_size=1, max_size=6),
       garbage=st.lists(st.binary(max_size=40).map(lambda g: g.replace(b"\x42", b"\x41")),
                        min_size=7, max_size=7),
       cuts=st.lists(st.integers(0, 600)))
def test_frames_among_garbage_are_all_found(frames, garbage, cuts):
    # Garbage without the first header byte cannot start a frame: every frame is found.
    data = b"".join(garbage[i] + encode(w) for i, w in enumerate(frames)) + garbage[-1]
    p = drv().Parser()
    assert feed_in_pieces(p, data, cuts) == [reading_of(w) for w in frames]


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(words13, min_size=1, max_size=6),
       garbage=st.lists(st.one_of(st.binary(max_size=40), near_frames), min_size=7, max_size=7),
       cuts=st.lists(st.integers(0, 2000)))
def test_frames_among_any_garbage_are_found_unless_it_forms_a_frame(frames, garbage, cuts):
    data = b"".join(garbage[i] + encode(w) for i, w in enumerate(frames)) + garbage[-1]
    p = drv().Parser()
    out = feed_in_pieces(p, data, cuts)
    real = [reading_of(w) for w in frames]
    assert is_subsequence(out, valid_frames_in(data))
    # A real frame can only be lost to a valid frame the garbage made overlapping it.
    assert is_subsequence(real, out) or any(r not in real for r in out)


def test_a_wrong_check_code_is_counted_and_dropped():
    w = [1] * 13
    bad = bytearray(encode(w))
    bad[31] ^= 1
    p = drv().Parser()
    assert p.feed(bytes(bad)) == []
    assert p.bad == 1
    assert p.feed(encode(w)) == [reading_of(w)]


def test_command_acknowledgements_are_skipped():
    w = [2] * 13
    p = drv().Parser()
    out = p.feed(chip_pms5003.ack(0xE1, 0) + encode(w) + chip_pms5003.ack(0xE4, 0))
    assert out == [reading_of(w)] and p.bad == 0


def test_feed_takes_a_count_and_nothing():
    w = [4] * 13
    p = drv().Parser()
    buf = bytearray(encode(w) + b"\x42\x4d")
    assert p.feed(buf, 32) == [reading_of(w)]
    assert p.feed(None) == [] and p.feed(b"") == []


# ---- the driver against the fake --------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(pm1=st.floats(0, 300), d25=st.floats(0, 200), d10=st.floats(0, 400),
       passive=st.booleans(), rh=st.one_of(st.none(), st.floats(0, 70)))
def test_reads_the_scene_within_quantisation(tmp_path_factory, pm1, d25, d10, passive, rh):
    r = Rig(tmp_path_factory.mktemp("p") / "flash", pm1=pm1, pm25=pm1 + d25,
            pm10=pm1 + d25 + d10, rh=rh)
    s = r.warm_sensor(passive)
    got = s.read()
    assert got is not None
    d = r.drv
    for i, true in ((d.PM1, pm1), (d.PM25, pm1 + d25), (d.PM10, pm1 + d25 + d10)):
        assert abs(got[i] - true) <= 0.5 + 1e-9, (i, got, true)
    # CF=1 equals the atmospheric value up to 30 ug/m3 and is higher above.
    for atm, cf in ((got[d.PM1], got[d.PM1_CF1]), (got[d.PM25], got[d.PM25_CF1]),
                    (got[d.PM10], got[d.PM10_CF1])):
        assert cf == atm if atm <= 29 else cf >= atm
    counts = got[d.N0_3:]
    assert list(counts) == sorted(counts, reverse=True), "cumulative counts"
    assert got == r.chip.last_reading


def test_passive_mode_answers_requests_only(rig):
    s = rig.warm_sensor(passive=True)
    sent = rig.chip.frames_sent
    rig.time.sleep_ms(20000)
    assert rig.chip.frames_sent == sent, "no frames by itself in passive mode"
    assert s.read() is not None
    assert rig.chip.requests == 1 and rig.chip.frames_sent == sent + 1


def test_active_mode_streams_and_read_takes_a_fresh_frame(rig):
    s = rig.warm_sensor(passive=False)
    rig.time.sleep_ms(5000)
    assert s._uart.any() > 0, "frames waiting in the rx buffer"
    assert rig.chip.frames_sent >= 35 // 2.3 - 1, "streamed during the warm-up and after"
    rig.scene["pm25"] = 40.0
    rig.scene["pm10"] = 55.0
    got = s.read()
    assert got[rig.drv.PM25] == 40 and got[rig.drv.PM10] == 55, "not an old frame from the buffer"
    assert rig.chip.requests == 0


def test_noise_varies_around_the_truth(tmp_path):
    r = Rig(tmp_path / "flash", pm1=20.0, pm25=50.0, pm10=80.0, noise=0.1)
    s = r.warm_sensor()
    vals = [s.read()[r.drv.PM25] for _ in range(40)]
    assert len(set(vals)) > 5
    assert 45 <= sum(vals) / len(vals) <= 55


@pytest.mark.parametrize("rh,low,high", [(50.0, 1.0, 1.0), (70.0, 1.0, 1.0), (85.0, 1.3, 1.5),
                                          (95.0, 2.8, 3.4)])
def test_humid_air_makes_the_sensor_over_read(tmp_path, rh, low, high):
    r = Rig(tmp_path / "flash", pm1=20.0, pm25=40.0, pm10=40.0, rh=rh)
    got = r.warm_sensor().read()
    ratio = got[r.drv.PM25] / 40.0
    assert low - 0.02 <= ratio <= high + 0.02, ratio
    assert chip_pms5003.growth(rh, 0.3) == pytest.approx(ratio, abs=0.02)


# ---- warm-up -----------------------------------------------------------------------------------
def test_no_reading_during_the_warm_up(rig):
    s = rig.sensor()
    s.passive()
    assert s.read() is None
    rig.time.sleep_ms(29000)
    assert s.read() is None and s.refused == 2
    assert rig.chip.requests == 0, "the driver did not even ask"
    rig.time.sleep_ms(s.warm_left_ms())
    assert abs(s.read()[rig.drv.PM25] - 12.4) <= 0.5
    assert rig.chip.warm_frames == 0, "no frame the driver saw was measured during the warm-up"


def test_warm_up_again_after_every_wake(rig):
    s = rig.warm_sensor()
    assert s.read() is not None
    s.sleep()
    assert s.read() is None and s.warm_left_ms() == 30000
    rig.time.sleep_ms(60000)
    s.wake()
    rig.time.sleep_ms(20000)
    assert s.read() is None
    rig.time.sleep_ms(10001)
    assert s.read() is not None
    assert rig.chip.warm_frames == 0


def test_the_fake_punishes_reading_during_the_warm_up(rig):
    # Proof that the warm-up tests can fail: a driver told to skip the wait reads low values.
    s = rig.sensor()
    s.warm_up_ms = 0
    s.passive()
    rig.time.sleep_ms(3000)
    got = s.read()
    assert got is not None and got[rig.drv.PM25] < 12.4 * 0.5
    assert rig.chip.warm_frames == 1


def test_warm_up_across_the_ticks_wrap(tmp_path):
    r = Rig(tmp_path / "flash")
    r.board.ticks_offset_ms = (1 << 30) - 10000  # ticks_ms wraps 10 s into the warm-up
    s = r.sensor()
    s.passive()
    r.time.sleep_ms(15000)
    assert s.read() is None
    r.time.sleep_ms(15001)
    assert s.read() is not None and r.chip.warm_frames == 0


def test_a_warm_chip_reads_at_once(tmp_path):
    r = Rig(tmp_path / "flash", warm=True)
    s = r.sensor()
    s.warm_up_ms = 0  # the node knows the sensor has been running
    s.passive()
    assert s.read()[r.drv.PM25] == 12


# ---- sleep, laser, supply ----------------------------------------------------------------------
def test_sleep_stops_frames_and_the_laser(rig):
    s = rig.warm_sensor(passive=False)
    assert s.read() is not None
    s.sleep()
    laser = rig.chip.laser_on_us
    frames = rig.chip.frames_sent
    q0 = rig.chip.charge_ma_us()
    rig.time.sleep_ms(60000)
    u = rig.machine.UART(UART_ID, 9600, tx=TX, rx=RX)
    data = u.read() or b""
    assert data == chip_pms5003.ack(0xE4, 0), "only the sleep acknowledgement came"
    assert rig.chip.frames_sent == frames
    assert rig.chip.laser_on_us == laser
    assert rig.chip.charge_ma_us() - q0 == pytest.approx(60e6 * 0.2)
    s.wake()
    rig.time.sleep_ms(10000)
    assert len(u.read()) >= 3 * 32
    assert rig.chip.frames_sent > frames
    assert rig.chip.laser_on_us == pytest.approx(laser + 10e6, abs=20000)


def test_set_pin_sleeps_and_wakes_the_sensor(tmp_path):
    r = Rig(tmp_path / "flash", set_pin=SET)
    s = r.warm_sensor(set_pin=SET)
    assert r.chip.awake()
    pin = r.machine.Pin(SET, r.machine.Pin.OUT)
    pin.value(0)
    assert not r.chip.awake() and r.chip.sleeps == 1
    pin.value(1)
    assert r.chip.awake()
    s.sleep()  # command and SET low
    assert not r.chip.awake() and r.board.pin_level(SET) == 0
    s.wake()
    assert r.chip.awake() and r.board.pin_level(SET) == 1


def test_set_pin_floating_means_working(tmp_path):
    r = Rig(tmp_path / "flash", set_pin=SET)
    assert r.chip.awake(), "pulled up inside the sensor"
    r.machine.Pin(SET, r.machine.Pin.OUT, value=0)
    assert not r.chip.awake()
    r.machine.Pin(SET, r.machine.Pin.IN)  # released: the pull-up wins
    assert r.chip.awake()


def test_a_released_set_line_does_not_wake_a_commanded_sleep(tmp_path):
    # In the ESP32's deep sleep the GPIO lets go and the pull-up raises SET: the sleep command
    # the driver also sent keeps the sensor asleep.
    r = Rig(tmp_path / "flash", set_pin=SET)
    s = r.warm_sensor(set_pin=SET)
    s.sleep()
    r.machine.Pin(SET, r.machine.Pin.IN)
    assert r.board.pin_level(SET) == 1 and not r.chip.awake()
    s.wake()
    assert r.chip.awake()


def test_sleep_by_set_pin_alone_stops_frames(tmp_path):
    r = Rig(tmp_path / "flash", set_pin=SET)
    u = r.machine.UART(UART_ID, 9600, tx=TX, rx=RX)
    r.time.sleep_ms(10000)
    assert len(u.read()) >= 3 * 32
    n = r.chip.frames_sent
    r.machine.Pin(SET, r.machine.Pin.OUT, value=0)
    laser = r.chip.laser_on_us
    r.time.sleep_ms(30000)
    assert u.read() is None
    assert r.chip.frames_sent == n and r.chip.laser_on_us == laser


def test_supply_current_is_booked_on_the_board(rig):
    assert rig.chip in rig.board.peripherals
    rig.time.sleep_ms(1000)
    assert rig.chip.charge_ma_us() == pytest.approx(1e6 * 100.0)
    assert rig.chip.laser_on_us == 1000000


def test_commands_are_not_heard_in_standby(rig):
    s = rig.warm_sensor(passive=False)
    s.sleep()
    ignored = rig.chip.ignored
    s.passive()
    assert rig.chip.ignored == ignored + 1 and not rig.chip.passive
    s.wake()
    assert rig.chip.passive, "wake() sets the mode again"


# ---- faults ------------------------------------------------------------------------------------
def test_dead_sensor_gives_none_within_the_timeout(tmp_path):
    for passive in (True, False):
        r = Rig(tmp_path / ("f%d" % passive), dead=True)
        s = r.warm_sensor(passive)
        t0 = r.board.clock.now_us
        assert s.read(timeout_ms=1500) is None
        waited = r.board.clock.now_us - t0
        assert 1500000 <= waited <= 1500000 + 60000
        assert s.timeouts == 1
        r.scene["dead"] = False
        assert s.read() is not None, "recovers"


@pytest.mark.parametrize("corrupt,drop", [(0.01, 0.0), (0.0, 0.01), (0.01, 0.01)])
def test_line_faults_lose_only_the_frames_they_hit(tmp_path, corrupt, drop):
    r = Rig(tmp_path / "flash", corrupt=corrupt, drop=drop, seed=5)
    r.chip.log = []
    u = r.machine.UART(UART_ID, 9600, tx=TX, rx=RX, timeout=100)
    p = r.drv.Parser()
    out = []
    buf = bytearray(64)
    for _ in range(3000):  # about 300 s of stream, read as it comes
        n = u.readinto(buf)
        if n:
            out += p.feed(buf, n)
    r.scene["dead"] = True  # no new frames: take the rest of the last one
    out += p.feed(u.read() or b"")
    log = r.chip.log
    clean = [reading_of(struct.unpack(">13H", c[4:30])) for c, sent in log if c == sent]
    damaged = sum(1 for c, sent in log if c != sent)
    assert damaged == r.chip.frames_damaged and damaged >= 5, "the faults hit some frames"
    assert len(log) > 100
    assert is_subsequence(clean, out), "every undamaged frame found"
    # A 16-bit sum cannot catch every damage (two flips that cancel, a flipped check code
    # matching a flipped byte): such frames are valid on the wire and rare.
    assert is_subsequence(out, valid_frames_in(b"".join(sent for _, sent in log)))
    assert len(out) - len(clean) <= 2
    assert p.bad + p.skipped > 0


def test_reads_through_line_faults(tmp_path):
    # 1 % of the bytes flipped and 1 % lost: half the frames are hit; read() asks again.
    r = Rig(tmp_path / "flash", corrupt=0.01, drop=0.01, seed=3)
    s = r.warm_sensor()
    got = [s.read() for _ in range(20)]
    assert r.chip.frames_damaged >= 5
    assert sum(1 for g in got if g is not None and g[r.drv.PM25] == 12) >= 18


def test_a_long_unread_stream_does_not_pile_up(rig):
    rig.time.sleep_ms(3600 * 1000)
    s = rig.sensor()
    s.warm_up_ms = 0
    assert s.read()[rig.drv.PM25] == 12
    assert rig.chip.unheard > 1000, "an hour of frames nobody could hold was never made"
    assert rig.chip.frames_sent <= chip_pms5003.BACKLOG + 3
    assert len(rig.chip._q) <= 2


# ---- reproducible randomness -------------------------------------------------------------------
def _noisy(tmp, seed):
    r = Rig(tmp, seed=seed, noise=0.2, corrupt=0.01, drop=0.01)
    s = r.warm_sensor()
    return [s.read() for _ in range(10)]


def test_same_seed_same_readings(tmp_path):
    a = _noisy(tmp_path / "a", 7)
    b = _noisy(tmp_path / "b", 7)
    c = _noisy(tmp_path / "c", 8)
    assert a == b and a != c


# ---- the same readings in real MicroPython ----------------------------------------------------
_SCENARIO = r'''
scene = {"pm1": 9.2, "pm25": 21.7, "pm10": 33.1, "noise": 0.05, "corrupt": 0.01, "drop": 0.01}
chip = chip_pms5003.PMS5003(b, 2, lambda bb: scene, set_pin=4)
s = pms5003.PMS5003(2, 17, 16, set_pin=4)
got = [s.read()]
time.sleep_ms(s.warm_left_ms())
got.append(s.read())
s.passive()
scene["rh"] = 92.0
for i in range(4):
    got.append(s.read())
s.sleep()
time.sleep_ms(5000)
got.append(s.read())
s.wake()
time.sleep_ms(30001)
got.append(s.read())
scene["dead"] = True
got.append(s.read(1000))
res = (got, chip.frames_sent, chip.frames_damaged, chip.laser_on_us, int(chip.charge_ma_us()),
       s.parser.bad, s.parser.skipped, b.clock.now_us)
'''

_MP_SCRIPT = r'''
import sys
import gc
gc.disable()
sys.path[:] = ['/sim', '/fw']
import simboard
import fake_machine
import fake_time
b = simboard.Board("p-1", {"boot_ms": 0}, "/nonexistent", seed=4)
fake_machine._attach(b)
fake_time._attach(b)
sys.modules["machine"] = fake_machine
sys.modules["time"] = fake_time
import chip_pms5003
time = fake_time
from drivers import pms5003
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
    b = simboard.Board("p-1", {"boot_ms": 0}, str(tmp_path), seed=4)
    mods = NodeModules(b)
    ns = {"b": b, "chip_pms5003": chip_pms5003,
          "pms5003": mods._import("drivers.pms5003", fromlist=("PMS5003",)),
          "time": mods._import("time", fromlist=("sleep_ms",))}
    exec(_SCENARIO, ns)
    cp = ns["res"]
    assert mp == cp
    got = cp[0]
    assert got[0] is None and got[-3] is None and got[-1] is None, "warm-up, asleep, dead"
    assert got[1] is not None and got[-2] is not None
    assert max(g[1] for g in got[2:6] if g) > 21.7 * 1.5, "humid air over-read"
