"""msgpack extension types: hand-checked payloads, rejections, hypothesis round trips.

The decimal payloads marked "as Tarantool 2.6 encodes it" were cross-checked
against ``require('msgpack').encode(decimal.new(...))`` on the installed server.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import msgpack
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trio_tarantool._errors import BoxError
from trio_tarantool._iproto import Adjust, Datetime, ExtDecodeError, Interval
from trio_tarantool._iproto._ext import (
    decode_decimal,
    decode_error_stack,
    default,
    encode_decimal,
    encode_error,
    ext_hook,
)

D = decimal.Decimal
INT64 = st.integers(-(2**63), 2**63 - 1)


def h(text: str) -> bytes:
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    return bytes.fromhex(" ".join(lines))


def pack(value: Any) -> bytes:
    return bytes(msgpack.packb(value, default=default, use_bin_type=True))


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=ext_hook, raw=False, strict_map_key=False)


def ext8(code: int, payload: bytes) -> bytes:
    """An ext8 object (c7, length, type) around a hand-written payload."""
    return bytes([0xC7, len(payload), code]) + payload


# -- decimal (ext 1): scale, then packed BCD with the sign in the last nibble ----------


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("0", "d5 01  00 0c"),                      # fixext2: scale 0, BCD 0 +   (as Tarantool 2.6)
        ("1.25", "c7 03 01  02 12 5c"),             # scale 2, 1 2 5 +            (as Tarantool 2.6)
        ("-12.5", "c7 03 01  01 12 5d"),            # scale 1, 1 2 5 -            (as Tarantool 2.6)
        ("123", "c7 03 01  00 12 3c"),              # odd digit count + sign fills whole bytes
        ("1.50", "c7 03 01  02 15 0c"),             # the scale the value carries is kept
        ("-0.001", "d5 01  03 1d"),                 # (as Tarantool 2.6)
        ("-0", "d5 01  00 0d"),
        ("1E-38", "d5 01  26 1c"),                  # largest scale: 38     (as Tarantool 2.6)
        # 1e10: exponent 10 spelled out as digits, scale 0: 11 digits + sign = 12 nibbles
        ("1e10", "c7 07 01  00 10 00 00 00 00 0c"),
        # 38 digits + sign = 39 nibbles: one leading 0 nibble     (as Tarantool 2.6)
        ("12345678901234567890123456789012345678",
         "c7 15 01  00 01 23 45 67 89 01 23 45 67 89 01 23 45 67 89 01 23 45 67 8c"),
    ],
)
def test_decimal_wire_format(value: str, wire: str) -> None:
    assert pack(D(value)) == h(wire)
    decoded = unpack(h(wire))
    assert isinstance(decoded, D)
    assert decoded == D(value)
    if D(value).as_tuple().exponent <= 0:  # type: ignore[operator]
        assert str(decoded) == str(D(value))


def test_decimal_negative_scale_from_the_server() -> None:
    """Tarantool itself encodes 1e10 as scale -10 (0xf6), digit 1."""
    assert unpack(h("d5 01  f6 1c")) == D("1E+10")


@pytest.mark.parametrize(
    "value",
    [
        "123456789012345678901234567890123456789",  # 39 digits
        "-1.23456789012345678901234567890123456789",
        "1e38",                                     # 39 digits once the exponent is spelled out
        "1E-39",                                    # scale 39: Tarantool refuses it
        "1.00000000000000000000000000000000000001",  # 39 significant digits, none droppable
    ],
)
def test_decimal_beyond_38_digits_is_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="38 digits"):
        encode_decimal(D(value))
    with pytest.raises(ValueError, match="38 digits"):
        pack([D(value)])


def test_decimal_scale_above_38_regression() -> None:
    """Regression: 1E-39 was encoded with scale 39, which Tarantool 2.6's
    msgpack.decode refuses as invalid MsgPack (scale 38 decodes fine)."""
    with pytest.raises(ValueError, match="after the point"):
        encode_decimal(D("1E-39"))
    assert encode_decimal(D("1E-38")) == h("26 1c")


def test_decimal_droppable_trailing_zeros_are_dropped_only_when_needed() -> None:
    """1.000... (45 zeros) is 1 with a too-large scale: encoded as 1 with scale 37
    (38 digits), since trailing fractional zeros do not change the value."""
    payload = encode_decimal(D("1." + "0" * 45))
    assert payload == h("25  01" + " 00" * 18 + " 0c")
    assert decode_decimal(payload) == 1
    # 0E-40 is zero with a scale Tarantool refuses: scale 38 is the same zero.
    assert encode_decimal(D("0E-40")) == h("26 0c")


@pytest.mark.parametrize("value", ["NaN", "-NaN", "sNaN", "Infinity", "-Infinity"])
def test_decimal_non_finite_is_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        encode_decimal(D(value))


@pytest.mark.parametrize(
    ("bcd", "value"),
    [("12 5a", "125"), ("12 5b", "-125"), ("12 5c", "125"), ("12 5d", "-125"),
     ("12 5e", "125"), ("12 5f", "125")],
)
def test_decimal_all_sign_nibbles(bcd: str, value: str) -> None:
    """0xA, 0xC, 0xE, 0xF are plus; 0xB and 0xD are minus."""
    assert decode_decimal(h("00 " + bcd)) == D(value)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ("", "bad scale"),
        ("00", "no digits"),
        ("c1 1c", "bad scale"),        # 0xc1 is never valid msgpack
        ("a1 61 1c", "scale must be an integer"),
        ("00 12 35", "sign nibble"),
        ("00 1a 3c", "above 9"),
    ],
)
def test_decimal_malformed_payload(payload: str, match: str) -> None:
    with pytest.raises(ExtDecodeError, match=match):
        decode_decimal(h(payload))


@st.composite
def tarantool_decimals(draw: st.DrawFn) -> decimal.Decimal:
    """Finite decimals Tarantool can hold: at most 38 digits, scale at most 38."""
    digits = draw(st.lists(st.integers(0, 9), min_size=1, max_size=38))
    exponent = draw(st.integers(-38, 38 - len(digits)))
    return D((draw(st.integers(0, 1)), tuple(digits), exponent))


@given(tarantool_decimals())
def test_decimal_round_trip(value: decimal.Decimal) -> None:
    decoded = unpack(pack(value))
    assert decoded == value
    assert decoded.is_signed() == value.is_signed()
    if value.as_tuple().exponent <= 0:  # type: ignore[operator]
        assert str(decoded) == str(value)


@example(D("1E+38"))
@example(D("1E-39"))
@example(D("1.0000000000000000000000000000000000000000"))
@example(D("-0E-50"))
@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_any_decimal_round_trips_or_is_refused(value: decimal.Decimal) -> None:
    """Never a silently different value: encoding raises or decodes back equal.
    It may raise only for non-finite values or ones that need more than 38
    digits in all, or more than 38 after the point, even without trailing zeros."""
    try:
        wire = pack(value)
    except ValueError:
        if value.is_finite():
            exponent = value.as_tuple().exponent
            assert isinstance(exponent, int)
            digits = value.as_tuple().digits
            if exponent < 0:  # drop trailing fractional zeros, as many as there are
                while exponent < 0 and len(digits) > 1 and digits[-1] == 0:
                    digits, exponent = digits[:-1], exponent + 1
            assert len(digits) + max(exponent, 0) > 38 or (-exponent > 38 and any(digits)), value
        return
    assert unpack(wire) == value


# -- uuid (ext 2) -----------------------------------------------------------------


def test_uuid_wire_format() -> None:
    value = uuid.UUID("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    wire = h("d8 02  f8 1d 4f ae 7d ec 11 d0 a7 65 00 a0 c9 1e 6b f6")  # fixext16 (as Tarantool 2.6)
    assert pack(value) == wire
    assert unpack(wire) == value


@pytest.mark.parametrize("size", [0, 15, 17])
def test_uuid_wrong_size(size: int) -> None:
    with pytest.raises(ExtDecodeError, match="uuid"):
        ext_hook(2, b"\x01" * size)


@given(st.uuids())
def test_uuid_round_trip(value: uuid.UUID) -> None:
    assert unpack(pack(value)) == value


# -- error (ext 3) -------------------------------------------------------------------

ERROR_PAYLOAD = h("""
    81 00 92                                        # {MP_ERROR_STACK: [2 entries]}
      87                                            # most recent error first
        00 ab 43 6c 69 65 6e 74 45 72 72 6f 72      # type "ClientError"
        01 a5 62 6f 78 2e 63                        # file "box.c"
        02 0c                                       # line 12
        03 a5 6f 75 74 65 72                        # message "outer"
        04 00                                       # errno 0
        05 24                                       # errcode 36
        06 81 a4 6e 61 6d 65 a1 74                  # fields {"name": "t"}
      86
        00 ab 43 75 73 74 6f 6d 45 72 72 6f 72      # type "CustomError"
        01 a5 78 2e 6c 75 61                        # file "x.lua"
        02 03                                       # line 3
        03 a5 69 6e 6e 65 72                        # message "inner"
        04 02                                       # errno 2
        05 00                                       # errcode 0
