"""Tests of the pure TLS parts (``trio_tarantool._tls``): options, context, errors.

Handshakes against real certificates are in ``tests/real/test_connection_tls.py``.
"""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trio_tarantool import ConfigurationError, Connection, NetworkError
from trio_tarantool._tls import (
    TLSOptions,
    check_auth_transport,
    check_transport,
    start_tls,
    tls_error,
)

SECRET = "s3cr3t-PW-tls-unit"


def test_fields_keep_the_reference_order_and_the_new_ones_are_keywords() -> None:
    names = [f.name for f in dataclasses.fields(TLSOptions) if f.name != "_"]
    assert names == ["key_file", "cert_file", "ca_file", "ciphers", "password", "password_file",
                     "verify", "check_hostname"]
    options = TLSOptions("k", "c", "ca", "ciph", "pw", "pf", verify=True, check_hostname=False)
    assert (options.key_file, options.cert_file, options.ca_file, options.ciphers,
            options.password, options.password_file) == ("k", "c", "ca", "ciph", "pw", "pf")
    assert options.verify is True and options.check_hostname is False
    positional: Any = TLSOptions
    with pytest.raises(TypeError):
        positional(None, None, None, None, None, None, False)


@pytest.fixture
def default_certs_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records every ``load_default_certs`` call (the system trust store)."""
    calls: list[Any] = []
    original = ssl.SSLContext.load_default_certs

    def spy(self: ssl.SSLContext, purpose: Any = ssl.Purpose.SERVER_AUTH) -> None:
        calls.append(purpose)
        original(self, purpose)

    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", spy)
    return calls


def test_default_verifies_the_chain_against_the_system_store_and_checks_the_host(
        default_certs_calls: list[Any]) -> None:
    ctx = TLSOptions().context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    assert default_certs_calls == [ssl.Purpose.SERVER_AUTH]
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_a_ca_file_replaces_the_system_store(default_certs_calls: list[Any], tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(ConfigurationError, match="cannot read") as info:
        TLSOptions(ca_file=str(missing)).context()
    assert str(missing) in str(info.value)
    assert default_certs_calls == []
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match=r"ssl_ca_file .*no usable CA certificate"):
        TLSOptions(ca_file=str(junk)).context()


def test_check_hostname_false_still_verifies_the_chain(default_certs_calls: list[Any]) -> None:
    ctx = TLSOptions(check_hostname=False).context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is False
    assert default_certs_calls == [ssl.Purpose.SERVER_AUTH]


def test_verify_false_verifies_nothing(default_certs_calls: list[Any]) -> None:
    ctx = TLSOptions(verify=False).context()
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.check_hostname is False
    assert default_certs_calls == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"verify": "no"}, "ssl_verify must be True or False, got str"),
        ({"verify": 0}, "ssl_verify must be True or False, got int"),
        ({"check_hostname": None}, "ssl_check_hostname must be True or False, got NoneType"),
        ({"verify": False, "ca_file": "ca.pem"},
         "ssl_ca_file 'ca.pem' is given but ssl_verify=False turns verification off"),
        ({"key_file": "k.pem"}, "ssl_key_file 'k.pem' is given without ssl_cert_file"),
        ({"ca_file": 5}, "ssl_ca_file must be a str, got int"),
        ({"password": b"s3cr3t-PW-bytes"}, "ssl_password must be a str, got bytes"),
    ],
)
def test_bad_options_are_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        TLSOptions(**kwargs)
    assert str(info.value).startswith(message), str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_repr_masks_the_password() -> None:
    options = TLSOptions("k.pem", "c.pem", None, None, SECRET, "pw.txt", check_hostname=False)
    text = repr(options)
    assert SECRET not in text and SECRET not in str(options)
    assert text == ("TLSOptions(key_file='k.pem', cert_file='c.pem', ca_file=None, ciphers=None, "
                    "password='***', password_file='pw.txt', verify=True, check_hostname=False)")
    assert "password=None" in repr(TLSOptions())


def test_an_unreadable_password_file_names_the_option_and_not_its_contents(tmp_path: Path) -> None:
    password_file = tmp_path / "pw.bin"
    password_file.write_bytes(b"\xff\xfe" + SECRET.encode())
    cert = tmp_path / "c.pem"
    cert.write_text("unused: the password file is read first\n")
    with pytest.raises(ConfigurationError, match=r"ssl_password_file .* is not UTF-8 text") as info:
        TLSOptions(cert_file=str(cert), password_file=str(password_file)).context()
    assert SECRET not in str(info.value)


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    exc.verify_code = code
    exc.verify_message = message
    return exc


def test_an_untrusted_chain_names_ssl_ca_file_and_ssl_verify() -> None:
    error = tls_error(_verify_error(18, "self-signed certificate"), "db.example:3301")
    assert isinstance(error, NetworkError)
    assert error.may_have_executed is False
    text = str(error)
    assert text.startswith("TLS handshake with db.example:3301 failed: the server's certificate is "
                           "not trusted (self-signed certificate)")
    assert "ssl_ca_file" in text and "ssl_verify=False" in text and "insecure" in text
    assert "ssl_check_hostname" not in text


@pytest.mark.parametrize(("code", "message"), [
    (62, "Hostname mismatch, certificate is not valid for 'db.example'."),
    (64, "IP address mismatch, certificate is not valid for '127.0.0.1'."),
])
def test_a_certificate_for_another_name_names_ssl_check_hostname(code: int, message: str) -> None:
    text = str(tls_error(_verify_error(code, message), "db.example:3301"))
    assert message in text
    assert "ssl_check_hostname=False" in text
    assert "ssl_verify=False" not in text


def test_other_handshake_failures_keep_openssl_s_reason() -> None:
    error = tls_error(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "h:1")
    assert str(error).startswith("TLS handshake with h:1 failed: ")
    assert "WRONG_VERSION_NUMBER" in str(error)
    assert error.may_have_executed is False


def test_pap_sha256_needs_ssl() -> None:
    message = "auth_type='pap-sha256' sends the password in clear: use it only with transport='ssl'"
    for transport in ("", None):
        with pytest.raises(ConfigurationError) as info:
            check_auth_transport("pap-sha256", transport)
        assert str(info.value) == message
    check_auth_transport("pap-sha256", "ssl")
    check_auth_transport("chap-sha1", "")
    check_auth_transport(None, "")


def test_a_connection_refuses_pap_sha256_without_ssl_before_connecting() -> None:
    with pytest.raises(ConfigurationError, match=r"^auth_type='pap-sha256' sends the password in clear"):
        Connection("127.0.0.1", 3301, user="u", password="p", auth_type="pap-sha256")
    conn = Connection("127.0.0.1", 3301, user="u", password="p", auth_type="pap-sha256",
                      transport="ssl", ssl_verify=False)
    assert conn.tls == TLSOptions(verify=False)


def test_check_transport() -> None:
    assert check_transport(None) == ""
    assert check_transport("") == ""
    assert check_transport("ssl") == "ssl"
    with pytest.raises(ConfigurationError, match=r"transport must be '' .* or 'ssl', got 'tls'"):
        check_transport("tls")


async def test_start_tls_over_a_unix_socket_needs_check_hostname_off() -> None:
    client, server = trio.testing.lockstep_stream_pair()
    with pytest.raises(ConfigurationError, match=r"unix socket .* ssl_check_hostname=False"):
        await start_tls(client, TLSOptions().context(), None, "/tmp/t.sock")
    with trio.fail_after(5):
        assert await server.receive_some() == b""  # the stream was closed


async def _answer_with(server: trio.abc.Stream, data: bytes) -> None:
    await server.receive_some()  # the ClientHello
    if data:
        await server.send_all(data)
    await server.aclose()


@pytest.mark.parametrize(("reply", "expected"), [
    (b"Tarantool 2.6.0 (Binary) plain text where TLS was expected\n" * 3,
     "TLS handshake with h:1 failed: [SSL"),
    (b"", "TLS handshake with h:1 failed: the server closed the connection"),
])
async def test_start_tls_turns_handshake_failures_into_network_errors(reply: bytes, expected: str) -> None:
    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_answer_with, server, reply)
            with pytest.raises(NetworkError) as info:
                await start_tls(client, TLSOptions(verify=False).context(), "h", "h:1")
    assert str(info.value).startswith(expected), str(info.value)
    assert info.value.may_have_executed is False
    assert isinstance(info.value.__cause__, ssl.SSLError)


async def test_start_tls_maps_a_transport_failure_without_ssl_cause() -> None:
    class Broken(trio.abc.Stream):
        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            raise trio.BrokenResourceError("peer reset")

        async def wait_send_all_might_not_block(self) -> None:
            pass

        async def receive_some(self, max_bytes: int | None = None) -> bytes:
            raise trio.BrokenResourceError("peer reset")

        async def aclose(self) -> None:
            pass

    with pytest.raises(NetworkError, match="TLS handshake with h:1 failed: the connection was lost"):
        await start_tls(Broken(), TLSOptions(verify=False).context(), "h", "h:1")
