"""transport='ssl' through a TLS-terminating proxy in front of a real Tarantool.

Tarantool Community has no TLS, so the test terminates TLS itself (trio's
SSLStream on loopback) and forwards the plain bytes to the real server: the
client's TLS path, certificates and errors are real, the IPROTO behind is real.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.real._servers import TarantoolInstance
from trio_tarantool import ConfigurationError, Connection, NetworkError, connect


def _make_cert(directory: Path, name: str, *, password: str | None = None) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    cmd = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "2", "-subj", f"/CN={name}",
           "-keyout", str(key), "-out", str(cert)]
    cmd += ["-passout", f"pass:{password}"] if password else ["-nodes"]
    subprocess.run(cmd, check=True, capture_output=True)
    return key, cert


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("certs")
    server_key, server_cert = _make_cert(d, "server")
    client_key, client_cert = _make_cert(d, "client", password="s3cret")
    _, other_cert = _make_cert(d, "other")
    (d / "passwords").write_text("wrong\ns3cret\n")
    return {"server_key": server_key, "server_cert": server_cert, "client_key": client_key,
            "client_cert": client_cert, "other_cert": other_cert, "passwords": d / "passwords"}


async def _pipe(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
    try:
        while data := await src.receive_some(65536):
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(dst)


async def _tls_proxy(certs: dict[str, Path], backend: TarantoolInstance, *, require_client_cert: bool,
                     task_status: trio.TaskStatus[int]) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs["server_cert"], certs["server_key"])
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=certs["client_cert"])

    async def handle(client: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await client.do_handshake()
        except trio.BrokenResourceError:
            return
        upstream = await trio.open_tcp_stream(backend.host, backend.port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pipe, client, upstream)
            nursery.start_soon(_pipe, upstream, client)

    tcp = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    listener = trio.SSLListener(tcp, ctx)
    task_status.started(tcp.socket.getsockname()[1])
    await trio.serve_listeners(handle, [listener])


@pytest.fixture
async def proxy(certs: dict[str, Path], tarantool: TarantoolInstance) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        yield await nursery.start(lambda task_status: _tls_proxy(
            certs, tarantool, require_client_cert=False, task_status=task_status))
        nursery.cancel_scope.cancel()


@pytest.fixture
async def mtls_proxy(certs: dict[str, Path], tarantool: TarantoolInstance) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        yield await nursery.start(lambda task_status: _tls_proxy(
            certs, tarantool, require_client_cert=True, task_status=task_status))
        nursery.cancel_scope.cancel()


async def test_tls_with_server_verification(proxy: int, certs: dict[str, Path], tarantool: TarantoolInstance) -> None:
    with trio.fail_after(10):
        async with connect("127.0.0.1", proxy, user=tarantool.user, password=tarantool.password,
                           transport="ssl", ssl_ca_file=str(certs["server_cert"])) as conn:
            assert (await conn.eval("return 40 + 2")).data == [42]
            assert isinstance(await conn.ping(), float)


async def test_tls_rejects_a_server_not_signed_by_the_ca(proxy: int, certs: dict[str, Path]) -> None:
    with trio.fail_after(10), pytest.raises(NetworkError, match="CERTIFICATE_VERIFY_FAILED") as exc:
        async with connect("127.0.0.1", proxy, transport="ssl", ssl_ca_file=str(certs["other_cert"])):
            pass
    assert exc.value.may_have_executed is False


async def test_tls_client_certificate_with_password_file(
        mtls_proxy: int, certs: dict[str, Path], tarantool: TarantoolInstance) -> None:
    with trio.fail_after(10):
        async with connect("127.0.0.1", mtls_proxy, user=tarantool.user, password=tarantool.password,
                           transport="ssl", ssl_cert_file=str(certs["client_cert"]),
                           ssl_key_file=str(certs["client_key"]),
                           ssl_password_file=str(certs["passwords"])) as conn:
            assert (await conn.eval("return 'mtls'")).data == ["mtls"]


async def test_tls_server_requiring_a_client_certificate_refuses_without(mtls_proxy: int) -> None:
    with trio.fail_after(10), pytest.raises(NetworkError):
        async with connect("127.0.0.1", mtls_proxy, transport="ssl") as conn:
            await conn.ping()


def test_tls_bad_options_are_configuration_errors(certs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="transport must be"):
        Connection("127.0.0.1", 1, transport="tls")
    with pytest.raises(ConfigurationError, match="cannot read"):
        Connection("127.0.0.1", 1, transport="ssl", ssl_ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigurationError, match="password"):
        Connection("127.0.0.1", 1, transport="ssl", ssl_cert_file=str(certs["client_cert"]),
                   ssl_key_file=str(certs["client_key"]), ssl_password="wrong")
    with pytest.raises(ConfigurationError, match="ssl_ciphers"):
        Connection("127.0.0.1", 1, transport="ssl", ssl_ciphers="NO-SUCH-CIPHER")
