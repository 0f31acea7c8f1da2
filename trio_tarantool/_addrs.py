"""Validation of the pool's ``addrs`` argument.

The pool takes a list of dicts in the reference connector's format::

    {"host": "127.0.0.1" or None, "port": 3301 or "3301" or "/path/to.sock",
     "transport": ..., "ssl_*": ..., "auth_type": ...}   # optional keys

Everything is checked up front, before any connection is attempted, so a typo
fails at once with a message naming the entry and the problem
(``addrs[2]: port 70000 is outside 1..65535``) instead of surfacing later as
an instance that never becomes healthy.

Besides the reference keys, an address may carry ``ssl_verify`` and
``ssl_check_hostname`` (bools, default True: see ``_tls.py``), and
``auth_type='pap-sha256'`` is refused without ``transport='ssl'``, since it
would send the password in clear.

Secrets: ``ssl_password`` is the only secret an address holds. ``Address``
keeps it (the connection needs it), but every rendering masks it: the repr of
an :class:`Address`, of its ``options`` and of the dict :meth:`Address.as_dict`
returns (a plain ``dict`` in every other respect, equal to the user's entry).
So ``repr(pool.addrs)``, ``repr(unit)`` and log lines built from them show
``'ssl_password': '***'``; indexing still gives the real value, because the
dict is the user's own configuration handed back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConfigurationError
from ._options import connection_options
from ._tls import MASK, TLSOptions

__all__ = ["Address", "MaskedDict", "validate_addrs"]

#: Optional string-valued keys of an address, as in the reference connector.
OPTIONAL_KEYS: tuple[str, ...] = (
    "transport",
    "ssl_key_file",
    "ssl_cert_file",
    "ssl_ca_file",
    "ssl_ciphers",
    "ssl_password",
    "ssl_password_file",
    "auth_type",
)
#: Optional bool-valued keys of an address (ours: TLS verification opt-outs).
BOOL_KEYS: tuple[str, ...] = ("ssl_verify", "ssl_check_hostname")
#: Every key an address may have.
KNOWN_KEYS: frozenset[str] = frozenset(("host", "port", *OPTIONAL_KEYS, *BOOL_KEYS))
#: Keys whose value is a secret: masked wherever an address is rendered.
SECRET_KEYS: frozenset[str] = frozenset({"ssl_password"})


class MaskedDict(dict[str, Any]):
    """A dict whose repr and str show ``'***'`` for the values of :data:`SECRET_KEYS`.

    Everything else is a plain dict (equality, indexing, iteration, ``json``),
    so code that reads the configuration back gets the real values, while
    printing or logging it reveals no secret.
    """

    def __repr__(self) -> str:
        items = ", ".join(
            f"{key!r}: {MASK if key in SECRET_KEYS and value is not None else repr(value)}"
            for key, value in self.items()
        )
        return "{" + items + "}"

    __str__ = __repr__


@dataclass(frozen=True)
class Address:
    """One validated pool address.

    Attributes:
        host: Host name or IP, or None for a unix socket path in ``port``.
        port: TCP port number, or a unix socket path when ``host`` is None.
        options: The optional keys that were given (``auth_type``, ...): str
            values, and bools for ``ssl_verify``/``ssl_check_hostname``. A
            :class:`MaskedDict`: its repr masks ``ssl_password``.
    """

    host: str | None
    port: int | str
    options: Mapping[str, Any] = field(default_factory=MaskedDict)

    def __post_init__(self) -> None:
        if not isinstance(self.options, MaskedDict):
            object.__setattr__(self, "options", MaskedDict(self.options))

    def __repr__(self) -> str:
        """host, port and options, ``ssl_password`` masked."""
        return f"Address(host={self.host!r}, port={self.port!r}, options={self.options!r})"

    @property
    def key(self) -> str:
        """``host:port`` (or the socket path): how logs and ``repr`` name the instance."""
        if self.host is None:
            return str(self.port)
        if ":" in self.host:  # IPv6 literal
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def tls(self) -> TLSOptions | None:
        """The address's TLS options (None unless ``transport='ssl'``)."""
        opt = self.options
        if opt.get("transport", "") != "ssl":
            return None
        return TLSOptions(
            opt.get("ssl_key_file"), opt.get("ssl_cert_file"), opt.get("ssl_ca_file"),
            opt.get("ssl_ciphers"), opt.get("ssl_password"), opt.get("ssl_password_file"),
            verify=opt.get("ssl_verify", True), check_hostname=opt.get("ssl_check_hostname", True),
        )

    def as_dict(self) -> dict[str, Any]:
        """The address in the reference format (``host``, ``port`` + given options).

        A :class:`MaskedDict`: equal to the entry the user gave (``None``
        options dropped), with ``ssl_password`` masked in its repr.
        """
        return MaskedDict({"host": self.host, "port": self.port, **self.options})


