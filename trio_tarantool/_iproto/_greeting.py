"""The server greeting and authentication scrambles."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass

from . import _constants as C

_VERSION_RE = re.compile(r"^Tarantool\s+(\d+)\.(\d+)\.(\d+)\S*\s+\((\w[\w ]*)\)\s*(\S*)")


class GreetingError(ValueError):
    """The first 128 bytes the server sent are not a Tarantool greeting."""


@dataclass(frozen=True)
class Greeting:
    """What the server announces when a connection opens."""

    version: tuple[int, int, int]
    protocol: str
    uuid: uuid.UUID | None
    salt: bytes


def parse_greeting(data: bytes) -> Greeting:
    """Parse the 128-byte greeting: version line, then the base64 salt line."""
    if len(data) != C.GREETING_SIZE:
        raise GreetingError(f"greeting must be {C.GREETING_SIZE} bytes, got {len(data)}")
    try:
        first = data[:64].decode("ascii").rstrip("\n ")
        second = data[64:].decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise GreetingError("greeting is not ASCII text: is this a Tarantool server?") from exc
    match = _VERSION_RE.match(first)
    if match is None:
        raise GreetingError(f"not a Tarantool greeting: {first[:40]!r}")
    major, minor, patch, protocol, raw_uuid = match.groups()
    if protocol != "Binary":
        raise GreetingError(f"server speaks the {protocol!r} protocol, not 'Binary' (an admin console?)")
    try:
        instance_uuid = uuid.UUID(raw_uuid) if raw_uuid else None
    except ValueError:
        instance_uuid = None
    try:
        salt = base64.b64decode(second, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GreetingError("greeting salt is not base64") from exc
    if len(salt) < 20:
        raise GreetingError(f"greeting salt is {len(salt)} bytes, need at least 20")
    return Greeting((int(major), int(minor), int(patch)), protocol, instance_uuid, salt)


def _sha1(*parts: bytes) -> bytes:
    digest = hashlib.sha1()
    for part in parts:
        digest.update(part)
    return digest.digest()


def chap_sha1_scramble(password: str | bytes, salt: bytes) -> bytes:
    """The chap-sha1 proof: sha1(pw) XOR sha1(salt[:20] + sha1(sha1(pw)))."""
    pw = password.encode("utf-8") if isinstance(password, str) else password
    hash1 = _sha1(pw)
    hash2 = _sha1(hash1)
    mask = _sha1(salt[:20], hash2)
    return bytes(a ^ b for a, b in zip(hash1, mask, strict=True))
