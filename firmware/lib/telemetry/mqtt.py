# The firmware's MQTT 3.1.1 client: one TCP (optionally TLS) connection to one broker, QoS 0
# and 1, a persistent session and a retained last will, incoming PUBLISH dispatch. Packets are
# built and checked by telemetry.mqttcodec; section numbers are those of the OASIS standard.
#
# It uses only `socket`, `ssl` (only when a CA certificate is configured) and `time` ticks, so
# it runs unchanged on an ESP32, in the simulator (fake `socket` over real host sockets, in
# virtual time) and under MicroPython. Reads go through the stream methods (read, readinto,
# write) that both a plain socket and an SSL socket have on the ESP32 port; a read that times
# out raises OSError(ETIMEDOUT) there (EAGAIN when non-blocking), which the client treats as
# "nothing yet".
#
# Errors: every failure of the session (network error, broker closed the connection, timeout
# waiting for CONNACK/SUBACK/PINGRESP, refused connection, a malformed or oversized packet
# from the broker) closes the connection and raises MQTTError, the one class a caller catches
# to reconnect later. A QoS 1 publish that is never acknowledged is not an error:
# publish() returns False and the connection stays up.
import errno
import socket
import time

from telemetry import mqttcodec as codec
from telemetry.mqttcodec import MQTTError

_QUEUE_MAX = 8  # incoming messages held while waiting for an ack (each acked when dispatched)
_TLS_POLL_MS = 250  # over TLS, how often an idle wait looks for a message (see wait_msg)


def _timed_out(e):
    code = e.args[0] if e.args else 0
    if isinstance(code, int) and code < 0:
        code = -code  # mbedTLS layers report some socket errors negated
    return code == errno.ETIMEDOUT or code == errno.EAGAIN


