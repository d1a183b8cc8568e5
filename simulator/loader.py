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
import ssl as _ssl
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
    "ssl": "fake_ssl",
}
# Modules the firmware may import that CPython provides with the same behaviour.
PASSTHROUGH = {"json", "struct", "errno", "math", "binascii", "hashlib", "io", "select",
               "collections", "re", "array"}

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


# What the fake `ssl` builds on: CPython's TLS over memory buffers (not under WASI). The fake
# moves the records through the node's fake socket (virtual time, airtime) and maps failures to
# the port's exceptions; here the TLS is done for real and failures are reported as kinds.
class _HostTLSError(Exception):
    """args (kind, text); kind: "cert" (CA data that does not parse), "untrusted", "name",
    "expired", "future", "usage" (certificate verification), "eof", "alert", "tls"."""


# OpenSSL verify codes (x509_vfy.h) -> kinds; any other verification failure is "untrusted"
_VERIFY_KINDS = {9: "future", 10: "expired", 26: "usage", 62: "name", 64: "name"}
_NO_CHECK_TIME = 0x200000  # X509_V_FLAG_NO_CHECK_TIME: dates go by the node's clock (fake_ssl)


def _ca_context(cadata_list) -> _ssl.SSLContext:
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = _ssl.TLSVersion.TLSv1_2  # the ESP32 build's mbedTLS: TLS 1.2 only
    for data in cadata_list:
        # mbedTLS takes PEM (one or more certificates) or one DER certificate; CPython wants
        # PEM as str, DER as bytes
        ca = data.decode("ascii", "replace") if b"-----BEGIN " in data else data
        try:
            ctx.load_verify_locations(cadata=ca)
        except (_ssl.SSLError, ValueError, TypeError) as e:
            raise _HostTLSError("cert", str(e)) from None
    return ctx


def _check_ca(cadata: bytes) -> None:
    _ca_context([bytes(cadata)])


def _tls_kind(e: _ssl.SSLError) -> str:
    if isinstance(e, (_ssl.SSLEOFError, _ssl.SSLZeroReturnError)):
        return "eof"
    return "alert" if "ALERT" in str(e.reason or "").upper() else "tls"


class _HostTLS:
    """One TLS client session of a node, over memory buffers: give() what came from the
    broker, take() what is to be sent to it."""

    def __init__(self, ca: list, verify: bool, server_hostname: str | None):
        ctx = self.ctx = _ca_context(ca)
        ctx.check_hostname = bool(verify and server_hostname)
        ctx.verify_mode = _ssl.CERT_REQUIRED if verify else _ssl.CERT_NONE
        ctx.verify_flags = ctx.verify_flags | _NO_CHECK_TIME
        self._in = _ssl.MemoryBIO()
        self._out = _ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(self._in, self._out, server_hostname=server_hostname)
        self._hdr = b""  # record framing of what was given: a partial header,
        self._left = 0  # and the bytes still missing from the current record

    def handshake(self) -> bool:
        """True when done, False when it waits for the broker; raises _HostTLSError."""
        try:
            self._tls.do_handshake()
            return True
        except _ssl.SSLWantReadError:
            return False
        except _ssl.SSLCertVerificationError as e:
            raise _HostTLSError(_VERIFY_KINDS.get(e.verify_code, "untrusted"), e.verify_message) from None
        except _ssl.SSLError as e:
            raise _HostTLSError(_tls_kind(e), str(e)) from None

    def take(self) -> bytes:
        return self._out.read()

    def give(self, data: bytes) -> None:
        """Bytes from the broker (b"": the end of the stream)."""
        if not data:
            self._in.write_eof()
            return
        self._in.write(data)
        i, n = 0, len(data)
        while i < n:  # follow the 5-byte record headers (type, version, length)
            if self._left:
                k = min(self._left, n - i)
                self._left -= k
                i += k
            else:
                k = min(5 - len(self._hdr), n - i)
                self._hdr += data[i:i + k]
                i += k
                if len(self._hdr) == 5:
                    self._left = int.from_bytes(self._hdr[3:5], "big")
                    self._hdr = b""

    def partial(self) -> bool:
        """What was given ends inside a record: the broker owes the rest."""
        return bool(self._left or self._hdr)

    def read(self, n: int) -> bytes | None:
        """Up to n bytes of plaintext; b"" at the end of the stream; None: needs more input."""
        try:
            return self._tls.read(n)
        except _ssl.SSLWantReadError:
            return None
        except (_ssl.SSLZeroReturnError, _ssl.SSLEOFError):
            return b""
        except _ssl.SSLError as e:
            raise _HostTLSError(_tls_kind(e), str(e)) from None

    def write(self, data: bytes) -> None:
        try:
            self._tls.write(data)
        except _ssl.SSLError as e:
            raise _HostTLSError(_tls_kind(e), str(e)) from None

    def dates(self) -> list:
        """(notBefore, notAfter) in Unix seconds of the broker's certificate and of the CA
        certificate that issued it."""
        leaf = self._tls.getpeercert() or {}
        certs = [leaf] + [c for c in self.ctx.get_ca_certs() if c.get("subject") == leaf.get("issuer")]
        return [(_ssl.cert_time_to_seconds(c["notBefore"]), _ssl.cert_time_to_seconds(c["notAfter"]))
                for c in certs if "notBefore" in c]


_hostssl = types.ModuleType("_hostssl")
_hostssl.Session = _HostTLS
_hostssl.Error = _HostTLSError
_hostssl.check_ca = _check_ca


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
        elif name == "_hostssl":
            mod = _hostssl
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
