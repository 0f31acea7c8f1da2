"""The incremental reply decoder: hand-made replies, any chunking, garbage.

The central contract checked here: :meth:`Decoder.next_reply` returns None
*only* while the buffered bytes are a proper prefix of a packet that could
still become valid (length prefix incomplete, or a sane declared length not
yet filled). Whenever the declared packet is complete it returns a reply or
raises :class:`ProtocolError`, so the connection never waits forever on bytes
that cannot arrive; and once broken, the decoder stays broken.
"""

from __future__ import annotations

import decimal
import re
import tracemalloc
import uuid
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tarantool._errors import NetworkError, ProtocolError
from trio_tarantool._iproto import Decoder, Reply
from trio_tarantool._iproto import _constants as C
from trio_tarantool._iproto._decoder import MAX_BAD_PUSHES
from trio_tarantool._iproto._ext import ext_hook


def h(text: str) -> bytes:
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    return bytes.fromhex(" ".join(lines))


def framed(text: str) -> bytes:
    """The usual 0xce uint32 length prefix in front of hand-written header+body bytes."""
    payload = h(text)
    return b"\xce" + len(payload).to_bytes(4, "big") + payload


def decode_all(data: bytes, **kw: Any) -> list[Reply]:
    decoder = Decoder(**kw)
    decoder.feed(data)
    return decoder.replies()


# -- hand-made replies -------------------------------------------------------------

OK_REPLY = framed("""
    83 00 00  01 07  05 50          # {REQUEST_TYPE: OK, SYNC: 7, SCHEMA_VERSION: 80}
    81 30 91 92 01 a1 61            # {DATA: [[1, "a"]]}
""")

ERROR_REPLY = framed("""
    83 00 cd 80 24  01 08  05 50    # type 0x8024 = error, code 36 (ER_NO_SUCH_SPACE)
    82
      31 a5 6f 6f 70 73 21          # ERROR_24: "oops!"
      52 81 00 91 86                # ERROR: {STACK: [{6 keys}]}
        00 ab 43 6c 69 65 6e 74 45 72 72 6f 72      # type "ClientError"
        01 a3 66 2e 63                              # file "f.c"
        02 05                                       # line 5
        03 a5 6f 6f 70 73 21                        # message "oops!"
        04 00                                       # errno 0
        05 24                                       # errcode 36
""")

PUSH_REPLY = framed("""
    82 00 cc 80  01 09              # type CHUNK (0x80), sync 9
    81 30 91 a4 70 75 73 68         # {DATA: ["push"]}
""")

EVENT_REPLY = framed("""
    82 00 4c  01 00                 # type EVENT (0x4c), sync 0
    82 57 a3 6b 65 79  58 a3 76 61 6c   # {EVENT_KEY: "key", EVENT_DATA: "val"}
""")


def test_ok_reply_with_data() -> None:
    (reply,) = decode_all(OK_REPLY)
    assert (reply.sync, reply.code, reply.schema_version) == (7, C.OK, 80)
    assert reply.body == {C.DATA: [[1, "a"]]}
    assert not reply.is_error
    assert reply.error_code == 0
    assert repr(reply) == "Reply(sync=7, code=0x0, schema_version=80)"


def test_error_reply() -> None:
    (reply,) = decode_all(ERROR_REPLY)
    assert (reply.sync, reply.code, reply.schema_version) == (8, 0x8024, 80)
    assert reply.is_error
    assert reply.error_code == 36
    assert reply.body[C.ERROR_24] == "oops!"
    assert reply.body[C.ERROR] == {
        0: [{0: "ClientError", 1: "f.c", 2: 5, 3: "oops!", 4: 0, 5: 36}]
    }


def test_push_chunk() -> None:
    (reply,) = decode_all(PUSH_REPLY)
    assert (reply.sync, reply.code) == (9, C.CHUNK)
    assert not reply.is_error
    assert reply.body == {C.DATA: ["push"]}


def test_event() -> None:
    (reply,) = decode_all(EVENT_REPLY)
    assert (reply.sync, reply.code, reply.schema_version) == (0, C.EVENT, 0)
    assert reply.body == {C.EVENT_KEY: "key", C.EVENT_DATA: "val"}