""")

INNER = BoxError("CustomError", "x.lua", 3, "inner", 2, 0, {}, None)
OUTER = BoxError("ClientError", "box.c", 12, "outer", 0, 36, {"name": "t"}, INNER)


def test_error_ext_decodes_to_a_chain() -> None:
    decoded = unpack(ext8(3, ERROR_PAYLOAD))
    assert decoded == OUTER
    assert decoded.prev == INNER
    assert decoded.prev.prev is None


def test_error_stack_in_a_body_map() -> None:
    """The same map, unwrapped, is what an error reply carries under key 0x52."""
    assert decode_error_stack(msgpack.unpackb(ERROR_PAYLOAD, strict_map_key=False)) == OUTER


def test_error_stack_with_bytes_strings() -> None:
    """An encoding=None connection leaves strings as bytes: the error's own text
    fields and field names still decode; field values stay as the server sent them."""
    raw = msgpack.unpackb(ERROR_PAYLOAD, strict_map_key=False, raw=True)
    decoded = decode_error_stack(raw)
    assert decoded == BoxError("ClientError", "box.c", 12, "outer", 0, 36, {"name": b"t"}, INNER)


def test_error_encode_round_trip() -> None:
    assert ext_hook(3, encode_error(OUTER)) == OUTER


def test_error_ext_fields_hold_extension_values() -> None:
    """Regression: an error returned as a value (ext 3) left extension values in
    its fields as raw ``ExtType`` (Tarantool 3.x allows any payload field:
    ``box.error.new{type='E', reason='x', dec=decimal.new('1.5')}``), while the
    same error in an error reply's stack decoded them."""
    when = Datetime(946684800)
    inner = BoxError("CustomError", "eval", 1, "x", 0, 0, {"dec": D("1.5"), "when": when})
    payload = encode_error(BoxError("ClientError", "f.c", 2, "y", 0, 7, {"u": uuid.UUID(int=5)}, inner))
    assert b"\xc7\x03\x01\x01\x01\x5c" in payload  # 1.5 travels as a nested ext 1
    decoded = ext_hook(3, payload)
    assert decoded.fields == {"u": uuid.UUID(int=5)}
    assert decoded.prev.fields == {"dec": D("1.5"), "when": when}


