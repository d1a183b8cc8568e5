"""Per-node module tables for CPython: each node gets its own fake hardware modules and its own
copy of the firmware modules, so nothing leaks between nodes or across a simulated reset.

Under CPython many nodes share one interpreter, so `sys.modules` cannot hold a node's `machine`
or `telemetry`. Instead every module we run for a node (fake or firmware) is executed with a
`__builtins__` of its own whose `__import__` resolves names through the node's table, whose
`open` reaches the node's flash and whose `print` writes to the node's console.
"""

from __future__ import annotations

import builtins
import os
import sys
import types
from pathlib import Path

from simulator.mp import simboard

MP_DIR = Path(__file__).resolve().parent / "mp"

# Firmware name -> fake module file in simulator/mp (MicroPython dialect).
FAKES = {
    "machine": "fake_machine",
    "network": "fake_network",
    "time": "fake_time",
    "esp32": "fake_esp32",
    "ntptime": "fake_ntptime",
    "os": "fake_os",
    "random": "fake_random",
    "micropython": "fake_micropython",
    "gc": "fake_gc",
    "sys": "fake_sys",
    "socket": "fake_socket",
}
# Modules the firmware may import that CPython provides with the same behaviour.
PASSTHROUGH = {"json", "struct", "errno", "math", "binascii", "hashlib", "io", "select",
               "collections", "re", "array", "ssl"}

_code_cache: dict[tuple, types.CodeType] = {}

# What the fake `os` builds on: the host's own filesystem calls (under MicroPython, the WASI
# runner provides the same names from MicroPython's `os`).
_hostos = types.ModuleType("_hostos")
for _name in ("listdir", "stat", "remove", "rename", "mkdir", "rmdir"):
    setattr(_hostos, _name, getattr(os, _name))
_hostos.open = builtins.open


def compile_file(path: str) -> types.CodeType:
    """Compile a source file once per (path, mtime, size): nodes share immutable code objects."""
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    code = _code_cache.get(key)
    if code is None:
        with open(path, encoding="utf-8") as f:
            code = compile(f.read(), path, "exec")
        _code_cache[key] = code
    return code


class NodeModules:
    """The import table of one node."""

    def __init__(self, board: simboard.Board):
        self.board = board
        self.fakes: dict[str, types.ModuleType] = {}
        self.firmware: dict[str, types.ModuleType] = {}
        self.builtins = dict(builtins.__dict__)
        self.builtins["__import__"] = self._import
        self.builtins["print"] = self._print
        # Fakes load on first import and stay: they are the node's hardware. `os` is needed
        # at once, for the node's `open`.
        self.builtins["open"] = self._load_fake("os")._open
        self._search = [board.flash_root, os.path.join(board.flash_root, "lib")]

    # ---- fakes: the node's hardware, kept across resets ------------------------------------
    def _load_fake(self, name: str) -> types.ModuleType:
        path = str(MP_DIR / (FAKES[name] + ".py"))
        mod = types.ModuleType(name)
        mod.__file__ = path
        mod.__dict__["__builtins__"] = self.builtins
        self.fakes[name] = mod
        exec(compile_file(path), mod.__dict__)
        mod._attach(self.board)
        return mod

    # ---- firmware: RAM, gone at every reset -------------------------------------------------
    def reset(self) -> None:
        self.firmware.clear()

    def run_main(self) -> None:
        """What the board does after boot: run main.py from the flash root."""
        path = os.path.join(self.board.flash_root, "main.py")
        mod = types.ModuleType("__main__")
        mod.__file__ = "main.py"
        mod.__dict__["__builtins__"] = self.builtins
        exec(compile_file(path), mod.__dict__)

    def _find(self, name: str):
        rel = name.replace(".", "/")
        for base in self._search:
            pkg = os.path.join(base, rel, "__init__.py")
            if os.path.exists(pkg):
                return pkg, True
            mod = os.path.join(base, rel + ".py")
            if os.path.exists(mod):
                return mod, False
        return None, False

    def _load_firmware(self, name: str) -> types.ModuleType:
        mod = self.firmware.get(name)
        if mod is not None:
            return mod
        path, is_pkg = self._find(name)
        if path is None:
            raise ImportError("no module named '%s'" % name)
        mod = types.ModuleType(name)
        mod.__file__ = path
        mod.__dict__["__builtins__"] = self.builtins
        if is_pkg:
            mod.__path__ = [os.path.dirname(path)]
        self.firmware[name] = mod
        try:
            exec(compile_file(path), mod.__dict__)
        except BaseException:
            del self.firmware[name]
            raise
        if "." in name:
            parent, _, child = name.rpartition(".")
            setattr(self._load_firmware(parent), child, mod)
        return mod

    def _resolve(self, name: str) -> types.ModuleType:
        if name in FAKES:
            return self.fakes.get(name) or self._load_fake(name)
        if name == "simboard":
            return simboard
        if name == "_hostos":
            return _hostos
        if name in self.firmware:
            return self.firmware[name]
        if name in PASSTHROUGH:
            __import__(name)
            return sys.modules[name]
        if name.split(".")[0] in ("typing", "__future__"):
            # type-checking-only imports guarded by `if False` never get here at run time;
            # __future__ annotations are harmless.
            __import__(name)
            return sys.modules[name]
        return self._load_firmware(name)

    def _import(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level:
            raise ImportError("relative import of %r: TownSense firmware uses absolute imports" % name)
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            mod = self._resolve(".".join(parts[:i]))
        if fromlist:
            for item in fromlist:
                if item != "*" and not hasattr(mod, item) and hasattr(mod, "__path__"):
                    self._load_firmware(name + "." + item)
            return mod
        return self._resolve(parts[0])

    def _print(self, *args, sep=" ", end="\n", file=None):
        text = sep.join(str(a) for a in args) + end
        if text.endswith("\n"):
            text = text[:-1]
        for line in text.split("\n"):
            self.board.print(line)
