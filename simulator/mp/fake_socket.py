# Fake of MicroPython's `socket` module (ESP32 port): TCP client sockets over the host's real
# sockets, so the firmware's own MQTT client talks to a real broker, in virtual time.
#
# The host facility comes from a `_hostsocket` module (under CPython, simulator/loader.py
# gives CPython's socket.socket, getaddrinfo, timeout and select.select). Without it (the WASI
# MicroPython has no network) every connection fails as an unreachable host.
#
# The model, per node:
# - no Wi-Fi (board.sta_ip None, or the scenario's network has an outage now): connect raises
#   OSError(EHOSTUNREACH), getaddrinfo of a name OSError(-202) (lwIP's EAI_FAIL, negated as
#   the port does); a Wi-Fi drop under an open connection aborts it (lwIP aborts the
#   connections of an address that goes away): that send/recv and later ones raise
#   OSError(ECONNABORTED), and the host connection is closed at once, so the broker sees the
#   drop (and publishes the will) without waiting for its keepalive.
# - connect: one round trip (SYN, SYN-ACK). A refused connection (RST) raises
#   OSError(ECONNRESET) (lwIP api_msg.c err_tcp passes ERR_RST to the connecting call).
# - send/write: the bytes' airtime at the profile's wifi.tx_kbps, plus 40 bytes of TCP/IP
#   headers, in WIFI_TX (counted, with those headers, in board.net_bytes[0]; bytes received
#   in net_bytes[1]: `make bench` reads them). An answer can come back one round trip later.
# - recv/read: data the host has already received is served at once. Otherwise the fake waits
#   for real data, at most the socket's timeout and never more than a wall-clock cap
#   (board attribute net_wall_cap_ms, default 3000, when the broker owes an answer; see _cap_s). Data that comes books, in WIFI_RX, what is
#   left of the round trip since the last send plus its airtime. Nothing within the cap means
#   nothing will come: virtual time advances by the socket's whole timeout, in WIFI_RX, and
#   recv raises OSError(ETIMEDOUT) (OSError(EAGAIN) on a non-blocking socket), as the port's
#   _socket_read_data does. A broker that accepts and never answers costs virtual time, and
#   at most the cap in wall time per read.
# - a blocking socket (no timeout) that gets nothing would hang a real board until its
#   watchdog fires; here it waits an hour of virtual time (the watchdog fires in it if one
#   runs) and then raises OSError(ETIMEDOUT).
# One-way latency: board attribute net_latency_us (default 5000, a LAN). A reset closes the
# node's connections. Only TCP client sockets are simulated (no UDP, bind, listen, accept).
import errno

import simboard

try:
    import _hostsocket as _host
except ImportError:
    _host = None

_board = None
_open = []  # host sockets of this node's open connections
_CHUNK = 4096  # bytes taken from the host per receive
_BLOCKED_S = 3600  # what a blocking read with nothing to read costs (see above)
_EAI_FAIL = -202  # lwIP netdb.h EAI_FAIL, raised negated by the port's getaddrinfo

TCP_NODELAY = 1
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3
SOL_SOCKET = 4095
SO_REUSEADDR = 4
MSG_PEEK = 1
MSG_DONTWAIT = 8
IPPROTO_IP = 0
IPPROTO_TCP = 6
IPPROTO_UDP = 17
AF_INET = 2
AF_INET6 = 10


def _attach(board):
    global _board
    _board = board
    board.boot_hooks.append(_on_boot)


def _on_boot(board):
    # RAM is gone: so are the TCP connections (the broker notices them closed)
    while _open:
        _open.pop().close()


def _link_up():
    net = _board.network
    return _board.sta_ip is not None and (net is None or net.wifi_ok(_board))


def _latency_us():
    return int(getattr(_board, "net_latency_us", 5000))


_lat = [0.002]  # running estimate of the host round trip (s): adapts the wall-clock waits


