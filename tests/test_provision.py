"""`townsense provision` end to end: the simulator's board on a pseudo-terminal (host/boardserve.py,
reached through the real mpremote), a real mosquitto with a password file and an ACL, the real
SQLite registry.

The pty board runs the firmware under CPython, so it imports .py files only: these tests
provision with --py except where they check the .mpy files themselves."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from host import boardserve, credentials, provision, schemas
from host.registry import Registry
from simulator import flash, profiles
from tests.brokers import Mosquitto

WIFI = ["--wifi-ssid", "townsense", "--wifi-key", "townsense-demo"]  # the pty board's access point
WAIT_S = "60"


@pytest.fixture
def town(tmp_path):
    """A mosquitto that wants a password and applies the ACL, its files, and a registry path."""
    files = credentials.BrokerFiles(tmp_path / "auth")
    files.service_users("townsense")
    broker = Mosquitto(tmp_path / "mosquitto", extra_config="allow_anonymous false\npassword_file %s\n"
                       "acl_file %s\n" % (files.passwd, files.acl)).start()
    try:
        yield SimpleNamespace(broker=broker, files=files, registry=tmp_path / "registry.db", dir=tmp_path)
    finally:
        broker.stop()


@pytest.fixture
def boards(tmp_path):
    """make(name, type, board) -> (pty path, flash directory): a fresh board, empty flash."""
    stops = []

    def make(name="board", node_type="heartbeat", board="lolin-d32"):
        flash_dir = tmp_path / name
        flash_dir.mkdir()
        path, stop = boardserve.serve(flash_dir, node_type, board)
        stops.append(stop)
        return path, flash_dir

    try:
        yield make
    finally:
        for stop in stops:
            stop()


def argv(town, port, node_id, *extra, node_type="heartbeat", board="lolin-d32", pid=True):
    a = ["--port", port, "--type", node_type, "--board", board, "--id", node_id, *WIFI,
         "--broker", town.broker.url, "--registry", str(town.registry), "--mosquitto-dir", str(town.files.dir),
         "--py", "--wait-s", WAIT_S]
    if pid:
        a += ["--mosquitto-pid", str(town.broker.proc.pid)]
    return a + list(extra)


def run(capsys, args):
    rc = provision.main(args)
    out, err = capsys.readouterr()
    return rc, out + err


def tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def snapshot(town) -> dict:
    return {"auth": tree(town.files.dir), "registry": town.registry.exists()}


# ---- end to end ----------------------------------------------------------------------------------

def test_a_board_is_provisioned_boots_and_reports(town, boards, capsys, tmp_path):
    pty, flash_dir = boards()
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"prefix": "oakvale/townsense", "sample_s": 600, "report_s": 3600,
                                "types": {"heartbeat": {"report_s": 1800}}}))
    rc, out = run(capsys, argv(town, pty, "hb-market-1", "--site", str(site), "--location", "Market Square",
                               "--lat", "51.501", "--lon", "-0.142"))
    assert rc == 0, out
    assert "OK: reporting: status sleeping, first reading" in out
    first = json.loads(out.split("first reading ", 1)[1].splitlines()[0])
    assert first["seq"] == 0 and "chip_c" in first  # a heartbeat reading, from the broker

    # what is on the flash: exactly the type's firmware, its board.json, a valid config.json
    files = tree(flash_dir)
    want = {p.as_posix() for p in flash.firmware_files("heartbeat")}
    assert {p for p in files if p.endswith(".py")} == want
    assert "lib/drivers/ultrasonic.py" not in files
    assert json.loads(files["board.json"]) == flash.board_json(profiles.load("lolin-d32"), "heartbeat")
    cfg = json.loads(files["config.json"])
    assert schemas.validate("config", cfg) == []
    assert (cfg["node_id"], cfg["prefix"], cfg["sample_s"], cfg["report_s"]) == \
        ("hb-market-1", "oakvale/townsense", 600, 1800)
    assert cfg["mqtt"]["user"] == "hb-market-1" and "location" not in json.dumps(cfg)
    password = cfg["mqtt"]["password"]
    assert password not in out  # never printed

    # the registry and the broker files hold the hash of the password the board has
    with Registry(town.registry) as reg:
        row = reg.get("hb-market-1")
    assert (row["type"], row["board"], row["location"], row["lat"], row["lon"]) == \
        ("heartbeat", "lolin-d32", "Market Square", 51.501, -0.142)
    assert (row["firmware"], row["micropython"], row["mqtt_user"]) == \
        (provision.firmware_version(), "1.29.0", "hb-market-1")
    assert credentials.verify_password(password, row["password_hash"])
    assert town.files.hash_of("hb-market-1") == row["password_hash"]
    _, blocks = credentials.parse_acl(town.files.acl.read_text())
    assert dict(blocks)["hb-market-1"] == credentials.node_topics("hb-market-1", "oakvale/townsense")


def test_a_bad_config_is_refused_before_anything_is_written(town, boards, capsys, tmp_path):
    pty, flash_dir = boards()
    before = snapshot(town)
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"sample_s": 3600, "report_s": 600}))
    rc, out = run(capsys, argv(town, pty, "hb-1", "--site", str(site)))
    assert rc == 1 and "report_s" in out and "shorter than sample_s" in out
    rc, out = run(capsys, argv(town, pty, "bin-1", "--node-config", '{"empty_mm": 200, "full_mm": 900}',
                               node_type="fill_level"))
    assert rc == 1 and "full_mm" in out and "nearer the sensor" in out
    rc, out = run(capsys, argv(town, pty, "Bin 1"))
    assert rc == 1 and "cannot be used in topics" in out
    assert "connecting to" not in out  # the board was not even opened
    assert tree(flash_dir) == {} and snapshot(town) == before


def test_dry_run_says_everything_and_writes_nothing(town, boards, capsys):
    pty, flash_dir = boards()
    before = snapshot(town)
    rc, out = run(capsys, argv(town, pty, "hb-1", "--dry-run"))
    assert rc == 0, out
    cfg = json.loads(out.split("config.json: ", 1)[1].splitlines()[0])
    assert cfg["mqtt"]["password"] == provision.REDACTED and cfg["node_id"] == "hb-1"
    for step in ("board answers: micropython 1.29.0", "would write 18 firmware files", "would record hb-1",
                 "would add hb-1 to", "would reset the board"):
        assert step in out
    assert tree(flash_dir) == {} and snapshot(town) == before


def test_reprovisioning_keeps_the_password_and_the_counters(town, boards, capsys):
    pty, flash_dir = boards()
    rc, out = run(capsys, argv(town, pty, "hb-7", "--location", "Old Mill"))
    assert rc == 0, out
    password = json.loads((flash_dir / "config.json").read_text())["mqtt"]["password"]
    passwd_line = town.files.hash_of("hb-7")
    with Registry(town.registry) as reg:
        first_row = reg.get("hb-7")
    # counters another node type would keep on this flash, and a rollback left by a command
    (flash_dir / "water.tot").write_bytes(b"\xa5counters\x00\x01")
    (flash_dir / "config.bak").write_text('{"node_id": "hb-7", "type": "heartbeat", "report_s": 1}')
    (flash_dir / "config.trial").write_text('{"n": 2}')
    spool_pos = (flash_dir / "spool.pos").read_bytes()

    # the board says it is hb-7: another id is refused, and nothing changes
    rc, out = run(capsys, argv(town, pty, "hb-8"))
    assert rc == 1 and "is node 'hb-7'" in out and "--new-identity" in out
    assert (flash_dir / "spool.pos").read_bytes() == spool_pos

    rc, out = run(capsys, argv(town, pty, "hb-7", "--location", "New Mill"))
    assert rc == 0, out
    assert "keeping its password" in out
    first = json.loads(out.split("first reading ", 1)[1].splitlines()[0])
    assert first["seq"] > 0  # the seq counter went on: (node, seq) pairs never repeat
    assert json.loads((flash_dir / "config.json").read_text())["mqtt"]["password"] == password
    assert town.files.hash_of("hb-7") == passwd_line
    assert (flash_dir / "water.tot").read_bytes() == b"\xa5counters\x00\x01"
    assert not (flash_dir / "config.bak").exists() and not (flash_dir / "config.trial").exists()
    with Registry(town.registry) as reg:
        row = reg.get("hb-7")
    assert row["location"] == "New Mill" and row["provisioned_at"] == first_row["provisioned_at"]
    assert row["password_hash"] == first_row["password_hash"]

    # a new identity: a new password, the counters gone, seq from 0
    rc, out = run(capsys, argv(town, pty, "hb-8", "--new-identity"))
    assert rc == 0, out
    cfg = json.loads((flash_dir / "config.json").read_text())
    assert cfg["node_id"] == "hb-8" and cfg["mqtt"]["password"] != password
    assert not (flash_dir / "water.tot").exists()
    assert json.loads(out.split("first reading ", 1)[1].splitlines()[0])["seq"] == 0


def test_a_batch_of_two_boards(town, boards, capsys, tmp_path):
    hb_pty, hb_flash = boards("hb")
    bin_pty, bin_flash = boards("bin", "fill_level", "firebeetle-esp32")
    csv = tmp_path / "boards.csv"
    csv.write_text(
        "port,id,type,board,location,lat,lon,node_config\n"
        "%s,hb-21,heartbeat,lolin-d32,Town Hall,51.1,-1.2,\n"
        "%s,bin-22,fill_level,firebeetle-esp32,\"Market Square, bin 3\",51.2,-1.3,"
        "\"{\"\"empty_mm\"\": 1200, \"\"full_mm\"\": 250}\"\n" % (hb_pty, bin_pty))
    args = argv(town, "x", "x")
    args = [a for i, a in enumerate(args) if a not in ("--port", "--type", "--board", "--id")
            and (i == 0 or args[i - 1] not in ("--port", "--type", "--board", "--id"))]
    rc, out = run(capsys, ["--batch", str(csv)] + args)
    assert rc == 0, out
    assert "2 of 2 boards provisioned" in out
    with Registry(town.registry) as reg:
        rows = {r["id"]: r for r in reg.all()}
    assert set(rows) == {"hb-21", "bin-22"}
    assert rows["bin-22"]["location"] == "Market Square, bin 3" and rows["bin-22"]["board"] == "firebeetle-esp32"
    cfg = json.loads((bin_flash / "config.json").read_text())
    assert cfg["node"] == {"empty_mm": 1200, "full_mm": 250}
    assert (bin_flash / "lib/drivers/ultrasonic.py").exists() and not (hb_flash / "lib/drivers").exists()
    assert "\"fill\": " in out.split("OK     bin-22", 1)[1].splitlines()[0]  # a fill-level reading


def test_a_batch_with_a_bad_row_touches_no_board(town, capsys, tmp_path):
    csv = tmp_path / "boards.csv"
    csv.write_text("port,id,type,board,location,lat,lon,node_config\n"
                   "/dev/null-1,hb-1,heartbeat,lolin-d32,,,,\n"
                   "/dev/null-2,hb-2,heartbeat,no-such-board,,,,\n"
                   "/dev/null-3,hb-3,heartbeat,lolin-d32,,91,0,\n"
                   "/dev/null-4,hb-4,heartbeat,lolin-d32,,,,{oops\n"
                   "/dev/null-5,hb-1,heartbeat,lolin-d32,,,,\n")
    before = snapshot(town)
    rc, out = run(capsys, ["--batch", str(csv), *WIFI, "--broker", town.broker.url, "--registry",
                           str(town.registry), "--mosquitto-dir", str(town.files.dir)])
    assert rc == 2 and "nothing provisioned" in out
    assert "no-such-board" in out and "latitude" in out and "'hb-1' appears twice" in out and "line 5" in out
    rc, out = run(capsys, ["--batch", str(csv), "--id", "hb-9"])
    assert rc == 2 and "drop them" in out
    assert snapshot(town) == before


# ---- failures, reported with their reason --------------------------------------------------------

def test_a_node_the_broker_refuses_is_reported_as_refused(town, boards, capsys):
    pty, flash_dir = boards()
    # the broker's password file has another password for the node; provisioning writes the
    # right one, but the broker is not told to reload: it keeps refusing the board
    town.files.add_node("hb-9", credentials.hash_password("not the board's"), "townsense")
    town.broker.restart()
    rc, out = run(capsys, argv(town, pty, "hb-9", pid=False))
    assert rc == 1, out
    assert "FAILED: the broker refused the node's credentials" in out
    assert "reload" in out
    # the board has the password the registry and (now) the file know: a reload fixes it
    cfg = json.loads((flash_dir / "config.json").read_text())
    assert credentials.verify_password(cfg["mqtt"]["password"], town.files.hash_of("hb-9"))


def test_a_wrong_wifi_key_is_reported(town, boards, capsys):
    pty, _ = boards()
    rc, out = run(capsys, argv(town, pty, "hb-3", "--wifi-key", "not-the-key"))
    assert rc == 1 and "FAILED: Wi-Fi rejected" in out


def test_a_node_whose_first_reading_comes_later_is_reported_connected(town, boards, capsys):
    # a mains water meter reads its totals every 15 minutes: within the wait it connects and
    # sends its status and health, and that is what the tool reports
    pty, _ = boards("wm", "water_meter", "esp32-devkitc")
    rc, out = run(capsys, argv(town, pty, "wm-1", "--wait-s", "5", node_type="water_meter", board="esp32-devkitc"))
    assert rc == 0, out
    assert "OK: reporting: status online and health heard, but no reading yet" in out


def test_no_micropython_on_the_port(town, capsys):
    master, slave = os.openpty()  # a terminal nobody answers on
    name = os.ttyname(slave)
    try:
        rc, out = run(capsys, argv(town, name, "hb-4", "--repl-timeout", "1"))
    finally:
        os.close(master)
        os.close(slave)
    assert rc == 1 and "FAILED: no MicroPython REPL on %s" % name in out


# ---- .mpy ----------------------------------------------------------------------------------------

def test_mpy_files_replace_py_files_and_a_mismatched_board_is_refused(town, boards, capsys, monkeypatch):
    pty, flash_dir = boards()
    rc, out = run(capsys, argv(town, pty, "hb-5", "--wait-s", "0"))
    assert rc == 0, out
    no_py = [a for a in argv(town, pty, "hb-5", "--wait-s", "0") if a != "--py"]
    rc, out = run(capsys, no_py)
    assert rc == 0, out
    files = tree(flash_dir)
    code = {p: d for p, d in files.items() if p.startswith("lib/")}
    assert code and all(p.endswith(".mpy") for p in code)  # no .py left to shadow a .mpy
    assert all(d[:2] == b"M\x06" for d in code.values())  # .mpy header: 'M', version 6
    assert set(code) == {p.with_suffix(".mpy").as_posix() for p in flash.firmware_files("heartbeat")
                         if p.name != "main.py"}
    assert files["main.py"] == (flash.FIRMWARE_DIR / "main.py").read_bytes()

    # a board whose MicroPython loads another .mpy version
    monkeypatch.setattr(boardserve, "MPY_VALUE", 6 | (2 << 8))
    old_pty, old_flash = boards("old")
    rc, out = run(capsys, no_py[:1] + [old_pty] + no_py[2:])
    assert rc == 1 and "loads .mpy 6.2" in out and "--py" in out
    assert tree(old_flash) == {}


# ---- the config, without a board -----------------------------------------------------------------

def test_config_layers_site_type_flags_identity():
    st = provision.Settings(site={"wifi": {"ssid": "site", "key": "k", "timeout_s": 20},
                                  "mqtt": {"host": "10.0.0.2", "keepalive": 120}, "sample_s": 600,
                                  "types": {"fill_level": {"sample_s": 300, "node": {"empty_mm": 1500}}}},
                            wifi_ssid="flag", broker="mqtt://10.0.0.9:1884", prefix="oakvale")
    req = provision.Request("p", "bin-1", "fill_level", "lolin-d32", node_config={"full_mm": 200})
    cfg = provision.build_config(req, st, "pw")
    assert cfg["wifi"] == {"ssid": "flag", "key": "k", "timeout_s": 20}
    assert cfg["mqtt"] == {"host": "10.0.0.9", "port": 1884, "keepalive": 120, "user": "bin-1", "password": "pw"}
    assert (cfg["sample_s"], cfg["prefix"], cfg["node"]) == (300, "oakvale", {"empty_mm": 1500, "full_mm": 200})
    with pytest.raises(provision.ProvisionError, match="no broker"):
        provision.build_config(req, provision.Settings(wifi_ssid="x"), "pw")
    with pytest.raises(provision.ProvisionError, match="no Wi-Fi"):
        provision.build_config(req, provision.Settings(broker="mqtt://h:1883"), "pw")


def test_a_site_file_cannot_set_identity_or_credentials(tmp_path):
    for bad in ({"node_id": "x"}, {"mqtt": {"host": "h", "password": "p"}}, {"types": {"heartbeat": 3}}, [1]):
        p = tmp_path / "site.json"
        p.write_text(json.dumps(bad))
        with pytest.raises(provision.ProvisionError, match="site file"):
            provision.load_site(str(p))
