# MQTT 3.1.1 packets as pure functions. Section numbers ("§3.3.1") and conformance statements
# ("[MQTT-3.3.1-4]") are those of the OASIS Standard "MQTT Version 3.1.1" (29 October 2014).
#
# Encoders return the whole packet as one bytearray of exactly its size, filled in place (one
# allocation per packet, plus the UTF-8 form of a str argument). decode() and decode_body()
# return a small tuple whose first item is the packet type:
#   (CONNECT, client_id, user, password, keepalive, clean_session, will)
#       will is None or (topic, payload, qos, retain); user str or None, password bytes or None
#   (CONNACK, session_present, return_code)
#   (PUBLISH, topic, payload, qos, retain, dup, packet_id)   packet_id 0 for QoS 0
#   (PUBACK | PUBREC | PUBREL | PUBCOMP | UNSUBACK, packet_id)
#   (SUBSCRIBE, packet_id, [(topic_filter, qos), ...])
#   (SUBACK, packet_id, return_codes: bytes)
#   (UNSUBSCRIBE, packet_id, [topic_filter, ...])
#   (PINGREQ,) (PINGRESP,) (DISCONNECT,)
# Strings come back as str, payloads and passwords as bytes. Anything malformed, or larger than
# the max_packet limit, raises MQTTError (never IndexError, UnicodeError, ...); so do encoder
# arguments the standard forbids.
from micropython import const

# §2.2.1 Control packet types
CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
PUBREC = const(5)
PUBREL = const(6)
PUBCOMP = const(7)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBSCRIBE = const(10)
UNSUBACK = const(11)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

MAX_REMAINING = const(268435455)  # §2.2.3: four bytes of remaining length
SUBACK_FAILURE = const(0x80)  # §3.9.3
# §3.2.2.3 CONNACK return codes (1..5 refuse the connection)
REFUSED = ("accepted", "unacceptable protocol version", "identifier rejected",
           "server unavailable", "bad user name or password", "not authorized")

_PINGREQ = b"\xc0\x00"  # §3.12
_PINGRESP = b"\xd0\x00"  # §3.13
_DISCONNECT = b"\xe0\x00"  # §3.14


class MQTTError(Exception):
    """A packet that breaks MQTT 3.1.1 or the size limit, or a failed MQTT session."""


# ---- encoding ---------------------------------------------------------------------------------
def length_size(n):
    """Bytes the remaining length n takes (§2.2.3)."""
    if n < 0 or n > MAX_REMAINING:
        raise MQTTError("remaining length %d out of range" % n)
    if n < 128:
        return 1
    if n < 16384:
        return 2
    if n < 2097152:
        return 3
    return 4


def _put_length(buf, i, n):
    # §2.2.3: 7 bits a byte, least significant first, high bit = more bytes follow
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            buf[i] = b | 0x80
            i += 1
        else:
            buf[i] = b
            return i + 1


def encode_length(n):
    buf = bytearray(length_size(n))
    _put_length(buf, 0, n)
    return bytes(buf)


def _packet(first, remaining):
    """A zeroed packet with its fixed header (§2.2) filled in; returns (buf, body offset)."""
    buf = bytearray(1 + length_size(remaining) + remaining)
    buf[0] = first
    return buf, _put_length(buf, 1, remaining)


def _utf8(s, what):
    # §1.5.3 UTF-8 encoded string: length u16, no U+0000 [MQTT-1.5.3-2]
    if isinstance(s, str):
        try:
            b = s.encode()
        except UnicodeError:
            raise MQTTError("%s is not valid UTF-8" % what)
    else:
        b = bytes(s)
        _text(b)
    if len(b) > 65535:
        raise MQTTError("%s longer than 65535 bytes" % what)
    if b"\x00" in b:
        raise MQTTError("%s contains U+0000" % what)
    return b


def _binary(b, what):
    # §1.5.3-style length-prefixed binary data (will message §3.1.3.3, password §3.1.3.5)
    if isinstance(b, str):
        b = b.encode()
    if len(b) > 65535:
        raise MQTTError("%s longer than 65535 bytes" % what)
    return b


