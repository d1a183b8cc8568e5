"""`townsense board serve`: a simulated node on a pseudo-terminal, speaking the MicroPython REPL
(friendly, raw and raw-paste) well enough for the real `mpremote` and for provisioning tools.

Code the host sends is executed by CPython in a MicroPython-like environment made of the
simulator's own fakes (simulator/loader.NodeModules): `os` and `open` reach the node's flash
directory, `machine`, `time`, `gc`... are the node's hardware in virtual time. A reset (a hard
`machine.reset()`, or a soft reset in the friendly REPL) boots the node from its flash: its
main.py runs for a bounded virtual time and its console appears on the terminal.

Threads: a reader takes bytes from the pty (a Ctrl-C while code runs interrupts it, as on a
board); the board thread runs the REPL and everything the node executes.
"""

from __future__ import annotations

import ast
import ctypes
import errno
import json
import os
import queue
import select
import shutil
import struct
import tempfile
import threading
import traceback
import tty
import types
from pathlib import Path

from simulator import flash, profiles, worlds
from simulator.loader import NodeModules
from simulator.mp import simbattery, simboard, simnet

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PASTE_WINDOW = 256  # raw-paste flow control: bytes the host may send per \x01 credit
MPY_VERSION, MPY_SUB_VERSION, ARCH_XTENSAWIN = 6, 3, 10
# sys.implementation._mpy as py/persistentcode.h builds it: version | (sub | arch << 2) << 8
MPY_VALUE = MPY_VERSION | (MPY_SUB_VERSION | ARCH_XTENSAWIN << 2) << 8
DEFAULT_BOARD = "lolin-d32"
DEFAULT_BOOT_S = 60.0


class _Stop(BaseException):
    """Unwinds the board thread when the server stops."""


