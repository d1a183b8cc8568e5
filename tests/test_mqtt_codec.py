"""MQTT 3.1.1 packet codec (firmware/lib/telemetry/mqttcodec.py), loaded as the node loads it.

Round trips for every packet type with arbitrary topics, payloads and ids; arbitrary bytes fed
to the decoder give a packet or MQTTError and nothing else; remaining-length boundaries; the
size limit; byte vectors worked out by hand from the standard; and the same codec run in real
MicroPython (the WASI build) must decode the same bytes to the same result as under CPython.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.nodeenv import NodeEnv

ROOT = Path(__file__).resolve().parent.parent
FW_LIB = ROOT / "firmware" / "lib"


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    env = NodeEnv(tmp_path_factory.mktemp("codec") / "flash")
    return env.module("telemetry.mqttcodec")


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# ---- strategies -------------------------------------------------------------------------------
_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
topic_names = st.text(_CHARS.filter(lambda ch: ch not in "+#"), min_size=1, max_size=60)
_level = st.text(_CHARS.filter(lambda ch: ch not in "+#/"), max_size=12)
topic_filters = st.builds(
    lambda levels, tail: "/".join(levels + (["#"] if tail else [])),
    st.lists(st.one_of(_level, st.just("+")), min_size=1, max_size=6), st.booleans(),
).filter(lambda f: f != "")
payloads = st.binary(max_size=3000)
pids = st.integers(1, 65535)
utf8_text = st.text(_CHARS, max_size=40)


# ---- remaining length (§2.2.3) --------------------------------------------------------------
# The standard's table: the boundaries of 1, 2, 3 and 4 bytes, with their encodings.
BOUNDARIES = [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"), (2097151, b"\xff\xff\x7f"), (2097152, b"\x80\x80\x80\x01"),
    (268435455, b"\xff\xff\xff\x7f"),
]


@pytest.mark.parametrize("n, enc", BOUNDARIES)
def test_remaining_length_boundaries(c, n, enc):
    assert c.encode_length(n) == enc
    assert c.length_size(n) == len(enc)
    assert c.decode_length(b"\x30" + enc, 1) == (n, 1 + len(enc))


@pytest.mark.parametrize("n", [-1, 268435456, 1 << 40])
def test_remaining_length_out_of_range(c, n):
    with pytest.raises(c.MQTTError):
        c.encode_length(n)


@pytest.mark.parametrize("raw", [b"\x80", b"\xff\xff", b"\xff\xff\xff", b"\xff\xff\xff\xff\x7f",
                                 b"\x80\x80\x80\x80\x01", b""])
def test_remaining_length_malformed(c, raw):
    with pytest.raises(c.MQTTError):
        c.decode_length(b"\x30" + raw, 1)


@FAST
@given(n=st.integers(0, 268435455))
def test_remaining_length_round_trip(c, n):
    enc = c.encode_length(n)
    assert c.decode_length(enc, 0) == (n, len(enc))


@pytest.mark.parametrize("rem", [127, 128, 16383, 16384, 2097151, 2097152])
def test_publish_at_length_boundaries(c, rem):
    topic = "t/x"
    payload = bytes(range(256)) * (rem // 256 + 1)
    payload = payload[:rem - 2 - len(topic)]
    pkt = c.publish(topic, payload)
    assert len(pkt) == 1 + c.length_size(rem) + rem
    assert c.decode_length(pkt, 1)[0] == rem
    p = c.decode(pkt, len(pkt))
    assert p == (c.PUBLISH, topic, payload, 0, False, False, 0)
    with pytest.raises(c.MQTTError, match="limit"):
        c.decode(pkt, len(pkt) - 1)  # one byte over the limit


# ---- vectors worked out by hand from the standard ------------------------------------------
def test_known_encodings(c):
    # §3.1: protocol name "MQTT", level 4, flags 0x02 (clean session), keepalive 60, id "c"
    assert bytes(c.connect("c", keepalive=60, clean_session=True)) == \
        b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c"
    # user name, password, retained QoS 1 will, no clean session: flags 0xEC
    assert bytes(c.connect("id", "u", b"pw", 10, False, ("w", b"x", 1, True))) == \
        b"\x10\x1b\x00\x04MQTT\x04\xec\x00\x0a\x00\x02id\x00\x01w\x00\x01x\x00\x01u\x00\x02pw"
    # §3.3: QoS 1, packet id 10, retain
    assert bytes(c.publish("a/b", b"hi", 1, True, False, 10)) == b"\x33\x09\x00\x03a/b\x00\x0ahi"
    assert bytes(c.set_dup(c.publish("a/b", b"hi", 1, False, False, 10))) == b"\x3a\x09\x00\x03a/b\x00\x0ahi"
    assert bytes(c.publish("a", "é")) == b"\x30\x05\x00\x01a\xc3\xa9"
    assert bytes(c.puback(0x1234)) == b"\x40\x02\x12\x34"
    assert bytes(c.ack(c.PUBREL, 7)) == b"\x62\x02\x00\x07"  # PUBREL flags 0010
    # §3.8: flags 0010; filter + requested QoS
    assert bytes(c.subscribe(1, [("a/#", 1), ("+", 0)])) == b"\x82\x0c\x00\x01\x00\x03a/#\x01\x00\x01+\x00"
    assert bytes(c.suback(1, [1, 0x80])) == b"\x90\x04\x00\x01\x01\x80"
    assert bytes(c.unsubscribe(2, ["a"])) == b"\xa2\x05\x00\x02\x00\x01a"
    assert bytes(c.connack(True, 0)) == b"\x20\x02\x01\x00"
    assert bytes(c.pingreq()) == b"\xc0\x00"
    assert bytes(c.pingresp()) == b"\xd0\x00"
    assert bytes(c.disconnect()) == b"\xe0\x00"


# ---- round trips ------------------------------------------------------------------------------
@FAST
@given(topic=topic_names, payload=payloads, qos=st.sampled_from([0, 1, 2]), retain=st.booleans(),
       dup=st.booleans(), pid=pids)
@example(topic="x", payload=b"", qos=0, retain=False, dup=False, pid=1)
def test_publish_round_trip(c, topic, payload, qos, retain, dup, pid):
    if qos == 0:
        dup, pid = False, 0
    pkt = c.publish(topic, payload, qos, retain, dup, pid)
    assert c.decode(pkt) == (c.PUBLISH, topic, payload, qos, retain, dup, pid)
    if qos:
        assert c.decode(c.set_dup(pkt))[5] is True


@FAST
@given(cid=utf8_text, user=st.none() | utf8_text, password=st.none() | st.binary(max_size=50),
       keepalive=st.integers(0, 65535), clean=st.booleans(),
       will=st.none() | st.tuples(topic_names, st.binary(max_size=200), st.sampled_from([0, 1, 2]), st.booleans()))
def test_connect_round_trip(c, cid, user, password, keepalive, clean, will):
    if user is None:
        password = None  # [MQTT-3.1.2-22]
    if not cid:
        clean = True  # [MQTT-3.1.3-7]
    pkt = c.connect(cid, user, password, keepalive, clean, will)
    assert c.decode(pkt) == (c.CONNECT, cid, user, password, keepalive, clean, will)


@FAST
@given(sp=st.booleans(), code=st.integers(0, 5))
def test_connack_round_trip(c, sp, code):
    if code:
        sp = False
    assert c.decode(c.connack(sp, code)) == (c.CONNACK, sp, code)


@FAST
@given(kind=st.sampled_from(["PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "UNSUBACK"]), pid=pids)
def test_ack_round_trip(c, kind, pid):
    t = getattr(c, kind)
    assert c.decode(c.ack(t, pid)) == (t, pid)


@FAST
@given(pid=pids, subs=st.lists(st.tuples(topic_filters, st.sampled_from([0, 1, 2])), min_size=1, max_size=8))
def test_subscribe_round_trip(c, pid, subs):
    assert c.decode(c.subscribe(pid, subs)) == (c.SUBSCRIBE, pid, subs)


@FAST
@given(pid=pids, codes=st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=20))
def test_suback_round_trip(c, pid, codes):
    assert c.decode(c.suback(pid, codes)) == (c.SUBACK, pid, bytes(codes))


@FAST
@given(pid=pids, filters=st.lists(topic_filters, min_size=1, max_size=8))
def test_unsubscribe_round_trip(c, pid, filters):
    assert c.decode(c.unsubscribe(pid, filters)) == (c.UNSUBSCRIBE, pid, filters)


def test_empty_packets_round_trip(c):
    assert c.decode(c.pingreq()) == (c.PINGREQ,)
    assert c.decode(c.pingresp()) == (c.PINGRESP,)
    assert c.decode(c.disconnect()) == (c.DISCONNECT,)


# ---- arbitrary bytes ----------------------------------------------------------------------------
def _reencode(c, p):
    """The packet the encoders make of a decoded tuple: what the decoder accepts is exactly
    what an encoder can produce."""
    t = p[0]
    if t == c.PUBLISH:
        return c.publish(p[1], p[2], p[3], p[4], p[5], p[6])
    if t == c.CONNECT:
        return c.connect(p[1], p[2], p[3], p[4], p[5], p[6])
    if t == c.CONNACK:
        return c.connack(p[1], p[2])
    if t in (c.PUBACK, c.PUBREC, c.PUBREL, c.PUBCOMP, c.UNSUBACK):
        return c.ack(t, p[1])
    if t == c.SUBSCRIBE:
        return c.subscribe(p[1], p[2])
    if t == c.SUBACK:
        return c.suback(p[1], p[2])
    if t == c.UNSUBSCRIBE:
        return c.unsubscribe(p[1], p[2])
    return {c.PINGREQ: c.pingreq(), c.PINGRESP: c.pingresp(), c.DISCONNECT: c.disconnect()}[t]


def _decode_or_error(c, data, max_packet=1 << 20):
    try:
        p = c.decode(data, max_packet)
    except c.MQTTError as e:
        assert str(e), "MQTTError without a message"
        return None
    assert isinstance(p, tuple) and 1 <= p[0] <= 14
    return p


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_mqtterror(c, data):
    _decode_or_error(c, data)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.integers(0, 255), body=st.binary(max_size=200))
def test_arbitrary_bodies_behind_a_valid_header(c, first, body):
    # A well-formed fixed header gets the body past the length check, into each parser.
    data = bytes([first]) + c.encode_length(len(body)) + body
    p = _decode_or_error(c, data)
    if p is not None:
        assert bytes(_reencode(c, p)) == data


packets = st.one_of(
    st.builds(lambda t, p, q, r, i: (t, p, q, r, False, i if q else 0), topic_names, payloads,
              st.sampled_from([0, 1]), st.booleans(), pids).map(lambda a: ("publish", a)),
    st.builds(lambda cid, u, pw, w: (cid or "x", u, pw if u is not None else None, 60, False, w), utf8_text,
              st.none() | utf8_text, st.none() | st.binary(max_size=20),
              st.none() | st.tuples(topic_names, st.binary(max_size=20), st.sampled_from([0, 1]), st.booleans()))
    .map(lambda a: ("connect", a)),
    st.builds(lambda i, s: (i, s), pids, st.lists(st.tuples(topic_filters, st.sampled_from([0, 1])), min_size=1,
                                                  max_size=3)).map(lambda a: ("subscribe", a)),
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pkt=packets, cuts=st.lists(st.tuples(st.integers(0, 10000), st.integers(0, 255)), max_size=4),
       truncate=st.integers(0, 10000))
def test_mutated_packets_decode_or_raise_mqtterror(c, pkt, cuts, truncate):
    kind, args = pkt
    data = bytearray(getattr(c, kind)(*args))
    for pos, val in cuts:
        data[pos % len(data)] = val
    if truncate % 3 == 0:
        del data[truncate % len(data):]
    _decode_or_error(c, bytes(data))


def test_a_huge_declared_length_needs_no_memory(c):
    # 256 MB declared, five bytes present: refused on the declared size, nothing allocated
    with pytest.raises(c.MQTTError, match="limit"):
        c.decode(b"\x30\xff\xff\xff\x7f", 4096)
    with pytest.raises(c.MQTTError):
        c.decode(b"\x30\xff\xff\xff\x7f")


# ---- what the standard forbids --------------------------------------------------------------
MALFORMED = {
    "PUBLISH QoS 3 [MQTT-3.3.1-4]": b"\x36\x05\x00\x01a\x00\x01",
    "DUP on QoS 0 [MQTT-3.3.1-2]": b"\x38\x03\x00\x01a",
    "packet id 0 [MQTT-2.3.1-1]": b"\x32\x05\x00\x01a\x00\x00",
    "wildcard in a topic name [MQTT-3.3.2-2]": b"\x30\x03\x00\x01#",
    "empty topic name [MQTT-4.7.3-1]": b"\x30\x02\x00\x00",
    "invalid UTF-8 [MQTT-1.5.3-1]": b"\x30\x04\x00\x02\xc3\x28",
    "UTF-16 surrogate [MQTT-1.5.3-1]": b"\x30\x05\x00\x03\xed\xa0\x80",
    "U+0000 in a string [MQTT-1.5.3-2]": b"\x30\x03\x00\x01\x00",
    "topic longer than the packet": b"\x30\x03\x00\x09a",
    "reserved type 0": b"\x00\x00",
    "reserved type 15": b"\xf0\x00",
    "CONNACK flags set [MQTT-2.2.2-2]": b"\x21\x02\x00\x00",
    "CONNACK reserved bits": b"\x20\x02\x02\x00",
    "CONNACK code 6 (§3.2.2.3)": b"\x20\x02\x00\x06",
    "session present when refused [MQTT-3.2.2-4]": b"\x20\x02\x01\x05",
    "CONNACK too long": b"\x20\x03\x00\x00\x00",
    "PUBREL flags 0000 [MQTT-3.6.1-1]": b"\x60\x02\x00\x01",
    "SUBSCRIBE flags 0000 [MQTT-3.8.1-1]": b"\x80\x06\x00\x01\x00\x01a\x00",
    "SUBSCRIBE without filters [MQTT-3.8.3-3]": b"\x82\x02\x00\x01",
    "SUBSCRIBE QoS byte 3 [MQTT-3-8.3-4]": b"\x82\x06\x00\x01\x00\x01a\x03",
    "SUBSCRIBE filter a# [MQTT-4.7.1-2]": b"\x82\x07\x00\x01\x00\x02a#\x00",
    "SUBACK code 3 [MQTT-3.9.3-2]": b"\x90\x03\x00\x01\x03",
    "PINGRESP with a body": b"\xd0\x01\x00",
    "PUBACK too short": b"\x40\x01\x00",
    "CONNECT protocol name [MQTT-3.1.2-1]": b"\x10\x0d\x00\x04MQTX\x04\x02\x00\x3c\x00\x01c",
    "CONNECT level 3 (§3.1.2.2)": b"\x10\x0d\x00\x04MQTT\x03\x02\x00\x3c\x00\x01c",
    "CONNECT reserved flag [MQTT-3.1.2-3]": b"\x10\x0d\x00\x04MQTT\x04\x03\x00\x3c\x00\x01c",
    "password without user [MQTT-3.1.2-22]": b"\x10\x11\x00\x04MQTT\x04\x42\x00\x3c\x00\x01c\x00\x02pw",
    "will retain without will [MQTT-3.1.2-15]": b"\x10\x0d\x00\x04MQTT\x04\x22\x00\x3c\x00\x01c",
    "CONNECT trailing bytes": b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x01cz",
    "remaining length shorter than the data": b"\xc0\x00\x00",
    "remaining length longer than the data": b"\x30\x05\x00\x01a",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_packets_raise_mqtterror(c, name):
    with pytest.raises(c.MQTTError):
        c.decode(MALFORMED[name])


@pytest.mark.parametrize("call", [
    lambda c: c.publish("a/+", b""),  # [MQTT-3.3.2-2]
    lambda c: c.publish("", b""),  # [MQTT-4.7.3-1]
    lambda c: c.publish("a", b"", 3, False, False, 1),
    lambda c: c.publish("a", b"", 1),  # QoS 1 needs a packet id
    lambda c: c.publish("a", b"", 0, False, True),  # [MQTT-3.3.1-2]
    lambda c: c.publish("a\x00b", b""),  # [MQTT-1.5.3-2]
    lambda c: c.publish("a\ud800", b""),  # lone surrogate
    lambda c: c.publish(b"\xff", b""),  # bytes that are not UTF-8
    lambda c: c.publish("x" * 65536, b""),  # a string over 65535 bytes
    lambda c: c.connect("id", None, b"pw"),  # [MQTT-3.1.2-22]
    lambda c: c.connect("", clean_session=False),  # [MQTT-3.1.3-7]
    lambda c: c.connect("id", keepalive=65536),
    lambda c: c.connect("id", will=("a/#", b"", 0, False)),
    lambda c: c.subscribe(0, [("a", 0)]),
    lambda c: c.subscribe(1, []),
    lambda c: c.subscribe(1, [("a/#/b", 0)]),  # [MQTT-4.7.1-2]
    lambda c: c.subscribe(1, [("a+", 0)]),  # [MQTT-4.7.1-3]
    lambda c: c.suback(1, [3]),
    lambda c: c.connack(True, 5),
    lambda c: c.ack(c.PUBLISH, 1),
], ids=lambda f: "")
def test_encoders_refuse_what_the_standard_forbids(c, call):
    with pytest.raises(c.MQTTError):
        call(c)


# ---- the same codec in real MicroPython ------------------------------------------------------
CANON = r'''
import binascii


def canon(x):
    if isinstance(x, bool):
        return "T" if x else "F"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, str):
        return "s" + binascii.hexlify(x.encode()).decode()
    if isinstance(x, (bytes, bytearray)):
        return "b" + binascii.hexlify(bytes(x)).decode()
    if x is None:
        return "N"
    return "(" + ",".join([canon(i) for i in x]) + ")"
'''

MP_SCRIPT = CANON + r'''
import gc
gc.disable()
import sys
sys.path[:] = ["/lib"]
import binascii
from telemetry import mqttcodec as c
with open("/work/in.txt") as f:
    lines = f.read().split("\n")
out = []
for line in lines:
    if not line:
        continue
    data = binascii.unhexlify(line)
    try:
        r = canon(c.decode(data, 4096))
    except c.MQTTError:
        r = "E"
    out.append(r)
# encoders too
out.append(canon(c.publish("a/é", b"\x00\xff", 1, True, False, 513)))
out.append(canon(c.connect("node-1", "u", b"p", 60, False, ("s/t", b"lost", 1, True))))
out.append(canon(c.subscribe(9, [("a/+/c", 1), ("#", 0)])))
with open("/work/out.txt", "w") as f:
    f.write("\n".join(out))
'''


def _run_micropython(script: str, workdir: Path) -> None:
    from simulator import wasi

    wasi.run_micropython(script, {FW_LIB: "/lib", workdir: "/work"}, 64 << 20)


def test_micropython_decodes_like_cpython(c, tmp_path):
    """The codec in MicroPython: every input decodes to the same packet or is refused, as under
    CPython (str(memoryview, 'utf-8') validation, bytearray slice assignment, const...)."""
    rng = random.Random(3)
    inputs = [bytes(c.publish("a/é", bytes(range(40)), 1, True, False, 77)),
              bytes(c.connect("id", "u", b"pw", 10, False, ("w", b"x", 1, True))),
              bytes(c.subscribe(5, [("a/#", 1), ("+/b", 0)])), bytes(c.suback(5, [1, 0x80])),
              bytes(c.connack(False, 5)), bytes(c.puback(9)), b"\xd0\x00"]
    inputs += list(MALFORMED.values())
    for _ in range(400):
        base = bytearray(rng.choice(inputs[:7]))
        for _ in range(rng.randint(0, 3)):
            base[rng.randrange(len(base))] = rng.randrange(256)
        inputs.append(bytes(base))
    for _ in range(200):
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 30)))
        inputs.append(bytes([rng.randrange(256)]) + c.encode_length(len(body)) + body)
    (tmp_path / "in.txt").write_text("\n".join(d.hex() for d in inputs) + "\n")
    _run_micropython(MP_SCRIPT, tmp_path)
    got = (tmp_path / "out.txt").read_text().split("\n")

    ns: dict = {}
    exec(CANON, ns)
    canon = ns["canon"]
    want = []
    for d in inputs:
        try:
            want.append(canon(c.decode(d, 4096)))
        except c.MQTTError:
            want.append("E")
    want.append(canon(c.publish("a/é", b"\x00\xff", 1, True, False, 513)))
    want.append(canon(c.connect("node-1", "u", b"p", 60, False, ("s/t", b"lost", 1, True))))
    want.append(canon(c.subscribe(9, [("a/+/c", 1), ("#", 0)])))
    assert len(got) == len(want)
    diffs = [(inputs[i].hex() if i < len(inputs) else "encoder %d" % i, want[i], got[i])
             for i in range(len(want)) if want[i] != got[i]]
    assert not diffs, diffs[:5]
    assert want.count("E") > 100 and len(want) - want.count("E") > 10  # both kinds exercised