def _put_str(buf, i, b):
    n = len(b)
    buf[i] = n >> 8
    buf[i + 1] = n & 0xFF
    buf[i + 2:i + 2 + n] = b
    return i + 2 + n


def _check_id(pid):
    # §2.3.1: packet identifiers are non-zero 16-bit integers [MQTT-2.3.1-1]
    if not 0 < pid < 65536:
        raise MQTTError("packet identifier %r out of range" % (pid,))


def _check_qos(qos):
    if qos not in (0, 1, 2):
        raise MQTTError("QoS %r out of range" % (qos,))


def _check_topic(b):
    # §4.7: a topic name has at least one character [MQTT-4.7.3-1] and no wildcards
    # [MQTT-3.3.2-2]
    if not b:
        raise MQTTError("empty topic")
    if b"+" in b or b"#" in b:
        raise MQTTError("wildcard in a topic name")


def _check_filter(b):
    # §4.7.1: '#' only alone as the last level [MQTT-4.7.1-2], '+' only as a whole level
    # [MQTT-4.7.1-3]
    if not b:
        raise MQTTError("empty topic filter")
    levels = b.split(b"/")
    last = len(levels) - 1
    for k in range(len(levels)):
        lv = levels[k]
        if b"#" in lv and (lv != b"#" or k != last):
            raise MQTTError("misplaced '#' in a topic filter")
        if b"+" in lv and lv != b"+":
            raise MQTTError("misplaced '+' in a topic filter")


def connect(client_id, user=None, password=None, keepalive=60, clean_session=True, will=None):
    """CONNECT (§3.1). will: None or (topic, payload, qos, retain)."""
    cid = _utf8(client_id, "client id")
    if not cid and not clean_session:
        raise MQTTError("an empty client id needs a clean session")  # [MQTT-3.1.3-7]
    if not 0 <= keepalive <= 65535:
        raise MQTTError("keepalive out of range")  # §3.1.2.10
    flags = 0x02 if clean_session else 0  # §3.1.2.4
    size = 10 + 2 + len(cid)  # variable header §3.1.2: "MQTT", level, flags, keepalive
    if will is not None:
        wt = _utf8(will[0], "will topic")
        _check_topic(wt)
        wp = _binary(will[1], "will message")
        _check_qos(will[2])
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)  # §3.1.2.5-3.1.2.7
        size += 4 + len(wt) + len(wp)
    if user is not None:
        ub = _utf8(user, "user name")
        flags |= 0x80  # §3.1.2.8
        size += 2 + len(ub)
    if password is not None:
        if user is None:
            raise MQTTError("a password needs a user name")  # [MQTT-3.1.2-22]
        pb = _binary(password, "password")
        flags |= 0x40  # §3.1.2.9
        size += 2 + len(pb)
    buf, i = _packet(CONNECT << 4, size)
    i = _put_str(buf, i, b"MQTT")  # §3.1.2.1 protocol name
    buf[i] = 4  # §3.1.2.2 protocol level 4 = 3.1.1
    buf[i + 1] = flags
    buf[i + 2] = keepalive >> 8
    buf[i + 3] = keepalive & 0xFF
    i += 4
    # §3.1.3 payload order: client id, will topic, will message, user name, password
    i = _put_str(buf, i, cid)
    if will is not None:
        i = _put_str(buf, i, wt)
        i = _put_str(buf, i, wp)
    if user is not None:
        i = _put_str(buf, i, ub)
    if password is not None:
        _put_str(buf, i, pb)
    return buf


def connack(session_present, return_code):
    """CONNACK (§3.2)."""
    if not 0 <= return_code <= 5:
        raise MQTTError("CONNACK return code out of range")
    if return_code and session_present:
        raise MQTTError("a refused connection has no session")  # [MQTT-3.2.2-4]
    return bytearray((CONNACK << 4, 2, 1 if session_present else 0, return_code))