def test_error_flag_and_code_split() -> None:
    """The type is TYPE_ERROR (0x8000) | box error code; CHUNK (0x80) is not an error."""
    assert Reply(1, 0x8000, 0, {}).is_error
    assert Reply(1, 0x8000, 0, {}).error_code == 0
    assert Reply(1, 0x8000 | 0x7FFF, 0, {}).error_code == 0x7FFF
    assert Reply(1, 0x8000 | 7, 0, {}).error_code == 7
    for code in (C.OK, C.CHUNK, C.EVENT):
        assert not Reply(1, code, 0, {}).is_error
        assert Reply(1, code, 0, {}).error_code == 0


def test_header_without_schema_version_or_sync() -> None:
    (reply,) = decode_all(framed("81 00 00   80"))
    assert (reply.sync, reply.code, reply.schema_version) == (0, 0, 0)


def test_reply_without_body() -> None:
    """A packet that ends after its header has an empty body."""
    (reply,) = decode_all(framed("82 00 00 01 03"))
    assert (reply.sync, reply.body) == (3, {})


def test_raw_mode_keeps_strings_as_bytes() -> None:
    (reply,) = decode_all(OK_REPLY, raw=True)
    assert reply.body == {C.DATA: [[1, b"a"]]}


def test_invalid_utf8_fails_that_reply_only() -> None:
    bad = framed("""
        83 00 00 01 07 05 09   # OK, sync 7, schema version 9
        81 30 91 92 01 a2 ff fe # {DATA: [[1, "\xff\xfe"]]}: not UTF-8
    """)
    decoder = Decoder()
    decoder.feed(bad + OK_REPLY)
    first = decoder.next_reply()
    assert first is not None
    assert (first.sync, first.code, first.schema_version, first.body) == (7, 0, 9, {})
    assert first.decode_error is not None and "encoding=None" in first.decode_error
    second = decoder.next_reply()
    assert second is not None and second.decode_error is None
    assert second.body == {C.DATA: [[1, "a"]]}
    # The same bytes in raw mode are fine.
    (raw,) = decode_all(bad, raw=True)
    assert raw.decode_error is None and raw.body == {C.DATA: [[1, b"\xff\xfe"]]}


def test_extension_values_in_a_body() -> None:
    (reply,) = decode_all(framed("""
        82 00 00 01 01
        81 30 92
          c7 03 01  02 12 5c                                     # decimal 1.25
          d8 02  f8 1d 4f ae 7d ec 11 d0 a7 65 00 a0 c9 1e 6b f6  # uuid
    """))
    assert reply.body[C.DATA] == [decimal.Decimal("1.25"), uuid.UUID("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")]


@pytest.mark.parametrize(
    "prefix",
    ["0e", "cc 0e", "cd 00 0e", "ce 00 00 00 0e", "cf 00 00 00 00 00 00 00 0e"],
)
def test_every_uint_width_of_the_length_prefix(prefix: str) -> None:
    """Tarantool always writes 0xce, but any msgpack uint is a valid prefix."""
    (reply,) = decode_all(h(prefix) + OK_REPLY[5:])
    assert reply.sync == 7


def test_several_replies_in_one_chunk_and_byte_by_byte() -> None:
    stream = OK_REPLY + ERROR_REPLY + PUSH_REPLY + EVENT_REPLY
    together = [(r.sync, r.code, r.body) for r in decode_all(stream)]
    assert [(s, c) for s, c, _ in together] == [(7, 0), (8, 0x8024), (9, 0x80), (0, 0x4C)]

    decoder = Decoder()
    one_by_one = []
    for i in range(len(stream)):
        decoder.feed(stream[i:i + 1])
        one_by_one += [(r.sync, r.code, r.body) for r in decoder.replies()]
    assert one_by_one == together
    assert decoder.buffered == 0


def test_next_reply_returns_none_until_complete() -> None:
    decoder = Decoder()
    assert decoder.next_reply() is None
    decoder.feed(OK_REPLY[:3])
    assert decoder.next_reply() is None
    decoder.feed(OK_REPLY[3:-1])
    assert decoder.next_reply() is None
    assert decoder.buffered == len(OK_REPLY) - 1
    decoder.feed(OK_REPLY[-1:])
    reply = decoder.next_reply()
    assert reply is not None and reply.sync == 7
    assert decoder.next_reply() is None
    assert decoder.buffered == 0


