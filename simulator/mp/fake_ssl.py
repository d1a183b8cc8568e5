# Fake of MicroPython's `ssl` module (ESP32 port: micropython-lib's ssl.py over the port's `tls`
# module, mbedTLS 3.6, extmod/modtls_mbedtls.c): TLS clients over the fake `socket`, in virtual
# time. Names and signatures follow the micropython-esp32-stubs `ssl` stub; constant values are
# the port's (`tls`: PROTOCOL_TLS_CLIENT 0, CERT_REQUIRED 2), not CPython's.
#
# The TLS itself is real: the host facility `_hostssl` (under CPython, simulator/loader.py
# gives CPython's ssl over memory buffers) encrypts, decrypts and verifies the certificate,
# and this module moves the records through the fake socket, as mbedTLS's BIO does through the
# port's socket stream. So every handshake byte costs airtime and every flight a round trip
# (fake_socket's model), and the broker's certificate is checked for real. Without `_hostssl`
# (the WASI MicroPython) wrap_socket raises OSError(EOPNOTSUPP): TLS is not available there.
#
# The model:
# - TLS 1.2 only: MBEDTLS_SSL_PROTO_TLS1_3 is "default n" in ESP-IDF's components/mbedtls/
#   Kconfig and ports/esp32/boards/sdkconfig.base does not turn it on. A full handshake is two
#   round trips (ClientHello / server flight / client Finished / server Finished), then the
#   MQTT CONNECT.
# - the handshake's crypto (ECDHE, signature checks) costs CPU time in ACTIVE: the profile's
#   tls.handshake_ms, default 800 ms, booked when the client's second flight goes out. Derived,
#   not measured on an ESP32: TLS 1.2 handshakes take 0.8-1.5 s on 120 MHz MCUs with crypto
#   acceleration (applied-ee.github.io, embedded TLS/DTLS), the ESP32 accelerates RSA/AES/SHA.
# - records add their own bytes (header, nonce, tag) to every MQTT packet: real ciphertext goes
#   through the fake socket, so airtime and board.net_bytes count it.
# - verification (CERT_REQUIRED; CERT_NONE and CERT_OPTIONAL check nothing on mbedTLS ports):
#   chain to the CA data, host name (server_hostname), and validity dates against the NODE's
#   clock (sdkconfig.base sets MBEDTLS_HAVE_TIME_DATE: an RTC still at 2000 rejects every
#   certificate as "validity starts in the future"). A failure raises ValueError with
#   mbedtls_x509_crt_verify_info's text ("\nThe certificate is not correctly signed by the
#   trusted CA\n"), as ssl_socket_make_new does; CA data that does not parse: ValueError
#   ("invalid cert"); CERT_REQUIRED without server_hostname: ValueError.
# - other handshake failures: OSError(mbedTLS code, text) (EOF -0x7280, fatal alert -0x7780,
#   -0x6E00 otherwise); a socket error under the handshake: OSError(errno) (mbedtls_raise_error
#   turns -errno back into errno).
# - after the handshake, a socket error under a read or write (a read timeout included: the
#   port's socket gives ETIMEDOUT, only EAGAIN of a non-blocking socket is "want read") raises
#   OSError(-errno) and leaves the TLS socket failed: every later read and write raises the
#   same (socket_read/socket_write keep it in last_error). Only close() is left to do.
# - end of stream or the peer's close_notify: read returns b"". close() sends no close_notify
#   (the port frees the session and closes the socket).
import errno

import simboard

try:
    import _hostssl as _host
except ImportError:
    _host = None

_board = None
_CHUNK = 4096  # ciphertext taken from the socket at a time
_HANDSHAKE_MS = 800  # CPU time of a handshake's crypto (see above)
_VERIFY = {  # mbedTLS's verify-info lines (x509_crt.c), in flag order
    "expired": "The certificate validity has expired",
    "name": "The certificate Common Name (CN) does not match with the expected CN",
    "untrusted": "The certificate is not correctly signed by the trusted CA",
    "future": "The certificate validity starts in the future",
    "usage": "Usage does not match the extendedKeyUsage extension",
}
_ERR = {  # mbedTLS error codes and mbedtls_strerror texts
    "eof": (-0x7280, "SSL - The connection indicated an EOF"),
    "alert": (-0x7780, "SSL - A fatal alert message was received from our peer"),
    "tls": (-0x6E00, "SSL - The handshake negotiation failed"),
}

PROTOCOL_TLS_CLIENT = 0
PROTOCOL_TLS_SERVER = 1
CERT_NONE = 0
CERT_OPTIONAL = 1
CERT_REQUIRED = 2


def _attach(board):
    global _board
    _board = board


def _tls_error(kind, text):
    """The port's exception for a failure the host reports as kind."""
    if kind in _VERIFY:
        return ValueError("\n" + _VERIFY[kind] + "\n")
    if kind == "cert":
        return ValueError("invalid cert")
    e = _ERR.get(kind, _ERR["tls"])
    return OSError(e[0], e[1])


def _unix_now():
    return _board.rtc_seconds_us()[0] + simboard.SECONDS_1970_TO_2000