def _check_port(where: str, host: str | None, port: Any) -> int | str:
    if isinstance(port, bool) or not isinstance(port, int | str):
        raise ConfigurationError(
            f"{where}: port must be an int or a str, got {type(port).__name__} {port!r}"
        )
    if isinstance(port, str):
        if port.strip() == "":
            raise ConfigurationError(f"{where}: port is an empty string")
        if port.isdigit():
            port = int(port)
        elif host is None:
            return port  # a unix socket path
        else:
            raise ConfigurationError(
                f"{where}: port {port!r} is neither a number nor usable as a unix socket "
                f"path (a path needs host None)"
            )
    if not 1 <= port <= 65535:
        raise ConfigurationError(f"{where}: port {port} is outside 1..65535")
    if host is None:
        raise ConfigurationError(
            f"{where}: host is None but port {port} is a number; give a host for TCP "
            f"or a socket path as port for a unix socket"
        )
    return int(port)


def _check_one(index: int, entry: Any) -> Address:
    where = f"addrs[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigurationError(
            f"{where}: must be a dict with 'host' and 'port', got {type(entry).__name__}"
        )
    unknown = sorted(str(k) for k in entry if k not in KNOWN_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys are {', '.join(sorted(KNOWN_KEYS))}"
        )
    for required in ("host", "port"):
        if required not in entry:
            raise ConfigurationError(f"{where}: missing mandatory key {required!r}")
    host = entry["host"]
    if host is not None and not isinstance(host, str):
        raise ConfigurationError(
            f"{where}: host must be a str or None, got {type(host).__name__} {host!r}"
        )
    if isinstance(host, str) and host.strip() == "":
        raise ConfigurationError(f"{where}: host is an empty string")
    port = _check_port(where, host, entry["port"])
    options = MaskedDict()
    for name in (*OPTIONAL_KEYS, *BOOL_KEYS):
        if name not in entry or entry[name] is None:
            continue
        value = entry[name]
        expected: type = bool if name in BOOL_KEYS else str
        if not isinstance(value, expected):
            shown = "" if name in SECRET_KEYS else f" {value!r}"
            raise ConfigurationError(
                f"{where}: {name} must be a {expected.__name__}, got {type(value).__name__}{shown}"
            )
        options[name] = value
    try:
        # Every value through the one validator every connection uses.
        connection_options(host, port, **options)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    return Address(host, port, options)


def validate_addrs(addrs: Any) -> list[Address]:
    """Check the pool's ``addrs`` argument and return it as :class:`Address` records.

    Raises:
        ConfigurationError: ``addrs`` is not a non-empty list of valid, distinct
            addresses; the message names the offending entry.
    """
    if isinstance(addrs, str | bytes | Mapping) or not isinstance(addrs, Sequence):
        raise ConfigurationError(
            f"addrs must be a non-empty list of dicts, got {type(addrs).__name__}"
        )
    if len(addrs) == 0:
        raise ConfigurationError("addrs must be a non-empty list of dicts, got an empty list")
    result: list[Address] = []
    seen: dict[tuple[str | None, int | str], int] = {}
    for index, entry in enumerate(addrs):
        address = _check_one(index, entry)
        ident = (address.host.lower() if address.host else None, address.port)
        if ident in seen:
            raise ConfigurationError(
                f"addrs[{index}]: {address.key} duplicates addrs[{seen[ident]}]"
            )
        seen[ident] = index
        result.append(address)
    return result
