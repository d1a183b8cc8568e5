"""The spool: accepted readings stay on flash until acknowledged, through resets, torn writes
and power cuts at any byte; seq numbers never repeat."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.mp import simboard
from tests.nodeenv import NodeEnv


def env_spool(tmp, budget=32768):
    env = NodeEnv(tmp / "flash", config_file=False)
    mod = env.module("telemetry.spool")
    return env, mod, mod.Spool(budget).open()


def seqs(sp):
    return [json.loads(p)["seq"] for _, p in sp.pending(10_000)]


def test_accept_survives_reopen_and_ack_removes(tmp_path):
    env, mod, sp = env_spool(tmp_path)
    for i in range(5):
        assert sp.accept({"x": i}) == i
    sp2 = mod.Spool().open()
    assert sp2.count == 5 and seqs(sp2) == [0, 1, 2, 3, 4]
    batch = sp2.pending(2)
    sp2.ack(batch[-1][0])
    sp3 = mod.Spool().open()
    assert seqs(sp3) == [2, 3, 4] and sp3.count == 3
    sp3.ack(sp3.pending(10)[-1][0])
    assert sp3.count == 0
    sp4 = mod.Spool().open()
    assert seqs(sp4) == [] and sp4.next_seq == 5
    assert sp4.accept({"x": 5}) == 5, "seq continues after the log is emptied"


def test_torn_tail_is_cut_off(tmp_path):
    env, mod, sp = env_spool(tmp_path)
    for i in range(3):
        sp.accept({"x": i})
    path = env.flash_dir / ("spool.%d" % sp.gen)
    data = path.read_bytes()
    path.write_bytes(data + data[:9])  # half a record: a power cut mid-append
    sp2 = mod.Spool().open()
    assert seqs(sp2) == [0, 1, 2]
    assert path.stat().st_size == len(data)
    assert sp2.accept({"x": 3}) == 3
    assert seqs(mod.Spool().open()) == [0, 1, 2, 3]


def test_corrupt_record_stops_the_scan(tmp_path):
    env, mod, sp = env_spool(tmp_path)
    for i in range(3):
        sp.accept({"x": i})
    path = env.flash_dir / ("spool.%d" % sp.gen)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip a byte of the last payload: its CRC no longer matches
    path.write_bytes(bytes(data))
    assert seqs(mod.Spool().open()) == [0, 1]


def test_full_budget_drops_oldest_and_counts(tmp_path):
    env, mod, sp = env_spool(tmp_path, budget=1024)
    for i in range(100):
        sp.accept({"x": i, "pad": "y" * 20})
    sp2 = mod.Spool(1024).open()
    kept = seqs(sp2)
    assert kept == list(range(100 - len(kept), 100)), "the newest are kept, in order"
    assert sp2.dropped == 100 - len(kept) > 0
    assert sp2.size <= 1024


ops = st.lists(st.one_of(
    st.tuples(st.just("accept"), st.integers(0, 3)),
    st.tuples(st.just("ack"), st.integers(1, 4)),
    st.tuples(st.just("reopen"), st.just(0)),
), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(ops, st.integers(0, 60), st.integers(0, 200))
def test_power_cut_at_any_write_loses_no_accepted_reading(tmp_path_factory, program, cut_at, cut_byte):
    """Cut the power at the cut_at-th flash write (cut_byte bytes of it land); after the
    reboot every reading accept() returned for is still pending or was acknowledged, and no
    seq is ever handed out twice."""
    env, mod, sp = env_spool(tmp_path_factory.mktemp("s"), budget=1 << 20)
    writes = [0]

    def hook(board, path, n):
        writes[0] += 1
        if writes[0] == cut_at:
            return min(cut_byte, n)
        return None

    env.board.flash_write_hook = hook
    accepted = []  # seqs accept() returned
    acked = set()
    try:
        for op, arg in program:
            if op == "accept":
                accepted.append(sp.accept({"v": arg}))
            elif op == "ack":
                batch = sp.pending(arg)
                if batch:
                    sp.ack(batch[-1][0])
                    acked.update(json.loads(p)["seq"] for _, p in batch)
            else:
                sp = mod.Spool(1 << 20).open()
    except simboard.PowerCut:
        pass
    env.board.flash_write_hook = None
    for tmp in env.flash_dir.glob("*.tmp"):
        pass  # leftovers of an interrupted atomic write are harmless
    sp = mod.Spool(1 << 20).open()
    pending = seqs(sp)
    assert pending == sorted(pending) and len(set(pending)) == len(pending)
    for s in accepted:
        assert s in acked or s in pending, "accepted reading %d was lost" % s
    fresh = sp.accept({"v": 9})
    assert fresh not in acked and fresh not in pending and all(fresh > s for s in accepted)