# MQTT 3.1.1 §2.2.1: the packets whose answer the broker owes (CONNECT, PUBLISH QoS 1/2,
# PUBREL, SUBSCRIBE, UNSUBSCRIBE, PINGREQ). Every TownSense connection speaks MQTT, and the
# firmware writes each packet whole, so the first byte of a write tells.
def _answer_due(data):
    if not data:
        return False
    t = data[0] >> 4
    if t == 3:
        return (data[0] >> 1) & 3 != 0
    return t in (1, 6, 8, 10, 12)


def _cap_s(expect):
    # Waiting for an answer the broker owes: as long as the broker needs, within
    # net_wall_cap_ms (a loaded machine must not turn a slow broker into a lost PUBACK).
    # After other writes (a QoS 0 publish expects nothing and must not cost the whole cap):
    # 20 round trips as this run has seen them. Idle listening (nothing sent since the last
    # read): only what already came in counts, or a day of a mains node listening for
    # commands would cost hours of wall time.
    if expect == 2:
        return getattr(_board, "net_wall_cap_ms", 3000) / 1000
    if expect:
        return min(0.3, max(0.005, 20 * _lat[0]))
    return getattr(_board, "net_idle_cap_ms", 2) / 1000


def _airtime_us(n):
    kbps = _board.profile.get("wifi", {}).get("tx_kbps", 1000)
    return (n + 40) * 8000 // kbps


def _is_ip(host):
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            return False
    return True


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    ai = (AF_INET, type or SOCK_STREAM, proto or IPPROTO_TCP, "")
    if _is_ip(host):
        return [ai + ((host, port),)]  # a numeric address needs no query
    if _host is None or not _link_up():
        raise OSError(_EAI_FAIL)
    _board.advance(2 * _latency_us(), simboard.WIFI_RX)  # one DNS query and its answer
    try:
        found = _host.getaddrinfo(host, port, _host.AF_INET, _host.SOCK_STREAM)
    except OSError:
        raise OSError(_EAI_FAIL)
    return [ai + ((found[0][4][0], port),)]


