"""Water totals (firmware/lib/nodes/water_total.py): a ring of CRC'd records on flash, the
running totals in RTC memory. A power cut at any byte of any flash write leaves a total that
was really counted and at most `every_pulses` pulses short; saves spread evenly over the
slots; deep sleep keeps the exact totals."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.mp import simboard
from tests.nodeenv import NodeEnv

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "firmware" / "lib"
REC = 16


def new_env(tmp: Path):
    env = NodeEnv(tmp, install=False)
    for pkg, names in (("telemetry", ("__init__.py", "atomic.py")),
                       ("nodes", ("__init__.py", "water_total.py"))):
        (tmp / "lib" / pkg).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(LIB / pkg / name, tmp / "lib" / pkg / name)
    return env, env.module("nodes.water_total")


def records(env, path="water.tot"):
    """(slot, seq, fwd, rev) of the valid records in the ring file, by the module's rule."""
    mod = env.module("nodes.water_total")
    data = (env.flash_dir / path).read_bytes()
    out = []
    for i in range(len(data) // REC):
        r = mod._unpack(data[i * REC:(i + 1) * REC])
        if r is not None:
            out.append((i,) + tuple(r))
    return out


def test_fresh_load_creates_the_preallocated_ring(tmp_path):
    env, mod = new_env(tmp_path / "flash")
    t = mod.Totals(slots=8)
    assert t.load() == {"fwd": 0, "rev": 0, "saves": 0}
    assert (env.flash_dir / "water.tot").stat().st_size == 8 * REC
    assert records(env) == []


def test_saved_totals_come_back_after_a_power_cut(tmp_path):
    _env, mod = new_env(tmp_path / "flash")
    t = mod.Totals(every_pulses=3)
    t.load()
    t.add(2, 0)
    assert not t.maybe_save(100)
    t.add(0, 1)
    assert t.maybe_save(101), "three pulses unsaved: due"
    t.add(1, 0)  # not saved: lost with the power
    fresh = mod.Totals(every_pulses=3)  # the RTC state is gone
    assert fresh.load() == {"fwd": 2, "rev": 1, "saves": 1}
    assert fresh.volume_ml(250) == (500, 250)


def test_deep_sleep_keeps_the_exact_totals_in_rtc_state(tmp_path):
    env, mod = new_env(tmp_path / "flash")
    rtc = {}
    t = mod.Totals(state=rtc, every_pulses=50)
    t.load()
    t.add(7, 2)
    t.maybe_save(10)
    assert records(env) == [], "nothing written yet"
    again = mod.Totals(state=rtc, every_pulses=50)  # after the wake: RTC memory kept
    assert again.load() == {"fwd": 7, "rev": 2, "saves": 0}
    assert again.pending() == 9
    assert mod.Totals(every_pulses=50).load()["fwd"] == 0, "a power cut would lose them"


def test_a_stale_rtc_copy_never_lowers_the_flash_total(tmp_path):
    _env, mod = new_env(tmp_path / "flash")
    t = mod.Totals()
    t.load()
    t.add(40, 3)
    t.save()
    got = mod.Totals(state={"wt": [12, 1, None]}).load()
    assert (got["fwd"], got["rev"]) == (40, 3)
    got = mod.Totals(state={"wt": [41, 2, None]}).load()
    assert (got["fwd"], got["rev"]) == (41, 3), "each count from the copy that has more"


def test_the_oldest_unsaved_change_is_saved_after_every_s(tmp_path):
    _env, mod = new_env(tmp_path / "flash")
    t = mod.Totals(every_pulses=1000, every_s=60)
    t.load()
    assert not t.maybe_save(0), "nothing to save"
    t.add(1, 0)
    assert not t.maybe_save(1000)
    t.add(1, 0)
    assert not t.maybe_save(1059)
    assert t.maybe_save(1060)
    assert not t.maybe_save(5000), "no change since"
    t.add(0, 1)
    t.maybe_save(6000)
    assert t.maybe_save(10), "the clock went back (set by NTP): save rather than wait"


def test_room_says_when_the_next_save_is_due(tmp_path):
    _env, mod = new_env(tmp_path / "flash")
    t = mod.Totals(every_pulses=10)
    t.load()
    assert t.room() == 10
    t.add(6, 1)
    assert t.room() == 3
    t.add(3, 0)
    assert t.room() == 1 and t.maybe_save(0) and t.room() == 10


def test_saves_go_round_the_slots_evenly(tmp_path):
    env, mod = new_env(tmp_path / "flash")
    slots = 6
    t = mod.Totals(slots=slots, every_pulses=1)
    t.load()
    writes = [0] * slots
    for k in range(1, 5 * slots + 4):
        before = {r[0]: r[1] for r in records(env)}
        t.add(1, 0)
        assert t.maybe_save(k)
        after = {r[0]: r[1] for r in records(env)}
        changed = [s for s in after if before.get(s) != after[s]]
        assert changed == [k % slots], "one write, in the slot after the last"
        writes[k % slots] += 1
    assert max(writes) - min(writes) <= 1
    assert t.writes_per_slot() == max(writes) == 6
    assert mod.Totals(slots=slots).load() == {"fwd": 5 * slots + 3, "rev": 0, "saves": 5 * slots + 3}


@pytest.mark.parametrize("cut", range(REC + 1))
def test_a_torn_save_leaves_the_previous_record(tmp_path, cut):
    env, mod = new_env(tmp_path / "flash")
    t = mod.Totals(slots=4, every_pulses=1)
    t.load()
    for k in range(9):  # the ring is full: the save below overwrites the oldest record
        t.add(1, 1)
        t.maybe_save(k)
    env.board.flash_write_hook = lambda b, path, n: min(cut, n)
    t.add(1, 0)
    with pytest.raises(simboard.PowerCut):
        t.maybe_save(99)
    env.board.flash_write_hook = None
    got = mod.Totals(slots=4).load()
    if cut < REC:
        assert got == {"fwd": 9, "rev": 9, "saves": 9}
    else:
        assert got == {"fwd": 10, "rev": 9, "saves": 10}


def test_a_corrupt_record_is_skipped(tmp_path):
    env, mod = new_env(tmp_path / "flash")
    t = mod.Totals(slots=4, every_pulses=1)
    t.load()
    for k in range(3):
        t.add(5, 0)
        t.maybe_save(k)
    path = env.flash_dir / "water.tot"
    data = bytearray(path.read_bytes())
    data[3 * REC + 5] ^= 0x40  # a bit of the newest record (seq 3, slot 3)
    path.write_bytes(bytes(data))
    assert mod.Totals(slots=4).load() == {"fwd": 10, "rev": 0, "saves": 2}


def test_a_ring_of_another_size_is_rebuilt_keeping_the_newest(tmp_path):
    env, mod = new_env(tmp_path / "flash")
    t = mod.Totals(slots=16, every_pulses=1)
    t.load()
    for k in range(20):
        t.add(1, 0)
        t.maybe_save(k)
    small = mod.Totals(slots=4)
    assert small.load() == {"fwd": 20, "rev": 0, "saves": 20}
    assert (env.flash_dir / "water.tot").stat().st_size == 4 * REC
    assert records(env) == [(0, 20, 20, 0)]
    small.add(2, 0)
    small.save()
    assert mod.Totals(slots=4).load()["fwd"] == 22


def test_a_torn_file_creation_is_rebuilt(tmp_path):
    env, mod = new_env(tmp_path / "flash")
    (env.flash_dir / "water.tot").write_bytes(b"\x00" * 7)
    t = mod.Totals(slots=4)
    assert t.load()["fwd"] == 0
    assert (env.flash_dir / "water.tot").stat().st_size == 4 * REC


def test_records_are_fixed_little_endian_with_a_crc(tmp_path):
    _env, mod = new_env(tmp_path / "flash")
    rec = mod._pack(7, 1234, 56)
    assert len(rec) == REC and struct.unpack("<III", rec[:12]) == (7, 1234, 56)
    assert mod._unpack(rec) == (7, 1234, 56)
    assert mod._unpack(bytes(REC)) is None, "an erased (zero) slot is not a record"
    assert mod._unpack(rec[:12] + bytes(4)) is None


ops = st.lists(st.one_of(
    st.tuples(st.just("fwd"), st.integers(1, 40)),
    st.tuples(st.just("rev"), st.integers(1, 5)),
    st.tuples(st.just("wait"), st.integers(1, 900)),
    st.tuples(st.just("sleep"), st.just(0)),  # deep sleep: RAM gone, RTC state kept
), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(1, 16), st.integers(0, REC), st.integers(2, 9), st.integers(1, 12))
def test_power_cut_at_any_write_loses_at_most_every_pulses(tmp_path_factory, program, cut_at,
                                                           cut_byte, slots, every):
    """The node's loop: pulses come (never more than room() at a time: the pulse input returns
    then), are added, maybe saved. Cut the power at the cut_at-th flash write, cut_byte bytes
    of it landing. The recovered totals were counted (never above the truth, per direction)
    and lose at most every_pulses pulses in all."""
    env, mod = new_env(tmp_path_factory.mktemp("w") / "flash")
    writes = [0]

    def hook(board, path, n):
        writes[0] += 1
        return min(cut_byte, n) if writes[0] == cut_at else None

    env.board.flash_write_hook = hook
    rtc = {}
    true_f = true_r = 0
    now = 0
    cut = False
    try:
        t = mod.Totals(slots=slots, every_pulses=every, every_s=600, state=rtc)
        t.load()
        for op, arg in program:
            if op == "wait":
                now += arg
            elif op == "sleep":
                t = mod.Totals(slots=slots, every_pulses=every, every_s=600, state=rtc)
                assert t.load()["fwd"] == true_f, "deep sleep loses nothing"
            else:
                n = min(arg, t.room())
                if op == "fwd":
                    true_f += n
                    t.add(n, 0)
                else:
                    true_r += n
                    t.add(0, n)
            t.maybe_save(now)
            assert t.pending() < every
    except simboard.PowerCut:
        cut = True
    env.board.flash_write_hook = None
    got = mod.Totals(slots=slots, every_pulses=every).load()  # RTC memory lost with the power
    assert got["fwd"] <= true_f and got["rev"] <= true_r, "never a pulse that did not happen"
    lost = (true_f - got["fwd"]) + (true_r - got["rev"])
    assert lost <= every, "lost %d pulses, more than every_pulses=%d" % (lost, every)
    if not cut:
        assert lost < every



def run_meter(mod, program, slots, every, truth):
    """The node's loop over program [(fwd, rev, seconds)], booking the true totals in `truth`
    as it goes (in place, so they are known when a PowerCut unwinds out of here)."""
    t = mod.Totals(slots=slots, every_pulses=every, every_s=600)
    t.load()
    now = 0
    for f, r, secs in program:
        now += secs
        f = min(f, t.room())
        r = min(r, t.room() - f)
        truth[0] += f
        truth[1] += r
        t.add(f, r)
        t.maybe_save(now)


SWEEP = [(3, 0, 10), (1, 1, 700), (4, 0, 5), (2, 0, 1), (0, 1, 900), (4, 0, 3), (4, 0, 3),
         (1, 0, 2000), (3, 1, 1), (4, 0, 1), (2, 2, 1), (4, 0, 1)] * 2


@pytest.mark.parametrize("cut_byte", [0, 1, 8, 12, 15, 16])
def test_power_cut_at_every_write_of_a_day(tmp_path, cut_byte):
    """Each flash write of a fixed day of pulses cut in turn (cut_byte bytes of it landing):
    the recovered totals are never above the truth and at most every_pulses below it."""
    slots, every = 3, 4
    env, mod = new_env(tmp_path / "dry")
    writes = [0]
    env.board.flash_write_hook = lambda b, path, n: writes.__setitem__(0, writes[0] + 1)
    full = [0, 0]
    run_meter(mod, SWEEP, slots, every, full)
    assert writes[0] > 15 and full[0] > 30, "the day saves often"
    for cut_at in range(1, writes[0] + 1):
        env, mod = new_env(tmp_path / ("c%d" % cut_at))
        count = [0]

        def hook(board, path, n, count=count, cut_at=cut_at):
            count[0] += 1
            return min(cut_byte, n) if count[0] == cut_at else None

        env.board.flash_write_hook = hook
        truth = [0, 0]
        with pytest.raises(simboard.PowerCut):
            run_meter(mod, SWEEP, slots, every, truth)
        env.board.flash_write_hook = None
        got = mod.Totals(slots=slots, every_pulses=every).load()
        assert got["fwd"] <= truth[0] and got["rev"] <= truth[1], (cut_at, truth, got)
        assert (truth[0] - got["fwd"]) + (truth[1] - got["rev"]) <= every, (cut_at, truth, got)
