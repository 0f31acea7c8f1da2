"""msgpack extension types: Decimal, UUID, error, datetime and interval.

Encoding follows Tarantool's "MessagePack extensions" documentation. Python
values map as follows:

* ``decimal.Decimal`` <-> ext 1 (scale + packed BCD, sign in the last nibble);
* ``uuid.UUID`` <-> ext 2 (16 raw bytes);
* ext 3 -> :class:`~trio_tarantool.BoxError` (decode only: clients never send errors);
* :class:`Datetime` <-> ext 4 (seconds, nanoseconds, tz offset, tz index);
* :class:`Interval` <-> ext 6 (a count, then field id / value pairs).

Plain ``datetime.datetime`` values are encoded too (as :class:`Datetime`), so
applications need not wrap them.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import struct
import uuid
from dataclasses import dataclass
from typing import Any

import msgpack

from .._errors import BoxError
from . import _constants as C

_DECIMAL_POSITIVE_SIGNS = frozenset({0x0A, 0x0C, 0x0E, 0x0F})
_DECIMAL_NEGATIVE_SIGNS = frozenset({0x0B, 0x0D})
#: Tarantool's decimal type holds at most 38 significant digits.
DECIMAL_MAX_DIGITS = 38

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


class ExtDecodeError(ValueError):
    """An extension value's payload is malformed."""


# -- decimal --------------------------------------------------------------------


def encode_decimal(value: decimal.Decimal) -> bytes:
    """Payload of ext 1 for a finite decimal with at most 38 digits."""
    if not value.is_finite():
        raise ValueError(f"Tarantool decimals must be finite, got {value}")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if exponent > 0:
        digits = digits + (0,) * exponent
        exponent = 0
    scale = -exponent
    # Tarantool refuses a scale above 38 as well as more than 38 digits. Trailing
    # fractional zeros carry no value, so they are dropped, but only when needed
    # to fit: otherwise the scale the application chose (1.50) is kept.
    while (len(digits) > DECIMAL_MAX_DIGITS or scale > DECIMAL_MAX_DIGITS) and scale > 0 and digits[-1] == 0:
        if len(digits) == 1:  # zero: only the scale is too large
            scale = min(scale, DECIMAL_MAX_DIGITS)
            break
        digits = digits[:-1]
        scale -= 1
    if len(digits) > DECIMAL_MAX_DIGITS:
        raise ValueError(
            f"Tarantool decimals hold at most {DECIMAL_MAX_DIGITS} digits, {value} has {len(digits)}"
        )
    if scale > DECIMAL_MAX_DIGITS:
        raise ValueError(
            f"Tarantool decimals hold at most {DECIMAL_MAX_DIGITS} digits after the point, {value} has {scale}"
        )
    nibbles = [*digits, 0x0D if sign else 0x0C]
    if len(nibbles) % 2:
        nibbles.insert(0, 0)
    bcd = bytes((nibbles[i] << 4) | nibbles[i + 1] for i in range(0, len(nibbles), 2))
    return bytes(msgpack.packb(scale)) + bcd


def decode_decimal(data: bytes) -> decimal.Decimal:
    """A Decimal from the payload of ext 1."""
    unpacker = msgpack.Unpacker()
    unpacker.feed(data)
    try:
        scale = unpacker.unpack()
    except Exception as exc:
        raise ExtDecodeError("decimal: bad scale") from exc
    if not isinstance(scale, int):
        raise ExtDecodeError(f"decimal: scale must be an integer, got {scale!r}")
    bcd = data[unpacker.tell():]
    if not bcd:
        raise ExtDecodeError("decimal: no digits")
    nibbles: list[int] = []
    for byte in bcd:
        nibbles.append(byte >> 4)
        nibbles.append(byte & 0x0F)
    sign_nibble = nibbles.pop()
    if sign_nibble in _DECIMAL_NEGATIVE_SIGNS:
        sign = 1
    elif sign_nibble in _DECIMAL_POSITIVE_SIGNS:
        sign = 0
    else:
        raise ExtDecodeError(f"decimal: bad sign nibble {sign_nibble:#x}")
    if any(n > 9 for n in nibbles):
        raise ExtDecodeError("decimal: digit nibble above 9")
    try:
        return decimal.Decimal((sign, tuple(nibbles) or (0,), -scale))
    except (ArithmeticError, ValueError) as exc:  # a scale beyond what Decimal holds
        raise ExtDecodeError(f"decimal: scale {scale} is out of range") from exc