class socket:
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=IPPROTO_TCP):
        if af != AF_INET or type != SOCK_STREAM:
            raise ValueError("only TCP over IPv4 is simulated")
        self._h = None  # the host socket once connected
        self._t = None  # timeout in seconds; None blocks, 0 is non-blocking
        self._rx = b""  # bytes arrived and not yet read
        self._eof = False
        self._err = 0  # set when the connection was aborted or reset
        self._closed = False
        self._due = 0  # sim time (us) an answer to the last send can be back
        self._expect = False  # something was sent and its answer not yet read

    def settimeout(self, value):
        self._t = None if value is None else float(value)

    def setblocking(self, value):
        self._t = None if value else 0.0

    def connect(self, address):
        if self._closed:
            raise OSError(errno.EBADF)
        if self._h is not None:
            raise OSError(errno.EISCONN)
        if _host is None or not _link_up():
            raise OSError(errno.EHOSTUNREACH)
        t = self._t
        h = _host.socket(_host.AF_INET, _host.SOCK_STREAM)
        # Small writes go out at once (no Nagle wait for the previous ACK): the latency that
        # counts is the modelled one, in virtual time.
        h.setsockopt(_host.IPPROTO_TCP, _host.TCP_NODELAY, 1)
        cap = _cap_s(True)
        h.settimeout(cap if t is None or t > cap or t <= 0 else t)
        try:
            h.connect((address[0], address[1]))
        except OSError as e:
            h.close()
            if isinstance(e, _host.timeout):
                # nothing answers the SYN: the port gives up after the socket's timeout
                _board.advance(int((_BLOCKED_S if t is None else t) * 1000000), simboard.WIFI_RX)
                raise OSError(errno.ETIMEDOUT)
            _board.advance(2 * _latency_us(), simboard.WIFI_RX)
            if e.args and e.args[0] == errno.ECONNREFUSED:
                raise OSError(errno.ECONNRESET)
            raise OSError(errno.EHOSTUNREACH)
        h.settimeout(cap)
        self._h = h
        _open.append(h)
        _board.advance(2 * _latency_us(), simboard.WIFI_RX)  # SYN, SYN-ACK

    def _abort(self, code):
        self._err = code
        if self._h is not None:
            if self._h in _open:
                _open.remove(self._h)
            self._h.close()
            self._h = None
        raise OSError(code)

    def _conn(self):
        if self._closed:
            raise OSError(errno.EBADF)
        if self._err:
            raise OSError(self._err)
        if self._h is None:
            raise OSError(errno.ENOTCONN)
        if not _link_up():
            self._abort(errno.ECONNABORTED)
        return self._h

    def _send(self, data, due=None):
        # due: whether the peer owes an answer (None: judged from data's first byte; a TLS
        # layer says it, from the plaintext under its record: fake_ssl)
        h = self._conn()
        n = len(data)
        try:
            h.sendall(data)
        except OSError:
            self._abort(errno.ECONNRESET)
        _board.advance(_airtime_us(n), simboard.WIFI_TX)
        _board.net_bytes[0] += n + 40
        self._due = _board.now_us() + 2 * _latency_us()
        if self._expect != 2:  # an answer owed stays owed until something comes
            self._expect = 2 if (_answer_due(data) if due is None else due) else 1
        return n

    def send(self, bytes):
        return self._send(bytes)

    def sendall(self, bytes):
        return self._send(bytes)

    def write(self, buf):
        return self._send(buf)

    def _pull(self, n, owed=False):
        """Up to n bytes; b"" at end of stream; None when nothing came in the timeout. owed: the
        peer owes more (the rest of a TLS record or flight: fake_ssl), wait as for an answer."""
        if self._closed:
            raise OSError(errno.EBADF)
        if self._rx:
            out = self._rx[:n]
            self._rx = self._rx[n:]
            return out
        if self._eof:
            return b""
        h = self._conn()
        t = self._t
        if owed:
            self._expect = 2
        cap = _cap_s(self._expect)
        clock = getattr(_host, "monotonic", None)
        t0 = clock() if clock is not None else 0
        if not _host.select([h], [], [], cap if t is None or t > cap else t)[0]:
            # nothing came: the radio idles (modem sleep) through the timeout, receiving nothing
            _board.advance(int((_BLOCKED_S if t is None else t) * 1000000))
            return None
        if clock is not None and self._expect:
            _lat[0] = 0.9 * _lat[0] + 0.1 * (clock() - t0)
        try:
            data = h.recv(_CHUNK)
        except OSError:
            self._abort(errno.ECONNRESET)
        wait = self._due - _board.now_us()
        if wait < 0:
            wait = 0
        if not data:
            self._eof = True
            _board.advance(wait, simboard.WIFI_RX)
            return b""
        _board.advance(wait + _airtime_us(len(data)), simboard.WIFI_RX)
        _board.net_bytes[1] += len(data) + 40
        self._expect = False
        self._rx = data[n:]
        return data[:n]

    def _none(self):
        # nothing came: the port's error for this socket's mode
        return errno.EAGAIN if self._t == 0 else errno.ETIMEDOUT

    def recv(self, bufsize):
        data = self._pull(bufsize)
        if data is None:
            raise OSError(self._none())
        return data

    def read(self, size=None):
        # "No short reads" (py/stream.c): a timeout after part of the data loses that part and
        # raises; a non-blocking socket returns what there is, or None.
        out = b""
        while size is None or len(out) < size:
            data = self._pull(_CHUNK if size is None else size - len(out))
            if data is None:
                if self._t == 0:
                    return out if out else None
                raise OSError(errno.ETIMEDOUT)
            if not data:
                break
            out += data
        return out

    def readinto(self, buf, nbytes=None):
        mv = memoryview(buf)
        n = len(mv) if nbytes is None else min(nbytes, len(mv))
        got = 0
        while got < n:
            data = self._pull(n - got)
            if data is None:
                if self._t == 0:
                    return got if got else None
                raise OSError(errno.ETIMEDOUT)
            if not data:
                break
            mv[got:got + len(data)] = data
            got += len(data)
        return got

    def close(self):
        if self._h is not None:
            if self._h in _open:
                _open.remove(self._h)
            self._h.close()
            self._h = None
        self._closed = True