def test_error_ext_with_a_bad_nested_ext_is_an_ext_decode_error() -> None:
    """A malformed value inside an error's fields fails as ExtDecodeError too."""
    bad = msgpack.packb({0: [{6: {"u": msgpack.ExtType(2, b"\x01")}}]}, use_bin_type=True)
    with pytest.raises(ExtDecodeError, match="uuid"):
        ext_hook(3, bad)


def test_empty_error_stack() -> None:
    assert ext_hook(3, h("81 00 90")) is None


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ("90", "must be a map"),
        ("81 00 01", "must be an array"),
        ("80", "must be an array"),
        ("81 00 91 01", "entry must be a map"),
        ("c1", "error"),
        ("81 00 91 81 02 a2 31 32", "line must be an integer"),     # line "12"
        ("81 00 91 81 05 91 01", "errcode must be an integer"),     # errcode [1]
        ("81 00 91 81 06 91 01", "FIELDS must be a map"),           # fields [1]
    ],
)
def test_malformed_error_ext(payload: str, match: str) -> None:
    """Regression for the last three: int() of a string or list escaped as a
    plain ValueError/TypeError instead of ExtDecodeError."""
    with pytest.raises(ExtDecodeError, match=match):
        ext_hook(3, h(payload))


# -- datetime (ext 4): int64 seconds, then int32 nsec, int16 tzoffset, int16 tzindex --


