"""A missing or corrupt config.json: a clear message, safe mode, no crash loop, and recovery
once the file is fixed."""

import json

from simulator import engine, scenario


def one_node(board="lolin-d32", hours=3):
    return scenario.parse({"name": "s", "hours": hours, "nodes": [
        {"id": "n-{n}", "type": "heartbeat", "board": board, "config": {"sample_s": 600, "report_s": 600}}]})


def test_corrupt_config_enters_safe_mode_without_crash_loop():
    sim = engine.Simulation(one_node())
    node = sim.nodes[0]
    (node.flash_dir / "config.json").write_text('{"node_id": "n-1", "type": "heartbeat", "sample_s": "often"}')
    try:
        sim.run()
        log = [t for _, t in node.log]
        assert any(t.startswith("SAFE MODE: config.json: field 'sample_s': expected an integer") for t in log)
        assert node.crashes == 0 and not node.messages
        # awake 10 minutes for an installer after power-on, then checks every 6 h: few boots
        assert node.board.boots <= 2
    finally:
        sim.close()


def test_missing_config_on_mains_board_stays_awake_and_recovers_when_fixed():
    sim = engine.Simulation(one_node(board="esp32-devkitc", hours=2))
    node = sim.nodes[0]
    good = (node.flash_dir / "config.json").read_text()
    (node.flash_dir / "config.json").unlink()
    # an installer copies a good config.json 30 minutes in
    node.board.call_at(30 * 60 * 1_000_000, lambda b: (node.flash_dir / "config.json").write_text(good))
    try:
        sim.run()
        log = [t for _, t in node.log]
        assert "SAFE MODE: config.json: missing" in log
        assert "SAFE MODE: config.json is valid again; restarting" in log
        assert node.messages, "the node reports once the config is fixed"
        first = min(m.t_us for m in node.messages)
        assert first >= 30 * 60 * 1_000_000
        assert node.crashes == 0
    finally:
        sim.close()


def test_garbage_bytes_in_config_do_not_crash():
    sim = engine.Simulation(one_node(hours=1))
    node = sim.nodes[0]
    (node.flash_dir / "config.json").write_bytes(b"\x00\xff\xfe{{{")
    try:
        sim.run()
        assert any(t.startswith("SAFE MODE: config.json: not valid JSON") for _, t in node.log)
        assert node.crashes == 0
        json.dumps(node.summary(3_600_000_000))  # the summary still works
    finally:
        sim.close()
