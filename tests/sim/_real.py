"""Real servers for the simulator's differential tests (tests/sim/test_*fidelity.py).

The fidelity tests compare the simulator with each server kind the project is
tested against (``"2.6"`` Debian's package, ``"3.8"`` the shared 3.x binary).
A missing 3.x binary skips its variants with the reason, except in CI, where
that is a failure: CI must run both (as in ``tests/real/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.real._servers import (
    SERVER_KINDS,
    ServerBinaryMissingError,
    ServerManager,
    TarantoolBinary,
    find_binary,
    in_ci,
)

__all__ = ["SERVER_KINDS", "binary_or_skip", "sim_version", "started_instance"]


def binary_or_skip(kind: str) -> TarantoolBinary:
    """The binary of server ``kind``; skips (fails in CI) when it is missing."""
    try:
        return find_binary(kind)
    except ServerBinaryMissingError as exc:
        if in_ci():
            pytest.fail(f"CI must run the {kind} server: {exc}")
        pytest.skip(str(exc))


def sim_version(kind: str) -> str:
    """The ``version`` to open a simulated replicaset with, to play server ``kind``."""
    return "2.6.0" if kind == "2.6" else "3.8.0"


def started_instance(kind: str, name: str) -> Iterator[Any]:
    """A generator for a module fixture: one standalone server of ``kind`` (stopped afterwards)."""
    with ServerManager(binary_or_skip(kind)) as manager:
        yield manager.start_instance(name=name)