class MQTTClient:
    def __init__(self, client_id, server, port=1883, user=None, password=None, keepalive=60,
                 ssl_ca=None, max_packet=4096, timeout_ms=5000, retries=2):
        """ssl_ca: the CA certificate (PEM or DER bytes, or the path of a file holding it) that
        the broker's certificate must chain to; None for plain TCP. timeout_ms bounds every
        wait for the broker (connect, each PUBACK, SUBACK, PINGRESP, the rest of a packet once
        it started). retries: QoS 1 retransmissions (with DUP) before publish() gives up."""
        self.client_id = client_id
        self.server = server
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.ssl_ca = ssl_ca
        self.max_packet = max_packet
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.bytes_out = 0  # MQTT bytes written and read on this client (bench figures)
        self.bytes_in = 0
        self._raw = None  # the TCP socket (timeouts are set on it)
        self._sock = None  # what packets go through: the TCP socket or its TLS wrapper
        self._cb = None
        self._pid = 0
        self._queue = []
        self._last_tx = time.ticks_ms()
        self._hdr = bytearray(5)  # fixed header of the packet being read: type + 4 length bytes

    # ---- connection -------------------------------------------------------------------------
    def set_callback(self, f):
        """f(topic: str, payload: bytes, retain: bool) for each incoming PUBLISH. A QoS 1
        message is acknowledged after f returns; if f raises, it is not acknowledged (a
        persistent session gets it again after the next connect)."""
        self._cb = f

    def isconnected(self):
        return self._sock is not None

    def connect(self, clean_session=False, will=None, timeout_ms=None):
        """Open the connection and the session (§3.1, §3.2). will: None or (topic, payload,
        qos, retain), published by the broker if the connection ends without disconnect().
        Returns session_present (True: the broker kept our subscriptions and queued
        messages). Raises MQTTError."""
        self.close()
        t = self.timeout_ms if timeout_ms is None else timeout_ms
        pkt = codec.connect(self.client_id, self.user, self.password, self.keepalive,
                            clean_session, will)
        start = time.ticks_ms()
        try:
            addr = socket.getaddrinfo(self.server, self.port, 0, socket.SOCK_STREAM)[0][-1]
            raw = socket.socket()
            self._raw = raw
            raw.settimeout(t / 1000)
            raw.connect(addr)
            self._sock = self._tls(raw) if self.ssl_ca is not None else raw
        except (OSError, ValueError) as e:  # ValueError: the port's TLS layer on a bad CA
            self.close()
            raise MQTTError("cannot reach %s:%d: %s" % (self.server, self.port, _os_text(e)))
        self._queue = []
        self._send(pkt)
        left = t - time.ticks_diff(time.ticks_ms(), start)
        p = self._read_packet(left if left > 0 else 0)
        if p is None:
            self.close()
            raise MQTTError("no CONNACK within %d ms" % t)
        if p[0] != codec.CONNACK:
            self._fail("expected CONNACK, got packet type %d" % p[0])  # [MQTT-3.2.0-1]
        if p[2]:
            self.close()
            raise MQTTError("connection refused: %s (%d)" % (codec.REFUSED[p[2]], p[2]))
        return p[1]

    def _tls(self, raw):
        import ssl

        ca = self.ssl_ca
        if isinstance(ca, str):
            with open(ca, "rb") as f:
                ca = f.read()
        # the port's ssl.wrap_socket: an SSLContext(PROTOCOL_TLS_CLIENT) with the CA loaded,
        # verify_mode CERT_REQUIRED (its default is CERT_NONE), SNI and the handshake now
        return ssl.wrap_socket(raw, cert_reqs=ssl.CERT_REQUIRED, cadata=ca, server_hostname=self.server)

    def disconnect(self):
        """End the session cleanly (§3.14): the broker discards the will. Never raises."""
        if self._sock is not None:
            try:
                self._sock.write(codec.disconnect())
            except OSError:
                pass
        self.close()

    def close(self):
        """Drop the connection without DISCONNECT (the broker then publishes the will)."""
        s = self._sock if self._sock is not None else self._raw
        self._sock = None
        self._raw = None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    # ---- operations -------------------------------------------------------------------------
    def publish(self, topic, payload, qos=0, retain=False):
        """QoS 0: send, return True. QoS 1 (§4.3.2): send and wait up to timeout_ms for the
        PUBACK, retransmitting with DUP set up to `retries` times; True when acknowledged,
        False when not (nothing raised). Raises MQTTError when the connection fails."""
        if qos not in (0, 1):
            raise MQTTError("QoS %r not supported" % (qos,))  # QoS 2 is not implemented
        if not qos:
            self._send(codec.publish(topic, payload, 0, retain))
            return True
        pid = self._next_pid()
        pkt = codec.publish(topic, payload, 1, retain, False, pid)
        for attempt in range(self.retries + 1):
            if attempt:
                codec.set_dup(pkt)  # §3.3.1.1: a redelivery of the same packet id
            self._send(pkt)
            if self._wait_for(codec.PUBACK, pid) is not None:
                return True
        return False

    def subscribe(self, topic, qos=1):
        """SUBSCRIBE to one topic filter (§3.8) and wait for the SUBACK; returns the granted
        QoS. Raises MQTTError if the broker refuses (0x80) or does not answer."""
        if qos not in (0, 1):
            raise MQTTError("QoS %r not supported" % (qos,))
        pid = self._next_pid()
        self._send(codec.subscribe(pid, [(topic, qos)]))
        p = self._wait_for(codec.SUBACK, pid)
        if p is None:
            self._fail("no SUBACK within %d ms" % self.timeout_ms)
        code = p[2][0]
        if code == codec.SUBACK_FAILURE:
            raise MQTTError("subscription to %s refused" % topic)
        return code

    def ping(self):
        """PINGREQ, then wait for the PINGRESP (§3.12, §3.13). A broker that does not answer
        closes the connection (§3.1.2.10) and raises MQTTError."""
        self._send(codec.pingreq())
        if self._wait_for(codec.PINGRESP, 0) is None:
            self._fail("no PINGRESP within %d ms" % self.timeout_ms)

    def check_msg(self):
        """Dispatch one incoming message if one is there; never waits. True if dispatched."""
        return self.wait_msg(0)

    def wait_msg(self, timeout_ms=0):
        """Wait up to timeout_ms for an incoming PUBLISH and dispatch it to the callback.
        Keeps the session alive (a PINGREQ when half the keepalive passed without sending).
        Returns True if a message was dispatched."""
        if self._queue:
            self._dispatch(self._queue.pop(0))
            return True
        start = time.ticks_ms()
        while True:
            self._keepalive()
            if self._queue:  # arrived while the keepalive ping waited
                self._dispatch(self._queue.pop(0))
                return True
            left = timeout_ms - time.ticks_diff(time.ticks_ms(), start)
            if left < 0:
                left = 0
            if self.keepalive:
                ka = self.keepalive * 500 - time.ticks_diff(time.ticks_ms(), self._last_tx)
                if ka < left:
                    left = ka if ka > 0 else 0
            # Over TLS the wait happens here, not in a read: a read that times out under
            # mbedTLS leaves the port's TLS socket failed for good (extmod/modtls_mbedtls.c
            # socket_read keeps the error in last_error); a non-blocking read only "wants read".
            tls = self._sock is not self._raw
            p = self._read_packet(0 if tls else left)
            if p is not None:
                if p[0] == codec.PUBLISH:
                    self._dispatch(p)
                    return True
                self._other(p)
            elif time.ticks_diff(time.ticks_ms(), start) >= timeout_ms:
                return False
            elif tls:
                time.sleep_ms(left if left < _TLS_POLL_MS else _TLS_POLL_MS)

    # ---- internals --------------------------------------------------------------------------
    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    def _keepalive(self):
        # §3.1.2.10: a control packet at least every keepalive seconds; ping at half of it
        if self.keepalive and time.ticks_diff(time.ticks_ms(), self._last_tx) >= self.keepalive * 500:
            self.ping()

    def _fail(self, why):
        self.close()
        raise MQTTError(why)

    def _send(self, pkt):
        raw = self._raw
        sock = self._sock
        if raw is None or sock is None:
            raise MQTTError("not connected")
        try:
            raw.settimeout(self.timeout_ms / 1000)
            n = sock.write(pkt)
        except OSError as e:
            self._fail("send failed: %s" % _os_text(e))
        if n is not None and n != len(pkt):
            self._fail("short write")
        self.bytes_out += len(pkt)
        self._last_tx = time.ticks_ms()

    def _wait_for(self, ptype, pid):
        """Read packets for up to timeout_ms until the one of type ptype (and packet id pid,
        if not 0) arrives; returns it, or None on timeout. Incoming PUBLISH meanwhile are
        queued for wait_msg(), other packets handled."""
        start = time.ticks_ms()
        while True:
            left = self.timeout_ms - time.ticks_diff(time.ticks_ms(), start)
            p = self._read_packet(left if left > 0 else 0)
            if p is None:
                if time.ticks_diff(time.ticks_ms(), start) >= self.timeout_ms:
                    return None
                continue
            if p[0] == ptype and (not pid or p[1] == pid):
                return p
            if p[0] == codec.PUBLISH:
                if len(self._queue) < _QUEUE_MAX:
                    self._queue.append(p)
                # else: not acknowledged; a persistent session redelivers it after a reconnect
            else:
                self._other(p)

    def _other(self, p):
        t = p[0]
        if t in (codec.PUBACK, codec.SUBACK, codec.UNSUBACK, codec.PINGRESP):
            return  # late answer to an earlier attempt: nothing waits for it any more
        # CONNACK twice, PUBREC/PUBREL/PUBCOMP (we never use QoS 2), or a client-only packet
        self._fail("unexpected packet type %d from the broker" % t)

    def _dispatch(self, p):
        # p = (PUBLISH, topic, payload, qos, retain, dup, packet_id)
        if p[3] == 2:
            self._fail("QoS 2 message from the broker")  # we never subscribe with QoS 2
        if self._cb is not None:
            self._cb(p[1], p[2], p[4])
        if p[3] == 1:
            self._send(codec.puback(p[6]))  # §4.3.2, in the order received [MQTT-4.6.0-2]

    def _read_packet(self, timeout_ms):
        """One packet from the broker, or None when none started within timeout_ms (0: do not
        wait). A malformed, oversized or truncated packet closes the connection: MQTTError."""
        raw = self._raw
        sock = self._sock
        if raw is None or sock is None:
            raise MQTTError("not connected")
        try:
            raw.settimeout(timeout_ms / 1000 if timeout_ms > 0 else 0)
            try:
                b = sock.read(1)
            except OSError as e:
                if _timed_out(e):
                    return None
                raise
            if b is None:
                return None  # non-blocking socket, nothing there
            if not b:
                self._fail("connection closed by the broker")
            raw.settimeout(self.timeout_ms / 1000)
            hdr = self._hdr
            hdr[0] = b[0]
            n = 1
            while True:  # §2.2.3: up to four length bytes
                b = sock.read(1)
                if not b:
                    self._fail("connection closed in a fixed header")
                hdr[n] = b[0]
                n += 1
                if not b[0] & 0x80 or n == 5:
                    break
            rem = codec.decode_length(memoryview(hdr)[:n], 1)[0]
            if n + rem > self.max_packet:
                self._fail("packet of %d bytes over the %d byte limit" % (n + rem, self.max_packet))
            body = bytearray(rem)
            got = 0
            if rem:
                mv = memoryview(body)
                while got < rem:
                    k = sock.readinto(mv[got:])
                    if not k:
                        self._fail("connection closed in a packet")
                    got += k
            self.bytes_in += n + rem
            return codec.decode_body(hdr[0], body)
        except MQTTError:
            self.close()
            raise
        except OSError as e:
            self.close()
            raise MQTTError("receive failed: %s" % _os_text(e))


def _os_text(e):
    code = e.args[0] if e.args else None
    if isinstance(code, int):
        name = errno.errorcode.get(code)
        return "[Errno %d] %s" % (code, name) if name else "[Errno %d]" % code
    return "%s %s" % (type(e).__name__, code)
