"""The server greeting (128 bytes of text) and the chap-sha1 scramble."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest

from trio_tarantool._iproto import Greeting, GreetingError, chap_sha1_scramble, parse_greeting

#: Salt line of a greeting captured from a real Tarantool 2.6.0 (32 bytes of salt).
SALT_B64 = "7CMz7NUte+qkCqMnojOvIcpLRv+BE4WGTRsJkTNNAZk="
SALT = bytes.fromhex("ec2333ecd52d7beaa40aa327a233af21ca4b46ff811385864d1b0991334d0199")


def greeting(first: str, second: str = SALT_B64) -> bytes:
    """Two 64-byte lines: text padded with spaces to 63 characters, then '\\n'."""
    assert len(first) <= 63 and len(second) <= 63
    return (first.ljust(63) + "\n" + second.ljust(63) + "\n").encode("ascii")


# -- chap-sha1 ---------------------------------------------------------------------


def test_salt_constant_is_the_base64_line() -> None:
    assert base64.b64decode(SALT_B64) == SALT


def test_chap_sha1_known_vector() -> None:
    """scramble = sha1(pw) XOR sha1(salt[:20] + sha1(sha1(pw))), spelled out."""
    step1 = hashlib.sha1(b"password").digest()
    assert step1.hex() == "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8"  # the well-known sha1("password")
    step2 = hashlib.sha1(step1).digest()
    # Tarantool stores base64(step2) as the user's password hash:
    # box.schema.user.password('password') == 'JHDAwG3uQv0WGLuZAFrcouydHhk=' on 2.6.
    assert base64.b64encode(step2) == b"JHDAwG3uQv0WGLuZAFrcouydHhk="
    step3 = hashlib.sha1(SALT[:20] + step2).digest()
    assert step3.hex() == "c842e5aa8f9f3a4689a83898addf67bfca7f9b10"
    expected = bytes(a ^ b for a, b in zip(step1, step3, strict=True))
    assert expected.hex() == "93e8844e462605798f2a1d93c12754a4b49914c8"

    assert chap_sha1_scramble("password", SALT) == expected
    assert chap_sha1_scramble(b"password", SALT) == expected


def test_chap_sha1_uses_only_the_first_20_salt_bytes() -> None:
    assert chap_sha1_scramble("pw", SALT) == chap_sha1_scramble("pw", SALT[:20])
    assert chap_sha1_scramble("pw", SALT) == chap_sha1_scramble("pw", SALT[:20] + b"\xff" * 12)
    assert chap_sha1_scramble("pw", SALT) != chap_sha1_scramble("pw", b"\x00" + SALT[1:])


def test_chap_sha1_non_ascii_password_is_utf8() -> None:
    assert chap_sha1_scramble("pässwörd", SALT) == chap_sha1_scramble("pässwörd".encode(), SALT)
    assert chap_sha1_scramble("", SALT) != chap_sha1_scramble(" ", SALT)
    assert len(chap_sha1_scramble("", SALT)) == 20


# -- greeting ----------------------------------------------------------------------


def test_tarantool_2_6_greeting() -> None:
    """Byte for byte what Tarantool 2.6.0 sent on a fresh connection."""
    data = greeting("Tarantool 2.6.0 (Binary) 0e704f1c-94f0-4408-b671-11355b064ba8")
    assert len(data) == 128
    parsed = parse_greeting(data)
    assert parsed == Greeting(
        version=(2, 6, 0),
        protocol="Binary",
        uuid=uuid.UUID("0e704f1c-94f0-4408-b671-11355b064ba8"),
        salt=SALT,
    )


def test_tarantool_2_10_greeting() -> None:
    """A two-digit minor version (the server formats major.minor.patch only)."""
    data = greeting("Tarantool 2.10.0 (Binary) 7170b4af-c72f-4f07-8729-08fc678543a1")
    parsed = parse_greeting(data)
    assert parsed.version == (2, 10, 0)
    assert parsed.protocol == "Binary"
    assert parsed.uuid == uuid.UUID("7170b4af-c72f-4f07-8729-08fc678543a1")
    assert parsed.salt == SALT


def test_version_comparison_is_numeric() -> None:
    """(2, 10, 0) > (2, 6, 0): the point of parsing into ints."""
    new = parse_greeting(greeting("Tarantool 2.10.4 (Binary) 7170b4af-c72f-4f07-8729-08fc678543a1"))
    old = parse_greeting(greeting("Tarantool 2.6.0 (Binary) 7170b4af-c72f-4f07-8729-08fc678543a1"))
    assert new.version > old.version


def test_version_suffix_is_tolerated() -> None:
    parsed = parse_greeting(greeting("Tarantool 2.11.0-rc1 (Binary)"))
    assert parsed.version == (2, 11, 0)


def test_greeting_without_uuid() -> None:
    """Old servers (1.6) sent no instance UUID."""
    parsed = parse_greeting(greeting("Tarantool 1.6.9 (Binary)"))
    assert parsed.version == (1, 6, 9)
    assert parsed.uuid is None


def test_admin_console_greeting_is_refused() -> None:
    """What 2.6.0's console.listen() sends: a text protocol, not IPROTO."""
    data = greeting("Tarantool 2.6.0 (Lua console)", "type 'help' for interactive help")
    with pytest.raises(GreetingError, match="Lua console"):
        parse_greeting(data)


@pytest.mark.parametrize(
    "first",
    [
        "HTTP/1.1 400 Bad Request",
        "SSH-2.0-OpenSSH_9.2p1 Debian-2",
        "Tarantool (Binary)",
        "Tarantool two.six (Binary)",
        "tarantool 2.6.0 (Binary)",
        "",
    ],
)
def test_not_a_tarantool_greeting(first: str) -> None:
    with pytest.raises(GreetingError, match="not a Tarantool greeting"):
        parse_greeting(greeting(first))


def test_binary_garbage_greeting() -> None:
    with pytest.raises(GreetingError, match="ASCII"):
        parse_greeting(bytes(range(128, 256)))


@pytest.mark.parametrize("size", [0, 64, 127, 129, 256])
def test_greeting_must_be_128_bytes(size: int) -> None:
    data = greeting("Tarantool 2.6.0 (Binary)") * 2
    with pytest.raises(GreetingError, match="128 bytes"):
        parse_greeting(data[:size])


def test_short_salt_is_refused() -> None:
    """chap-sha1 needs 20 bytes of salt; 16 bytes (base64 of 24 chars) are not enough."""
    short = base64.b64encode(SALT[:16]).decode()
    with pytest.raises(GreetingError, match="16 bytes"):
        parse_greeting(greeting("Tarantool 2.6.0 (Binary)", short))


def test_salt_of_exactly_20_bytes_is_enough() -> None:
    salt20 = base64.b64encode(SALT[:20]).decode()
    assert parse_greeting(greeting("Tarantool 2.6.0 (Binary)", salt20)).salt == SALT[:20]


@pytest.mark.parametrize("second", ["", "not base64 at all!!", "7CMz7NUte+qkCqMnojOvIcpLRv+BE4WGTRsJkTNNAZ"])
def test_bad_salt_line(second: str) -> None:
    with pytest.raises(GreetingError):
        parse_greeting(greeting("Tarantool 2.6.0 (Binary)", second))
