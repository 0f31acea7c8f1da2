"""The handshake's pure steps: reading the server's answer to IPROTO_ID.

A client opens with IPROTO_ID (its protocol version and features); servers
from 2.10 answer with theirs, older ones with ER_UNKNOWN_REQUEST_TYPE (which the
connection reads as protocol 0). What a server answers is checked here, before
the connection relies on it: a reply that is well framed but holds the wrong
types raises :class:`~trio_tarantool.ProtocolError` instead of a ``TypeError``
deep inside the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._errors import ProtocolError
from . import _constants as C


def kind(value: Any) -> str:
    """The msgpack name of a decoded value's type, for error messages."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bytes | bytearray | memoryview):
        return "binary"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "a map"
    return f"a {type(value).__name__}"


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_id_reply(body: Mapping[int, Any]) -> tuple[int, frozenset[int]]:
    """The server's protocol version and features from a successful ID reply.

    Args:
        body: The reply's body map (IPROTO_VERSION, IPROTO_FEATURES, ...).

    Returns:
        ``(version, features)``. A missing VERSION reads as 0 and missing
        FEATURES as none; feature numbers this client does not know are kept
        (newer servers announce more).

    Raises:
        ProtocolError: VERSION is not a non-negative integer, or FEATURES is not
            an array of non-negative integers. ``may_have_executed`` is False:
            this happens while connecting, before any request of the
            application existed.
    """
    if not isinstance(body, Mapping):
        raise ProtocolError(f"reply to ID: the body is {kind(body)}, expected a map",
                            may_have_executed=False)
    version = body.get(C.VERSION, 0)
    if not _is_uint(version):
        raise ProtocolError(
            f"reply to ID: VERSION is {kind(version)} ({version!r:.40}), expected a non-negative integer",
            may_have_executed=False,
        )
    features = body.get(C.FEATURES, ())
    if type(features) is not list and type(features) is not tuple:
        raise ProtocolError(f"reply to ID: FEATURES is {kind(features)}, expected an array",
                            may_have_executed=False)
    for position, feature in enumerate(features):
        if not _is_uint(feature):
            raise ProtocolError(
                f"reply to ID: FEATURES[{position}] is {kind(feature)} ({feature!r:.40}), "
                "expected a non-negative integer",
                may_have_executed=False,
            )
    return int(version), frozenset(int(f) for f in features)
