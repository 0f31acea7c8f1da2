"""Hypothesis strategies for decoded msgpack values, shared by the unit tests that
feed malformed replies to the library."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import strategies as st

#: Any value msgpack can carry, as the decoder hands it over (lists, not tuples;
#: unknown extension types as ExtType).
msgpack_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=8) | st.binary(max_size=8)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4)),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.integers(-2, 90) | st.text(max_size=3), children, max_size=4),
    max_leaves=10,
)
