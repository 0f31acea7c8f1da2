"""Request encoders checked byte for byte against hand-assembled packets.

Every expected value below was written out by hand from the IPROTO and
MessagePack specifications, never produced by msgpack, so a change in key
numbers, key order, integer widths or framing shows up as a diff of bytes.

Reminders for reading the hex:

* a packet is ``ce`` + 4-byte big-endian length, then the header map, then the body map;
* ``8N`` fixmap of N pairs, ``9N`` fixarray, ``aN``/``bN`` fixstr of N bytes, ``c0`` nil,
  ``c4 N`` bin8, ``cc``/``cd``/``ce``/``cf`` uint8/16/32/64, ``d1`` int16, ``e0..ff`` negative fixint;
* header keys: 0x00 REQUEST_TYPE, 0x01 SYNC, 0x05 SCHEMA_VERSION;
* body keys: 0x10 SPACE_ID, 0x11 INDEX_ID, 0x12 LIMIT, 0x13 OFFSET, 0x14 ITERATOR,
  0x20 KEY, 0x21 TUPLE, 0x22 FUNCTION_NAME, 0x23 USER_NAME, 0x27 EXPR, 0x28 OPS,
  0x40 SQL_TEXT, 0x41 SQL_BIND, 0x43 STMT_ID, 0x54 VERSION, 0x55 FEATURES.
"""

from __future__ import annotations

import base64
import decimal
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tarantool._errors import ConfigurationError
from trio_tarantool._iproto import Decoder, Encoder
from trio_tarantool._iproto import _constants as C
from trio_tarantool._iproto import _requests as R


def h(text: str) -> bytes:
    """Bytes from hex written with spaces (and comments after '#') for readability."""
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    return bytes.fromhex(" ".join(lines))


def framed(text: str) -> bytes:
    """A whole packet from its hand-written header and body: the 0xce uint32
    length prefix is derived from the literal (the framing tests check it)."""
    payload = h(text)
    return b"\xce" + len(payload).to_bytes(4, "big") + payload


def packet(request_type: int, sync: int, body: dict[int, Any] | None, **kw: Any) -> bytes:
    return Encoder().frame(request_type, sync, body, **kw)


# -- framing ------------------------------------------------------------------------


def test_request_type_numbers() -> None:
    """The request type codes from the protocol's table of requests."""
    assert (C.SELECT, C.INSERT, C.REPLACE, C.UPDATE, C.DELETE, C.CALL_16, C.AUTH, C.EVAL,
            C.UPSERT, C.CALL, C.EXECUTE, C.PREPARE, C.PING, C.ID) == (
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0D, 0x40, 0x49)


def test_ping_frame() -> None:
    """PING has an empty body map: length 6 = header (5) + body (1)."""
    assert packet(C.PING, 1, None) == h("ce 00 00 00 06   82 00 40 01 01   80")


def test_frame_with_explicit_empty_body() -> None:
    assert packet(C.PING, 1, {}) == h("ce 00 00 00 06   82 00 40 01 01   80")


def test_frame_sync_widths() -> None:
    """sync is a msgpack uint of whatever width it needs (here uint16 and uint64)."""
    assert packet(C.PING, 300, None) == h("ce 00 00 00 08   82 00 40 01 cd 01 2c   80")
    assert packet(C.PING, 2**32, None) == h(
        "ce 00 00 00 0e   82 00 40 01 cf 00 00 00 01 00 00 00 00   80"
    )


def test_frame_with_schema_version() -> None:
    """A non-zero schema version adds header key 0x05; zero leaves it out."""
    assert packet(C.PING, 3, None, schema_version=80) == h(
        "ce 00 00 00 08   83 00 40 01 03 05 50   80"
    )
    assert packet(C.PING, 3, None, schema_version=0) == packet(C.PING, 3, None)


def test_frame_length_is_big_endian_uint32() -> None:
    """A body over 255 bytes: the 4-byte length prefix carries it big-endian."""
    frame = packet(C.EVAL, 1, R.eval_body("x" * 300, []))
    # header 82 00 08 01 01 (5) + body: 82, 27, da 01 2c + 300 bytes, 21, 90 (307)
    assert frame[:5] == h("ce 00 00 01 38")
    assert len(frame) == 5 + 0x138
    assert frame[5:15] == h("82 00 08 01 01   82 27 da 01 2c")
    assert frame[-2:] == h("21 90")


