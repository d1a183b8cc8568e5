"""The simulator's fakes of MicroPython modules must not drift from the real API.

Each `simulator/mp/fake_<module>.py` is compared with the `<module>` stub of
micropython-esp32-stubs (micropython-stdlib-stubs for os/sys/...): a fake may implement less
than the stub, never something different. The rules are in tests/stubcheck.py; the second half
of this file proves the checker notices drift, by feeding it small synthetic fakes.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import stubcheck  # noqa: E402

REPO = HERE.parent
MP_DIR = REPO / "simulator" / "mp"
FAKES = sorted(MP_DIR.glob("fake_*.py"))
# The modules the simulator fakes (simulator/loader.py FAKES); each must have a stub.
FAKED_MODULES = ("machine", "network", "time", "esp32", "ntptime", "os", "random", "micropython",
                 "gc", "sys", "socket")


def check(source: str, module: str) -> list[str]:
    return stubcheck.check_source(textwrap.dedent(source), module, fake_dir=MP_DIR)


def assert_reported(problems: list[str], *fragments: str) -> None:
    for frag in fragments:
        assert any(frag in p for p in problems), "expected a problem containing %r, got:\n%s" % (
            frag, "\n".join(problems) or "(no problems)")


# ---- the real fakes ---------------------------------------------------------------------------
def test_stub_distributions_are_installed():
    found = stubcheck.installed_stub_distributions()
    assert "micropython-esp32-stubs" in found, "pip install micropython-esp32-stubs (the reference API)"


@pytest.mark.parametrize("module", FAKED_MODULES)
def test_every_faked_module_has_a_stub(module):
    path = stubcheck.find_stub(module)
    assert path is not None and path.is_file(), "no stub for `%s`" % module


@pytest.mark.parametrize("fake", FAKES, ids=[p.stem for p in FAKES])
def test_fake_matches_stub(fake):
    problems = stubcheck.check_fake(fake)
    assert not problems, "%s drifts from the %s stub:\n  %s" % (
        fake.name, stubcheck.stub_module_for(fake), "\n  ".join(problems))


# ---- the checker catches drift ----------------------------------------------------------------
def test_renamed_parameter_is_reported():
    problems = check("""
        class Pin:
            def irq(self, handler=None, trig=3, *, priority=1, wake=None, hard=False):
                pass
        """, "machine")
    assert_reported(problems, "fake_machine.Pin.irq: parameter 2 is 'trigger' in the stub, 'trig' in the fake")


def test_renamed_keyword_only_parameter_is_reported():
    problems = check("""
        class WLAN:
            def connect(self, ssid=None, password=None, *, mac=None):
                pass
        """, "network")
    assert_reported(problems, "fake_network.WLAN.connect: keyword-only parameter 'mac' is not in the stub")


def test_wrong_constant_value_is_reported():
    problems = check("""
        IN_MODULE = 1
        HARD_RESET = 3
        class Pin:
            IN = 2
            OUT = 3
        """, "machine")
    assert_reported(problems, "fake_machine.Pin.IN: value is 1 in the stub, 2 in the fake",
                    "fake_machine.HARD_RESET: value is 2 in the stub, 3 in the fake")
    assert not any("Pin.OUT" in p for p in problems)


def test_constant_values_are_worked_out_statically():
    problems = check("""
        from micropython import const
        import simboard
        _BASE = const(1)
        STA_IF = _BASE - 1
        AP_IF = const(_BASE + 1)
        STAT_GOT_IP = simboard.PWRON_RESET + 1009
        """, "network")
    assert_reported(problems, "fake_network.AP_IF: value is 1 in the stub, 2 in the fake")
    assert not any("STA_IF" in p or "STAT_GOT_IP" in p for p in problems), problems


def test_constant_of_the_wrong_type_is_reported():
    problems = check("""
        WAKEUP_ALL_LOW = 0
        WAKEUP_ANY_HIGH = True
        """, "esp32")
    assert_reported(problems, "fake_esp32.WAKEUP_ALL_LOW: value is False in the stub, 0 in the fake")


def test_imported_constant_with_wrong_value_is_reported():
    # simboard.PIN_WAKE is 2; the real machine.PWRON_RESET is 1.
    problems = check("from simboard import PIN_WAKE as PWRON_RESET\n", "machine")
    assert_reported(problems, "fake_machine.PWRON_RESET: value is 1 in the stub, 2 in the fake")


def test_extra_public_names_are_reported():
    problems = check("""
        def frobnicate():
            pass
        LOUDNESS = 11
        class Pin:
            def blink(self):
                pass
            def __init__(self, id):
                self.pin_id = id
                self._private = 1
        """, "machine")
    assert_reported(problems,
                    "fake_machine.frobnicate: a function in the fake, not in the stub",
                    "fake_machine.LOUDNESS: a constant/attribute in the fake, not in the stub",
                    "fake_machine.Pin.blink: a method in the fake, not in the stub class `machine.Pin`",
                    "fake_machine.Pin.pin_id: an instance attribute (self.pin_id) in the fake")
    assert not any("_private" in p for p in problems)


def test_global_assigned_inside_a_function_is_a_public_name():
    problems = check("""
        def _attach(board):
            global last_board
            last_board = board
        """, "gc")
    assert_reported(problems, "fake_gc.last_board: a constant/attribute in the fake, not in the stub")


def test_missing_required_parameter_is_reported():
    problems = check("""
        def time_pulse_us(pin, timeout_us=1000000):
            pass
        """, "machine")
    assert_reported(problems, "fake_machine.time_pulse_us: parameter 2 is 'pulse_level' in the stub, 'timeout_us' in the fake")
    problems = check("def ticks_add(ticks):\n    pass\n", "time")
    assert_reported(problems, "fake_time.ticks_add: missing required parameter 2 'delta'")


def test_missing_required_keyword_only_parameter_is_reported():
    problems = check("""
        class I2S:
            def init(self, *, sck, ws, mode, bits, format, rate, ibuf):
                pass
        """, "machine")
    assert_reported(problems, "fake_machine.I2S.init: missing required keyword-only parameter 'sd'")


def test_default_must_match_the_stub():
    # optional in the fake, required in every overload of the stub
    problems = check("def sleep(seconds=1):\n    pass\n", "time")
    assert_reported(problems, "fake_time.sleep: parameter 1 'seconds' is required in the stub but has a default in the fake")
    # required in the fake, optional in the stub
    problems = check("def gmtime(secs):\n    pass\n", "time")
    assert_reported(problems, "fake_time.gmtime: parameter 1 'secs' has a default in the stub but not in the fake")


def test_defaults_that_merge_overloads_need_every_call_shape_in_the_stub():
    # wake_on_ext0() and wake_on_ext0(pin, level): the fake must not accept wake_on_ext0(pin)
    problems = check("def wake_on_ext0(pin=None, level=None):\n    pass\n", "esp32")
    assert_reported(problems, "fake_esp32.wake_on_ext0: parameter 2 'level' is required in the stub but has a default in the fake")
    assert check("def wake_on_ext0(pin, level):\n    pass\n", "esp32") == []  # implements one overload


def test_wrong_method_kind_is_reported():
    problems = check("""
        class Pin:
            @staticmethod
            def on():
                pass
            @property
            def value(self):
                return 0
        class Partition:
            def find(self, type=0, subtype=255, label=None):
                pass
            @staticmethod
            def mark_app_valid_cancel_rollback():
                pass
        """, "machine")
    assert_reported(problems,
                    "fake_machine.Pin.on: a staticmethod in the fake, a method in the stub",
                    "fake_machine.Pin.value: a property in the fake, a method in the stub",
                    "fake_machine.Partition: a class in the fake, not in the stub")
    problems = check("""
        class Partition:
            def find(self, type=0, subtype=255, label=None):
                pass
            @staticmethod
            def mark_app_valid_cancel_rollback():
                pass
        """, "esp32")
    assert_reported(problems,
                    "fake_esp32.Partition.find: a method in the fake, a staticmethod in the stub",
                    "fake_esp32.Partition.mark_app_valid_cancel_rollback: a staticmethod in the fake, a classmethod in the stub")


def test_kind_mismatch_between_function_class_and_constant_is_reported():
    problems = check("""
        def Pin(id):
            pass
        class idle:
            pass
        reset = 1
        def IN():
            pass
        """, "machine")
    assert_reported(problems,
                    "fake_machine.Pin: a function in the fake, a class in the stub",
                    "fake_machine.idle: a class in the fake, a function in the stub",
                    "fake_machine.reset: a constant/attribute in the fake, a function in the stub")


def test_keyword_only_must_stay_keyword_only():
    problems = check("""
        class Pin:
            def irq(self, handler=None, trigger=3, priority=1):
                pass
            def init(self, mode=-1, *, pull=-1):
                pass
        """, "machine")
    assert_reported(problems,
                    "fake_machine.Pin.irq: parameter 'priority' is keyword-only in the stub but positional in the fake",
                    "fake_machine.Pin.init: parameter 'pull' is positional in the stub but keyword-only in the fake")


def test_star_args_and_kwargs_only_where_the_stub_has_them():
    problems = check("""
        def ticks_diff(*args):
            pass
        def sleep_ms(ms, **kwargs):
            pass
        """, "time")
    assert_reported(problems,
                    "fake_time.ticks_diff: the fake accepts extra positional arguments (*args)",
                    "fake_time.sleep_ms: the fake accepts arbitrary keyword arguments (**kwargs)")


def test_init_is_checked():
    problems = check("""
        class WDT:
            def __init__(self, id=0, timeout=5000):
                pass
        """, "machine")
    assert_reported(problems, "fake_machine.WDT.__init__: parameter 'id' is keyword-only in the stub but positional in the fake")


def test_aliases_are_checked_as_what_they_name():
    problems = check("""
        def gmtime(secs=None):
            pass
        localtime = gmtime
        def _sleep(s):
            pass
        sleep_ms = _sleep
        import simboard
        ticks_ms = simboard.ticks_ms
        """, "time")
    assert_reported(problems, "fake_time.sleep_ms: parameter 1 is 'ms' in the stub, 's' in the fake")
    assert not any("localtime" in p or "ticks_ms" in p for p in problems), problems
    problems = check("""
        class Pin:
            def value(self, x=None):
                return 0
            __call__ = value
            IN, OUT = 1, 2
        """, "machine")
    assert_reported(problems, "fake_machine.Pin.OUT: value is 3 in the stub, 2 in the fake")
    assert not any("__call__" in p or "Pin.IN" in p for p in problems), problems


def test_missing_stub_is_reported():
    problems = stubcheck.check_source("def f():\n    pass\n", "no_such_module_on_the_esp32")
    assert_reported(problems, "no stub for module `no_such_module_on_the_esp32`")


def test_the_fake_is_parsed_not_imported():
    # Importing this would fail (no board, MicroPython-only modules); parsing it is fine.
    problems = check("""
        import machine_only_on_a_board
        raise RuntimeError("never run a fake on the host")
        def collect():
            pass
        """, "gc")
    assert problems == []


def test_a_correct_subset_passes():
    machine = """
        import simboard
        from simboard import PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET
        from micropython import const

        _board = None
        PIN_WAKE = simboard.PIN_WAKE
        EXT1_WAKE = const(3)
        TIMER_WAKE = 4
        DEEPSLEEP = 4

        def _attach(board):
            global _board
            _board = board

        def lightsleep(time_ms=None):      # merges lightsleep() and lightsleep(time_ms, /)
            pass

        def deepsleep(time_ms=None):
            pass

        def reset_cause():
            return PWRON_RESET

        def freq(hz=None):
            return 240000000

        def enable_irq(state):
            pass

        def time_pulse_us(pin, pulse_level):   # leaves out the trailing optional timeout_us
            return -1

        def dht_readinto(pin, buf):            # the stub has only (*args, **kwargs)
            pass

        class Pin:
            IN = 1
            OUT = 3
            IRQ_RISING = 1
            IRQ_FALLING = 2

            def __init__(self, id, mode=-1, pull=-1, *, value=None):   # drops drive=, alt=
                self._id = id

            def value(self, x=None):
                return 0

            def __call__(self, x=None):
                return 0

            def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, *, hard=False):
                pass

            def __repr__(self):
                return "Pin(%d)" % self._id

        class Signal(Pin):                      # inherits on()/off() from the stub's Pin
            def __init__(self, pin_obj, invert=False):
                pass

            def toggle(self):
                pass

        class RTC:
            def __init__(self, id=0, *, datetime=None):
                pass

            def datetime(self, datetimetuple=None):
                return (2000, 1, 1, 5, 0, 0, 0, 0)

            def memory(self, data=None):
                return b""

        class Timer:
            ONE_SHOT = 0
            PERIODIC = 1

            def __init__(self, id, *, mode=PERIODIC, period=None, freq=None, callback=None):
                pass

            def init(self, *, mode=PERIODIC, period=None, freq=None, callback=None):
                pass

            def deinit(self):
                pass

        class WDT:
            def __init__(self, *, id=0, timeout=5000):
                pass

            def feed(self):
                pass
        """
    assert check(machine, "machine") == []
    random = """
        def randrange(start, stop=None, step=1):    # merges the three positional-only overloads
            pass
        def randint(a, b):
            pass
        def seed(n=None):
            pass
        """
    assert check(random, "random") == []
    esp32 = """
        class Partition:
            RUNNING = 1
            def __init__(self, id, block_size=4096):
                pass
            @staticmethod
            def find(type=0, subtype=255, label=None):
                return []
            def ioctl(self, op, arg):                # from the stub's own overloads
                return 0
            @classmethod
            def mark_app_valid_cancel_rollback(cls):
                pass
        """
    assert check(esp32, "esp32") == []
    os_fake = """
        def listdir(dir=None):          # the MicroPython variant among CPython's overloads
            return []
        def stat(path):
            pass
        def rename(old_path, new_path):
            pass
        """
    assert check(os_fake, "os") == []
    sys_fake = """
        platform = "esp32"
        implementation = ("micropython", (1, 29, 0, ""), "", 0)
        def exit(retval=0):
            raise SystemExit(retval)
        """
    assert check(sys_fake, "sys") == []


def test_members_inherited_from_stub_base_classes_count():
    # vfs.VfsLfs2 gets ioctl() from vfs.AbstractBlockDev: ioctl(op, arg) and ioctl(op).
    assert check("""
        class VfsLfs2:
            def ioctl(self, op, arg=None):
                return 0
        """, "vfs") == []
    problems = check("""
        class VfsLfs2:
            def ioctl(self, opcode, arg=None):
                return 0
        """, "vfs")
    assert_reported(problems, "fake_vfs.VfsLfs2.ioctl: parameter 1 is 'op' in the stub, 'opcode' in the fake")
    # A base imported from another stub module resolves too: esp32.Partition(vfs.AbstractBlockDev).
    esp32 = stubcheck.load_stub("esp32")
    partition = esp32.scope.members["Partition"]
    base = stubcheck._resolve_stub_name(partition.bases[0], partition.owner, set())
    assert base is not None and base is stubcheck.load_stub("vfs").scope.members["AbstractBlockDev"]