def test_feed_accepts_bytearray_and_memoryview() -> None:
    decoder = Decoder()
    decoder.feed(bytearray(OK_REPLY[:10]))
    decoder.feed(memoryview(OK_REPLY)[10:])
    assert [r.sync for r in decoder.replies()] == [7]


# -- garbage -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (h("c0"), "length prefix"),                                   # nil
        (h("a5 68 65 6c 6c 6f"), "length prefix"),                    # a string
        (h("ff"), "length prefix"),                                   # negative fixint
        (h("d2 00 00 00 05"), "length prefix"),                       # int32
        (h("00"), "outside"),                                         # length 0
        (h("cf ff ff ff ff ff ff ff ff"), "outside"),                 # 2^64-1
        (h("ce 80 00 00 01"), "outside"),                             # 2^31+1 > MAX_PACKET_SIZE
        (h("ce 00 00 00 03  83 00 00  01 07 05 50"), "ends inside a msgpack value"),
        (h("ce 00 00 00 09  83 00 00 01 07 05 50  81 30"), "ends inside"),  # body cut by length
        (OK_REPLY[:4] + b"\x0f" + OK_REPLY[5:] + b"\x00", "does not match"),  # 1 byte too long
        (framed("82 00 00 01 01  81 30 90  00"), "does not match"),   # a third object
        (framed("92 00 00"), "must be maps"),                         # header an array
        (framed("82 00 00 01 01  90"), "must be maps"),               # body an array
        (framed("81 01 07  80"), "no request type"),
        (framed("82 00 a1 61 01 01  80"), "integers"),                # type "a"
        (framed("82 00 00 01 cb 3f f0 00 00 00 00 00 00  80"), "integers"),  # sync 1.0
        (framed("82 00 00 01 01  81 30 92 01"), "ends inside"),       # array of 2 holds 1 item
        (framed("c1"), "undecodable"),                                # reserved byte
        (framed("82 00 00 01 01  81 30 c1"), "undecodable"),          # reserved byte in the body
        (framed("82 00 00 01 01  91 d5 01 00 05"), "must be maps"),   # an array body with a bad decimal
        (framed("82 00 00 01 01  81 30 d5 01 00 05  00"), "does not match"),  # bad decimal, then junk
        (framed("82 00 a1 ff 01 01  80"), "integers"),                # type: a non-UTF-8 string
        (framed("82 00 d4 2a 00 01 01  80"), "integers"),             # type: an unknown ext value
        (framed("81 81 00 00 00  80"), "undecodable"),                # header keyed by a map
    ],
)
def test_malformed_packet(data: bytes, match: str) -> None:
    decoder = Decoder()
    decoder.feed(data)
    with pytest.raises(ProtocolError, match=match):
        decoder.next_reply()


# -- well framed, malformed contents: that reply fails, the stream goes on (issue 8, item 10) --


@pytest.mark.parametrize(
    ("body_hex", "problem"),
    [
        ("81 30 91 d5 01 00 05", r"malformed msgpack extension value \(decimal: bad sign nibble"),
        ("81 30 91 d8 04" + " 00" * 8 + " 00 ca 9a 3b" + " 00" * 4, r"extension value \(datetime:"),
        ("81 30 91 c7 03 01 cf ff ff", r"extension value \(decimal:"),     # scale 2**64-1
        ("81 30 91 d4 2a 00", r"unknown msgpack extension type 42 \(this client decodes 1 decimal, 2 uuid"),
        ("81 30 91 d5 07 00 00", r"unknown msgpack extension type 7"),   # MP_TUPLE: not negotiated
        ("81 30 91 c7 02 03 81 00", r"extension value \(error:"),        # error ext, truncated payload
        ("81 30 91 81 81 00 00 00", r"map whose key is an array or a map"),
        ("81 30 91 81 91 00 00", r"map whose key is an array or a map"),
    ],
)
def test_malformed_contents_fail_that_reply_only(body_hex: str, problem: str) -> None:
    """Regression: a bad or unknown extension value, or an unhashable map key, in
    a well-framed reply broke the whole stream (or, for unknown types, handed
    the application an opaque ExtType); now only that reply fails."""
    decoder = Decoder()
    decoder.feed(framed("83 00 00 01 07 05 09  " + body_hex) + OK_REPLY)
    first = decoder.next_reply()
    assert first is not None
    assert (first.sync, first.code, first.schema_version, first.body) == (7, 0, 9, {})
    assert first.decode_error is not None
    assert re.search(problem, first.decode_error), first.decode_error
    second = decoder.next_reply()
    assert second is not None and second.decode_error is None
    assert second.body == {C.DATA: [[1, "a"]]}
    assert decoder.next_reply() is None and decoder.buffered == 0


