"""parse_id_reply: the server's answer to IPROTO_ID, checked before it is trusted."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit._msgpack_strategies import msgpack_values
from trio_tarantool._errors import NetworkError, ProtocolError
from trio_tarantool._iproto import constants as C
from trio_tarantool._iproto import parse_id_reply


def test_a_2_10_style_reply() -> None:
    assert parse_id_reply({C.VERSION: 3, C.FEATURES: [0, 1, 2, 3]}) == (3, frozenset({0, 1, 2, 3}))


def test_unknown_features_and_extra_keys_are_kept_or_ignored() -> None:
    """Newer servers announce features this client does not know, and AUTH_TYPE."""
    version, features = parse_id_reply({C.VERSION: 6, C.FEATURES: [0, 1, 2, 3, 4, 5, 6, 7, 99],
                                        C.AUTH_TYPE: "chap-sha1"})
    assert version == 6
    assert 99 in features and len(features) == 9


def test_missing_keys_read_as_protocol_0_without_features() -> None:
    assert parse_id_reply({}) == (0, frozenset())
    assert parse_id_reply({C.VERSION: 2}) == (2, frozenset())


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({C.VERSION: 3, C.FEATURES: {0: 1}}, r"reply to ID: FEATURES is a map, expected an array"),
        ({C.VERSION: 3, C.FEATURES: 5}, r"FEATURES is an integer, expected an array"),
        ({C.VERSION: 3, C.FEATURES: "0123"}, r"FEATURES is a string, expected an array"),
        ({C.VERSION: 3, C.FEATURES: None}, r"FEATURES is nil"),
        ({C.VERSION: 3, C.FEATURES: [0, "1"]}, r"FEATURES\[1\] is a string \('1'\)"),
        ({C.VERSION: 3, C.FEATURES: [0, -1]}, r"FEATURES\[1\] is an integer \(-1\), expected a non-negative"),
        ({C.VERSION: 3, C.FEATURES: [True]}, r"FEATURES\[0\] is a boolean"),
        ({C.VERSION: 3, C.FEATURES: [[1]]}, r"FEATURES\[0\] is an array"),
        ({C.VERSION: "3", C.FEATURES: []}, r"reply to ID: VERSION is a string \('3'\)"),
        ({C.VERSION: 3.0, C.FEATURES: []}, r"VERSION is a float"),
        ({C.VERSION: -1, C.FEATURES: []}, r"VERSION is an integer \(-1\)"),
        ({C.VERSION: None}, r"VERSION is nil"),
        ({C.VERSION: False}, r"VERSION is a boolean"),
        ({C.VERSION: [3]}, r"VERSION is an array"),
    ],
)
def test_wrong_types_raise_protocol_error(body: dict[int, Any], match: str) -> None:
    """Regression (issue 8, item 10): FEATURES as a map was iterated as its keys,
    as an int it raised TypeError; a VERSION string became protocol 0 silently."""
    with pytest.raises(ProtocolError, match=match) as info:
        parse_id_reply(body)
    assert isinstance(info.value, NetworkError)
    # Raised while connecting: no request of the application existed yet.
    assert info.value.may_have_executed is False


def test_a_body_that_is_not_a_map() -> None:
    with pytest.raises(ProtocolError, match="the body is an array, expected a map"):
        parse_id_reply([3, [1]])  # type: ignore[arg-type]


def test_long_values_are_cut_in_the_message() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_id_reply({C.VERSION: "x" * 10_000})
    assert len(str(info.value)) < 200


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from([C.VERSION, C.FEATURES, C.AUTH_TYPE, 0x10]) | st.integers(0, 99),
                       msgpack_values, max_size=4))
def test_any_body_gives_a_result_or_protocol_error(body: dict[int, Any]) -> None:
    try:
        version, features = parse_id_reply(body)
    except ProtocolError:
        return
    assert type(version) is int and version >= 0
    assert all(type(f) is int and f >= 0 for f in features)
