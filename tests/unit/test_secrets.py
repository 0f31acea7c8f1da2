"""No secret in any repr, str or error (issue 8, item 9).

The Tarantool user's password and the TLS key's ``ssl_password`` are kept (a
connection re-authenticates on reconnect and reloads its key), but nothing
that renders an object may show them: reprs, strs, the attributes a debugger
or a log line would print, and the messages of the errors raised for bad
options. Only the attributes that *are* the credential, as the user gave it,
hold it (:data:`CREDENTIALS`); rendering them is the caller's own doing.

Real-server errors and log records are checked in
``tests/real/test_connection_tls.py``.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from trio_tarantool import ConfigurationError, Connection, ConnectionPool, PoolUnit
from trio_tarantool._addrs import Address, validate_addrs
from trio_tarantool._tls import TLSOptions, check_auth_transport

PASSWORD = "s3cr3t-PW-user-password"
SSL_PASSWORD = "s3cr3t-PW-ssl-key-password"
SECRETS = (PASSWORD, SSL_PASSWORD)

#: (type, attribute) pairs that hold a secret as the user gave it, on purpose.
CREDENTIALS = {(Connection, "password"), (TLSOptions, "password")}

TLS_ADDRESS = {"host": "127.0.0.1", "port": 3302, "transport": "ssl", "ssl_password": SSL_PASSWORD,
               "ssl_password_file": "/nonexistent/passwords.txt", "ssl_check_hostname": False}


def _attributes(obj: Any) -> Iterator[tuple[str, Any]]:
    """Every instance attribute and every property of ``obj``, with its value."""
    names = set(getattr(obj, "__dict__", {}))
    names |= {n for n in dir(type(obj)) if isinstance(getattr(type(obj), n, None), property)}
    for name in sorted(names):
        try:
            yield name, getattr(obj, name)
        except Exception:  # a property that needs a live connection
            continue


def _renderings(obj: Any) -> Iterator[tuple[str, str]]:
    """(what, text) for repr/str of ``obj`` and of each of its attribute values."""
    yield "repr", repr(obj)
    yield "str", str(obj)
    for name, value in _attributes(obj):
        if (type(obj), name) in CREDENTIALS and value in SECRETS:
            continue
        yield f"repr(.{name})", repr(value)
        yield f"str(.{name})", str(value)
        if isinstance(value, list | tuple):
            for i, item in enumerate(value):
                yield f"repr(.{name}[{i}])", repr(item)


def _assert_clean(obj: Any) -> None:
    for what, text in _renderings(obj):
        for secret in SECRETS:
            assert secret not in text, f"{type(obj).__name__} {what} shows a secret: {text}"


def test_a_tls_connection_shows_no_secret() -> None:
    conn = Connection("127.0.0.1", 3301, user="app", password=PASSWORD, transport="ssl",
                      ssl_password=SSL_PASSWORD, ssl_password_file="/nonexistent/passwords.txt")
    assert conn.tls is not None
    _assert_clean(conn)
    _assert_clean(conn.tls)
    assert conn.tls.password == SSL_PASSWORD and conn.password == PASSWORD  # kept, for use


def test_a_pool_and_its_units_show_no_secret() -> None:
    pool = ConnectionPool([{"host": "127.0.0.1", "port": 3301}, TLS_ADDRESS],
                          user="app", password=PASSWORD, connect_now=False)
    _assert_clean(pool)
    units = pool._units
    assert len(units) == 2 and all(isinstance(u, PoolUnit) for u in units)
    for unit in units:
        _assert_clean(unit)
        _assert_clean(unit.conn)
        _assert_clean(unit.address)
        if unit.conn.tls is not None:
            _assert_clean(unit.conn.tls)
    assert "'ssl_password': '***'" in repr(pool.addrs)
    assert pool.addrs[1]["ssl_password"] == SSL_PASSWORD  # the user's own configuration, intact


def test_addresses_and_tls_options_show_no_secret() -> None:
    (address,) = validate_addrs([TLS_ADDRESS])
    _assert_clean(address)
    _assert_clean(address.options)
    _assert_clean(address.as_dict())
    assert address.tls is not None
    _assert_clean(address.tls)
    _assert_clean(Address("h", 1, {"transport": "ssl", "ssl_password": SSL_PASSWORD}))
    _assert_clean(TLSOptions("k.pem", "c.pem", "ca.pem", None, SSL_PASSWORD, "pw.txt"))


#: Everything that refuses bad TLS or authentication options, fed the secrets.
BAD_OPTIONS: list[tuple[str, Callable[[], object]]] = [
    ("ssl_password not a str", lambda: TLSOptions(password=SSL_PASSWORD.encode())),  # type: ignore[arg-type]
    ("ssl_verify not a bool", lambda: TLSOptions(verify=SSL_PASSWORD)),  # type: ignore[arg-type]
    ("ssl_check_hostname not a bool", lambda: TLSOptions(check_hostname=PASSWORD)),  # type: ignore[arg-type]
    ("ssl_verify=False with a CA", lambda: TLSOptions(ca_file="ca.pem", password=SSL_PASSWORD, verify=False)),
    ("key without certificate", lambda: TLSOptions(key_file="k.pem", password=SSL_PASSWORD)),
    ("unreadable certificate", lambda: TLSOptions(cert_file="/nonexistent/c.pem", key_file="/nonexistent/k.pem",
                                                  password=SSL_PASSWORD).context()),
    ("unreadable password file", lambda: TLSOptions(cert_file="/nonexistent/c.pem",
                                                    password=SSL_PASSWORD,
                                                    password_file="/nonexistent/pw").context()),
    ("connection: bad transport", lambda: Connection("h", 1, user="u", password=PASSWORD, transport="tls",
                                                     ssl_password=SSL_PASSWORD)),
    ("connection: password without user", lambda: Connection("h", 1, password=PASSWORD)),
    ("connection: unknown auth_type", lambda: Connection("h", 1, user="u", password=PASSWORD,
                                                         auth_type="ldap")),
    ("connection: unreadable CA", lambda: Connection("h", 1, user="u", password=PASSWORD, transport="ssl",
                                                     ssl_ca_file="/nonexistent/ca.pem",
                                                     ssl_password=SSL_PASSWORD)),
    ("pap-sha256 without ssl", lambda: check_auth_transport("pap-sha256", "")),
    ("connection: pap-sha256 without ssl", lambda: Connection("h", 1, user="u", password=PASSWORD,
                                                              auth_type="pap-sha256")),
    ("connection: ssl_verify not a bool", lambda: Connection("h", 1, user="u", password=PASSWORD,
                                                             transport="ssl", ssl_password=SSL_PASSWORD,
                                                             ssl_verify="no")),  # type: ignore[arg-type]
    ("addrs: ssl_password not a str", lambda: validate_addrs([{**TLS_ADDRESS, "ssl_password": [SSL_PASSWORD]}])),
    ("addrs: ssl_password without ssl", lambda: validate_addrs([{"host": "h", "port": 1,
                                                                 "ssl_password": SSL_PASSWORD}])),
    ("addrs: misspelt key", lambda: validate_addrs([{"host": "h", "port": 1, "ssl_pasword": SSL_PASSWORD}])),
    ("addrs: entry not a dict", lambda: validate_addrs([("h", 1, SSL_PASSWORD)])),
    ("addrs: list not a list", lambda: validate_addrs(SSL_PASSWORD)),
    ("addrs: pap-sha256 without ssl", lambda: validate_addrs([{"host": "h", "port": 1, "auth_type": "pap-sha256",
                                                               "transport": ""}])),
    ("addrs: ssl_verify=False with a CA", lambda: validate_addrs([{**TLS_ADDRESS, "ssl_verify": False,
                                                                   "ssl_ca_file": "ca.pem"}])),
    ("pool: pap-sha256 without ssl", lambda: ConnectionPool(
        [{"host": "h", "port": 1, "auth_type": "pap-sha256"}], user="u", password=PASSWORD)),
    ("pool: bad ssl option", lambda: ConnectionPool(
        [{**TLS_ADDRESS, "ssl_verify": "yes"}], user="u", password=PASSWORD)),
]


@pytest.mark.parametrize("make", [m for _, m in BAD_OPTIONS], ids=[n for n, _ in BAD_OPTIONS])
def test_errors_for_bad_tls_and_auth_options_show_no_secret(
        make: Callable[[], object], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_tarantool")
    with pytest.raises(ConfigurationError) as info:
        make()
    texts = [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value)),
             repr(info.value.args), caplog.text]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, text
