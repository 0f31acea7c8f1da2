"""Sphinx configuration of the trio_tarantool docs.

The site is the Markdown guides of docs/ (read by myst-parser), the README and
the CHANGELOG (included from the repository root) and a generated API
reference (docs/api.rst: autodoc over the Google-style docstrings, through
napoleon). CI builds it with warnings as errors::

    sphinx-build -W --keep-going -n -b html docs docs/_build

(``scripts/test.sh``, step "docs"; ``pip install -e . --group docs`` brings
Sphinx and myst-parser). ``tests/unit/test_docs.py`` checks that every public
name has an entry in api.rst.
"""

from __future__ import annotations

import re
from typing import Any

import trio_tarantool

project = "trio_tarantool"
author = "the trio_tarantool developers"
copyright = "the trio_tarantool developers"
release = trio_tarantool.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Markdown: "#values"-style links to headings, as on a forge's rendering.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# autodoc: members in source order, signatures with their type hints, and the
# hints not repeated in the description (napoleon's Args sections say what
# each argument means).
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
# "Attributes:" sections as :ivar: fields, not attribute entries: a class that
# has both the section and properties of the same names would be described twice.
napoleon_use_ivar = True

# The pytest plugin's module imports pytest; its docstring is all the API page
# needs, so the docs build does not install pytest.
autodoc_mock_imports = ["pytest", "_pytest", "pytest_trio"]

# Offline: no inventory is fetched (CI has no network beyond the package
# index); references to the standard library and trio stay plain text.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

nitpicky = True
# Names in signatures that have no page of their own in this site: the
# standard library's and trio's types (no intersphinx inventory offline), and
# type variables / private helpers that appear in public signatures.
nitpick_ignore_regex = [
    (r"py:.*", r"(typing|collections\.abc|abc|enum|types|contextlib|dataclasses)\..*"),
    (r"py:.*", r"(decimal|uuid|datetime|ssl|socket|logging|random|os|pathlib)\..*"),
    (r"py:.*", r"(trio|trio\.abc|trio\.testing|trio\.socket|_pytest|pytest)(\..*)?"),
    (r"py:.*", r"(Any|Callable|Awaitable|Coroutine|Iterator|AsyncIterator|Iterable|AsyncIterable"
               r"|Mapping|MutableMapping|Sequence|Generator|AsyncGenerator|TypeVar|Self|Literal"
               r"|ClassVar|Protocol|NoReturn|Optional|Union|IntEnum|Enum|IntFlag|Counter|deque)"),
    (r"py:.*", r"(int|str|bytes|bytearray|float|bool|dict|list|tuple|set|frozenset|object|type"
               r"|None|BaseException|Exception|Warning|UserWarning|RuntimeWarning|TypeError"
               r"|ValueError|TimeoutError|RuntimeError|OSError|ConnectionError|KeyError)"),
    (r"py:.*", r"(Decimal|UUID|datetime|timedelta|Path|SSLContext|Logger|Random|AsyncResource"
               r"|Stream|Nursery|MemorySendChannel|MemoryReceiveChannel|CancelScope|Event"
               r"|MockClock|SocketStream|SocketType|Lock|Condition|Semaphore|Config|FixtureRequest"
               r"|Parser|Item|Session|Metafunc|Module|T|T_co|_T|.*Callback)"),
    (r"py:.*", r"(.*\.)?_[A-Za-z].*"),  # private helpers named in public signatures
    (r"py:.*", r"(hypothesis\..*|SearchStrategy)"),  # the testing kit's strategy type
    (r"py:.*", r"(dict|list|tuple|set|frozenset|type)\[.*"),  # napoleon splits generic types
    # Private constants and helpers (and short forms of documented names)
    # that docstrings mention: they have no entry of their own.
    (r"py:.*", r"(RESEND|Ticket\..*|TARANTOOL_TZOFFSET_RANGE|EWMA_WEIGHT|dropped|PoolEvents\.dropped"
               r"|World\.trace|sim\..*|FakeSocket\.peer_write_of|ServerConn)"),
]

# The benchmarks page skips heading levels (H2 -> H4) on purpose: it reads
# better in a forge's rendering.
suppress_warnings = ["myst.header"]

_TYPE_WORDS = re.compile(r"^[A-Za-z_][\w.]*$")


def _attribute_docstring_prose(app: Any, what: str, name: str, obj: Any, options: Any,
                               lines: list[str]) -> None:
    """Keep napoleon from reading an attribute docstring's opening words as a type.

    napoleon takes ``X: rest`` on the first line of an attribute's docstring as
    "type X"; in this code base that line is prose ("The address as the
    reference gives it: ..."). An empty type (``": "`` in front) makes napoleon
    keep the whole line as the description. Runs before napoleon (priority 400).
    """
    if what not in ("attribute", "property", "data") or not lines:
        return
    head, colon, _ = lines[0].partition(":")
    if not colon:
        return
    unbracketed = re.sub(r"\[.*?\]", "", head).strip()
    is_type = "|" in unbracketed or bool(_TYPE_WORDS.match(unbracketed))
    if not is_type:
        lines[0] = ": " + lines[0]


def _readme_links(app: Any, relative_path: Any, parent_docname: str, content: list[str]) -> None:
    """In the README included as the intro page, point its CHANGELOG link at the
    site's changelog page (on a forge it opens the file at the root)."""
    if str(relative_path).endswith("README.md"):
        content[0] = content[0].replace("](CHANGELOG.md)", "](docs/changelog.md)")


def setup(app: Any) -> None:
    """Register the hooks above."""
    app.connect("autodoc-process-docstring", _attribute_docstring_prose, priority=400)
    app.connect("include-read", _readme_links)


html_theme = "alabaster"
html_title = f"trio_tarantool {release}"
html_static_path: list[str] = []