def test_datetime_8_byte_form() -> None:
    """Only seconds: fixext8 with 1700000000 = 0x6553f100, little-endian."""
    wire = h("d7 04  00 f1 53 65 00 00 00 00")
    assert pack(Datetime(1700000000)) == wire
    assert unpack(wire) == Datetime(1700000000)


def test_datetime_16_byte_form() -> None:
    value = Datetime(1700000000, nsec=123456789, tzoffset=180)
    wire = h("""
        d8 04
        00 f1 53 65 00 00 00 00     # seconds
        15 cd 5b 07                 # nsec 123456789 = 0x075bcd15
        b4 00                       # tzoffset +180 minutes
        00 00                       # tzindex 0
    """)
    assert pack(value) == wire
    assert unpack(wire) == value


def test_datetime_negative_fields() -> None:
    value = Datetime(-1, tzoffset=-300)
    wire = h("d8 04  ff ff ff ff ff ff ff ff  00 00 00 00  d4 fe  00 00")
    assert pack(value) == wire
    assert unpack(wire) == value


def test_datetime_tzindex_alone_needs_16_bytes() -> None:
    assert pack(Datetime(0, tzindex=296)) == h("d8 04  00 00 00 00 00 00 00 00  00 00 00 00  00 00  28 01")


def test_datetime_16_byte_form_with_zero_extras_equals_8_byte_form() -> None:
    assert unpack(h("d8 04  00 f1 53 65 00 00 00 00  00 00 00 00  00 00  00 00")) == Datetime(1700000000)


def test_from_datetime() -> None:
    utc = dt.timezone.utc
    assert Datetime.from_datetime(dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=utc)) == Datetime(1700000000)
    plus3 = dt.timezone(dt.timedelta(hours=3))
    assert Datetime.from_datetime(dt.datetime(2023, 11, 15, 1, 13, 20, 123456, tzinfo=plus3)) == Datetime(
        1700000000, 123456000, 180
    )
    # naive values are taken as UTC
    assert Datetime.from_datetime(dt.datetime(2023, 11, 14, 22, 13, 20)) == Datetime(1700000000)
    # before the epoch: seconds floor, nsec stays positive
    assert Datetime.from_datetime(dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=utc)) == Datetime(
        -1, 500_000_000
    )
    minus_530 = dt.timezone(-dt.timedelta(hours=5, minutes=30))
    assert Datetime.from_datetime(dt.datetime(1970, 1, 1, tzinfo=minus_530)) == Datetime(19800, 0, -330)


def test_to_datetime() -> None:
    value = Datetime(1700000000, 123456789, 180).to_datetime()
    assert value == dt.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=dt.timezone.utc)
    assert value.utcoffset() == dt.timedelta(hours=3)
    assert (value.hour, value.microsecond) == (1, 123456)  # nanoseconds truncated


def test_plain_datetime_is_encoded_as_ext_4() -> None:
    value = dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc)
    assert pack(value) == h("d7 04  00 f1 53 65 00 00 00 00")


@pytest.mark.parametrize(
    "kwargs",
    [{"nsec": -1}, {"nsec": 1_000_000_000}, {"tzoffset": 1440}, {"tzoffset": -1440}],
)
def test_datetime_out_of_range(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="Datetime"):
        Datetime(0, **kwargs)


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        # datetime.new{year=1800, tz='America/Juneau'}: local mean time +15:02
        ("d8 04  18 ec 3c c0 fe ff ff ff  00 00 00 00  86 03  f2 02", Datetime(-5364716520, 0, 902, 754)),
        # datetime.new{year=1800, tz='Asia/Manila'}: -15:56
        ("d8 04  90 9f 3e c0 fe ff ff ff  00 00 00 00  44 fc  63 03", Datetime(-5364605040, 0, -956, 867)),
    ],
)
def test_datetime_with_a_historical_offset_from_tarantool_3_8(wire: str, value: Datetime) -> None:
    """Regression: Tarantool 3.8 writes offsets beyond -720..840 for early dates
    in some named zones (these payloads are its ``msgpack.encode`` output); the
    decoder refused them, so such a reply failed with a ProtocolError. They
    decode now; sending them is refused before the request is written, since
    Tarantool cannot read them back (it fails its own round trip)."""
    assert unpack(h(wire)) == value
    assert value.to_datetime().utcoffset() == dt.timedelta(minutes=value.tzoffset)
    with pytest.raises(ValueError, match=r"-720\.\.840 minutes, got"):
        pack(value)


