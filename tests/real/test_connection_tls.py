"""transport='ssl' through a TLS-terminating proxy in front of a real Tarantool.

Tarantool Community has no TLS, so the test terminates TLS itself (trio's
SSLStream on loopback) and forwards the plain bytes to the real server: the
client's TLS path, certificates and errors are real, the IPROTO behind is real.

Certificates (made with the openssl command line, once per module):

* ``ca``: a test CA; ``ip`` (IP SAN 127.0.0.1) and ``other`` (DNS SAN
  other.example) are server certificates it signed;
* ``selfsigned``: a self-signed server certificate for 127.0.0.1, known to no
  trust store;
* ``other_ca``: an unrelated CA;
* ``client``: a self-signed client certificate whose key is encrypted with
  :data:`KEY_SECRET` (the mTLS proxy trusts exactly it).

The verification tests first go through ``TLSOptions.context()`` and
``start_tls`` (the pieces the connection uses), then through ``connect()``.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.real._servers import TarantoolInstance
from trio_tarantool import (
    ConfigurationError,
    Connection,
    DatabaseError,
    Error,
    Mode,
    NetworkError,
    connect,
    open_pool,
)
from trio_tarantool._tls import TLSOptions, start_tls

#: The client key's password: it must never show in a repr, error or log.
KEY_SECRET = "s3cr3t-PW-client-key"
#: A (wrong) Tarantool user password: the same goes for it.
USER_SECRET = "s3cr3t-PW-user"

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}.key", d / f"{name}.crt"
    _openssl("req", "-x509", *_EC, "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(cert),
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, cert


def _make_leaf(d: Path, name: str, san: str, ca: tuple[Path, Path], serial: int) -> tuple[Path, Path]:
    key, csr, cert, ext = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt", d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _openssl("req", "-new", *_EC, "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]),
             "-set_serial", str(serial), "-days", "2", "-out", str(cert), "-extfile", str(ext))
    return key, cert


def _make_cert(d: Path, name: str, *, san: str = "IP:127.0.0.1",
               password: str | None = None) -> tuple[Path, Path]:
    """A self-signed certificate (its own trust anchor) naming ``san``; tests/real/test_pool uses it."""
    key, cert = d / f"{name}.key", d / f"{name}.crt"
    _openssl("req", "-x509", *_EC, "-days", "2", "-subj", f"/CN={name}",
             "-addext", f"subjectAltName={san}", "-keyout", str(key), "-out", str(cert),
             *(["-passout", f"pass:{password}"] if password else ["-nodes"]))
    return key, cert


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("certs")
    ca = _make_ca(d, "ca")
    _, other_ca = _make_ca(d, "other_ca")
    ip_key, ip_cert = _make_leaf(d, "ip", "IP:127.0.0.1", ca, 1)
    other_key, other_cert = _make_leaf(d, "other", "DNS:other.example", ca, 2)
    self_key, self_cert = _make_cert(d, "selfsigned")
    client_key, client_cert = _make_cert(d, "client", san="DNS:client", password=KEY_SECRET)
    (d / "passwords").write_text(f"wrong\n{KEY_SECRET}\n")
    return {"ca": ca[1], "other_ca": other_ca, "ip_key": ip_key, "ip_cert": ip_cert,
            "other_key": other_key, "other_cert": other_cert, "selfsigned_key": self_key,
            "selfsigned_cert": self_cert, "client_key": client_key, "client_cert": client_cert,
            "passwords": d / "passwords"}


async def _pipe(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
    try:
        while data := await src.receive_some(65536):
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(dst)


async def _tls_proxy(certs: dict[str, Path], backend: TarantoolInstance, *, require_client_cert: bool,
                     task_status: trio.TaskStatus[int], server: str = "server") -> None:
    """Serve TLS with ``certs[f"{server}_cert"]``/``_key``, forwarding to ``backend`` (port to task_status).

    tests/real/test_pool uses it too.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs[f"{server}_cert"], certs[f"{server}_key"])
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=certs["client_cert"])

    async def handle(client: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await client.do_handshake()
        except trio.BrokenResourceError:
            return  # the client refused our certificate (or we refused its)
        upstream = await trio.open_tcp_stream(backend.host, backend.port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pipe, client, upstream)
            nursery.start_soon(_pipe, upstream, client)

    tcp = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    listener = trio.SSLListener(tcp, ctx)
    task_status.started(tcp.socket.getsockname()[1])
    await trio.serve_listeners(handle, [listener])


@asynccontextmanager
async def tls_proxy(certs: dict[str, Path], backend: TarantoolInstance, server: str = "ip", *,
                    require_client_cert: bool = False) -> AsyncIterator[int]:
    """A TLS proxy presenting the ``server`` certificate; yields its port, stops on exit."""
    async with trio.open_nursery() as nursery:
        port: int = await nursery.start(lambda task_status: _tls_proxy(
            certs, backend, require_client_cert=require_client_cert, task_status=task_status,
            server=server))
        yield port
        nursery.cancel_scope.cancel()


@pytest.fixture
async def proxy(certs: dict[str, Path], tarantool: TarantoolInstance) -> AsyncIterator[int]:
    async with tls_proxy(certs, tarantool) as port:
        yield port


@pytest.fixture
async def mtls_proxy(certs: dict[str, Path], tarantool: TarantoolInstance) -> AsyncIterator[int]:
    async with tls_proxy(certs, tarantool, require_client_cert=True) as port:
        yield port


@pytest.fixture
def no_system_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """The system trust store as the machine has it (no SSL_CERT_* override)."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


async def _greeting_through(port: int, options: TLSOptions, host: str = "127.0.0.1") -> bytes:
    """Open TLS to the proxy as the connection does and read Tarantool's greeting."""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        tls = await start_tls(stream, options.context(), host, f"{host}:{port}")
        async with tls:
            greeting = b""
            while len(greeting) < 128:
                chunk = await tls.receive_some(128 - len(greeting))
                assert chunk, "the proxy closed the connection"
                greeting += chunk
            return greeting


async def _refusal(port: int, options: TLSOptions, host: str = "127.0.0.1") -> NetworkError:
    with pytest.raises(NetworkError) as info:
        await _greeting_through(port, options, host)
    assert info.value.may_have_executed is False
    return info.value


# -- verification through TLSOptions.context() + start_tls -----------------------------------

async def test_default_refuses_a_server_no_trust_store_knows(
        certs: dict[str, Path], tarantool: TarantoolInstance, no_system_override: None) -> None:
    async with tls_proxy(certs, tarantool, "selfsigned") as port:
        error = await _refusal(port, TLSOptions())
    text = str(error)
    assert "is not trusted" in text and "self-signed certificate" in text
    assert "ssl_ca_file" in text and "ssl_verify=False" in text


async def test_default_refuses_a_server_signed_by_an_unknown_ca(
        proxy: int, no_system_override: None) -> None:
    error = await _refusal(proxy, TLSOptions())
    assert "is not trusted" in str(error) and "ssl_ca_file" in str(error)


async def test_default_trusts_the_system_store(
        proxy: int, certs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenSSL's default verify paths honour SSL_CERT_FILE: make our CA "the system's".
    monkeypatch.setenv("SSL_CERT_FILE", str(certs["ca"]))
    greeting = await _greeting_through(proxy, TLSOptions())
    assert greeting.startswith(b"Tarantool ")


async def test_the_right_ca_and_an_ip_san_pass_with_the_host_name_checked(
        proxy: int, certs: dict[str, Path]) -> None:
    options = TLSOptions(ca_file=str(certs["ca"]))
    assert options.check_hostname is True
    assert (await _greeting_through(proxy, options)).startswith(b"Tarantool ")
    # The same certificate does not name "localhost": the check is real.
    error = await _refusal(proxy, options, host="localhost")
    assert "ssl_check_hostname=False" in str(error)


async def test_a_certificate_for_another_name_needs_check_hostname_off(
        certs: dict[str, Path], tarantool: TarantoolInstance) -> None:
    async with tls_proxy(certs, tarantool, "other") as port:
        error = await _refusal(port, TLSOptions(ca_file=str(certs["ca"])))
        assert "does not name this host" in str(error)
        assert "ssl_check_hostname=False" in str(error)
        assert "ssl_verify=False" not in str(error)
        chain_only = TLSOptions(ca_file=str(certs["ca"]), check_hostname=False)
        assert (await _greeting_through(port, chain_only)).startswith(b"Tarantool ")
        # Turning the name check off still verifies the chain.
        error = await _refusal(port, TLSOptions(ca_file=str(certs["other_ca"]), check_hostname=False))
        assert "is not trusted" in str(error)


async def test_verify_false_connects_to_a_self_signed_server(
        certs: dict[str, Path], tarantool: TarantoolInstance, no_system_override: None) -> None:
    async with tls_proxy(certs, tarantool, "selfsigned") as port:
        greeting = await _greeting_through(port, TLSOptions(verify=False))
    assert greeting.startswith(b"Tarantool ")


# -- through connect() -------------------------------------------------------------------------

async def test_tls_with_server_verification(proxy: int, certs: dict[str, Path], tarantool: TarantoolInstance) -> None:
    with trio.fail_after(10):
        async with connect("127.0.0.1", proxy, user=tarantool.user, password=tarantool.password,
                           transport="ssl", ssl_ca_file=str(certs["ca"])) as conn:
            assert conn.tls is not None and conn.tls.verify and conn.tls.check_hostname
            assert (await conn.eval("return 40 + 2")).data == [42]
            assert isinstance(await conn.ping(), float)


async def test_tls_rejects_a_server_not_signed_by_the_ca(proxy: int, certs: dict[str, Path]) -> None:
    with trio.fail_after(10), pytest.raises(NetworkError, match="is not trusted") as exc:
        async with connect("127.0.0.1", proxy, transport="ssl", ssl_ca_file=str(certs["other_ca"])):
            pass
    assert exc.value.may_have_executed is False
    assert "ssl_ca_file" in str(exc.value)


async def test_connect_by_default_refuses_a_self_signed_server(
        certs: dict[str, Path], tarantool: TarantoolInstance, no_system_override: None) -> None:
    async with tls_proxy(certs, tarantool, "selfsigned") as port:
        with trio.fail_after(10), pytest.raises(NetworkError) as exc:
            async with connect("127.0.0.1", port, user=tarantool.user, password=tarantool.password,
                               transport="ssl"):
                pass
    text = str(exc.value)
    assert text.startswith(f"TLS handshake with 127.0.0.1:{port} failed: the server's certificate is not trusted")
    assert "ssl_ca_file" in text and "ssl_verify=False" in text
    assert exc.value.may_have_executed is False
    assert not isinstance(exc.value.__cause__, trio.BrokenResourceError)


async def test_connect_with_ssl_verify_false_accepts_a_self_signed_server(
        certs: dict[str, Path], tarantool: TarantoolInstance, no_system_override: None) -> None:
    async with tls_proxy(certs, tarantool, "selfsigned") as port:
        with trio.fail_after(10):
            async with connect("127.0.0.1", port, user=tarantool.user, password=tarantool.password,
                               transport="ssl", ssl_verify=False) as conn:
                assert (await conn.eval("return 'unverified'")).data == ["unverified"]


async def test_connect_checks_the_host_name_unless_told_not_to(
        certs: dict[str, Path], tarantool: TarantoolInstance) -> None:
    async with tls_proxy(certs, tarantool, "other") as port:
        with trio.fail_after(10), pytest.raises(NetworkError) as exc:
            async with connect("127.0.0.1", port, user=tarantool.user, password=tarantool.password,
                               transport="ssl", ssl_ca_file=str(certs["ca"])):
                pass
        assert "does not name this host" in str(exc.value)
        assert "ssl_check_hostname=False" in str(exc.value)
        with trio.fail_after(10):
            async with connect("127.0.0.1", port, user=tarantool.user, password=tarantool.password,
                               transport="ssl", ssl_ca_file=str(certs["ca"]),
                               ssl_check_hostname=False) as conn:
                assert (await conn.eval("return 'chain only'")).data == ["chain only"]


async def test_tls_client_certificate_with_password_file(
        mtls_proxy: int, certs: dict[str, Path], tarantool: TarantoolInstance) -> None:
    with trio.fail_after(10):
        async with connect("127.0.0.1", mtls_proxy, user=tarantool.user, password=tarantool.password,
                           transport="ssl", ssl_ca_file=str(certs["ca"]),
                           ssl_cert_file=str(certs["client_cert"]),
                           ssl_key_file=str(certs["client_key"]),
                           ssl_password_file=str(certs["passwords"])) as conn:
            assert (await conn.eval("return 'mtls'")).data == ["mtls"]


async def test_tls_server_requiring_a_client_certificate_refuses_without(
        mtls_proxy: int, certs: dict[str, Path]) -> None:
    with trio.fail_after(10), pytest.raises(NetworkError):
        async with connect("127.0.0.1", mtls_proxy, transport="ssl", ssl_ca_file=str(certs["ca"])) as conn:
            await conn.ping()


def test_tls_bad_options_are_configuration_errors(certs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="transport must be"):
        Connection("127.0.0.1", 1, transport="tls")
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigurationError, match="cannot read ssl_ca_file") as info:
        Connection("127.0.0.1", 1, transport="ssl", ssl_ca_file=str(missing))
    assert str(missing) in str(info.value)
    with pytest.raises(ConfigurationError, match="password") as info:
        Connection("127.0.0.1", 1, transport="ssl", ssl_cert_file=str(certs["client_cert"]),
                   ssl_key_file=str(certs["client_key"]), ssl_password="wrong")
    assert "wrong" not in str(info.value)
    with pytest.raises(ConfigurationError, match="ssl_ciphers"):
        Connection("127.0.0.1", 1, transport="ssl", ssl_ciphers="NO-SUCH-CIPHER")


# -- no secret in errors or logs ---------------------------------------------------------------

def _assert_no_secret(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    rendered = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    rendered += [record.getMessage() for record in caplog.records]
    rendered += [caplog.text]
    for text in rendered:
        assert KEY_SECRET not in text and USER_SECRET not in text, text


async def test_a_failed_authentication_reveals_no_password(
        mtls_proxy: int, certs: dict[str, Path], tarantool: TarantoolInstance,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_tarantool")
    with trio.fail_after(10), pytest.raises(DatabaseError) as info:
        async with connect("127.0.0.1", mtls_proxy, user=tarantool.user, password=USER_SECRET,
                           transport="ssl", ssl_ca_file=str(certs["ca"]),
                           ssl_cert_file=str(certs["client_cert"]),
                           ssl_key_file=str(certs["client_key"]), ssl_password=KEY_SECRET) as conn:
            await conn.ping()
    assert "password" in str(info.value).lower()  # the server's "Incorrect password ..."
    _assert_no_secret(info.value, caplog)


async def test_a_failed_verification_reveals_no_password(
        mtls_proxy: int, certs: dict[str, Path], tarantool: TarantoolInstance,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_tarantool")
    with trio.fail_after(10), pytest.raises(NetworkError) as info:
        async with connect("127.0.0.1", mtls_proxy, user=tarantool.user, password=USER_SECRET,
                           transport="ssl", ssl_ca_file=str(certs["other_ca"]),
                           ssl_cert_file=str(certs["client_cert"]),
                           ssl_key_file=str(certs["client_key"]), ssl_password=KEY_SECRET) as conn:
            await conn.ping()
    _assert_no_secret(info.value, caplog)


def test_a_wrong_key_password_reveals_none(certs: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_tarantool")
    wrong = "s3cr3t-PW-wrong-key-password"
    with pytest.raises(ConfigurationError) as info:
        Connection("127.0.0.1", 1, transport="ssl", ssl_cert_file=str(certs["client_cert"]),
                   ssl_key_file=str(certs["client_key"]), ssl_password=wrong)
    text = str(info.value) + "".join(traceback.format_exception(info.value)) + caplog.text
    assert wrong not in text


#: Attributes that hold a credential as the user gave it, on purpose (kept to
#: re-authenticate); rendering them is the caller's own doing.
_CREDENTIALS = {(Connection, "password")}


def _walk(obj: Any) -> list[str]:
    """repr/str of ``obj`` and the repr of each of its attributes but the credentials."""
    return [repr(obj), str(obj)] + [repr(v) for k, v in vars(obj).items()
                                    if (type(obj), k) not in _CREDENTIALS]


async def test_a_connection_to_a_tls_server_shows_no_secret(
        mtls_proxy: int, certs: dict[str, Path], tarantool: TarantoolInstance) -> None:
    with trio.fail_after(10):
        async with connect("127.0.0.1", mtls_proxy, user=tarantool.user, password=tarantool.password,
                           transport="ssl", ssl_ca_file=str(certs["ca"]),
                           ssl_cert_file=str(certs["client_cert"]),
                           ssl_key_file=str(certs["client_key"]), ssl_password=KEY_SECRET) as conn:
            await conn.ping()
            for text in _walk(conn):
                assert KEY_SECRET not in text, text
            assert conn.tls is not None and conn.tls.password == KEY_SECRET  # kept for reconnects


async def test_a_pool_failing_to_authenticate_over_tls_reveals_no_secret(
        mtls_proxy: int, certs: dict[str, Path], tarantool: TarantoolInstance,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_tarantool")
    address = {"host": "127.0.0.1", "port": mtls_proxy, "transport": "ssl",
               "ssl_ca_file": str(certs["ca"]), "ssl_cert_file": str(certs["client_cert"]),
               "ssl_key_file": str(certs["client_key"]), "ssl_password": KEY_SECRET}
    with trio.fail_after(20):
        async with open_pool([address], user=tarantool.user, password=USER_SECRET) as pool:
            with pytest.raises(Error) as info:
                await pool.ping(mode=Mode.ANY)
            (stats,) = pool.statistics()
            assert stats.last_error_message is not None and "ER_PASSWORD_MISMATCH" in stats.last_error_message
            rendered = [repr(pool), repr(pool.addrs), repr(pool.statistics()), caplog.text,
                        str(info.value), "".join(traceback.format_exception(info.value))]
            for unit in pool._units:
                rendered += _walk(unit) + _walk(unit.conn)
    for text in rendered:
        assert KEY_SECRET not in text and USER_SECRET not in text, text