def publish(topic, payload, qos=0, retain=False, dup=False, packet_id=0):
    """PUBLISH (§3.3). payload: bytes-like or str."""
    tb = _utf8(topic, "topic")
    _check_topic(tb)
    _check_qos(qos)
    if isinstance(payload, str):
        payload = payload.encode()
    if qos:
        _check_id(packet_id)
    elif dup:
        raise MQTTError("DUP set on a QoS 0 message")  # [MQTT-3.3.1-2]
    size = 2 + len(tb) + (2 if qos else 0) + len(payload)
    # §3.3.1 fixed header: DUP bit 3, QoS bits 2-1, RETAIN bit 0
    buf, i = _packet((PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0), size)
    i = _put_str(buf, i, tb)  # §3.3.2.1 topic name
    if qos:  # §3.3.2.2 packet identifier, only for QoS 1 and 2
        buf[i] = packet_id >> 8
        buf[i + 1] = packet_id & 0xFF
        i += 2
    buf[i:] = payload  # §3.3.3 the rest is the payload
    return buf


def set_dup(packet):
    """Mark an encoded QoS>0 PUBLISH as a redelivery (§3.3.1.1), in place."""
    packet[0] |= 0x08
    return packet


def ack(ptype, packet_id):
    """PUBACK (§3.4), PUBREC (§3.5), PUBREL (§3.6), PUBCOMP (§3.7) or UNSUBACK (§3.11)."""
    _check_id(packet_id)
    if ptype not in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK):
        raise MQTTError("not an acknowledgement type")
    # PUBREL's fixed header flags are 0010 [MQTT-3.6.1-1]
    return bytearray(((ptype << 4) | (2 if ptype == PUBREL else 0), 2, packet_id >> 8, packet_id & 0xFF))


def puback(packet_id):
    return ack(PUBACK, packet_id)


def subscribe(packet_id, topics):
    """SUBSCRIBE (§3.8): topics is a list of (topic_filter, requested QoS)."""
    _check_id(packet_id)
    if not topics:
        raise MQTTError("SUBSCRIBE needs a topic filter")  # [MQTT-3.8.3-3]
    enc = []
    size = 2
    for t in topics:
        fb = _utf8(t[0], "topic filter")
        _check_filter(fb)
        _check_qos(t[1])
        enc.append(fb)
        size += 3 + len(fb)
    buf, i = _packet((SUBSCRIBE << 4) | 2, size)  # flags 0010 [MQTT-3.8.1-1]
    buf[i] = packet_id >> 8
    buf[i + 1] = packet_id & 0xFF
    i += 2
    for k in range(len(enc)):
        i = _put_str(buf, i, enc[k])
        buf[i] = topics[k][1]
        i += 1
    return buf


def suback(packet_id, return_codes):
    """SUBACK (§3.9): one return code per topic filter, 0/1/2 or 0x80."""
    _check_id(packet_id)
    if not return_codes:
        raise MQTTError("SUBACK needs a return code")
    buf, i = _packet(SUBACK << 4, 2 + len(return_codes))
    buf[i] = packet_id >> 8
    buf[i + 1] = packet_id & 0xFF
    i += 2
    for c in return_codes:
        if c not in (0, 1, 2, SUBACK_FAILURE):
            raise MQTTError("SUBACK return code out of range")  # [MQTT-3.9.3-2]
        buf[i] = c
        i += 1
    return buf


def unsubscribe(packet_id, topics):
    """UNSUBSCRIBE (§3.10): topics is a list of topic filters."""
    _check_id(packet_id)
    if not topics:
        raise MQTTError("UNSUBSCRIBE needs a topic filter")  # [MQTT-3.10.3-2]
    enc = []
    size = 2
    for t in topics:
        fb = _utf8(t, "topic filter")
        _check_filter(fb)
        enc.append(fb)
        size += 2 + len(fb)
    buf, i = _packet((UNSUBSCRIBE << 4) | 2, size)  # flags 0010 [MQTT-3.10.1-1]
    buf[i] = packet_id >> 8
    buf[i + 1] = packet_id & 0xFF
    i += 2
    for fb in enc:
        i = _put_str(buf, i, fb)
    return buf


def pingreq():
    return _PINGREQ


def pingresp():
    return _PINGRESP