@pytest.mark.parametrize("tzoffset", [-721, 841])
def test_datetime_offset_tarantool_cannot_read_is_not_sent(tzoffset: int) -> None:
    with pytest.raises(ValueError, match=f"got {tzoffset}"):
        pack(Datetime(0, tzoffset=tzoffset))
    assert unpack(pack(Datetime(0, tzoffset=-720))) == Datetime(0, tzoffset=-720)
    assert unpack(pack(Datetime(0, tzoffset=840))) == Datetime(0, tzoffset=840)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ("00" * 12, "12 bytes"),
        ("", "0 bytes"),
        ("00" * 8 + "00 ca 9a 3b" + "00 00 00 00", "nsec"),  # nsec 1_000_000_000
        ("00" * 12 + "a0 05" + "00 00", "tzoffset"),          # +1440 minutes: a whole day
    ],
)
def test_datetime_malformed_payload(payload: str, match: str) -> None:
    with pytest.raises(ExtDecodeError, match=match):
        ext_hook(4, h(payload))


datetimes_ext = st.builds(
    Datetime,
    seconds=INT64,
    nsec=st.integers(0, 999_999_999),
    tzoffset=st.integers(-720, 840),
    tzindex=st.integers(0, 2**15 - 1),
)


@given(datetimes_ext)
def test_datetime_round_trip(value: Datetime) -> None:
    assert unpack(pack(value)) == value


@given(st.datetimes(
    min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
    timezones=st.builds(dt.timezone, st.integers(-720, 840).map(lambda m: dt.timedelta(minutes=m))),
))
def test_datetime_conversion_round_trip(value: dt.datetime) -> None:
    back = Datetime.from_datetime(value).to_datetime()
    assert back == value
    assert back.utcoffset() == value.utcoffset()
    assert unpack(pack(value)).to_datetime() == value


# -- interval (ext 6): a count, then (field id, value) pairs ------------------------


def test_empty_interval() -> None:
    """As Tarantool 3.8 encodes ``datetime.interval.new{}`` (adjust 'none', sent)
    and ``datetime.interval.new{adjust='excess'}`` (no field at all)."""
    assert pack(Interval()) == h("c7 03 06  01  08 01")
    assert unpack(h("c7 03 06  01  08 01")) == Interval()
    assert pack(Interval(adjust=Adjust.EXCESS)) == h("d4 06  00")
    assert unpack(h("d4 06  00")) == Interval(adjust=Adjust.EXCESS)


def test_interval_all_fields() -> None:
    value = Interval(year=1, month=-2, week=3, day=4, hour=5, minute=6, sec=7, nsec=8, adjust=Adjust.LAST)
    wire = h("""
        c7 13 06
        09                  # nine pairs
        00 01               # year 1
        01 fe               # month -2
        02 03  03 04  04 05  05 06  06 07  07 08
        08 02               # adjust "last"
    """)
    assert pack(value) == wire
    assert unpack(wire) == value


def test_interval_adjust_absent_means_excess() -> None:
    """Regression: the codec took an absent adjust field for NONE and left NONE
    out, so Tarantool 3.8 read ``Interval(day=1)`` as 'excess' and the client
    read the server's 'excess' intervals as NONE. On the wire Tarantool omits
    adjust when it is 'excess' (0) and sends its default 'none' as ``8: 1``."""
    assert pack(Interval(day=1, adjust=Adjust.EXCESS)) == h("c7 03 06  01  03 01")
    assert pack(Interval(day=1, adjust=Adjust.NONE)) == h("c7 05 06  02  03 01  08 01")
    assert unpack(h("c7 03 06  01  03 01")) == Interval(day=1, adjust=Adjust.EXCESS)
    assert unpack(h("c7 05 06  02  03 01  08 01")) == Interval(day=1)
    assert unpack(h("c7 05 06  02  03 01  08 00")) == Interval(day=1, adjust=Adjust.EXCESS)
    assert [(a.name, a.value) for a in Adjust] == [("EXCESS", 0), ("NONE", 1), ("LAST", 2)]


