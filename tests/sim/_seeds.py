"""How many seeds the seeded differentials run: few in CI, many on demand.

Each differential (``test_fidelity.py``, ``test_crud_fidelity.py``,
``test_txn_fidelity.py``, ``test_readme_example.py``) runs ``ci`` seeds by
default, enough to catch a regression of what an earlier, larger run proved
(docs/sim.md says how many and why); an environment variable asks for more,
e.g. ``FIDELITY_SEEDS=40``.
"""

from __future__ import annotations

import os

__all__ = ["seeds"]


def seeds(variable: str, ci: int, *, first: int = 1) -> range:
    """``first .. first + n - 1`` where ``n`` is ``$variable`` if set, else ``ci``."""
    raw = os.environ.get(variable)
    n = int(raw) if raw else ci
    if n < 1:
        raise ValueError(f"{variable} must be a positive number of seeds, got {raw!r}")
    return range(first, first + n)
