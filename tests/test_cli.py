"""The `townsense` command line."""

import subprocess
import sys

from host import cli


def test_simulate_list_names_the_bundled_scenarios(capsys):
    assert cli.main(["simulate", "--list"]) == 0
    out = capsys.readouterr().out
    assert "heartbeat-town" in out


def test_simulate_prints_a_summary_per_node(capsys):
    assert cli.main(["simulate", "heartbeat-town", "--hours", "2", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "scenario heartbeat-town: 10 nodes, 2.0 virtual hours, seed 4" in out
    for node in ("hb-01", "hb-08", "hall-1", "hall-2"):
        assert node in out
    assert "mAh/day" in out and "battery life" in out


def test_unknown_scenario_is_a_clear_error(capsys):
    assert cli.main(["simulate", "no-such-town"]) == 2
    err = capsys.readouterr().err
    assert "no scenario file or bundled scenario named 'no-such-town'" in err


def test_console_script_is_installed():
    r = subprocess.run([sys.executable, "-m", "host.cli", "simulate", "--list"], capture_output=True, text=True)
    assert r.returncode == 0 and "heartbeat-town" in r.stdout


def test_timeline_shows_the_outage_catch_up_and_the_power_cut(capsys):
    assert cli.main(["simulate", "heartbeat-town", "--timeline", "hb-03"]) == 0
    out = capsys.readouterr().out.split("hb-03 reported:")[1]
    lines = [l for l in out.splitlines() if "telemetry" in l]
    assert not any(l.strip().startswith(("09:", "10:")) for l in lines), "no report during the outage"
    assert any(l.strip().startswith("11:00") and "12 readings" in l for l in lines)
    assert any(l.strip().startswith("14:13") for l in lines), "a report at once after the power returns"
    assert "fault: power_cut at 14.2 h" in out


def test_timeline_of_an_unknown_node_is_an_error(capsys):
    assert cli.main(["simulate", "heartbeat-town", "--timeline", "nope"]) == 2
    assert "no node nope" in capsys.readouterr().err
