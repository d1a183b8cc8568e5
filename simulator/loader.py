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
import select as _select
import socket as _socket
import sys
import time
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

_code_cache: dict[bytes, types.CodeType] = {}

# What the fake `os` builds on: the host's own filesystem calls (under MicroPython, the WASI
# runner provides the same names from MicroPython's `os`).
_hostos = types.ModuleType("_hostos")
for _name in ("listdir", "stat", "remove", "rename", "mkdir", "rmdir"):
    setattr(_hostos, _name, getattr(os, _name))
_hostos.open = builtins.open

# What the fake `socket` builds on: the host's real TCP sockets and select (not under WASI).
_hostsocket = types.ModuleType("_hostsocket")
for _name in ("socket", "getaddrinfo", "timeout", "AF_INET", "SOCK_STREAM", "IPPROTO_TCP", "TCP_NODELAY"):
    setattr(_hostsocket, _name, getattr(_socket, _name))
_hostsocket.select = _select.select
_hostsocket.monotonic = time.monotonic


def compile_file(path: str) -> types.CodeType:
    """Compile each distinct source once: every node has its own copy of the firmware files,
    all nodes share one immutable code object per distinct text."""
    with open(path, "rb") as f:
        key = f.read()
    code = _code_cache.get(key)
    if code is None:
        code = compile(key.decode("utf-8"), path, "exec")
        _code_cache[key] = code
    return code


class NodeModules:
    """The import table of one node."""

    def __init__(self, board: simboard.Board):
        self.board = board
        self.fakes: dict[str, types.ModuleType] = {}
        self._static: dict[str, types.ModuleType] = {}  # fakes and host modules: kept across resets
        self.firmware: dict[str, types.ModuleType] = {}
        self.builtins = dict(builtins.__dict__)
        self.builtins["__import__"] = self._import
        self.builtins["print"] = self._print
        # Fakes load on first import and stay: they are the node's hardware. `os` is needed
        # at once, for the node's `open`.
        self.builtins["open"] = self._load_fake("os")._open
        self._search = [board.flash_root, os.path.join(board.flash_root, "lib")]
        # name -> (path, is_package, code): firmware resolved and compiled once per node, until
        # the node's code files change (fake_os bumps board.code_gen on any .py/.mpy write).
        self._found: dict[str, tuple] = {}
        self._found_gen = board.code_gen

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
        if self._found_gen != self.board.code_gen:
            self.invalidate()
        hit = self._found.get("__main__")
        if hit is None:
            path = os.path.join(self.board.flash_root, "main.py")
            hit = self._found["__main__"] = (path, False, compile_file(path))
        mod = types.ModuleType("__main__")
        mod.__file__ = "main.py"
        mod.__dict__["__builtins__"] = self.builtins
        exec(hit[2], mod.__dict__)

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

    def invalidate(self) -> None:
        """Forget resolved paths and compiled code: the flash's code changed from outside."""
        self._found.clear()
        self._found_gen = self.board.code_gen

    def _lookup(self, name: str) -> tuple:
        if self._found_gen != self.board.code_gen:
            self.invalidate()
        hit = self._found.get(name)
        if hit is None:
            path, is_pkg = self._find(name)
            if path is None:
                raise ImportError("no module named '%s'" % name)
            hit = (path, is_pkg, compile_file(path))
            self._found[name] = hit
        return hit

    def _load_firmware(self, name: str) -> types.ModuleType:
        mod = self.firmware.get(name)
        if mod is not None:
            return mod
        path, is_pkg, code = self._lookup(name)
        mod = types.ModuleType(name)
        mod.__file__ = path
        mod.__dict__["__builtins__"] = self.builtins
        if is_pkg:
            mod.__path__ = [os.path.dirname(path)]
        self.firmware[name] = mod
        try:
            exec(code, mod.__dict__)
        except BaseException:
            del self.firmware[name]
            raise
        if "." in name:
            parent, _, child = name.rpartition(".")
            setattr(self._load_firmware(parent), child, mod)
        return mod

    def _resolve(self, name: str) -> types.ModuleType:
        mod = self.firmware.get(name) or self._static.get(name)
        if mod is not None:
            return mod
        if name in FAKES:
            mod = self._load_fake(name)
        elif name == "simboard":
            mod = simboard
        elif name == "_hostos":
            mod = _hostos
        elif name == "_hostsocket":
            mod = _hostsocket
        elif name in PASSTHROUGH or name.split(".")[0] in ("typing", "__future__"):
            # Same behaviour in CPython; typing/__future__ only ever serve annotations.
            __import__(name)
            mod = sys.modules[name]
        else:
            return self._load_firmware(name)
        self._static[name] = mod
        return mod

    def _import(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level:
            raise ImportError("relative import of %r: TownSense firmware uses absolute imports" % name)
        mod = self.firmware.get(name) or self._static.get(name)
        if mod is None:
            # Resolve each package on the way down, as the import system does.
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                mod = self._resolve(".".join(parts[:i]))
        if fromlist:
            if hasattr(mod, "__path__"):
                d = mod.__dict__
                for item in fromlist:
                    if item not in d and item != "*":
                        self._load_firmware(name + "." + item)
            return mod
        if "." in name:
            return self._resolve(name.partition(".")[0])
        return mod

    def _print(self, *args, sep=" ", end="\n", file=None):
        text = sep.join(str(a) for a in args) + end
        if text.endswith("\n"):
            text = text[:-1]
        for line in text.split("\n"):
            self.board.print(line)
