"""A real mosquitto for tests: each test gets its own broker on a free loopback port, with a
temporary config, stopped at the end of the test.

    def test_x(mosquitto):  # the fixture, registered in tests/conftest.py
        mosquitto.port, mosquitto.url, mosquitto.restart(), mosquitto.stop(), mosquitto.start()

`Mosquitto(tmp_dir, persistence=True)` keeps retained messages and persistent sessions across a
restart (saved when the broker stops). Missing mosquitto is a failure, not a skip: the MQTT
tests are the interop proof (DESIGN.md), and CI installs the Debian package.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

INSTALL_HINT = "mosquitto is not installed: apt-get install -y mosquitto mosquitto-clients"
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find_program(name: str) -> str:
    """The path of a mosquitto program (mosquitto lives in sbin, often not on a user's PATH)."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))
    if path is None:
        pytest.fail("%s not found. %s" % (name, INSTALL_HINT), pytrace=False)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    host = "127.0.0.1"

    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = False,
                 extra_config: str = ""):
        self.exe = find_program("mosquitto")
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persistence = persistence
        self.extra_config = extra_config
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "mosquitto.log"

    @property
    def url(self) -> str:
        return "mqtt://%s:%d" % (self.host, self.port)

    def _write_config(self) -> Path:
        lines = [
            "listener %d %s" % (self.port, self.host),
            "allow_anonymous true",
            # when started as root, mosquitto would switch to the `mosquitto` user and lose
            # access to this directory; as another user this line is ignored
            "user %s" % getpass.getuser(),
            "log_dest file %s" % self.log,
            "log_type all",
            "persistence %s" % ("true" if self.persistence else "false"),
        ]
        if self.persistence:
            lines += ["persistence_location %s/" % self.dir, "autosave_interval 1"]
        conf = self.dir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n" + self.extra_config)
        return conf

    def start(self, timeout_s: float = 10.0) -> "Mosquitto":
        if self.proc is not None:
            raise RuntimeError("mosquitto is already running")
        conf = self._write_config()
        self.proc = subprocess.Popen([self.exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                self.proc = None
                raise RuntimeError("mosquitto exited at start (port %d):\n%s\n%s" % (
                    self.port, err, self.log_text()))
            if _accepts(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("mosquitto did not accept connections on port %d within %.0f s" % (
            self.port, timeout_s))

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def restart(self, down_s: float = 0.0) -> "Mosquitto":
        """Stop, stay down down_s seconds, start again on the same port (a broker outage)."""
        self.stop()
        if down_s:
            time.sleep(down_s)
        # the port may linger for a moment after the old process released it
        deadline = time.monotonic() + 10
        while True:
            try:
                return self.start()
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture
def mosquitto(tmp_path):
    """A running mosquitto on a free loopback port, stopped after the test."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class SilenceableProxy:
    """A TCP relay in front of a broker that can go silent: while silent it still accepts
    connections (the TCP handshake succeeds) but never forwards a byte either way — a broker
    that hangs, or a firewall that swallows traffic. Going silent also freezes the
    connections already open; speaking again closes them (as a hung broker's restart would)."""

    def __init__(self, upstream_port: int):
        import threading
        self.upstream = upstream_port
        self.silent = False
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port = self._server.getsockname()[1]
        self.accepted_while_silent = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(client)
                if self.silent:
                    self.accepted_while_silent += 1
                    continue  # held open, never answered
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.append(up)
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(4096)
                if not data:
                    break
                while self.silent:  # frozen: the bytes go nowhere until the connection dies
                    time.sleep(0.01)
                    if src.fileno() < 0:
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def go_silent(self):
        self.silent = True

    def speak(self):
        """End the silence: drop every connection made or frozen so far, relay new ones."""
        with self._lock:
            conns, self._conns = self._conns, []
            self.silent = False
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self._server.close()
        self.speak()