def disconnect():
    return _DISCONNECT


# ---- decoding ---------------------------------------------------------------------------------
def decode_length(buf, offset=1):
    """The remaining length (§2.2.3) starting at buf[offset]: (value, offset after it)."""
    value = 0
    shift = 0
    i = offset
    n = len(buf)
    while True:
        if i - offset == 4:
            raise MQTTError("remaining length longer than 4 bytes")
        if i >= n:
            raise MQTTError("truncated remaining length")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def decode(packet, max_packet=MAX_REMAINING + 5):
    """One whole packet (fixed header and body) -> tuple (see the top of this file)."""
    if len(packet) < 2:
        raise MQTTError("truncated fixed header")
    rem, i = decode_length(packet, 1)
    if i + rem > max_packet:
        raise MQTTError("packet of %d bytes over the %d byte limit" % (i + rem, max_packet))
    if i + rem != len(packet):
        raise MQTTError("remaining length %d, %d bytes follow" % (rem, len(packet) - i))
    return decode_body(packet[0], memoryview(packet)[i:])


def _u16(buf, i):
    if i + 2 > len(buf):
        raise MQTTError("truncated packet")
    return (buf[i] << 8) | buf[i + 1], i + 2


def _bin(buf, i):
    n, i = _u16(buf, i)
    if i + n > len(buf):
        raise MQTTError("truncated string")
    return bytes(buf[i:i + n]), i + n


def _text(b):
    """bytes -> str, if they are well-formed UTF-8 without surrogates [MQTT-1.5.3-1]."""
    try:
        s = str(b, "utf-8")
    except (UnicodeError, ValueError):
        raise MQTTError("string is not valid UTF-8")
    # MicroPython's check accepts the encodings of U+D800..U+DFFF (ED A0..BF xx): refuse them
    # here, so that both runtimes agree. Only strings holding an 0xED byte pay for the scan.
    k = b.find(b"\xed")
    while k >= 0:
        if b[k + 1] >= 0xA0:  # a lead byte is followed by a continuation byte (checked above)
            raise MQTTError("string holds a UTF-16 surrogate")
        k = b.find(b"\xed", k + 1)
    return s


def _str(buf, i):
    b, i = _bin(buf, i)
    s = _text(b)
    if "\x00" in s:
        raise MQTTError("string contains U+0000")  # [MQTT-1.5.3-2]
    return s, i


def _pid(buf, i):
    pid, i = _u16(buf, i)
    if pid == 0:
        raise MQTTError("packet identifier 0")  # [MQTT-2.3.1-1]
    return pid, i


def _end(buf, i):
    if i != len(buf):
        raise MQTTError("%d unexpected bytes at the end of the packet" % (len(buf) - i))


