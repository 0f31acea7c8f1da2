"""Tarantool's update operations (``= + - & | ^ # ! :``), as 2.6 applies them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from ._values import (
    ER_ILLEGAL_PARAMS,
    ER_NO_SUCH_FIELD_NO,
    ER_UNKNOWN_UPDATE_OP,
    ER_UPDATE_ARG_TYPE,
    ER_UPDATE_FIELD,
    ER_UPDATE_INTEGER_OVERFLOW,
    ER_UPDATE_SPLICE,
    INT64_MIN,
    UINT64_MAX,
    BoxError,
)
from ._values import is_type as _is_type

if TYPE_CHECKING:
    from ._spaces import Space

_OPS = ("=", "+", "-", "&", "|", "^", "#", "!", ":")


def check_ops(ops: Sequence[Any]) -> None:
    """Reject malformed operation lists before any tuple is looked at."""
    if not isinstance(ops, (list, tuple)):
        raise BoxError(ER_ILLEGAL_PARAMS, "Illegal parameters, update operations must be an array {{op,..}}")
    for i, op in enumerate(ops):
        if not isinstance(op, (list, tuple)) or not op:
            raise BoxError(ER_ILLEGAL_PARAMS, "Illegal parameters, update operation must be an array {op,..}")
        name = op[0]
        if name not in _OPS:
            raise BoxError(ER_UNKNOWN_UPDATE_OP, f'Unknown UPDATE operation #{i + 1}: "{name}"')
        want = 5 if name == ":" else 3
        if len(op) != want:
            raise BoxError(
                ER_UNKNOWN_UPDATE_OP,
                f"Unknown UPDATE operation #{i + 1}: wrong number of arguments, expected {want}, got {len(op)}",
            )
        # Argument types are checked when the request is parsed, before any
        # tuple is looked at (so an upsert fails even when it would insert).
        spec = op[1]
        shown = f"'{spec}'" if isinstance(spec, str) else str(spec + 1 if isinstance(spec, int) and spec >= 0 else spec)
        arg = op[2]
        if name in ("+", "-") and (not _is_type(arg, "number") or isinstance(arg, msgpack.ExtType)):
            raise BoxError(
                ER_UPDATE_ARG_TYPE,
                f"Argument type in operation '{name}' on field {shown} does not match field type: expected a number",
            )
        if name in ("&", "|", "^") and not _is_type(arg, "unsigned"):
            raise BoxError(
                ER_UPDATE_ARG_TYPE,
                f"Argument type in operation '{name}' on field {shown} does not match field type: expected a positive integer",
            )


def _shown(fieldspec: Any, pos: int) -> str:
    """How an error message names a field (1-based number or the name given)."""
    return f"'{fieldspec}'" if isinstance(fieldspec, str) else str(pos + 1 if pos >= 0 else fieldspec)


def apply_ops(
    space: Space, tup: Sequence[Any], ops: Sequence[Any], index_base: int = 0,
    *, skip_errors: bool = False,
) -> list[Any]:
    """Tarantool's update operations on a copy of ``tup``.

    Field numbers are ``index_base``-based (IPROTO's default is 0), negative
    numbers count from the end, strings name format fields. With
    ``skip_errors`` (upsert), an op that fails is skipped and the rest apply.
    """
    check_ops(ops)
    out = list(tup)
    # Which existing fields an earlier op of this request changed (flags move
    # with the fields on '!' and '#'): 2.6 lets '=' overwrite such a field but
    # refuses arithmetic, bitwise and splice on it ("double update of the
    # same field"). Fields added by '!' or an appending '=' are not flagged.
    touched = [False] * len(out)
    for op in ops:
        if not skip_errors:
            _apply_op(space, out, touched, op, index_base)
            continue
        attempt, attempt_touched = list(out), list(touched)
        try:
            _apply_op(space, attempt, attempt_touched, op, index_base)
        except BoxError:
            continue
        out, touched = attempt, attempt_touched
    return out


def _apply_op(space: Space, out: list[Any], touched: list[bool], op: Sequence[Any], index_base: int) -> None:
    """Apply one update op to ``out`` (and its ``touched`` flags) in place."""
    name, spec = op[0], op[1]
    if isinstance(spec, str):
        pos = space.field_no(spec)
    elif isinstance(spec, int) and not isinstance(spec, bool):
        if spec >= 0:
            pos = spec - index_base
            if pos < 0:
                raise BoxError(ER_NO_SUCH_FIELD_NO, f"Field {spec} was not found in the tuple")
        else:
            pos = len(out) + spec + (1 if name == "!" else 0)
            if pos < 0:
                raise BoxError(ER_NO_SUCH_FIELD_NO, f"Field {spec} was not found in the tuple")
    else:
        raise BoxError(ER_ILLEGAL_PARAMS, "Illegal parameters, field id must be a number or a string")
    shown = _shown(spec, pos)
    if name == "!":
        if pos > len(out):
            raise BoxError(ER_NO_SUCH_FIELD_NO, f"Field {shown} was not found in the tuple")
        out.insert(pos, op[2])
        touched.insert(pos, False)  # a new field takes arithmetic later (2.6)
        return
    if name == "=":
        if pos > len(out):
            raise BoxError(ER_NO_SUCH_FIELD_NO, f"Field {shown} was not found in the tuple")
        if pos == len(out):
            out.append(op[2])
            touched.append(False)
        else:
            out[pos] = op[2]
            touched[pos] = True
        return
    if pos >= len(out):
        raise BoxError(ER_NO_SUCH_FIELD_NO, f"Field {shown} was not found in the tuple")
    if name == "#":
        count = op[2]
        if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
            raise BoxError(ER_UPDATE_FIELD, f"Field {shown} UPDATE error: cannot delete {count} fields")
        del out[pos : pos + count]
        del touched[pos : pos + count]
        return
    if touched[pos]:
        raise BoxError(ER_UPDATE_FIELD, f"Field {pos + 1} UPDATE error: double update of the same field")
    touched[pos] = True
    if name in ("+", "-"):
        cur, arg = out[pos], op[2]
        if not _is_type(cur, "number") or not _is_type(arg, "number") or isinstance(cur, msgpack.ExtType) or isinstance(arg, msgpack.ExtType):
            raise BoxError(
                ER_UPDATE_ARG_TYPE,
                f"Argument type in operation '{name}' on field {shown} does not match "
                "field type: expected a number",
            )
        res = cur + arg if name == "+" else cur - arg
        if isinstance(res, int) and not (INT64_MIN <= res <= UINT64_MAX):
            raise BoxError(
                ER_UPDATE_INTEGER_OVERFLOW,
                f"Integer overflow when performing '{name}' operation on field {shown}",
            )
        out[pos] = res
    elif name in ("&", "|", "^"):
        cur, arg = out[pos], op[2]
        if not _is_type(cur, "unsigned") or not _is_type(arg, "unsigned"):
            raise BoxError(
                ER_UPDATE_ARG_TYPE,
                f"Argument type in operation '{name}' on field {shown} does not match "
                "field type: expected a positive integer",
            )
        out[pos] = cur & arg if name == "&" else cur | arg if name == "|" else cur ^ arg
    elif name == ":":
        cur = out[pos]
        offset, length, paste = op[2], op[3], op[4]
        if not isinstance(cur, str):
            raise BoxError(
                ER_UPDATE_ARG_TYPE,
                f"Argument type in operation ':' on field {shown} does not match "
                "field type: expected a string",
            )
        n = len(cur)
        if offset < 0:
            if -offset > n + 1:
                raise BoxError(
                    ER_UPDATE_SPLICE, f"SPLICE error on field {shown}: offset is out of bound"
                )
            start = n + offset + 1
        else:
            start = min(max(offset - index_base, 0), n)
        if length < 0:
            if -length > n - start:
                length = 0
            else:
                length = n - start + length
        end = min(start + length, n)
        out[pos] = cur[:start] + str(paste) + cur[end:]


