"""TLS settings for ``transport='ssl'`` (Tarantool Enterprise's encrypted IPROTO).

The keys and their meaning follow the reference connector's address options:
a client certificate and key, a CA file to verify the server against, a cipher
list, and the key's password (given directly, or as a file of candidate
passwords, one per line).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from ._errors import ConfigurationError

TRANSPORTS = ("", "ssl")


@dataclass(frozen=True)
class TLSOptions:
    """What ``transport='ssl'`` needs; every file is read when connecting."""

    key_file: str | None = None
    cert_file: str | None = None
    ca_file: str | None = None
    ciphers: str | None = None
    password: str | None = None
    password_file: str | None = None

    def context(self) -> ssl.SSLContext:
        """A client SSLContext; a CA file turns server verification on.

        Unreadable files and bad keys raise :class:`ConfigurationError` naming
        the option, at once rather than at connect time.
        """
        try:
            return self._context()
        except OSError as exc:
            raise ConfigurationError(f"transport='ssl': cannot read {exc.filename!r}: {exc.strerror or exc}") from None

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ca_file:
            ctx.load_verify_locations(cafile=self.ca_file)
            ctx.check_hostname = False  # Tarantool certificates name instances, not hosts
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.ciphers:
            try:
                ctx.set_ciphers(self.ciphers)
            except ssl.SSLError as exc:
                raise ConfigurationError(f"ssl_ciphers {self.ciphers!r}: {exc}") from None
        if self.cert_file:
            self._load_cert_chain(ctx)
        return ctx

    def _load_cert_chain(self, ctx: ssl.SSLContext) -> None:
        assert self.cert_file is not None
        candidates: list[str | None] = []
        if self.password is not None:
            candidates.append(self.password)
        if self.password_file:
            with open(self.password_file, encoding="utf-8") as f:
                candidates.extend(line.rstrip("\r\n") for line in f if line.strip())
        if not candidates:
            candidates.append(None)
        last: ssl.SSLError | None = None
        for password in candidates:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file, password)
                return
            except ssl.SSLError as exc:
                last = exc
        raise ConfigurationError(
            f"ssl_cert_file {self.cert_file!r} / ssl_key_file {self.key_file!r}: cannot load the "
            f"certificate and key with the given password(s): {last}"
        )


def check_transport(transport: str | None) -> str:
    """Normalise ``transport``: '' or None for plain TCP/unix, 'ssl' for TLS."""
    value = transport or ""
    if value not in TRANSPORTS:
        raise ConfigurationError(f"transport must be '' (plain) or 'ssl', got {transport!r}")
    return value
