"""The fake `time` module: ticks wrap like the ESP32 port's, the calendar matches CPython's."""

import calendar

from hypothesis import given
from hypothesis import strategies as st

from simulator.mp import simboard
from tests.nodeenv import NodeEnv

PERIOD = 1 << 30


def make_time(tmp_path):
    env = NodeEnv(tmp_path / "flash", install=False)
    return env, env.module("time")


def test_ticks_wrap_at_2_pow_30(tmp_path):
    env, time = make_time(tmp_path)
    env.board.ticks_offset_ms = PERIOD - 5
    t0 = time.ticks_ms()
    time.sleep_ms(10)
    t1 = time.ticks_ms()
    assert t0 == PERIOD - 5 and t1 == 5, "the counter wrapped at 2**30"
    assert time.ticks_diff(t1, t0) == 10


@given(st.integers(0, PERIOD - 1), st.integers(-(PERIOD // 2) + 1, PERIOD // 2 - 1))
def test_ticks_add_then_diff_round_trips(tmp_path_factory, t, delta):
    env, time = make_time(tmp_path_factory.mktemp("t"))
    later = time.ticks_add(t, delta)
    assert 0 <= later < PERIOD
    assert time.ticks_diff(later, t) == delta


@given(st.integers(0, 100 * 365 * 86400))
def test_gmtime_matches_cpython_calendar(tmp_path_factory, secs):
    env, time = make_time(tmp_path_factory.mktemp("t"))
    import datetime as dt

    d = dt.datetime(2000, 1, 1) + dt.timedelta(seconds=secs)
    tt = time.gmtime(secs)
    assert tt[:6] == (d.year, d.month, d.day, d.hour, d.minute, d.second)
    assert tt[6] == d.weekday()
    assert tt[7] == d.timetuple().tm_yday
    assert time.mktime(tt) == secs


def test_time_counts_from_2000_after_power_on_and_follows_sleep(tmp_path):
    env, time = make_time(tmp_path)
    assert time.gmtime(0)[0] == 2000  # the ESP32 port's epoch
    assert time.time() == 0
    time.sleep(90)
    assert time.time() == 90
    assert env.board.energy_us[simboard.ACTIVE] == 90_000_000


def test_ntptime_sets_the_rtc_to_the_true_time(tmp_path):
    env, time = make_time(tmp_path)
    ntptime = env.module("ntptime")
    network = env.module("network")
    w = network.WLAN(network.STA_IF)
    w.active(True)
    w.connect("townsense", "townsense-demo")
    while not w.isconnected():
        time.sleep_ms(100)
    ntptime.settime()
    unix = time.time() + simboard.SECONDS_1970_TO_2000
    assert abs(unix - (1_780_000_000 + env.board.clock.now_us // 1_000_000)) <= 1
    assert calendar.timegm(time.gmtime()[:6] + (0, 0, 0)) == unix
    assert time.gmtime()[0] == 2026


def test_ntptime_without_wifi_fails_like_a_socket_timeout(tmp_path):
    env, time = make_time(tmp_path)
    ntptime = env.module("ntptime")
    try:
        ntptime.settime()
    except OSError:
        pass
    else:
        raise AssertionError("settime without a network must raise OSError")
    assert time.time() < 10