class SSLContext:
    def __init__(self, protocol=None):
        if protocol is None:
            raise TypeError("SSLContext needs a protocol")
        if protocol & 1:
            raise ValueError("only TLS clients are simulated")
        self.verify_mode = CERT_NONE  # ssl.py sets it so; the `tls` default would be REQUIRED
        self._ca = []

    def load_verify_locations(self, cafile=None, cadata=None):
        if cafile:
            with open(cafile, "rb") as f:
                cadata = f.read()
        if isinstance(cadata, str):
            cadata = cadata.encode()
        if _host is not None:
            try:
                _host.check_ca(cadata)
            except _host.Error as e:
                raise _tls_error(e.args[0], e.args[1])
        self._ca.append(bytes(cadata))

    def wrap_socket(self, sock, *, server_side=False, do_handshake_on_connect=True, server_hostname=None):
        if server_side:
            raise ValueError("only TLS clients are simulated")
        verify = self.verify_mode == CERT_REQUIRED
        if verify and server_hostname is None:
            raise ValueError("CERT_REQUIRED requires server_hostname")
        if _host is None:
            raise OSError(errno.EOPNOTSUPP)  # no TLS in this runtime
        return SSLSocket(sock, self._ca, verify, server_hostname, do_handshake_on_connect)


def wrap_socket(sock, *, server_side=False, key=None, cert=None, cert_reqs=CERT_NONE, cadata=None,
                server_hostname=None, do_handshake=True):
    if cert or key:
        raise ValueError("client certificates are not simulated")
    ctx = SSLContext(PROTOCOL_TLS_SERVER if server_side else PROTOCOL_TLS_CLIENT)
    if cadata:
        ctx.load_verify_locations(cadata=cadata)
    ctx.verify_mode = cert_reqs
    return ctx.wrap_socket(sock, server_side=server_side, do_handshake_on_connect=do_handshake,
                           server_hostname=server_hostname)


class SSLSocket:
    def __init__(self, sock, ca, verify, server_hostname, do_handshake=True):
        self._raw = sock  # a fake_socket.socket, connected
        self._verify = verify
        self._e = _host.Session(ca, verify, server_hostname)
        self._err = 0  # the port's last_error: once set, every read and write raises it
        self._shook = False
        if do_handshake:
            self._handshake()

    # ---- the handshake ---------------------------------------------------------------------
    def _handshake(self):
        e = self._e
        got = False
        try:
            while True:
                try:
                    done = e.handshake()
                except _host.Error as x:
                    raise _tls_error(x.args[0], x.args[1])
                out = e.take()
                if out:
                    if got:  # the second flight: after the key exchange and the checks
                        ms = _board.profile.get("tls", {}).get("handshake_ms", _HANDSHAKE_MS)
                        _board.advance(ms * 1000, simboard.ACTIVE)
                    self._raw._send(out, True)
                if done:
                    break
                data = self._raw._pull(_CHUNK, True)
                if data is None:  # nothing within the socket's timeout
                    raise OSError(errno.ETIMEDOUT)
                e.give(data)
                got = True
            if self._verify:
                self._check_dates()
        except BaseException:
            self._e = None
            raise
        self._shook = True

    def _check_dates(self):
        # MBEDTLS_HAVE_TIME_DATE: the chain's validity against the board's own clock
        now = _unix_now()
        expired = future = False
        for nb, na in self._e.dates():
            expired = expired or na < now
            future = future or nb > now
        if expired or future:
            raise ValueError(("\n%s\n" % _VERIFY["expired"] if expired else "")
                             + ("\n%s\n" % _VERIFY["future"] if future else ""))

    # ---- the stream ------------------------------------------------------------------------
    def _fail(self, e):
        # a socket error under an established session: kept, negated, as socket_read/write do
        code = e.args[0] if e.args and isinstance(e.args[0], int) else errno.EIO
        self._err = -code if code > 0 else code
        raise OSError(self._err)

    def _ready(self):
        if self._e is None:
            raise OSError(errno.EBADF)
        if self._err:
            raise OSError(self._err)
        if not self._shook:
            self._handshake()

    def _read_some(self, n):
        """Up to n bytes of plaintext; b"" at end of stream; None when a non-blocking socket has
        nothing yet."""
        self._ready()
        e = self._e
        while True:
            try:
                data = e.read(n)
            except _host.Error as x:
                self._err = _ERR.get(x.args[0], _ERR["tls"])[0]
                raise OSError(self._err)
            if data is not None:
                return data
            try:
                got = self._raw._pull(_CHUNK, e.partial())
            except OSError as x:
                self._fail(x)
            if got is None:
                code = self._raw._none()
                if code == errno.EAGAIN:
                    return None  # MBEDTLS_ERR_SSL_WANT_READ: nothing lost
                self._fail(OSError(code))
            e.give(got)

    def read(self, size=None):
        # py/stream.c: no short reads; an error after part of the data loses that part, a
        # non-blocking socket returns what there is (None for nothing)
        out = b""
        while size is None or len(out) < size:
            data = self._read_some(_CHUNK if size is None else size - len(out))
            if data is None:
                return out if out else None
            if not data:
                break
            out += data
        return out

    def readinto(self, buf, nbytes=None):
        mv = memoryview(buf)
        n = len(mv) if nbytes is None else min(nbytes, len(mv))
        got = 0
        while got < n:
            data = self._read_some(n - got)
            if data is None:
                return got if got else None
            if not data:
                break
            mv[got:got + len(data)] = data
            got += len(data)
        return got

    def write(self, buf):
        self._ready()
        data = bytes(buf)
        try:
            self._e.write(data)
        except _host.Error as x:
            self._err = _ERR.get(x.args[0], _ERR["tls"])[0]
            raise OSError(self._err)
        import socket  # the node's fake socket module (loaded by now)

        try:
            self._raw._send(self._e.take(), socket._answer_due(data))
        except OSError as x:
            self._fail(x)
        return len(data)

    def setblocking(self, flag):
        self._raw.setblocking(flag)

    def close(self):
        self._e = None
        self._raw.close()