def test_an_error_reply_with_an_undecodable_stack_keeps_its_message() -> None:
    """The code is in the header; ERROR_24 is kept (decoded leniently)."""
    decoder = Decoder()
    decoder.feed(framed("""
        83 00 cd 80 07  01 08  05 50          # ER_READONLY
        82
          31 a4 6e 6f 70 65                   # ERROR_24 "nope"
          52 81 00 91 81 06 81 00 d4 2a 00    # a stack entry whose fields hold ext 42
    """) + OK_REPLY)
    first = decoder.next_reply()
    assert first is not None and first.error_code == 7
    assert first.body == {C.ERROR_24: "nope"}
    assert first.decode_error is not None and "extension type 42" in first.decode_error
    second = decoder.next_reply()
    assert second is not None and second.sync == 7


def test_an_error_reply_with_a_bad_utf8_message_keeps_it_with_replacements() -> None:
    decoder = Decoder()
    decoder.feed(framed("83 00 cd 80 07  01 08  05 50   81 31 a3 6f 6b ff"))
    (reply,) = decoder.replies()
    assert reply.body == {C.ERROR_24: "ok\ufffd"}
    assert reply.decode_error is not None and "UTF-8" in reply.decode_error


def push(sync: int, body_hex: str) -> bytes:
    return framed(f"82 00 cc 80  01 {sync:02x}  {body_hex}")


def ok(sync: int) -> bytes:
    return framed(f"82 00 00  01 {sync:02x}   81 30 91 01")


@pytest.mark.parametrize(
    ("body_hex", "problem"),
    [
        ("81 30 05", "DATA is an integer, expected an array"),
        ("81 30 81 01 02", "DATA is a map, expected an array"),
        ("80", "DATA is nil, expected an array"),
        ("81 30 91 d4 2a 00", "unknown msgpack extension type 42"),
        ("81 30 91 a1 ff", "not valid UTF-8"),
    ],
)
def test_a_malformed_push_fails_its_request(body_hex: str, problem: str) -> None:
    """Regression: a push with DATA 5 was handed to on_push as 5. Now the push is
    dropped and the final reply of its request says why; others are untouched."""
    decoder = Decoder()
    decoder.feed(push(3, "81 30 91 01") + push(3, body_hex) + push(4, "81 30 91 02") + ok(4) + ok(3) + ok(3))
    replies = decoder.replies()
    assert [(r.sync, r.code) for r in replies] == [(3, C.CHUNK), (4, C.CHUNK), (4, 0), (3, 0), (3, 0)]
    assert [r.decode_error is None for r in replies] == [True, True, True, False, True]
    final = replies[3]
    assert final.body == {}
    assert final.decode_error is not None
    assert final.decode_error.startswith("a push (IPROTO_CHUNK) for this request was malformed: ")
    assert problem in final.decode_error


def test_a_malformed_push_before_an_error_reply_keeps_the_code() -> None:
    decoder = Decoder()
    decoder.feed(push(3, "81 30 05") + framed("83 00 cd 80 20  01 03  05 50   81 31 a1 78"))
    (reply,) = decoder.replies()
    assert (reply.error_code, reply.body) == (32, {C.ERROR_24: "x"})
    assert reply.decode_error is not None and "push" in reply.decode_error


