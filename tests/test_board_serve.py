"""`townsense board serve`: the real mpremote client against a simulated board on a pty."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest

from host import boardserve
from simulator import flash, profiles

TIMEOUT_S = 60


def mpremote(pty, *args, check=True):
    r = subprocess.run([sys.executable, "-m", "mpremote", "connect", pty, *args],
                       capture_output=True, timeout=TIMEOUT_S, check=False)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


@pytest.fixture
def board(tmp_path):
    """(pty path, flash directory) of a served board with a small filesystem."""
    flash_dir = tmp_path / "flash"
    (flash_dir / "lib").mkdir(parents=True)
    (flash_dir / "config.json").write_text('{"node_id": "n1"}')
    (flash_dir / "lib" / "util.py").write_text("X = 42\n")
    path, stop = boardserve.serve(flash_dir, board="esp32-devkitc")
    try:
        yield path, flash_dir
    finally:
        stop()


def test_ls_root_and_lib(board):
    pty, _ = board
    out = mpremote(pty, "ls").stdout.decode()
    assert "config.json" in out and "lib/" in out
    out = mpremote(pty, "ls", ":lib").stdout.decode()
    assert "7 util.py" in out


def test_cp_to_board_and_cat_back(board, tmp_path):
    pty, flash_dir = board
    src = tmp_path / "notes.txt"
    src.write_text("first line\nsecond line\n")
    mpremote(pty, "cp", str(src), ":notes.txt")
    assert (flash_dir / "notes.txt").read_text() == "first line\nsecond line\n"
    out = mpremote(pty, "cat", ":notes.txt").stdout.decode()
    assert out.replace("\r\n", "\n") == "first line\nsecond line\n"


def test_cp_recursive_and_rm(board, tmp_path):
    pty, flash_dir = board
    tree = tmp_path / "pkg"
    (tree / "sub").mkdir(parents=True)
    (tree / "__init__.py").write_text("")
    (tree / "sub" / "deep.py").write_text("Y = 1\n")
    mpremote(pty, "cp", "-r", str(tree), ":lib/")
    assert (flash_dir / "lib" / "pkg" / "sub" / "deep.py").read_text() == "Y = 1\n"
    mpremote(pty, "rm", ":lib/pkg/sub/deep.py")
    assert not (flash_dir / "lib" / "pkg" / "sub" / "deep.py").exists()
    mpremote(pty, "rm", "-r", ":lib/pkg")
    assert not (flash_dir / "lib" / "pkg").exists()
    r = mpremote(pty, "rm", ":nothing.txt", check=False)
    assert r.returncode != 0 and b"No such file" in r.stdout + r.stderr


def test_binary_file_round_trips(board, tmp_path):
    pty, flash_dir = board
    data = bytes(range(256)) * 3
    (tmp_path / "blob.bin").write_bytes(data)
    mpremote(pty, "cp", str(tmp_path / "blob.bin"), ":blob.bin")
    assert (flash_dir / "blob.bin").read_bytes() == data
    mpremote(pty, "cp", ":blob.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data


def test_exec_runs_on_the_node(board):
    pty, _ = board
    assert mpremote(pty, "exec", "print(1+1)").stdout.strip() == b"2"
    # the node's own imports: its flash's lib/, its fakes, what provisioning reads
    code = ("import sys, os, machine, util, binascii\n"
            "print(util.X, sys.implementation.name, sys.implementation.version[:3],"
            " sys.implementation._mpy & 0xff, sys.implementation._mpy >> 10,"
            " os.uname().machine, binascii.hexlify(machine.unique_id()).decode())")
    out = mpremote(pty, "exec", code).stdout.decode().split()
    assert out[:7] == ["42", "micropython", "(1,", "29,", "0)", "6", "10"]  # .mpy v6, xtensawin
    assert "ESP32" in " ".join(out[7:-1]) and len(out[-1]) == 12


def test_exec_error_shows_micropython_traceback(board):
    pty, _ = board
    r = mpremote(pty, "exec", "x = 1\nraise ValueError('bad value')", check=False)
    assert r.returncode != 0
    text = r.stdout.decode()
    assert 'File "<stdin>", line 2, in <module>' in text and "ValueError: bad value" in text
    r = mpremote(pty, "exec", "open('missing.txt')", check=False)
    assert r.returncode != 0 and "OSError: [Errno 2] ENOENT" in r.stdout.decode()


def test_soft_reset_forgets_ram_keeps_flash(board):
    pty, _ = board
    # variables live across commands of one session ...
    out = mpremote(pty, "exec", "x = 5\nopen('kept.txt', 'w').write('k')", "+", "exec", "print(x)").stdout
    assert out.strip() == b"5"
    # ... and a soft reset forgets them; the flash stays
    r = mpremote(pty, "exec", "x = 5", "+", "soft-reset", "+", "exec",
                 "print(open('kept.txt').read())\nprint(x)", check=False)
    assert b"k" in r.stdout and b"NameError" in r.stdout and r.returncode != 0


def test_writing_a_hard_linked_file_leaves_the_other_link_alone(board, tmp_path):
    # flash.install hard-links firmware files to the repository's own
    pty, flash_dir = board
    shared = tmp_path / "shared.py"
    shared.write_text("ORIGINAL = 1\n")
    os.link(shared, flash_dir / "main.py")
    (tmp_path / "new.py").write_text("NEW = 2\n")
    mpremote(pty, "cp", str(tmp_path / "new.py"), ":main.py")
    assert (flash_dir / "main.py").read_text() == "NEW = 2\n"
    assert shared.read_text() == "ORIGINAL = 1\n"


def test_ctrl_c_interrupts_code_that_never_ends(board):
    pty, _ = board
    p = subprocess.Popen([sys.executable, "-m", "mpremote", "connect", pty, "exec",
                          "print('looping')\nwhile True: pass"], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"looping"
    finally:
        p.kill()
        p.wait(TIMEOUT_S)
    # the next client's Ctrl-C stops the loop, and the board answers again
    assert mpremote(pty, "exec", "print('back')").stdout.strip() == b"back"


def test_friendly_repl_echoes_and_shows_values(board):
    pty, _ = board
    fd = os.open(pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        os.write(fd, b"\x03x = 6\rx * 7\r")
        got = b""
        deadline = time.monotonic() + TIMEOUT_S
        while b"42\r\n>>> " not in got and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                got += os.read(fd, 4096)
    finally:
        os.close(fd)
    assert b">>> x * 7\r\n42\r\n>>> " in got, got


def _read_pty_until(pty, marker: bytes, limit_s=TIMEOUT_S) -> bytes:
    """What the board printed since the last client left, read as a terminal would (the
    server keeps it; pyserial would flush it at open)."""
    fd = os.open(pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    got = b""
    deadline = time.monotonic() + limit_s
    try:
        while marker not in got and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                got += os.read(fd, 4096)
    finally:
        os.close(fd)
    return got


def test_reset_boots_the_node_from_flash(tmp_path):
    flash_dir = tmp_path / "flash"
    cfg = {"node_id": "hb-pty", "type": "heartbeat", "wifi": {"ssid": "townsense", "key": "townsense-demo"}}
    flash.install(flash_dir, "heartbeat", cfg, profiles.load("lolin-d32"))
    lines = []
    path, stop = boardserve.serve(flash_dir, boot=False, console=lines.append)
    try:
        mpremote(path, "reset")
        out = _read_pty_until(path, b">>> ")
        assert b"PUB townsense/hb-pty/telemetry" in out, out  # main.py ran its first report
        assert b"MicroPython v1.29.0" in out  # and the board waits at the REPL
        assert any(line.startswith("PUB townsense/hb-pty/") for line in lines)
        # the board is usable again, and the node left its spool on flash
        assert mpremote(path, "exec", "print(1+1)").stdout.strip() == b"2"
    finally:
        stop()
    assert set(os.listdir(flash_dir)) > {"main.py", "lib", "config.json", "board.json"}


def test_cli_registers_board_serve():
    import argparse

    p = argparse.ArgumentParser(prog="townsense")
    sub = p.add_subparsers(dest="cmd", required=True)
    boardserve.register(sub)
    args = p.parse_args(["board", "serve", "--type", "heartbeat", "--board", "lolin-d32", "--flash", "x"])
    assert (args.type, args.board, args.flash, args.func) == ("heartbeat", "lolin-d32", "x", boardserve.cmd_serve)
