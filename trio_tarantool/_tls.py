"""TLS settings for ``transport='ssl'`` (Tarantool Enterprise's encrypted IPROTO).

The keys and their meaning follow the reference connector's address options:
a client certificate and key, a CA file to verify the server against, a cipher
list, and the key's password (given directly, or as a file of candidate
passwords, one per line).

Secure by default
-----------------
The password of the Tarantool user travels inside the TLS session, so a TLS
session with an unverified server hands it to whoever answers. Therefore the
server is always verified unless the caller says otherwise:

* the certificate chain against ``ssl_ca_file`` when given, else against the
  system trust store (``SSLContext.load_default_certs``);
* the host name the connection was opened with against the certificate (a DNS
  name against its DNS names, an IP literal against its IP address SANs).

Two explicit opt-outs exist, each for a known set-up: ``ssl_check_hostname=False``
verifies the chain but not the name (Tarantool certificates often name the
instance, not the host), and ``ssl_verify=False`` verifies nothing (self-signed
test set-ups; anyone on the network path can then impersonate the server).
A failed verification raises :class:`NetworkError` whose message names the
option that would change the outcome (:func:`tls_error`).

Secrets
-------
``password`` (the key's password) never appears in a repr, str or error
message: :class:`TLSOptions` masks it, and the contents of ``password_file``
are read only to try them on the key, never echoed.

``pap-sha256`` authentication sends the user's password itself (not a
scramble), so it is refused unless the transport is TLS
(:func:`check_auth_transport`).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass

import trio

from ._errors import ConfigurationError, NetworkError

__all__ = [
    "MASK",
    "TRANSPORTS",
    "TLSOptions",
    "check_auth_transport",
    "check_transport",
    "start_tls",
    "tls_error",
]

TRANSPORTS = ("", "ssl")

#: What a repr shows in place of a secret.
MASK = "'***'"

# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH: the
# chain is trusted, but the certificate does not name the host connected to.
_NAME_MISMATCH_CODES = frozenset({62, 64})


@dataclass(frozen=True)
class TLSOptions:
    """What ``transport='ssl'`` needs; every file is read when the context is built.

    The six positional fields keep the reference connector's order
    (``ssl_key_file``, ``ssl_cert_file``, ``ssl_ca_file``, ``ssl_ciphers``,
    ``ssl_password``, ``ssl_password_file``).

    Attributes:
        verify: Verify the server's certificate chain (against ``ca_file``, or
            the system trust store without one). False verifies nothing, which
            lets anyone on the path impersonate the server: for self-signed test
            set-ups only. It cannot be combined with ``ca_file``.
        check_hostname: Check that the certificate names the host connected to
            (IP addresses match IP SANs). False still verifies the chain; for
            certificates that name Tarantool instances rather than hosts.
            Meaningless (and ignored) when ``verify`` is False.
    """

    key_file: str | None = None
    cert_file: str | None = None
    ca_file: str | None = None
    ciphers: str | None = None
    password: str | None = None
    password_file: str | None = None
    _: KW_ONLY
    verify: bool = True
    check_hostname: bool = True

    def __post_init__(self) -> None:
        for option, value in (("ssl_verify", self.verify), ("ssl_check_hostname", self.check_hostname)):
            if not isinstance(value, bool):
                raise ConfigurationError(f"{option} must be True or False, got {type(value).__name__}")
        if not self.verify and self.ca_file:
            raise ConfigurationError(
                f"ssl_ca_file {self.ca_file!r} is given but ssl_verify=False turns verification "
                f"off: drop one of them"
            )
        for option, text in (("ssl_key_file", self.key_file), ("ssl_cert_file", self.cert_file),
                             ("ssl_ca_file", self.ca_file), ("ssl_ciphers", self.ciphers),
                             ("ssl_password_file", self.password_file)):
            if text is not None and not isinstance(text, str):
                raise ConfigurationError(f"{option} must be a str, got {type(text).__name__}")
        if self.password is not None and not isinstance(self.password, str):
            # Name the type only: the value is a secret.
            raise ConfigurationError(f"ssl_password must be a str, got {type(self.password).__name__}")
        if self.key_file and not self.cert_file:
            raise ConfigurationError(
                f"ssl_key_file {self.key_file!r} is given without ssl_cert_file: a client key "
                f"needs its certificate"
            )

    def __repr__(self) -> str:
        """All fields, with ``password`` masked (it is a secret)."""
        fields = ", ".join(
            f"{name}={MASK if name == 'password' and value is not None else repr(value)}"
            for name, value in (
                ("key_file", self.key_file), ("cert_file", self.cert_file),
                ("ca_file", self.ca_file), ("ciphers", self.ciphers),
                ("password", self.password), ("password_file", self.password_file),
                ("verify", self.verify), ("check_hostname", self.check_hostname),
            )
        )
        return f"TLSOptions({fields})"

    def context(self) -> ssl.SSLContext:
        """A client SSLContext that verifies the server as these options say.

        Unreadable files and bad keys raise :class:`ConfigurationError` naming
        the option, at once rather than at connect time.
        """
        return self._context()

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self.verify:
            ctx.check_hostname = False  # must be off before verify_mode may be CERT_NONE
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.check_hostname = self.check_hostname
            if self.ca_file:
                try:
                    with _reading("ssl_ca_file", self.ca_file):
                        ctx.load_verify_locations(cafile=self.ca_file)
                except ssl.SSLError as exc:
                    raise ConfigurationError(
                        f"ssl_ca_file {self.ca_file!r} holds no usable CA certificate: {exc}"
                    ) from None
            else:
                ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
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
            try:
                with _reading("ssl_password_file", self.password_file), \
                        open(self.password_file, encoding="utf-8") as f:
                    candidates.extend(line.rstrip("\r\n") for line in f if line.strip())
            except UnicodeDecodeError:
                # The decoder's message quotes no content, but say nothing of it anyway.
                raise ConfigurationError(
                    f"ssl_password_file {self.password_file!r} is not UTF-8 text"
                ) from None
        if not candidates:
            candidates.append(None)
        last: Exception | None = None
        for password in candidates:
            try:
                with _reading("ssl_cert_file / ssl_key_file", f"{self.cert_file}, {self.key_file}"):
                    ctx.load_cert_chain(self.cert_file, self.key_file, password)
                return
            except (ssl.SSLError, ValueError) as exc:  # ValueError: a password over 1 KiB
                last = exc
        # ``last`` is OpenSSL's reason (e.g. "bad decrypt"); it never quotes the password.
        raise ConfigurationError(
            f"ssl_cert_file {self.cert_file!r} / ssl_key_file {self.key_file!r}: cannot load the "
            f"certificate and key with the given password(s): {last}"
        )


@contextmanager
def _reading(option: str, path: str) -> Iterator[None]:
    """Turn an OSError while reading ``path`` into a ConfigurationError naming ``option``.

    OpenSSL's loaders raise OSError without a file name, so the option and the
    path are named here.
    """
    try:
        yield
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            raise
        raise ConfigurationError(
            f"transport='ssl': cannot read {option} {path!r}: {exc.strerror or exc}"
        ) from None


def check_transport(transport: str | None) -> str:
    """Normalise ``transport``: '' or None for plain TCP/unix, 'ssl' for TLS."""
    value = transport or ""
    if value not in TRANSPORTS:
        raise ConfigurationError(f"transport must be '' (plain) or 'ssl', got {transport!r}")
    return value


def check_auth_transport(auth_type: str | None, transport: str | None) -> None:
    """Refuse ``pap-sha256`` without TLS: it sends the password itself, not a scramble.

    A pure check, run when options are validated, before anything is sent
    (the reference connector refuses the same combination).

    Raises:
        ConfigurationError: ``auth_type`` is ``'pap-sha256'`` and ``transport``
            is not ``'ssl'``.
    """
    if auth_type == "pap-sha256" and transport != "ssl":
        raise ConfigurationError(
            "auth_type='pap-sha256' sends the password in clear: use it only with transport='ssl'"
        )


def tls_error(exc: ssl.SSLError | ssl.CertificateError, where: str) -> NetworkError:
    """The :class:`NetworkError` for a failed TLS handshake with ``where`` (``host:port``).

    A verification failure names the option that decides it: an untrusted
    chain points at ``ssl_ca_file`` (and, as the insecure way out,
    ``ssl_verify=False``), a certificate that does not name the host at
    ``ssl_check_hostname=False``. The handshake precedes authentication, so
    nothing was sent: ``may_have_executed`` is False.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        # OpenSSL fills these in; an instance built by hand may lack them.
        reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
        if getattr(exc, "verify_code", None) in _NAME_MISMATCH_CODES:
            message = (
                f"TLS handshake with {where} failed: the server's certificate is trusted but does "
                f"not name this host ({reason}); connect by a name the certificate carries, or set "
                f"ssl_check_hostname=False to verify the chain only"
            )
        else:
            message = (
                f"TLS handshake with {where} failed: the server's certificate is not trusted "
                f"({reason}); give the CA that signed it as ssl_ca_file, or set ssl_verify=False "
                f"to skip verification (insecure: anyone on the path could pose as the server "
                f"and receive the password)"
            )
    elif isinstance(exc, ssl.SSLEOFError):
        message = (
            f"TLS handshake with {where} failed: the server closed the connection (does it "
            f"speak TLS, and does it require a client certificate: ssl_cert_file?): {exc}"
        )
    else:
        message = f"TLS handshake with {where} failed: {exc}"
    return NetworkError(message, may_have_executed=False)


async def start_tls(stream: trio.abc.Stream, context: ssl.SSLContext, host: str | None,
                    where: str) -> trio.SSLStream[trio.abc.Stream]:
    """Wrap ``stream`` in TLS and complete the handshake, verifying the server.

    ``host`` is the name the connection was opened with; it is what the
    certificate must name when ``context.check_hostname`` is set (and is sent as
    SNI). A failed handshake closes ``stream`` and raises the error of
    :func:`tls_error`; a unix socket (``host`` None) has no name to check, so
    it needs ``ssl_check_hostname=False`` (or ``ssl_verify=False``).

    Raises:
        ConfigurationError: ``host`` is None and the context checks host names.
        NetworkError: the handshake failed (message from :func:`tls_error`), or
            the peer went away during it.
    """
    try:
        if host is None and context.check_hostname:
            raise ConfigurationError(
                f"transport='ssl' to {where}: a unix socket has no host name to check against "
                f"the certificate; set ssl_check_hostname=False"
            )
        tls = trio.SSLStream(stream, context, server_hostname=host)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                raise tls_error(cause, where) from cause
            raise NetworkError(f"TLS handshake with {where} failed: the connection was lost "
                               f"({cause or exc})", may_have_executed=False) from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return tls