def test_many_malformed_pushes_in_a_row() -> None:
    """Dropped in a loop (no recursion), and remembered within a bound."""
    decoder = Decoder()
    decoder.feed(b"".join(push(i % 100, "81 30 05") for i in range(5000)) + ok(7))
    assert [r.sync for r in decoder.replies()] == [7]
    decoder = Decoder()
    decoder.feed(b"".join(framed(f"82 00 cc 80  01 cd {i:04x}  81 30 05") for i in range(3000)))
    assert decoder.replies() == []
    assert len(decoder._bad_pushes) == MAX_BAD_PUSHES  # white-box: memory stays bounded


def test_truncated_body_does_not_swallow_the_next_packet() -> None:
    """Regression: a body cut short by its declared length was taken as "no
    body" (msgpack's tell() moves past a partial value), and the half-read map
    then continued into the next packet's bytes."""
    decoder = Decoder()
    decoder.feed(h("ce 00 00 00 09  83 00 00 01 07 05 50  81 30") + OK_REPLY)
    with pytest.raises(ProtocolError, match="ends inside"):
        decoder.next_reply()


def test_declared_length_above_limit_fails_before_the_bytes_arrive() -> None:
    decoder = Decoder(max_packet_size=100)
    decoder.feed(h("ce 00 00 00 65"))  # 101
    with pytest.raises(ProtocolError, match=r"outside 1\.\.100"):
        decoder.next_reply()
    decoder = Decoder(max_packet_size=100)
    decoder.feed(h("ce 00 00 00 64"))  # 100: legal, waits for its bytes
    assert decoder.next_reply() is None


def test_deep_nesting_is_a_protocol_error() -> None:
    decoder = Decoder()
    decoder.feed(framed("82 00 00 01 01  81 30" + " 91" * 5000 + " 00"))
    with pytest.raises(ProtocolError):
        decoder.next_reply()


def test_protocol_error_is_a_network_error_that_may_have_executed() -> None:
    decoder = Decoder()
    decoder.feed(b"\xc0")
    with pytest.raises(ProtocolError) as info:
        decoder.next_reply()
    assert isinstance(info.value, NetworkError)
    assert info.value.may_have_executed


def test_broken_decoder_stays_broken() -> None:
    decoder = Decoder()
    decoder.feed(OK_REPLY + b"\xc0" + OK_REPLY)
    first = decoder.next_reply()
    assert first is not None and first.sync == 7
    with pytest.raises(ProtocolError) as info:
        decoder.next_reply()
    for call in (decoder.next_reply, decoder.replies, lambda: decoder.feed(OK_REPLY)):
        with pytest.raises(ProtocolError) as again:
            call()
        assert again.value is info.value
    assert decoder.buffered == 0  # the broken stream's bytes are dropped


def test_replies_raises_when_bad_data_follows_good() -> None:
    """replies() is all-or-error: a caller that must keep the good replies in
    front of a broken packet drains with next_reply() instead."""
    decoder = Decoder()
    decoder.feed(OK_REPLY + h("ce 00 00 00 00"))
    with pytest.raises(ProtocolError):
        decoder.replies()


# -- memory --------------------------------------------------------------------------


def test_consumed_bytes_are_released() -> None:
    """Feeding and consuming for a long time keeps the buffer at one packet or so."""
    decoder = Decoder()
    for i in range(5000):
        decoder.feed(OK_REPLY)
        decoder.feed(PUSH_REPLY[:7])
        assert [r.sync for r in decoder.replies()] == [7]
        decoder.feed(PUSH_REPLY[7:])
        assert [r.sync for r in decoder.replies()] == [9]
        assert decoder.buffered == 0
        if i % 1000 == 0:  # white-box: the internal buffers themselves are compacted
            assert len(decoder._buf) <= len(OK_REPLY) + len(PUSH_REPLY)
            assert sum(map(len, decoder._held)) <= len(OK_REPLY) + len(PUSH_REPLY)