class _AttrTuple(tuple):
    """A tuple whose fields also read as attributes (MicroPython's attrtuple)."""

    _fields: tuple = ()

    def __new__(cls, values):
        return super().__new__(cls, values)

    def __getattr__(self, name):
        try:
            return self[self._fields.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def __repr__(self):
        return "(" + ", ".join("%s=%r" % kv for kv in zip(self._fields, self)) + ")"


class _Uname(_AttrTuple):
    _fields = ("sysname", "nodename", "release", "version", "machine")


class _Implementation(_AttrTuple):
    _fields = ("name", "version", "_machine", "_mpy")


def _async_raise(thread_id: int, exc) -> None:
    """Raise exc in another thread at its next bytecode (None: cancel a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else ctypes.c_void_p(None))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class BoardServer:
    """One simulated board behind one pseudo-terminal."""

    def __init__(self, flash_dir, node_type: str | None = None, board: str | None = None,
                 boot_s: float = DEFAULT_BOOT_S, boot: bool = True, console=None):
        self.flash_dir = Path(flash_dir).resolve()
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        cfg = _read_json(self.flash_dir / "config.json")
        self.node_type = node_type or cfg.get("type")
        if self.node_type:
            flash.firmware_files(self.node_type)  # ValueError for a type the firmware lacks
        board = board or _read_json(self.flash_dir / "board.json").get("name") or DEFAULT_BOARD
        self.profile = profiles.load(board)  # ValueError names the known boards
        self.boot_us = int(boot_s * 1e6)
        self._console_cb = console
        self._make_node(cfg)
        # the pty: the server keeps the slave open too, so that the terminal (raw mode, what
        # the node printed meanwhile) outlives each client
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._rx: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._busy = False  # the board thread runs the node's code: Ctrl-C interrupts it
        self._stopping = False
        self._stalled = False
        self._reader = threading.Thread(target=self._read_loop, name="boardserve-rx", daemon=True)
        self._thread = threading.Thread(target=self._board_loop, args=(boot,), name="boardserve", daemon=True)
        self._reader.start()
        self._thread.start()

    # ---- the node -----------------------------------------------------------------------
    def _make_node(self, cfg: dict) -> None:
        import time

        node_id = str(cfg.get("node_id") or "board")
        now = int(time.time())
        b = self.board = simboard.Board(node_id, self.profile, str(self.flash_dir),
                                        rtc_epoch=now - simboard.SECONDS_1970_TO_2000)
        # the board sits in range of the access point its config names (else the default one)
        wifi = cfg.get("wifi") if isinstance(cfg.get("wifi"), dict) else None
        aps = None
        if wifi and wifi.get("ssid"):
            aps = [simnet.AccessPoint(str(wifi["ssid"]), str(wifi.get("key", "")), b"\x02TS\x00\x00\x01", 6, -62)]
        b.network = simnet.NetworkWorld(aps)
        b.console_sink = lambda board, text: self._console_line(text)
        simbattery.attach(b)
        if self.node_type:
            worlds.attach(b, self.node_type, None, 1, now)
        self.modules = NodeModules(b)
        self._repl_modules = self._make_repl_modules()
        self._new_globals()

    def _make_repl_modules(self) -> dict:
        """What `import sys` / `import os` give code sent to the REPL: the node's fakes, with
        the attribute tuples tools read (sys.implementation.name, os.uname().machine)."""
        imp = self.modules.builtins["__import__"]
        fake_os, fake_sys = imp("os"), imp("sys")
        u = list(fake_os.uname())
        mcu = str(self.profile.get("mcu", "esp32")).upper()
        u[4] = "Generic %s module with %s" % (mcu, mcu)
        uname = _Uname(u)
        repl_os = types.ModuleType("os")
        repl_os.__dict__.update({k: v for k, v in fake_os.__dict__.items() if not k.startswith("__")})
        repl_os.uname = lambda: uname
        repl_sys = types.ModuleType("sys")
        repl_sys.__dict__.update({k: v for k, v in fake_sys.__dict__.items() if not k.startswith("__")})
        name, version = fake_sys.implementation.name, tuple(fake_sys.implementation.version)
        repl_sys.implementation = _Implementation((name, version, uname.machine, MPY_VALUE))
        repl_sys.stdout = repl_sys.stderr = _Stream(self)
        repl_sys.print_exception = lambda exc, file=None: (file or repl_sys.stdout).write(self._traceback(exc))
        repl_sys.modules = {}
        return {"os": repl_os, "sys": repl_sys}

    def _new_globals(self) -> None:
        """A fresh __main__ for the REPL (a reset forgets the host's variables)."""
        b = dict(self.modules.builtins)
        b["print"] = self._print
        b["open"] = self._open
        base_import = self.modules._import
        repl = self._repl_modules

        def _import(name, globals=None, locals=None, fromlist=(), level=0):
            if level == 0 and name in repl:
                return repl[name]
            return base_import(name, globals, locals, fromlist, level)

        b["__import__"] = _import
        b["__repl_show__"] = lambda value: value is None or self._print(repr(value))
        b["help"] = lambda *a: self._print("A TownSense node simulated on the host: / is its flash, "
                                           "machine, time, os... are the simulator's fakes.")
        for name in ("input", "exit", "quit", "copyright", "credits", "license"):
            b.pop(name, None)  # the host's interactive helpers would read the host's stdin
        self.globals = {"__name__": "__main__", "__builtins__": b}

    def _open(self, path, mode="r", *args, **kwargs):
        # flash.install hard-links firmware files to the repository's: writing through the
        # link would change the source tree, so a file with other links is copied first
        if any(m in mode for m in "wa+"):
            host = self._repl_modules["os"]._host(path)
            try:
                if os.stat(host).st_nlink > 1:
                    tmp = host + ".unlink"
                    shutil.copyfile(host, tmp)
                    os.replace(tmp, host)
            except OSError:
                pass
        return self.modules.builtins["open"](path, mode, *args, **kwargs)

    # ---- output ---------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        """To the terminal. Like a UART nobody listens to, output that finds the terminal full
        for 2 s (no client reading) is dropped, not waited for."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._master, view)
                view = view[n:]
                self._stalled = False
            except BlockingIOError:
                wait = 0 if self._stalled else 2.0
                if not select.select([], [self._master], [], wait)[1]:
                    self._stalled = True
                    return
            except OSError:
                return

    def _write_text(self, text) -> None:
        if isinstance(text, (bytes, bytearray)):
            data = bytes(text)
        else:
            data = str(text).encode("utf-8", "replace")
        self._write(data.replace(b"\n", b"\r\n"))  # MicroPython's stdout is "cooked"

    def _print(self, *args, sep=" ", end="\n", file=None):
        text = sep.join(str(a) for a in args) + end
        (file or self._repl_modules["sys"].stdout).write(text)

    def _console_line(self, text: str) -> None:
        self._write_text(text + "\n")
        if self._console_cb is not None:
            self._console_cb(text)

    def _traceback(self, exc: BaseException) -> str:
        """The exception as MicroPython prints it; frames of the fakes and of this server
        are the board's C code and do not show."""
        lines = ["Traceback (most recent call last):"]
        root = str(self.flash_dir) + "/"
        for fr in traceback.extract_tb(exc.__traceback__):
            if fr.filename == "<stdin>":
                name = "<stdin>"
            elif fr.filename.startswith(root):
                name = fr.filename[len(root):]
            else:
                continue
            lines.append('  File "%s", line %d, in %s' % (name, fr.lineno, fr.name))
        if isinstance(exc, SyntaxError):
            lines.append('  File "<stdin>", line %s' % (exc.lineno or 1))
        if isinstance(exc, OSError):
            code = exc.errno if exc.errno is not None else (exc.args[0] if exc.args else None)
            if isinstance(code, int):
                lines.append("OSError: [Errno %d] %s" % (code, errno.errorcode.get(code, code)))
            else:
                lines.append("OSError: %s" % exc)
        elif isinstance(exc, SyntaxError):
            lines.append("SyntaxError: %s" % (exc.msg or "invalid syntax"))
        elif exc.args or isinstance(exc, KeyboardInterrupt):
            lines.append("%s: %s" % (type(exc).__name__, exc))
        else:
            lines.append(type(exc).__name__)
        return "\n".join(lines) + "\n"

    # ---- input ----------------------------------------------------------------------------
    def _read_loop(self) -> None:
        while not self._stopping:
            try:
                if not select.select([self._master], [], [], 0.1)[0]:
                    continue
                data = os.read(self._master, 4096)
            except BlockingIOError:
                continue
            except OSError:
                break
            for c in data:
                if c == 0x03:
                    with self._lock:
                        if self._busy:  # interrupts the running code; not queued
                            _async_raise(self._thread.ident, KeyboardInterrupt)
                            continue
                self._rx.put(c)
        self._rx.put(None)

    def _getc(self) -> int:
        c = self._rx.get()
        if c is None or self._stopping:
            raise _Stop()
        return c

    def _interruptible(self, fn) -> None:
        """Run fn (the node's code) so that a Ctrl-C from the host raises KeyboardInterrupt."""
        with self._lock:
            self._busy = True
        try:
            fn()
        finally:
            with self._lock:
                self._busy = False
                _async_raise(self._thread.ident, None)  # a Ctrl-C that came too late

    # ---- the REPL ----------------------------------------------------------------------------
    def _board_loop(self, boot: bool) -> None:
        try:
            if boot:
                self._boot(simboard.PWRON_RESET)
            mode = "friendly"
            while True:
                mode = self._raw_repl() if mode == "raw" else self._friendly_repl()
        except _Stop:
            pass

    def _banner(self) -> None:
        self._write_text('MicroPython v1.29.0 (TownSense simulated board); %s\nType "help()" for more information.\n'
                         % self._repl_modules["os"].uname().machine)

    def _friendly_repl(self) -> str:
        self._banner()
        line = bytearray()
        self._write(b">>> ")
        while True:
            c = self._getc()
            if c == 0x01:  # Ctrl-A: raw REPL
                self._write(b"\r\n")
                return "raw"
            if c == 0x02:  # Ctrl-B: banner
                self._write(b"\r\n")
                return "friendly"
            if c == 0x03:
                line.clear()
                self._write(b"\r\n>>> ")
            elif c == 0x04 and not line:  # Ctrl-D: soft reset, then main.py
                self._write(b"\r\n")
                self._write_text("MPY: soft reboot\n")
                self._boot(simboard.SOFT_RESET)
                return "friendly"
            elif c == 0x0D:
                self._write(b"\r\n")
                if line.strip():
                    mode = self._run_line(bytes(line).decode("utf-8", "replace"))
                    if mode:
                        return mode
                line.clear()
                self._write(b">>> ")
            elif c in (0x08, 0x7F):
                if line:
                    line.pop()
                    self._write(b"\x08 \x08")
            elif c >= 0x20 or c == 0x09:
                line.append(c)
                self._write(bytes([c]))

    def _run_line(self, src: str) -> str | None:
        """One line typed at the friendly REPL: the value of a last expression is shown."""
        try:
            tree = ast.parse(src, "<stdin>")
        except SyntaxError:
            return self._execute(src, framed=False)  # compiled again there: the error shows
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = tree.body[-1]
            last.value = ast.Call(ast.Name("__repl_show__", ast.Load()), [last.value], [])
            ast.fix_missing_locations(tree)
        return self._execute(compile(tree, "<stdin>", "exec"), framed=False)

    def _raw_repl(self) -> str:
        self._write(RAW_BANNER)
        while True:
            self._write(b">")
            line = bytearray()
            while True:
                c = self._getc()
                if c == 0x01:  # Ctrl-A again: restart the raw REPL
                    self._write(RAW_BANNER)
                    line = None
                    break
                if c == 0x02:  # Ctrl-B: friendly REPL
                    self._write(b"\r\n")
                    return "friendly"
                if c == 0x03:
                    line.clear()
                elif c == 0x04:
                    break
                elif c == 0x05 and not line:
                    line = self._raw_paste()
                    break
                else:
                    line.append(c)
            if line is None:
                continue
            if not line and c == 0x04:  # Ctrl-D without code: soft reset, no main.py
                self._soft_reboot()
                self._write(RAW_BANNER)
                continue
            if c == 0x04:
                self._write(b"OK")
            mode = self._execute(bytes(line).decode("utf-8", "replace"), framed=True)
            if mode == "friendly":
                return mode
            if mode == "raw":  # soft reset from the code: the raw REPL comes back
                self._write(RAW_BANNER)

    def _raw_paste(self) -> bytearray | None:
        """Ctrl-E 'A' Ctrl-A: raw-paste mode with its window flow control; None if the host
        asked for something else."""
        if self._getc() != ord("A") or self._getc() != 0x01:
            self._write(b"R\x00")
            return None
        self._write(b"R\x01" + struct.pack("<H", PASTE_WINDOW))
        data = bytearray()
        credit = 0
        while True:
            c = self._getc()
            if c == 0x04:
                self._write(b"\x04")  # end of data acknowledged: compile and run
                return data
            data.append(c)
            credit += 1
            if credit == PASTE_WINDOW:
                credit = 0
                self._write(b"\x01")

    def _execute(self, code, framed: bool) -> str | None:
        """Run code sent to the REPL. framed: raw REPL (output, \\x04, error, \\x04). Returns
        the REPL mode to go to after a reset the code caused, else None."""
        err = ""
        restart = None

        def run():
            exec(code if not isinstance(code, str) else compile(code, "<stdin>", "exec"), self.globals)

        try:
            self._interruptible(run)
        except _Stop:
            raise
        except (simboard.Restart, SystemExit) as e:
            restart = e
        except BaseException as e:  # the board prints any error, KeyboardInterrupt included
            err = self._traceback(e)
        if isinstance(restart, (simboard.SoftReset, SystemExit)):  # sys.exit() too, as on a board
            if framed:
                self._write(b"\x04\x04")
            self._soft_reboot()
            if not framed:
                self._boot(simboard.SOFT_RESET, soft_done=True)
            return "raw" if framed else "friendly"
        if restart is not None:  # machine.reset(), deepsleep...: the chip restarts, no framing
            if isinstance(restart, simboard.DeepSleep):
                self._sleep(restart.ms)
            self._boot(restart.cause)
            return "friendly"
        if framed:
            self._write(b"\x04")
            self._write_text(err)
            self._write(b"\x04")
        else:
            self._write_text(err)
        return None

    # ---- resets and boots ------------------------------------------------------------------
    def _soft_reboot(self) -> None:
        """RAM is gone (the host's variables, the firmware's modules); flash and RTC stay."""
        self._write_text("MPY: soft reboot\n")
        self.modules.reset()
        self._new_globals()
        self.board.boot(simboard.SOFT_RESET)

    def _sleep(self, ms: int) -> None:
        b = self.board
        b.sta_ip = None
        b.advance(ms * 1000 if ms > 0 else 0, simboard.DEEP_SLEEP)
        b.wake_reason = simboard.TIMER_WAKE

    def _boot(self, cause: int, soft_done: bool = False) -> None:
        """The chip starts and runs main.py from flash, for at most boot_us of virtual time
        (deep sleeps included); then it waits at the REPL, as if interrupted."""
        b = self.board
        end = b.call_at(b.clock.now_us + self.boot_us, _time_up)
        try:
            for _ in range(100):  # a firmware that restarts itself forever still ends
                if not soft_done:
                    self.modules.reset()
                    self._new_globals()
                    b.boot(cause)
                soft_done = False
                if not (self.flash_dir / "main.py").exists():
                    return
                try:
                    self._interruptible(self.modules.run_main)
                    return  # main.py returned: the REPL
                except simboard.DeepSleep as e:
                    if e.ms <= 0 or b.clock.now_us + e.ms * 1000 >= end[0]:
                        self._note("main.py went to deep sleep%s; the board stays at the REPL"
                                   % (" for %d ms" % e.ms if e.ms > 0 else ""))
                        return
                    self._sleep(e.ms)
                    cause = simboard.DEEPSLEEP_RESET
                except _TimeUp:
                    self._note("main.py stopped after %g virtual seconds" % (self.boot_us / 1e6))
                    return
                except simboard.Restart as e:
                    cause = e.cause
                except _Stop:
                    raise
                except BaseException as e:  # the REPL prints what ended main.py
                    self._write_text(self._traceback(e))
                    return
        finally:
            b.cancel(end)

    def _note(self, text: str) -> None:
        self._console_line("[townsense board serve: %s]" % text)

    # ---- stopping ---------------------------------------------------------------------------
    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._rx.put(None)
        with self._lock:
            if self._busy:
                _async_raise(self._thread.ident, _Stop)
        self._thread.join(5)
        self._reader.join(5)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


class _TimeUp(BaseException):
    """The boot's virtual time is up (a mains node's main loop never returns)."""


def _time_up(board) -> None:
    raise _TimeUp()


class _Stream:
    """sys.stdout / sys.stderr of the REPL: the terminal."""

    def __init__(self, server: BoardServer):
        self._server = server

    def write(self, s):
        self._server._write_text(s)
        return len(s)

    def flush(self):
        pass


def serve(flash_dir, node_type: str | None = None, board: str | None = None, *,
          boot_s: float = DEFAULT_BOOT_S, boot: bool = True, console=None):
    """Serve a simulated board whose flash is flash_dir on a new pseudo-terminal.
    node_type: the world its sensors see (default: config.json's type); board: its profile
    (default: board.json's name, else lolin-d32); boot: run main.py at power-on; console:
    callable(line) also told each console line of the node. Returns (pty path, stop)."""
    server = BoardServer(flash_dir, node_type, board, boot_s=boot_s, boot=boot, console=console)
    return server.path, server.stop


# ---- the CLI ---------------------------------------------------------------------------------
def cmd_serve(args) -> int:
    import sys
    import time

    if args.install and not args.type:
        print("townsense board serve: --install needs --type", file=sys.stderr)
        return 2
    own = None if args.flash else tempfile.mkdtemp(prefix="townsense-board-")
    flash_dir = args.flash or own
    try:
        try:
            if args.install:
                cfg = {"node_id": args.node_id, "type": args.type,
                       "wifi": {"ssid": "townsense", "key": "townsense-demo"}}
                flash.install(Path(flash_dir), args.type, cfg, profiles.load(args.board or DEFAULT_BOARD))
            path, stop = serve(flash_dir, args.type, args.board, boot_s=args.boot_s,
                               console=lambda line: print("console:", line, flush=True))
        except (ValueError, OSError) as e:
            print("townsense board serve: %s" % e, file=sys.stderr)
            return 2
        print("board on %s (flash %s); try: mpremote connect %s ls" % (path, flash_dir, path), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            stop()
        return 0
    finally:
        if own:
            shutil.rmtree(own, ignore_errors=True)


def register(sub) -> None:
    """Add `board serve` to the `townsense` subcommands (reusing a `board` group another
    module made)."""
    import argparse

    board = sub.choices.get("board") or sub.add_parser("board", help="simulated and real boards")
    group = next((a for a in board._actions if isinstance(a, argparse._SubParsersAction)), None)
    if group is None:
        group = board.add_subparsers(dest="board_cmd", required=True)
    s = group.add_parser("serve", help="a simulated board on a pseudo-terminal, for mpremote",
                         description="Serve a simulated node on a pseudo-terminal that speaks the "
                                     "MicroPython REPL: `mpremote connect PTY ...` works against it.")
    s.add_argument("--type", help="node type: the world its sensors see (default: config.json's)")
    s.add_argument("--board", help="board profile (default: board.json's, else %s)" % DEFAULT_BOARD)
    s.add_argument("--flash", metavar="DIR", help="the node's flash directory (default: a new empty "
                                                  "one, removed at exit)")
    s.add_argument("--install", action="store_true",
                   help="first put the firmware of --type on the flash, with a demo config")
    s.add_argument("--node-id", default="board-1", help="node_id of the --install config")
    s.add_argument("--boot-s", type=float, default=DEFAULT_BOOT_S,
                   help="virtual seconds main.py runs after a reset before the REPL takes over")
    s.set_defaults(func=cmd_serve)
