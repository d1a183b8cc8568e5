"""The virtual-time engine: isolation between nodes and across resets, what survives which kind
of restart, determinism, energy accounting."""

import json

from simulator import engine, scenario
from simulator.mp import simboard


def town(hours=6, faults=(), nodes=None, seed=3):
    raw = {
        "name": "t", "hours": hours, "seed": seed,
        "nodes": nodes or [
            {"id": "b-{n}", "count": 3, "type": "heartbeat", "board": "lolin-d32",
             "config": {"sample_s": 900, "report_s": 3600}},
            {"id": "m-{n}", "count": 1, "type": "heartbeat", "board": "esp32-devkitc",
             "config": {"sample_s": 600, "report_s": 1800}},
        ],
        "faults": list(faults),
    }
    return scenario.parse(raw)


def run(sc):
    sim = engine.Simulation(sc)
    try:
        rows = sim.run()
        return sim, rows
    finally:
        sim.close()


def test_battery_node_samples_on_schedule_and_reports_hourly():
    sim, rows = run(town(hours=6))
    b = sim.by_id["b-1"]
    seqs = [r["seq"] for r in b.readings()]
    assert seqs == list(range(len(seqs))), "every reading once, in order"
    assert b.board.boots == 6 * 4, "one boot per sample"
    # reported at once after power-on, then hourly; the last three readings wait in the spool
    assert len(seqs) == 6 * 4 - 3
    hours = [m.t_us / 3.6e9 for m in b.messages if m.topic.endswith("/telemetry")]
    assert [round(h) for h in hours] == [0, 1, 2, 3, 4, 5]
    assert all(abs(h - round(h)) < 0.002 for h in hours), "reports keep their cadence, no drift"
    topics = {m.topic for m in b.messages}
    assert topics == {"townsense/b-1/telemetry", "townsense/b-1/health", "townsense/b-1/status"}
    # timestamps: all set once NTP ran at the first report, spaced by the sample interval
    ts = [r["ts"] for r in b.readings()]
    assert all(t2 - t1 == 900 for t1, t2 in zip(ts, ts[1:]))
    assert abs(ts[0] - sim.scenario.start_unix) < 5


def test_every_reading_accepted_is_reported_exactly_once():
    sim, rows = run(town(hours=5))
    for node in sim.nodes:
        seqs = [r["seq"] for r in node.readings()]
        assert len(seqs) == len(set(seqs))
        assert seqs == sorted(seqs)


def test_nodes_do_not_share_module_state():
    sim = engine.Simulation(town(hours=1))
    try:
        sim.run()
        a, b = sim.by_id["b-1"], sim.by_id["b-2"]
        assert a.modules.fakes["machine"] is not b.modules.fakes["machine"]
        assert a.modules.fakes["time"].__dict__ is not b.modules.fakes["time"].__dict__
        ma = a.modules.firmware.get("telemetry.spool")
        mb = b.modules.firmware.get("telemetry.spool")
        assert ma is not None and mb is not None and ma is not mb
    finally:
        sim.close()


def test_deep_sleep_keeps_rtc_memory_and_flash_power_cut_keeps_only_flash():
    sc = town(hours=3, faults=[{"kind": "power_cut", "node": "b-1", "at_h": 1.1, "for_s": 30}])
    sim, rows = run(sc)
    b = sim.by_id["b-1"]
    other = sim.by_id["b-2"]
    # wakes are counted in RTC memory: it survived deep sleep on b-2, and restarted on b-1
    wakes_other = [r["wakes"] for r in other.readings()]
    assert wakes_other == list(range(1, len(wakes_other) + 1))
    wakes_cut = [r["wakes"] for r in b.readings()]
    assert 1 in wakes_cut[1:], "RTC memory was lost with the power: the wake count restarted"
    # seq lives on flash: it never restarts
    seqs = [r["seq"] for r in b.readings()]
    assert seqs == list(range(len(seqs)))
    assert b.board.energy_us[simboard.OFF] == 30_000_000


def test_same_seed_same_run_different_seed_may_differ():
    def fingerprint(seed):
        sim, rows = run(town(hours=2, seed=seed))
        return [(n.id, [(m.t_us, m.topic, m.payload) for m in n.messages]) for n in sim.nodes]

    assert fingerprint(5) == fingerprint(5)


def test_energy_account_covers_the_whole_run():
    sim, rows = run(town(hours=4))
    for node in sim.nodes:
        assert sum(node.board.energy_us.values()) == 4 * 3_600_000_000
    battery = [r for r in rows if r["board"] == "lolin-d32"]
    mains = [r for r in rows if r["board"] == "esp32-devkitc"]
    for r in battery:
        assert r["awake_s"] < 0.1 * 4 * 3600, "a battery node sleeps most of the time"
        assert r["battery_days"] > 30
    for r in mains:
        assert r["battery_days"] is None
        assert r["awake_s"] == 4 * 3600


def test_wifi_outage_keeps_readings_in_the_spool_until_it_ends():
    sc = town(hours=6, faults=[{"kind": "wifi_down", "at_h": 1.5, "for_h": 2}])
    sim, rows = run(sc)
    b = sim.by_id["b-1"]
    seqs = [r["seq"] for r in b.readings()]
    assert seqs == list(range(len(seqs))), "nothing lost, nothing doubled"
    tele = [m for m in b.messages if m.topic.endswith("/telemetry")]
    times = [m.t_us / 3.6e9 for m in tele]
    assert not any(1.5 < t < 3.5 for t in times), "no report while the access point is down"
    after = [m for m in tele if m.t_us / 3.6e9 >= 3.5]
    assert after and len(json.loads(after[0].payload)["r"]) >= 8, "the outage's readings go out in one batch"