def test_streaming_resumes_after_a_packet_the_careful_path_judged() -> None:
    """White-box (issue 11): a packet the streaming path cannot vouch for is
    judged by the careful path, which hands the stream back right after it
    (one bad reply must not slow the connection down for good), also when the
    rest of the read ends inside a packet."""
    bad = framed("83 00 00 01 07 05 09   81 30 91 92 01 a2 ff fe")  # not UTF-8
    decoder = Decoder()
    decoder.feed(OK_REPLY + bad + OK_REPLY + PUSH_REPLY[:7])
    replies = decoder.replies()
    assert [(r.sync, r.decode_error is None) for r in replies] == [(7, True), (7, False), (7, True)]
    assert not decoder._careful
    assert decoder.buffered == 7
    decoder.feed(PUSH_REPLY[7:] + OK_REPLY)
    assert [r.sync for r in decoder.replies()] == [9, 7]
    assert not decoder._careful and decoder.buffered == 0
    assert decoder._held == [] or decoder._start == decoder._fed


def test_memory_does_not_grow_with_traffic() -> None:
    """Black-box version: traced allocations stay flat over 20 000 replies (~0.5 MB)."""
    decoder = Decoder()
    chunk = OK_REPLY + ERROR_REPLY[:20]
    rest = ERROR_REPLY[20:]

    def pump(n: int) -> None:
        for _ in range(n):
            decoder.feed(chunk)
            decoder.replies()
            decoder.feed(rest)
            decoder.replies()

    pump(100)  # warm up caches and buffers
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        pump(10_000)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024
    assert peak - before < 256 * 1024


# -- hypothesis: valid streams in arbitrary chunks -------------------------------------

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=10) | st.binary(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12,
)


@dataclass(frozen=True)
class Expected:
    sync: int
    code: int
    schema_version: int
    body: dict[int, Any]
    decode_error: bool = False


@st.composite
def replies(draw: st.DrawFn) -> tuple[bytes, Expected]:
    """One valid packet (with a random but legal length prefix) and what it decodes to."""
    code = draw(st.sampled_from([C.OK, C.CHUNK, C.EVENT]) | st.integers(0, 0x7FFF).map(lambda c: 0x8000 | c))
    sync = draw(st.integers(0, 2**64 - 1))
    header: dict[int, Any] = {C.REQUEST_TYPE: code, C.SYNC: sync}
    schema_version = draw(st.integers(0, 2**32))
    if schema_version:
        header[C.SCHEMA_VERSION] = schema_version
    if code & C.TYPE_ERROR:
        body: dict[int, Any] = {C.ERROR_24: draw(st.text(max_size=20))}
    elif code == C.CHUNK:
        body = {C.DATA: draw(st.lists(values, max_size=3))}
    else:
        body = draw(st.dictionaries(st.sampled_from([C.DATA, C.SQL_INFO, C.METADATA, C.STMT_ID, 0x57]),
                                    values, max_size=3))
    payload = msgpack.packb(header) + msgpack.packb(body, use_bin_type=True)
    n = len(payload)
    prefix = draw(st.sampled_from(
        [b"\xce" + n.to_bytes(4, "big"), b"\xcf" + n.to_bytes(8, "big"), msgpack.packb(n)]
    ))
    return prefix + payload, Expected(sync, code, schema_version, body)


_WIDTHS = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}


def packet_size(data: bytes) -> int:
    """Size of the packet at the start of ``data`` (prefix included), parsed here
    independently of the decoder."""
    first = data[0]
    if first <= 0x7F:
        return 1 + first
    width = _WIDTHS[first]
    return 1 + width + int.from_bytes(data[1:1 + width], "big")


def strict_ext_hook(code: int, data: bytes) -> Any:
    if code not in (1, 2, 3, 4, 6):
        raise ValueError(f"unknown ext type {code}")
    return ext_hook(code, data)


def content_failure(payload: bytes) -> Expected | str:
    """The reference for a packet whose normal decoding failed: ``"error"`` unless
    it is structurally sound msgpack (header map, then a map body, exactly
    filling the packet) with integer type and sync; then one bad reply."""
    length = len(payload)
    plain = msgpack.Unpacker(raw=True, use_list=False, strict_map_key=False)
    plain.feed(payload)
    try:
        header = plain.unpack()
        body_at = plain.tell()
        if body_at != length:
            plain.skip()
    except Exception:
        return "error"
    if plain.tell() != length or type(header) is not dict:
        return "error"
    if body_at != length and not (0x80 <= payload[body_at] <= 0x8F or payload[body_at] in (0xDE, 0xDF)):
        return "error"
    code, sync = header.get(C.REQUEST_TYPE), header.get(C.SYNC, 0)
    if type(code) is not int or type(sync) is not int:
        return "error"
    body: dict[int, Any] = {}
    if code & C.TYPE_ERROR and body_at != length:
        try:
            full = msgpack.unpackb(payload[body_at:], unicode_errors="replace", use_list=False,
                                   strict_map_key=False)
        except Exception:
            full = None
        if type(full) is dict and isinstance(full.get(C.ERROR_24), str | bytes):
            body = {C.ERROR_24: full[C.ERROR_24]}
    schema_version = header.get(C.SCHEMA_VERSION, 0)
    return Expected(sync, code, schema_version if type(schema_version) is int else 0, body, True)