def test_one_encoder_frames_many_requests_independently() -> None:
    """The reusable Packer must not leak state from one frame into the next."""
    encoder = Encoder()
    first = encoder.frame(C.PING, 1, None)
    encoder.frame(C.CALL, 2, R.call_body("f", [1, 2, 3]))
    assert encoder.frame(C.PING, 1, None) == first


# -- SELECT ---------------------------------------------------------------------------


def test_select() -> None:
    body = R.select_body(512, 0, [1], 0, 0xFFFFFFFF, C.Iterator.EQ)
    assert packet(C.SELECT, 5, body) == framed("""
        82 00 01 01 05                  # SELECT, sync 5
        86
          10 cd 02 00                   # space 512
          11 00                         # index 0
          12 ce ff ff ff ff             # limit 2^32-1
          13 00                         # offset 0
          14 00                         # iterator EQ
          20 91 01                      # key [1]
    """)


def test_select_composite_key_iterator_offset() -> None:
    body = R.select_body(600, 2, [1, "ab"], 10, 100, C.Iterator.GE)
    assert packet(C.SELECT, 6, body) == framed("""
        82 00 01 01 06
        86 10 cd 02 58  11 02  12 64  13 0a  14 05  20 92 01 a2 61 62
    """)


def test_select_scalar_and_missing_key() -> None:
    """A scalar key is a one-part key; None (select all) is an empty key array."""
    assert R.select_body(512, 0, 7, 0, 1, 0)[C.KEY] == [7]
    assert R.select_body(512, 0, None, 0, 1, 2)[C.KEY] == []
    assert packet(C.SELECT, 1, R.select_body(512, 0, None, 0, 1, C.Iterator.ALL)) == framed("""
        82 00 01 01 01
        86 10 cd 02 00  11 00  12 01  13 00  14 02  20 90
    """)


# -- INSERT / REPLACE -----------------------------------------------------------------


def test_insert() -> None:
    body = R.tuple_body(512, [1, "ab", None])
    assert packet(C.INSERT, 2, body) == framed("""
        82 00 02 01 02
        82 10 cd 02 00  21 93 01 a2 61 62 c0
    """)


def test_replace() -> None:
    body = R.tuple_body(513, (-1, True, b"\x00"))
    assert packet(C.REPLACE, 3, body) == framed("""
        82 00 03 01 03
        82 10 cd 02 01  21 93 ff c3 c4 01 00
    """)


def test_insert_extension_values() -> None:
    """Decimal and UUID values in a tuple go out as MP_EXT 1 and 2."""
    body = R.tuple_body(512, [decimal.Decimal("1.25"), uuid.UUID("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")])
    assert packet(C.INSERT, 1, body) == framed("""
        82 00 02 01 01
        82 10 cd 02 00  21 92
          c7 03 01  02 12 5c                                    # decimal: scale 2, BCD 1 2 5 +
          d8 02  f8 1d 4f ae 7d ec 11 d0 a7 65 00 a0 c9 1e 6b f6 # uuid: 16 raw bytes
    """)


def test_unencodable_value_is_a_configuration_error() -> None:
    """Still a TypeError for old callers; the message names method, argument and position."""
    with pytest.raises(TypeError, match=r"insert\(\): values\[0\]: cannot send a value of type object"):
        packet(C.INSERT, 1, R.tuple_body(512, [object()]))
    with pytest.raises(ConfigurationError, match=r"insert\(\): values\[0\]: cannot send"):
        packet(C.INSERT, 1, R.tuple_body(512, [object()]))