# -- uuid -----------------------------------------------------------------------


def decode_uuid(data: bytes) -> uuid.UUID:
    """A UUID from the payload of ext 2."""
    if len(data) != 16:
        raise ExtDecodeError(f"uuid: payload is {len(data)} bytes, expected 16")
    return uuid.UUID(bytes=bytes(data))


# -- error ----------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def decode_error_stack(stack_map: Any) -> BoxError | None:
    """The head of the chained :class:`BoxError` list from an MP_ERROR map."""
    if not isinstance(stack_map, dict):
        raise ExtDecodeError("error: the error payload must be a map")
    stack = stack_map.get(C.MP_ERROR_STACK)
    if not isinstance(stack, list | tuple):
        raise ExtDecodeError("error: MP_ERROR_STACK must be an array")
    entries: list[BoxError] = []
    for item in stack:
        if not isinstance(item, dict):
            raise ExtDecodeError("error: a stack entry must be a map")
        fields = item.get(C.MP_ERROR_FIELDS) or {}
        if not isinstance(fields, dict):
            raise ExtDecodeError("error: MP_ERROR_FIELDS must be a map")
        entries.append(
            BoxError(
                type=_text(item.get(C.MP_ERROR_TYPE)),
                file=_text(item.get(C.MP_ERROR_FILE)),
                line=_uint(item, C.MP_ERROR_LINE, "line"),
                message=_text(item.get(C.MP_ERROR_MESSAGE)),
                errno=_uint(item, C.MP_ERROR_ERRNO, "errno"),
                errcode=_uint(item, C.MP_ERROR_ERRCODE, "errcode"),
                fields={_text(k): v for k, v in fields.items()},
            )
        )
    return BoxError.from_stack(entries)


def _uint(item: dict[Any, Any], key: int, what: str) -> int:
    """An integer field of an error stack entry (absent -> 0).

    Anything else is malformed data and raises :class:`ExtDecodeError`, so that
    callers which tolerate a bad stack (catching that one type) are not hit by a
    stray ``ValueError``/``TypeError`` from ``int()``.
    """
    value = item.get(key)
    if value is None:
        return 0
    if type(value) is not int:
        raise ExtDecodeError(f"error: {what} must be an integer, got {type(value).__name__}")
    return value


def encode_error(error: BoxError) -> bytes:
    """Payload of ext 3 (used by the simulator, which plays the server)."""
    stack = []
    entry: BoxError | None = error
    while entry is not None:
        stack.append(
            {
                C.MP_ERROR_TYPE: entry.type,
                C.MP_ERROR_FILE: entry.file,
                C.MP_ERROR_LINE: entry.line,
                C.MP_ERROR_MESSAGE: entry.message,
                C.MP_ERROR_ERRNO: entry.errno,
                C.MP_ERROR_ERRCODE: entry.errcode,
                C.MP_ERROR_FIELDS: entry.fields,
            }
        )
        entry = entry.prev
    # default=: fields may hold extension values (decimal, uuid, datetime, ...).
    return bytes(msgpack.packb({C.MP_ERROR_STACK: stack}, use_bin_type=True, default=default))


# -- datetime -------------------------------------------------------------------

#: Offsets (minutes) a :class:`Datetime` holds: below a day either way, as
#: ``datetime.timezone`` requires.
_MAX_TZOFFSET = 24 * 60 - 1
#: Offsets (minutes) Tarantool 3.x decodes; it refuses others as invalid MsgPack.
TARANTOOL_TZOFFSET_RANGE = (-12 * 60, 14 * 60)