def oracle(pending: bytes, max_size: int) -> Expected | str:
    """What the decoder must do with ``pending`` (bytes not yet returned):
    ``"wait"``, ``"error"`` or the reply (before push screening, see
    :func:`screened`).

    A plain, non-incremental reference: the packet's payload is decoded on its
    own by a fresh Unpacker, so no state can leak from one packet to the next.
    """
    if not pending:
        return "wait"
    first = pending[0]
    if first <= 0x7F:
        width, length = 0, first
    elif first in _WIDTHS:
        width = _WIDTHS[first]
        if len(pending) < 1 + width:
            return "wait"
        length = int.from_bytes(pending[1:1 + width], "big")
    else:
        return "error"
    if not 1 <= length <= max_size:
        return "error"
    if len(pending) < 1 + width + length:
        return "wait"
    payload = pending[1 + width:1 + width + length]
    unpacker = msgpack.Unpacker(strict_map_key=False, ext_hook=strict_ext_hook)
    unpacker.feed(payload)
    try:
        header = unpacker.unpack()
        body = {} if unpacker.tell() == length else unpacker.unpack()
    except msgpack.OutOfData:
        return "error"
    except Exception:
        # Not UTF-8, a bad or unknown extension, an unhashable key: the
        # packet fails alone if its structure is sound, the stream goes on.
        return content_failure(payload)
    if unpacker.tell() != length or type(header) is not dict or type(body) is not dict:
        return "error"
    code, sync = header.get(C.REQUEST_TYPE), header.get(C.SYNC, 0)
    if type(code) is not int or type(sync) is not int:
        return "error"
    schema_version = header.get(C.SCHEMA_VERSION, 0)
    return Expected(sync, code, schema_version if type(schema_version) is int else 0, body)


def screened(expected: Expected, bad_pushes: set[int]) -> Expected | None:
    """Push screening, as a reference: a malformed push is dropped (None) and
    remembered; the next non-push reply with its sync fails instead."""
    if expected.code == C.CHUNK:
        if expected.decode_error or type(expected.body.get(C.DATA)) is not list:
            bad_pushes.add(expected.sync)
            return None
        return expected
    if expected.sync in bad_pushes:
        bad_pushes.discard(expected.sync)
        message = expected.body.get(C.ERROR_24) if expected.code & C.TYPE_ERROR else None
        return Expected(expected.sync, expected.code, expected.schema_version,
                        {} if message is None else {C.ERROR_24: message}, True)
    return expected


def splits(data_size: int) -> st.SearchStrategy[list[int]]:
    """Sorted cut points: random ones, or every byte."""
    return st.one_of(
        st.lists(st.integers(0, data_size), max_size=20).map(sorted),
        st.just(list(range(data_size + 1))),
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(replies(), min_size=1, max_size=8), st.data())
def test_valid_stream_any_chunking(packets: list[tuple[bytes, Expected]], data: st.DataObject) -> None:
    stream = b"".join(p for p, _ in packets)
    cuts = data.draw(splits(len(stream)))
    decoder = Decoder()
    got: list[Expected] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        decoder.feed(stream[last:cut])
        last = cut
        got += [Expected(r.sync, r.code, r.schema_version, r.body) for r in decoder.replies()]
    assert got == [e for _, e in packets]
    assert decoder.buffered == 0
    assert decoder.next_reply() is None


