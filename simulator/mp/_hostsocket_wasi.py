# The `_hostsocket` of the WASI MicroPython: the host facility fake_socket.py builds on (under
# CPython, simulator/loader.py gives CPython's own socket, getaddrinfo, timeout and select),
# here over the build's host-call bridge (its `host` module), which simulator/wasi.py serves
# with real CPython sockets. wasiboot.py registers it as `_hostsocket` only when the run has a
# broker (wasi.run_node(..., broker=(host, port))); without it fake_socket finds no
# `_hostsocket` and every connection fails, as before.
#
# The bridge: host.call(name, payload) -> str. The payload may be bytes (the host gets them
# raw), the result must be UTF-8 text, so received data comes back hex-encoded. Every answer
# starts with a status word:
#   "OK[ <value>]"   done (value: a socket id, an address, hex data, readable ids...)
#   "T"              the host socket timed out (raised here as `timeout`, an OSError)
#   "E <ERRNAME>"    an OSError on the host (its errno's name: errno numbers are the guest's)
# Names: sock_open, sock_setopt, sock_connect, sock_send, sock_recv, sock_select, sock_close,
# sock_getaddrinfo. A socket's timeout stays here and goes with each call that can wait.
#
# Only what fake_socket.py uses: socket(af, type) with setsockopt, settimeout, connect,
# sendall/send, recv, close, fileno; getaddrinfo; timeout; select (read and write lists);
# monotonic; the constants below (the host's values: they only travel back to the host).
import errno
import time as _time
from binascii import unhexlify

import host as _bridge

AF_INET = 2
SOCK_STREAM = 1
IPPROTO_TCP = 6
TCP_NODELAY = 1

_call = _bridge.call


class timeout(OSError):
    pass


def _errno(name):
    code = getattr(errno, name, None)
    return code if code is not None else errno.EIO


def _check(ans):
    """The value part of an answer; raises for "T" and "E ..."."""
    if ans[:2] == "OK":
        return ans[3:]
    if ans == "T":
        raise timeout(errno.ETIMEDOUT)
    if ans[:2] == "E ":
        raise OSError(_errno(ans[2:]))
    raise OSError(errno.EIO)


def _t(value):
    return "-" if value is None else repr(value)


class socket:
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        self._id = _check(_call("sock_open", "%d %d" % (af, type)))
        self._timeout = None
        self._closed = False

    def fileno(self):
        return -1 if self._closed else int(self._id)

    def setsockopt(self, level, opt, value):
        _check(_call("sock_setopt", "%s %d %d %d" % (self._id, level, opt, value)))

    def settimeout(self, value):
        self._timeout = None if value is None else float(value)

    def gettimeout(self):
        return self._timeout

    def connect(self, address):
        _check(_call("sock_connect", "%s %s %s %d" % (self._id, _t(self._timeout), address[0], address[1])))

    def sendall(self, data):
        self.send(data)

    def send(self, data):
        # the data goes raw after a text header: the host reads the payload as bytes
        head = "%s %s " % (self._id, _t(self._timeout))
        return int(_check(_call("sock_send", head.encode() + bytes(data))))

    def recv(self, n):
        return unhexlify(_check(_call("sock_recv", "%s %s %d" % (self._id, _t(self._timeout), n))))

    def close(self):
        if not self._closed:
            self._closed = True
            _call("sock_close", self._id)


def _ids(socks):
    if not socks:
        return "-"
    return ",".join([s._id for s in socks])


def _pick(socks, ids):
    if ids == "-":
        return []
    ready = ids.split(",")
    return [s for s in socks if s._id in ready]


def select(rlist, wlist, xlist, t=None):
    """CPython's select.select over the host's sockets (exceptional conditions: never)."""
    ans = _check(_call("sock_select", "%s %s %s" % (_t(t), _ids(rlist), _ids(wlist))))
    r, w = ans.split(" ")
    return _pick(rlist, r), _pick(wlist, w), []


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    """As CPython's: [(family, type, proto, canonname, (address, port))] (IPv4 only)."""
    addr = _check(_call("sock_getaddrinfo", "%s %d" % (host, port)))
    return [(AF_INET, SOCK_STREAM, IPPROTO_TCP, "", (addr, port))]


def monotonic():
    # seconds of the build's own clock (WASI clock_time_get, wall time): only differences of
    # it count. The real `time`: wasiboot imports this module before the fakes replace it.
    return _time.time_ns() / 1000000000
