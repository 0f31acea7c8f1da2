"""One record of a connection's options, and the one place that validates them.

:func:`connect`, :class:`~trio_tarantool.Connection`, :func:`open_pool`,
:class:`~trio_tarantool.ConnectionPool` and the pool's per-address options all
end up in :func:`connection_options`, so each option is checked once, the same
way everywhere, and every error names the option (and, for a pool address,
the entry: ``addrs[2]: ...``) before anything is sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConfigurationError
from ._tls import TLSOptions, check_auth_transport, check_transport

__all__ = ["AUTH_TYPES", "ConnectionOptions", "connection_options"]

#: Authentication methods the connection implements.
AUTH_TYPES = ("chap-sha1", "pap-sha256")


@dataclass(frozen=True)
class ConnectionOptions:
    """Everything one connection needs to know, validated (see :func:`connection_options`)."""

    host: str | None
    port: int | str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    socket_timeout: float | None = None
    connection_timeout: float | None = None
    reconnect_max_attempts: int = 10
    reconnect_delay: float = 0.1
    #: "utf-8", or None for raw bytes.
    encoding: str | None = "utf-8"
    call_16: bool = False
    fetch_schema: bool = True
    auth_type: str | None = None
    max_in_flight: int = 4096
    #: "" (plain TCP or unix socket) or "ssl".
    transport: str = ""
    #: The TLS settings when ``transport == "ssl"``.
    tls: TLSOptions | None = None

    @property
    def where(self) -> str:
        """``host:port``, or the unix socket path."""
        return str(self.port) if self.host is None else f"{self.host}:{self.port}"


def _timeout(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds or None, got {value!r}")
    return float(value)


def _optional_str(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string or None, got {type(value).__name__}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")
    return value


def connection_options(
    host: Any,
    port: Any,
    *,
    where: str = "",
    user: Any = None,
    password: Any = None,
    socket_timeout: Any = None,
    connection_timeout: Any = None,
    reconnect_max_attempts: Any = 10,
    reconnect_delay: Any = 0.1,
    encoding: Any = "utf-8",
    call_16: Any = False,
    fetch_schema: Any = True,
    auth_type: Any = None,
    max_in_flight: Any = 4096,
    transport: Any = "",
    ssl_key_file: Any = None,
    ssl_cert_file: Any = None,
    ssl_ca_file: Any = None,
    ssl_ciphers: Any = None,
    ssl_password: Any = None,
    ssl_password_file: Any = None,
    ssl_verify: Any = True,
    ssl_check_hostname: Any = True,
) -> ConnectionOptions:
    """Check every option and return them as one record.

    Raises :class:`ConfigurationError` naming the first bad option, prefixed
    with ``where`` (say ``"addrs[2]"``) when given. Reading TLS files and
    keys happens here too, so a wrong path fails at once, not at connect time.
    """
    try:
        return _validate(host, port, user, password, socket_timeout, connection_timeout,
                         reconnect_max_attempts, reconnect_delay, encoding, call_16, fetch_schema,
                         auth_type, max_in_flight, transport, ssl_key_file, ssl_cert_file,
                         ssl_ca_file, ssl_ciphers, ssl_password, ssl_password_file, ssl_verify,
                         ssl_check_hostname)
    except ConfigurationError as exc:
        if not where:
            raise
        raise ConfigurationError(f"{where}: {exc}") from None


def _validate(host: Any, port: Any, user: Any, password: Any, socket_timeout: Any,
              connection_timeout: Any, reconnect_max_attempts: Any, reconnect_delay: Any,
              encoding: Any, call_16: Any, fetch_schema: Any, auth_type: Any, max_in_flight: Any,
              transport: Any, ssl_key_file: Any, ssl_cert_file: Any, ssl_ca_file: Any,
              ssl_ciphers: Any, ssl_password: Any, ssl_password_file: Any, ssl_verify: Any,
              ssl_check_hostname: Any) -> ConnectionOptions:
    if host is None:
        if not isinstance(port, str) or not port:
            raise ConfigurationError(f"with host=None, port must be a unix socket path, got {port!r}")
    else:
        if not isinstance(host, str) or not host:
            raise ConfigurationError(f"host must be a non-empty string or None, got {host!r}")
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigurationError(f"port {port!r} is not a TCP port in 1..65535")
    user = _optional_str("user", user)
    if password is not None:
        if not isinstance(password, str):
            raise ConfigurationError(f"password must be a string or None, got {type(password).__name__}")
        if user is None:
            raise ConfigurationError("a password was given without a user")
    if encoding not in ("utf-8", "utf8", None):
        raise ConfigurationError(f"encoding must be 'utf-8' or None (bytes), got {encoding!r}")
    if auth_type is not None and auth_type not in AUTH_TYPES:
        raise ConfigurationError(f"auth_type must be one of {AUTH_TYPES}, got {auth_type!r}")
    if isinstance(reconnect_max_attempts, bool) or not isinstance(reconnect_max_attempts, int) \
            or reconnect_max_attempts < 0:
        raise ConfigurationError(f"reconnect_max_attempts must be an int >= 0, got {reconnect_max_attempts!r}")
    if isinstance(reconnect_delay, bool) or not isinstance(reconnect_delay, int | float) \
            or math.isnan(reconnect_delay) or reconnect_delay < 0 or reconnect_delay == math.inf:
        raise ConfigurationError(f"reconnect_delay must be a finite number >= 0, got {reconnect_delay!r}")
    if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise ConfigurationError(f"max_in_flight must be an int >= 1, got {max_in_flight!r}")
    checked_transport = check_transport(transport)
    check_auth_transport(auth_type, checked_transport)
    if checked_transport != "ssl":
        given = [name for name, value in (
            ("ssl_key_file", ssl_key_file), ("ssl_cert_file", ssl_cert_file),
            ("ssl_ca_file", ssl_ca_file), ("ssl_ciphers", ssl_ciphers),
            ("ssl_password", ssl_password), ("ssl_password_file", ssl_password_file),
        ) if value is not None]
        given += [name for name, value in (("ssl_verify", ssl_verify),
                                           ("ssl_check_hostname", ssl_check_hostname)) if value is not True]
        if given:
            raise ConfigurationError(f"{', '.join(given)} given but transport is not 'ssl'")
    tls = None
    if checked_transport == "ssl":
        for name, value in (("ssl_key_file", ssl_key_file), ("ssl_cert_file", ssl_cert_file),
                            ("ssl_ca_file", ssl_ca_file), ("ssl_ciphers", ssl_ciphers),
                            ("ssl_password", ssl_password), ("ssl_password_file", ssl_password_file)):
            _optional_str(name, value)
        tls = TLSOptions(ssl_key_file, ssl_cert_file, ssl_ca_file, ssl_ciphers, ssl_password,
                         ssl_password_file, verify=_flag("ssl_verify", ssl_verify),
                         check_hostname=_flag("ssl_check_hostname", ssl_check_hostname))
        if host is None and tls.verify and tls.check_hostname:
            raise ConfigurationError(
                "transport='ssl' over a unix socket has no host name to check against the "
                "certificate: set ssl_check_hostname=False"
            )
    return ConnectionOptions(
        host=host, port=port, user=user, password=password,
        socket_timeout=_timeout("socket_timeout", socket_timeout),
        connection_timeout=_timeout("connection_timeout", connection_timeout),
        reconnect_max_attempts=reconnect_max_attempts, reconnect_delay=float(reconnect_delay),
        encoding=None if encoding is None else "utf-8", call_16=_flag("call_16", call_16),
        fetch_schema=_flag("fetch_schema", fetch_schema), auth_type=auth_type,
        max_in_flight=max_in_flight, transport=checked_transport, tls=tls,
    )