def decode_body(first, body):
    """The packet whose fixed header's first byte is `first` and whose variable header and
    payload are `body` (bytes, bytearray or memoryview) -> tuple."""
    t = first >> 4
    flags = first & 0x0F
    n = len(body)
    if t == PUBLISH:
        qos = (flags >> 1) & 3
        if qos == 3:
            raise MQTTError("PUBLISH with QoS 3")  # [MQTT-3.3.1-4]
        dup = flags & 0x08
        if dup and not qos:
            raise MQTTError("DUP set on a QoS 0 message")  # [MQTT-3.3.1-2]
        topic, i = _str(body, 0)  # §3.3.2.1
        if not topic or "+" in topic or "#" in topic:
            raise MQTTError("bad topic name in PUBLISH")  # [MQTT-4.7.3-1] [MQTT-3.3.2-2]
        pid = 0
        if qos:
            pid, i = _pid(body, i)  # §3.3.2.2
        return (PUBLISH, topic, bytes(body[i:]), qos, bool(flags & 1), bool(dup), pid)
    # §2.2.2: fixed flags of every other type; 0010 for PUBREL, SUBSCRIBE, UNSUBSCRIBE
    if t == 0 or t == 15:
        raise MQTTError("reserved packet type %d" % t)  # §2.2.1
    if flags != (2 if t in (PUBREL, SUBSCRIBE, UNSUBSCRIBE) else 0):
        raise MQTTError("bad flags 0x%x for packet type %d" % (flags, t))  # [MQTT-2.2.2-2]
    if t == CONNACK:  # §3.2
        if n != 2:
            raise MQTTError("CONNACK of %d bytes" % n)
        if body[0] & 0xFE:
            raise MQTTError("reserved CONNACK flags set")  # §3.2.2.1
        sp = body[0] & 1
        code = body[1]
        if code > 5:
            raise MQTTError("CONNACK return code %d" % code)  # §3.2.2.3
        if code and sp:
            raise MQTTError("session present on a refused connection")  # [MQTT-3.2.2-4]
        return (CONNACK, bool(sp), code)
    if t in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK):  # §3.4-3.7, §3.11
        if n != 2:
            raise MQTTError("acknowledgement of %d bytes" % n)
        return (t, _pid(body, 0)[0])
    if t in (PINGREQ, PINGRESP, DISCONNECT):  # §3.12-3.14: no variable header or payload
        if n:
            raise MQTTError("packet type %d with a body" % t)
        return (t,)
    if t == SUBACK:  # §3.9
        pid, i = _pid(body, 0)
        if i == n:
            raise MQTTError("SUBACK without return codes")
        codes = bytes(body[i:])
        for c in codes:
            if c not in (0, 1, 2, SUBACK_FAILURE):
                raise MQTTError("SUBACK return code 0x%x" % c)  # [MQTT-3.9.3-2]
        return (SUBACK, pid, codes)
    if t == SUBSCRIBE or t == UNSUBSCRIBE:  # §3.8, §3.10
        pid, i = _pid(body, 0)
        out = []
        while i < n:
            f, i = _str(body, i)
            _check_filter(f.encode())
            if t == SUBSCRIBE:
                if i >= n:
                    raise MQTTError("truncated SUBSCRIBE")
                q = body[i]
                i += 1
                if q > 2:
                    raise MQTTError("bad requested QoS byte 0x%x" % q)  # [MQTT-3-8.3-4]
                out.append((f, q))
            else:
                out.append(f)
        if not out:
            raise MQTTError("no topic filter")  # [MQTT-3.8.3-3] [MQTT-3.10.3-2]
        return (t, pid, out)
    # t == CONNECT, §3.1
    name, i = _str(body, 0)
    if name != "MQTT":
        raise MQTTError("protocol name %r" % name)  # [MQTT-3.1.2-1]
    if i + 4 > n:
        raise MQTTError("truncated CONNECT")
    level = body[i]
    cf = body[i + 1]
    keepalive = (body[i + 2] << 8) | body[i + 3]
    i += 4
    if level != 4:
        raise MQTTError("protocol level %d" % level)  # §3.1.2.2
    if cf & 0x01:
        raise MQTTError("reserved CONNECT flag set")  # [MQTT-3.1.2-3]
    wq = (cf >> 3) & 3
    if cf & 0x04:
        if wq == 3:
            raise MQTTError("will QoS 3")  # [MQTT-3.1.2-14]
    elif wq or cf & 0x20:
        raise MQTTError("will QoS or retain without a will")  # [MQTT-3.1.2-13] [MQTT-3.1.2-15]
    if cf & 0x40 and not cf & 0x80:
        raise MQTTError("password without a user name")  # [MQTT-3.1.2-22]
    cid, i = _str(body, i)
    clean = bool(cf & 0x02)
    if not cid and not clean:
        raise MQTTError("empty client id without a clean session")  # [MQTT-3.1.3-7]
    will = None
    if cf & 0x04:
        wt, i = _str(body, i)
        if not wt or "+" in wt or "#" in wt:
            raise MQTTError("bad will topic")
        wp, i = _bin(body, i)
        will = (wt, wp, wq, bool(cf & 0x20))
    user = None
    password = None
    if cf & 0x80:
        user, i = _str(body, i)
    if cf & 0x40:
        password, i = _bin(body, i)
    _end(body, i)
    return (CONNECT, cid, user, password, keepalive, clean, will)
