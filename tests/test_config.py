"""config.json validation: a clear message naming the field, never a crash."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.nodeenv import NodeEnv

GOOD = {"node_id": "bin-001", "type": "heartbeat", "sample_s": 600, "report_s": 3600,
        "wifi": {"ssid": "townsense", "key": "secret"}}


@pytest.fixture()
def config(tmp_path):
    return NodeEnv(tmp_path / "flash", config_file=False).module("telemetry.config")


def test_good_config_gets_defaults(config):
    cfg = config.validate(dict(GOOD))
    assert cfg["sample_s"] == 600
    assert cfg["wdt_s"] == 60  # default filled in
    assert cfg["wifi"]["timeout_s"] == 15  # nested default
    assert cfg["prefix"] == "townsense"


@pytest.mark.parametrize("patch, field, words", [
    ({"sample_s": "600"}, "sample_s", "expected an integer"),
    ({"sample_s": True}, "sample_s", "expected an integer"),
    ({"sample_s": 0}, "sample_s", "below the minimum"),
    ({"type": "toaster"}, "type", "not one of"),
    ({"node_id": ""}, "node_id", "below the minimum"),
    ({"smaple_s": 5}, "smaple_s", "unknown field"),
    ({"wifi": {"key": "x"}}, "wifi.ssid", "required"),
    ({"wifi": {"ssid": 5}}, "wifi.ssid", "expected a string"),
    ({"report_s": 60}, "report_s", "shorter than sample_s"),
])
def test_bad_field_is_named(config, patch, field, words):
    raw = dict(GOOD)
    raw.update(patch)
    with pytest.raises(config.ConfigError) as e:
        config.validate(raw)
    assert "'%s'" % field in str(e.value)
    assert words in str(e.value)


def test_missing_required_field(config):
    raw = dict(GOOD)
    del raw["node_id"]
    with pytest.raises(config.ConfigError, match="'node_id': required"):
        config.validate(raw)


def test_load_reports_missing_and_garbage_files(tmp_path):
    env = NodeEnv(tmp_path / "flash", config_file=False)
    config = env.module("telemetry.config")
    cfg, err = config.load()
    assert cfg is None and err == "config.json: missing"
    (tmp_path / "flash" / "config.json").write_bytes(b'{"node_id": "x", "ty\xff')
    cfg, err = config.load()
    assert cfg is None and err.startswith("config.json: not valid JSON")
    (tmp_path / "flash" / "config.json").write_text(json.dumps(GOOD))
    cfg, err = config.load()
    assert err is None and cfg["node_id"] == "bin-001"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=12), kids, max_size=6),
    max_leaves=25)
keys = st.sampled_from(list(GOOD) + ["wdt_s", "power", "node", "prefix", "batch", "x"])


@given(st.dictionaries(keys, json_values, max_size=8) | json_values)
def test_any_json_is_accepted_or_named_never_crashes(tmp_path_factory, raw):
    env = NodeEnv(tmp_path_factory.mktemp("c") / "flash", config_file=False)
    config = env.module("telemetry.config")
    (env.flash_dir / "config.json").write_text(json.dumps(raw))
    cfg, err = config.load()
    assert (cfg is None) != (err is None)
    if err is not None:
        assert err.startswith("config.json: ")
    else:
        assert isinstance(cfg["node_id"], str) and cfg["report_s"] >= cfg["sample_s"]


@given(st.binary(max_size=200))
def test_any_bytes_in_config_json_never_crash(tmp_path_factory, blob):
    env = NodeEnv(tmp_path_factory.mktemp("c") / "flash", config_file=False)
    config = env.module("telemetry.config")
    (env.flash_dir / "config.json").write_bytes(blob)
    cfg, err = config.load()
    assert cfg is None and err.startswith("config.json: ")