@pytest.mark.parametrize(("request_type", "body", "match"), [
    # 14b: an int out of range says so (not "cannot send a value of type int")
    (C.SELECT, R.select_body(512, 0, 2**64, 0, 1, 0),
     r"select\(\): key\[0\]: int 18446744073709551616 is outside the msgpack range -2\*\*63 \.\. 2\*\*64-1"),
    (C.INSERT, R.tuple_body(512, [1, [2, -2**63 - 1]]), r"insert\(\): values\[1\]\[1\]: int -9223372036854775809 is outside"),
    (C.REPLACE, R.tuple_body(512, [1, "ok", "\udc80"]), r"replace\(\): values\[2\]: str '\\udc80' cannot be encoded as UTF-8"),
    (C.UPSERT, R.upsert_body(512, 0, [1], [["=", 2, {1, 2}]]), r"upsert\(\): op_list\[0\]\[2\]: cannot send a value of type set"),
    (C.UPDATE, R.update_body(512, 0, [1], [["=", 2, {"k": object()}]]), r"update\(\): op_list\[0\]\[2\]\['k'\]: cannot send"),
    (C.UPDATE, R.update_body(512, 0, [1], [["=", 2, {object(): 1}]]), r"update\(\): op_list\[0\]\[2\] \(a key\): cannot send"),
    (C.CALL, R.call_body("f", (1, 2**70)), r"call\(\): args\[1\]: int 1180591620717411303424 is outside"),
    (C.CALL_16, R.call_body("f\udc80", ()), r"call\(\): func_name: str"),
    (C.EVAL, R.eval_body("return ...", (b"ok", object())), r"eval\(\): args\[1\]: cannot send"),
    (C.EXECUTE, R.execute_body("SELECT ?", [2**64]), r"execute\(\): params\[0\]: int .* is outside"),
    (C.EXECUTE, R.execute_body("SELECT :a", {"a": object()}), r"execute\(\): params\[0\]\[':a'\]: cannot send"),
    (C.SELECT, R.select_body(2**64, 0, [], 0, 1, 0), r"select\(\): space_name: int .* is outside"),
])
def test_unencodable_values_name_the_argument(request_type: int, body: dict[int, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        packet(request_type, 1, body)


def test_encoder_is_usable_after_a_refused_body() -> None:
    """msgpack's Packer drops its half-written buffer on failure: the next packet is clean."""
    encoder = Encoder()
    with pytest.raises(ConfigurationError):
        encoder.frame(C.INSERT, 1, R.tuple_body(512, [1, 2, object()]))
    assert encoder.frame(C.PING, 1, None) == h("ce 00 00 00 06   82 00 40 01 01   80")


def test_deep_nesting_is_refused_with_its_path() -> None:
    value: list[Any] = []
    inner = value
    for _ in range(1100):
        inner.append([])
        inner = inner[0]
    with pytest.raises(ConfigurationError, match=r"insert\(\): values\[0\](\[0\])+\.\.\.(\[0\])+: nested deeper"):
        packet(C.INSERT, 1, R.tuple_body(512, value))


def test_unencodable_auth_body_quotes_no_secret() -> None:
    """AUTH carries the password (pap-sha256): its error names the argument only."""
    body = {C.USER_NAME: "app", C.TUPLE: ["pap-sha256", "s3cr\udc80t"]}
    with pytest.raises(ConfigurationError) as info:
        packet(C.AUTH, 1, body)
    assert "password" in str(info.value)
    assert "s3cr" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


# -- UPDATE / UPSERT / DELETE ---------------------------------------------------------


def test_update() -> None:
    """UPDATE carries its operations under TUPLE (0x21)."""
    body = R.update_body(512, 0, 1, [["=", 1, "x"], ("+", 2, 10)])
    assert packet(C.UPDATE, 4, body) == framed("""
        82 00 04 01 04
        84
          10 cd 02 00
          11 00
          20 91 01                          # key [1]
          21 92 93 a1 3d 01 a1 78           # [["=", 1, "x"],
                93 a1 2b 02 0a              #  ["+", 2, 10]]
    """)


def test_update_splice_by_secondary_index() -> None:
    body = R.update_body(512, 1, ["k"], [[":", 1, 0, 2, "ab"]])
    assert packet(C.UPDATE, 1, body) == framed("""
        82 00 04 01 01
        84 10 cd 02 00  11 01  20 91 a1 6b  21 91 95 a1 3a 01 00 02 a2 61 62
    """)


def test_upsert() -> None:
    """UPSERT: the tuple under TUPLE (0x21), the operations under OPS (0x28)."""
    body = R.upsert_body(512, 0, [1, "a"], [["+", 2, 1]])
    assert packet(C.UPSERT, 9, body) == framed("""
        82 00 09 01 09
        84
          10 cd 02 00
          11 00
          21 92 01 a1 61
          28 91 93 a1 2b 02 01
    """)


def test_upsert_index_goes_under_index_id_not_index_base() -> None:
    """Regression: the index id was sent under INDEX_BASE (0x15), the key that sets
    whether operation field numbers count from 0 or 1; with index=1 a real server
    then applied ``['=', 1, x]`` to the primary key field."""
    body = R.upsert_body(512, 1, [1, "a"], [["=", 1, "x"]])
    assert C.INDEX_BASE not in body
    assert body[C.INDEX_ID] == 1
    assert packet(C.UPSERT, 1, body)[10:] == h("84 10 cd 02 00  11 01  21 92 01 a1 61  28 91 93 a1 3d 01 a1 78")


def test_delete() -> None:
    body = R.delete_body(512, 1, [1, 2])
    assert packet(C.DELETE, 7, body) == framed("""
        82 00 05 01 07
        83 10 cd 02 00  11 01  20 92 01 02
    """)


def test_delete_scalar_key() -> None:
    assert packet(C.DELETE, 7, R.delete_body(512, 0, "k")) == framed("""
        82 00 05 01 07
        83 10 cd 02 00  11 00  20 91 a1 6b
    """)


@pytest.mark.parametrize("ops", ["=", 5, [["="]], [["=", 1, 2], "x"], [None], [[1, 2, 3]], [b"=12"],
                                 {"=": 1}, [{"=": 1}]])
def test_malformed_update_operations(ops: Any) -> None:
    """Operations are checked (and copied to lists) before a body is built."""
    with pytest.raises(ConfigurationError, match=r"upsert\(\): op_list.* operation"):
        R.operations(ops, "upsert", "op_list")


def test_operations_are_copied_to_lists() -> None:
    ops = [("=", 1, "x"), ["+", 2, 1]]
    assert R.operations(ops) == [["=", 1, "x"], ["+", 2, 1]]
    assert R.operations(()) == []


# -- CALL / CALL_16 / EVAL ------------------------------------------------------------


def test_call() -> None:
    body = R.call_body("box.info", [1, "a"])
    assert packet(C.CALL, 10, body) == framed("""
        82 00 0a 01 0a
        82
          22 a8 62 6f 78 2e 69 6e 66 6f     # "box.info"
          21 92 01 a1 61                    # [1, "a"]
    """)


def test_call_16() -> None:
    """CALL_16 (0x06) has the same body as CALL; only the type differs."""
    body = R.call_body("f", ())
    assert packet(C.CALL_16, 1, body) == h("ce 00 00 00 0b   82 00 06 01 01   82 22 a1 66 21 90")


def test_eval() -> None:
    body = R.eval_body("return ...", [1, 2])
    assert packet(C.EVAL, 11, body) == framed("""
        82 00 08 01 0b
        82
          27 aa 72 65 74 75 72 6e 20 2e 2e 2e   # "return ..."
          21 92 01 02
    """)


# -- SQL --------------------------------------------------------------------------------


def test_execute_positional() -> None:
    body = R.execute_body("SELECT ?", [1, "x"])
    assert packet(C.EXECUTE, 12, body) == framed("""
        82 00 0b 01 0c
        82
          40 a8 53 45 4c 45 43 54 20 3f     # "SELECT ?"
          41 92 01 a1 78                    # bind [1, "x"]
    """)


def test_execute_named() -> None:
    """Named parameters: an array of one-pair maps, names prefixed with ':'
    unless they already carry one of ':', '@', '$'."""
    body = R.execute_body("SELECT :a", {"a": 1, ":b": 2, "@c": None})
    assert packet(C.EXECUTE, 1, body) == framed("""
        82 00 0b 01 01
        82
          40 a9 53 45 4c 45 43 54 20 3a 61  # "SELECT :a"
          41 93
            81 a2 3a 61 01                  # {":a": 1}
            81 a2 3a 62 02                  # {":b": 2}
            81 a2 40 63 c0                  # {"@c": nil}
    """)


def test_execute_without_params() -> None:
    assert packet(C.EXECUTE, 1, R.execute_body("SELECT 1", None)) == framed("""
        82 00 0b 01 01
        82 40 a8 53 45 4c 45 43 54 20 31  41 90
    """)


def test_execute_prepared_statement_id() -> None:
    """By statement id: STMT_ID (0x43) instead of SQL_TEXT (0x40)."""
    assert packet(C.EXECUTE, 2, R.execute_body(12345, [1])) == framed("""
        82 00 0b 01 02
        82 43 cd 30 39  41 91 01
    """)


@pytest.mark.parametrize("params", [{"": 1}, {1: 2}, "abc", 5, {None: 1}, {1, 2}, b"ab", frozenset()])
def test_execute_bad_params(params: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"execute\(\): params"):
        R.execute_body("SELECT 1", params)


def test_prepare() -> None:
    assert packet(C.PREPARE, 3, R.prepare_body("SELECT 1")) == framed("""
        82 00 0d 01 03
        81 40 a8 53 45 4c 45 43 54 20 31
    """)


def test_unprepare() -> None:
    """Unprepare is a PREPARE carrying only the statement id."""
    assert packet(C.PREPARE, 4, R.prepare_body(7)) == h("ce 00 00 00 08   82 00 0d 01 04   81 43 07")
    assert packet(C.PREPARE, 4, R.prepare_body(3_000_000_000)) == h(
        "ce 00 00 00 0c   82 00 0d 01 04   81 43 ce b2 d0 5e 00"
    )


# -- AUTH / ID ----------------------------------------------------------------------------

#: The salt of a greeting captured from Tarantool 2.6.0.
SALT = base64.b64decode("7CMz7NUte+qkCqMnojOvIcpLRv+BE4WGTRsJkTNNAZk=")
#: chap-sha1 proof of "password" for SALT; derived step by step in test_greeting.py.
SCRAMBLE = h("93 e8 84 4e 46 26 05 79 8f 2a 1d 93 c1 27 54 a4 b4 99 14 c8")


def test_auth_chap_sha1() -> None:
    body = R.auth_body("user", "password", SALT)
    assert packet(C.AUTH, 2, body) == framed("""
        82 00 07 01 02
        82
          23 a4 75 73 65 72                         # "user"
          21 92
            a9 63 68 61 70 2d 73 68 61 31           # "chap-sha1"
            c4 14 93 e8 84 4e 46 26 05 79 8f 2a     # bin8, 20 bytes of scramble
                  1d 93 c1 27 54 a4 b4 99 14 c8
    """)
    assert body == R.auth_body("user", "password", SALT, "chap-sha1")


def test_auth_pap_sha256() -> None:
    """pap-sha256 sends the password itself (meant for TLS connections)."""
    body = R.auth_body("user", "password", SALT, "pap-sha256")
    assert packet(C.AUTH, 2, body) == framed("""
        82 00 07 01 02
        82
          23 a4 75 73 65 72
          21 92
            aa 70 61 70 2d 73 68 61 32 35 36        # "pap-sha256"
            a8 70 61 73 73 77 6f 72 64              # "password"
    """)


def test_auth_unknown_type() -> None:
    with pytest.raises(ValueError, match="auth_type"):
        R.auth_body("user", "password", SALT, "ldap")


def test_id_request() -> None:
    """ID announces protocol version 3 and features 0..3 and 6 (streams, transactions,
    error extension, watchers, watch_once)."""
    assert packet(C.ID, 1, R.id_body()) == framed("""
        82 00 49 01 01
        82 54 03  55 95 00 01 02 03 06
    """)
    assert packet(C.ID, 1, R.id_body(1, [])) == h("ce 00 00 00 0a   82 00 49 01 01   82 54 01 55 90")


# -- framing property: what the encoder writes, the decoder reads back -----------------

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8) | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=4),
    max_leaves=10,
)


@settings(max_examples=200)
@given(
    request_type=st.sampled_from([C.SELECT, C.INSERT, C.CALL, C.EVAL, C.PING, C.EXECUTE]),
    sync=st.integers(0, 2**64 - 1),
    schema_version=st.integers(0, 2**32 - 1),
    body=st.none() | st.dictionaries(st.integers(0, 0x7F), _values, max_size=5),
)
def test_frames_decode_back(request_type: int, sync: int, schema_version: int,
                            body: dict[int, Any] | None) -> None:
    """Requests and replies share the framing, so the reply decoder can read a
    request frame: the length prefix must cover exactly header + body."""
    decoder = Decoder()
    frame = Encoder().frame(request_type, sync, body, schema_version)
    decoder.feed(frame)
    (decoded,) = decoder.replies()
    assert (decoded.code, decoded.sync, decoded.schema_version) == (request_type, sync, schema_version)
    assert decoded.body == (body or {})
    assert int.from_bytes(frame[1:5], "big") == len(frame) - 5