@pytest.mark.parametrize(
    ("lua", "wire", "value"),
    [
        ("{year=1, adjust='excess'}", "c7 03 06  01  00 01", Interval(year=1, adjust=Adjust.EXCESS)),
        ("{year=1}", "c7 05 06  02  00 01  08 01", Interval(year=1)),
        ("{month=1, adjust='last'}", "c7 05 06  02  01 01  08 02", Interval(month=1, adjust=Adjust.LAST)),
    ],
)
def test_interval_as_tarantool_3_8_encodes_it(lua: str, wire: str, value: Interval) -> None:
    """``msgpack.encode(datetime.interval.new(<lua>))`` on Tarantool 3.8.0."""
    assert unpack(h(wire)) == value
    assert pack(value) == h(wire)


def test_interval_wide_values() -> None:
    value = Interval(year=-1000, nsec=999_999_999)
    wire = h("c7 0d 06  03  00 d1 fc 18  07 ce 3b 9a c9 ff  08 01")
    assert pack(value) == wire
    assert unpack(wire) == value


def test_interval_fields_in_any_order() -> None:
    assert unpack(h("c7 05 06  02  05 0a  00 01")) == Interval(year=1, minute=10, adjust=Adjust.EXCESS)
    assert unpack(h("c7 07 06  03  08 02  05 0a  00 01")) == Interval(year=1, minute=10, adjust=Adjust.LAST)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ("", "empty"),
        ("01 09 01", "unknown field id 9"),
        ("01 08 05", "interval"),            # adjust 5 does not exist
        ("01 00 a1 31", "integers"),         # year "1"
        ("02 00 01", "interval"),            # count 2, one pair
        ("01 00", "interval"),               # a field id without a value
    ],
)
def test_interval_malformed_payload(payload: str, match: str) -> None:
    with pytest.raises(ExtDecodeError, match=match):
        ext_hook(6, h(payload))


intervals = st.builds(
    Interval,
    year=INT64, month=INT64, week=INT64, day=INT64, hour=INT64, minute=INT64, sec=INT64, nsec=INT64,
    adjust=st.sampled_from(Adjust),
)


@given(intervals)
def test_interval_round_trip(value: Interval) -> None:
    assert unpack(pack(value)) == value


# -- everything together -------------------------------------------------------------


def test_unknown_ext_type_is_kept_as_ext_type() -> None:
    assert unpack(h("d4 09 2a")) == msgpack.ExtType(9, b"\x2a")


def test_unsupported_python_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="complex"):
        pack(1j)


leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
    st.text(max_size=20), st.binary(max_size=20),
    tarantool_decimals(), st.uuids(), datetimes_ext, intervals,
)
nested = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=5) | st.integers(0, 100), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=200)
@given(nested)
def test_nested_round_trip(value: Any) -> None:
    assert unpack(pack(value)) == value


# -- values of a supported type that Tarantool cannot hold, in a request ------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (D("1" * 39), r"Decimal Decimal\('1+'\) cannot be sent: Tarantool decimals hold at most 38 digits"),
        (Datetime(0, tzoffset=902), r"Datetime .* cannot be sent: Tarantool accepts a Datetime.tzoffset only "
                                    r"in -720\.\.840 minutes, got 902"),
    ],
)
def test_a_request_with_an_unsendable_extension_value_names_why(value: Any, why: str) -> None:
    """Regression: the ConfigurationError said "cannot send a value of type
    Decimal ... (send ..., Decimal, ...)", hiding the codec's reason."""
    from trio_tarantool import ConfigurationError
    from trio_tarantool._iproto import _constants as C
    from trio_tarantool._iproto._requests import Encoder, call_body

    with pytest.raises(ConfigurationError, match=r"^call\(\): args\[0\]: " + why):
        Encoder().frame(C.CALL, 1, call_body("f", [value]))
