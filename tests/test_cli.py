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