@dataclass(frozen=True)
class Datetime:
    """A Tarantool datetime: seconds since the epoch, nanoseconds, a timezone.

    ``tzoffset`` is minutes east of UTC; ``tzindex`` is Tarantool's index of a
    named zone (0 when the value carries only an offset). Nanosecond precision
    is kept, which ``datetime.datetime`` cannot hold.

    ``tzoffset`` may be anything below a day either way (what
    ``datetime.timezone`` accepts), because Tarantool 3.x itself produces
    offsets beyond -12:00..+14:00 for early dates in some named zones (local
    mean time: ``datetime.new{year=1800, tz='America/Juneau'}`` has +902).
    Tarantool reads back only -720..840, so only those can be sent
    (:data:`TARANTOOL_TZOFFSET_RANGE`).
    """

    seconds: int
    nsec: int = 0
    tzoffset: int = 0
    tzindex: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.nsec < 1_000_000_000:
            raise ValueError(f"Datetime.nsec must be in 0..999999999, got {self.nsec}")
        if not -_MAX_TZOFFSET <= self.tzoffset <= _MAX_TZOFFSET:
            raise ValueError(
                f"Datetime.tzoffset must be in -{_MAX_TZOFFSET}..{_MAX_TZOFFSET} minutes, got {self.tzoffset}"
            )

    @classmethod
    def from_datetime(cls, value: _dt.datetime) -> Datetime:
        """Convert an aware or naive (taken as UTC) ``datetime``."""
        aware = value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)
        offset = aware.utcoffset() or _dt.timedelta(0)
        delta = aware - _EPOCH
        seconds = delta.days * 86400 + delta.seconds
        return cls(seconds, delta.microseconds * 1000, int(offset.total_seconds() // 60))

    def to_datetime(self) -> _dt.datetime:
        """The value as an aware ``datetime`` (nanoseconds truncated to microseconds)."""
        tz = _dt.timezone(_dt.timedelta(minutes=self.tzoffset))
        return (_EPOCH + _dt.timedelta(seconds=self.seconds, microseconds=self.nsec // 1000)).astimezone(tz)


def encode_datetime(value: Datetime) -> bytes:
    """Payload of ext 4: 8 bytes, or 16 when any optional field is set.

    Raises:
        ValueError: ``tzoffset`` is outside what Tarantool decodes (-720..840):
            the server would refuse the whole request as invalid MsgPack.
    """
    low, high = TARANTOOL_TZOFFSET_RANGE
    if not low <= value.tzoffset <= high:
        raise ValueError(
            f"Tarantool accepts a Datetime.tzoffset only in {low}..{high} minutes, got {value.tzoffset}"
        )
    if value.nsec or value.tzoffset or value.tzindex:
        return struct.pack("<qihh", value.seconds, value.nsec, value.tzoffset, value.tzindex)
    return struct.pack("<q", value.seconds)


def decode_datetime(data: bytes) -> Datetime:
    """A :class:`Datetime` from the payload of ext 4."""
    if len(data) == 8:
        return Datetime(struct.unpack("<q", data)[0])
    if len(data) == 16:
        seconds, nsec, tzoffset, tzindex = struct.unpack("<qihh", data)
        try:
            return Datetime(seconds, nsec, tzoffset, tzindex)
        except ValueError as exc:
            raise ExtDecodeError(f"datetime: {exc}") from exc
    raise ExtDecodeError(f"datetime: payload is {len(data)} bytes, expected 8 or 16")


# -- interval -------------------------------------------------------------------


class Adjust(enum.IntEnum):
    """How an interval's months are added at the end of a month.

    The values are Tarantool's own (``excess`` 0, ``none`` 1, ``last`` 2). On
    the wire an interval without the adjust field means ``EXCESS`` (0): that is
    how Tarantool 3.x encodes ``adjust='excess'`` and how it decodes an absent
    field, while its default, ``'none'``, is sent explicitly as ``8: 1``.
    """

    EXCESS = 0
    NONE = 1
    LAST = 2


_INTERVAL_FIELDS = ("year", "month", "week", "day", "hour", "minute", "sec", "nsec")
_ADJUST_FIELD = 8


@dataclass(frozen=True)
class Interval:
    """A Tarantool datetime interval (ext 6); fields are signed integers."""

    year: int = 0
    month: int = 0
    week: int = 0
    day: int = 0
    hour: int = 0
    minute: int = 0
    sec: int = 0
    nsec: int = 0
    adjust: Adjust = Adjust.NONE


def encode_interval(value: Interval) -> bytes:
    """Payload of ext 6: zero fields are omitted, and so is ``adjust`` when it
    is ``EXCESS`` (the wire's default; ``NONE``, the Python default, is sent)."""
    pairs: list[tuple[int, int]] = []
    for field_id, name in enumerate(_INTERVAL_FIELDS):
        amount = getattr(value, name)
        if amount:
            pairs.append((field_id, amount))
    if value.adjust != Adjust.EXCESS:
        pairs.append((_ADJUST_FIELD, int(value.adjust)))
    out = bytearray([len(pairs)])
    for field_id, amount in pairs:
        out += msgpack.packb(field_id)
        out += msgpack.packb(amount)
    return bytes(out)


def decode_interval(data: bytes) -> Interval:
    """An :class:`Interval` from the payload of ext 6."""
    if not data:
        raise ExtDecodeError("interval: empty payload")
    unpacker = msgpack.Unpacker()
    unpacker.feed(data[1:])
    # No adjust field on the wire means EXCESS (Tarantool omits that one).
    values: dict[str, Any] = {"adjust": Adjust.EXCESS}
    try:
        for _ in range(data[0]):
            field_id = unpacker.unpack()
            amount = unpacker.unpack()
            if not isinstance(field_id, int) or not isinstance(amount, int):
                raise ExtDecodeError("interval: field ids and values must be integers")
            if field_id == _ADJUST_FIELD:
                values["adjust"] = Adjust(amount)
            elif 0 <= field_id < len(_INTERVAL_FIELDS):
                values[_INTERVAL_FIELDS[field_id]] = amount
            else:
                raise ExtDecodeError(f"interval: unknown field id {field_id}")
    except ExtDecodeError:
        raise
    except Exception as exc:
        raise ExtDecodeError(f"interval: {exc}") from exc
    return Interval(**values)


# -- msgpack hooks ----------------------------------------------------------------


def default(obj: Any) -> Any:
    """``msgpack.Packer(default=...)``: turn extension values into ExtType."""
    if isinstance(obj, decimal.Decimal):
        return msgpack.ExtType(C.EXT_DECIMAL, encode_decimal(obj))
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(C.EXT_UUID, obj.bytes)
    if isinstance(obj, Datetime):
        return msgpack.ExtType(C.EXT_DATETIME, encode_datetime(obj))
    if isinstance(obj, _dt.datetime):
        return msgpack.ExtType(C.EXT_DATETIME, encode_datetime(Datetime.from_datetime(obj)))
    if isinstance(obj, Interval):
        return msgpack.ExtType(C.EXT_INTERVAL, encode_interval(obj))
    raise TypeError(f"cannot send a value of type {type(obj).__name__} to Tarantool: {obj!r}")


def ext_hook(code: int, data: bytes) -> Any:
    """``msgpack.Unpacker(ext_hook=...)``: decode the extension types we know."""
    if code == C.EXT_DECIMAL:
        return decode_decimal(data)
    if code == C.EXT_UUID:
        return decode_uuid(data)
    if code == C.EXT_ERROR:
        # ext_hook again: 3.x error payloads may hold extension values of their
        # own (box.error.new{..., amount = decimal.new('1.5')}), decoded just as
        # they are in an error reply's stack (IPROTO_ERROR, 0x52).
        try:
            payload = msgpack.unpackb(data, strict_map_key=False, raw=False, ext_hook=ext_hook)
        except Exception as exc:
            raise ExtDecodeError(f"error: {exc}") from exc
        return decode_error_stack(payload)
    if code == C.EXT_DATETIME:
        return decode_datetime(data)
    if code == C.EXT_INTERVAL:
        return decode_interval(data)
    return msgpack.ExtType(code, data)