def check_contract(stream: bytes, cuts: list[int], max_size: int) -> None:
    """Feed ``stream`` in pieces, drain the decoder after each, and compare every
    outcome with :func:`oracle`: the same replies, None exactly while a legal
    packet is incomplete, ProtocolError exactly where the reference fails (and
    nothing else raised), and a broken decoder that stays broken."""
    decoder = Decoder(max_packet_size=max_size)
    consumed = 0
    fed = 0
    broken = False
    bad_pushes: set[int] = set()
    for cut in [*cuts, len(stream)]:
        piece = stream[fed:cut]
        fed = max(fed, cut)
        if broken:
            with pytest.raises(ProtocolError):
                decoder.feed(piece)
            with pytest.raises(ProtocolError):
                decoder.next_reply()
            continue
        decoder.feed(piece)
        while True:
            # The reference skips malformed pushes as the decoder does, but only
            # commits to that once the decoder has returned past them.
            model = set(bad_pushes)
            skipped = consumed
            while True:
                expected = oracle(stream[skipped:fed], max_size)
                if not isinstance(expected, Expected):
                    break
                shown = screened(expected, model)
                if shown is not None:
                    expected = shown
                    break
                skipped += packet_size(stream[skipped:])
            try:
                reply = decoder.next_reply()
            except ProtocolError:
                assert expected == "error", stream[skipped:fed][:32].hex()
                broken = True
                break
            if reply is None:
                assert expected == "wait", stream[skipped:fed][:32].hex()
                assert decoder.buffered == fed - skipped
                assert decoder.buffered < max_size + 9
                consumed, bad_pushes = skipped, model
                break
            # repr: a NaN float in a body would make == fail on identical data
            assert repr(Expected(reply.sync, reply.code, reply.schema_version, reply.body,
                                 reply.decode_error is not None)) == repr(expected)
            consumed, bad_pushes = skipped + packet_size(stream[skipped:]), model


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.data())
def test_random_bytes(stream: bytes, data: st.DataObject) -> None:
    check_contract(stream, data.draw(splits(len(stream))), max_size=64)


@settings(max_examples=300, deadline=None)
@given(st.lists(replies(), min_size=1, max_size=4), st.data())
def test_corrupted_valid_stream(packets: list[tuple[bytes, Expected]], data: st.DataObject) -> None:
    """Valid packets with bytes flipped, dropped or inserted: still only replies,
    ProtocolError, or None while a legal packet is incomplete."""
    stream = bytearray(b"".join(p for p, _ in packets))
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(stream) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if action == "flip":
            stream[where] ^= data.draw(st.integers(1, 255))
        elif action == "drop":
            del stream[where]
        else:
            stream.insert(where, data.draw(st.integers(0, 255)))
        if not stream:
            stream.append(0)
    raw = bytes(stream)
    check_contract(raw, data.draw(splits(len(raw))), max_size=1 << 20)


def test_complete_garbage_packet_never_waits() -> None:
    """A declared 10-byte packet full of junk is judged as soon as it is complete."""
    for filler in (b"\x00" * 10, b"\xff" * 10, b"\x81" * 10, b"\x91" * 10, b"\xc1" * 10):
        decoder = Decoder()
        decoder.feed(b"\x0a" + filler[:9])
        assert decoder.next_reply() is None
        decoder.feed(filler[9:])
        with pytest.raises(ProtocolError):
            decoder.next_reply()


async def test_a_reply_is_its_own_outcome_for_wait_task_rescheduled() -> None:
    """The connection's reader reschedules a parked task with the Reply itself
    (no ``outcome.Value`` per reply): this pins what that relies on, that
    ``wait_task_rescheduled`` returns what it is sent's ``unwrap()``, on the
    trio installed (CI also runs the oldest trio the package allows)."""
    reply = Reply(7, 0, 80, {0x30: [[1]]})
    assert reply.unwrap() is reply
    task = trio.lowlevel.current_task()

    def abort(_: object) -> trio.lowlevel.Abort:
        return trio.lowlevel.Abort.FAILED

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_reschedule_soon, task, reply)
        got = await trio.lowlevel.wait_task_rescheduled(abort)
    assert got is reply


async def _reschedule_soon(task: trio.lowlevel.Task, reply: Reply) -> None:
    await trio.lowlevel.checkpoint()
    trio.lowlevel.reschedule(task, reply)  # type: ignore[arg-type]  # duck-typed outcome
