"""The pure helpers of pool membership: replication URIs -> pool addresses, mode fitting."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from trio_tarantool import InstanceState, Mode, Status
from trio_tarantool._addrs import Address
from trio_tarantool._membership import SharedOptions, fits, member_addresses, parse_uri

ORIGIN = Address("10.0.0.5", 3301)


@pytest.mark.parametrize(("uri", "expected"), [
    ("replicator:secret@10.0.0.6:3302", {"host": "10.0.0.6", "port": 3302}),
    ("replicator@db-2.example:3302", {"host": "db-2.example", "port": 3302}),
    ("tcp://10.0.0.7:3303", {"host": "10.0.0.7", "port": 3303}),
    ("127.0.0.1:3304", {"host": "10.0.0.5", "port": 3304}),   # relative to the instance read
    ("localhost:3305", {"host": "10.0.0.5", "port": 3305}),
    ("[::1]:3306", {"host": "10.0.0.5", "port": 3306}),
    ("3307", {"host": "10.0.0.5", "port": 3307}),
    ("0.0.0.0:3308", {"host": "10.0.0.5", "port": 3308}),
    ("[fe80::1]:3309", {"host": "fe80::1", "port": 3309}),
    ("10.0.0.6:70000", None),
    ("10.0.0.6", None),
    ("", None),
    ("unix/:/var/run/t.sock", None),                            # a path means nothing remotely
])
def test_parse_uri(uri: str, expected: dict[str, object] | None) -> None:
    assert parse_uri(uri, ORIGIN) == expected


def test_a_unix_socket_member_of_a_unix_socket_instance() -> None:
    local = Address(None, "/run/a.sock")
    assert parse_uri("unix/:/run/b.sock", local) == {"host": None, "port": "/run/b.sock"}
    assert parse_uri("10.0.0.6:3302", local) is None


def test_member_addresses_are_distinct_sorted_and_skip_junk() -> None:
    uris = ["b:1@10.0.0.9:3301", b"10.0.0.8:3301", "10.0.0.9:3301", 42, "nonsense", "3301"]
    assert member_addresses(uris, ORIGIN) == [
        {"host": "10.0.0.5", "port": 3301}, {"host": "10.0.0.8", "port": 3301},
        {"host": "10.0.0.9", "port": 3301}]
    assert member_addresses(None, ORIGIN) == []


@dataclass
class Unit:
    state: InstanceState


def test_fits_follows_the_routing_rules() -> None:
    rw = Unit(InstanceState(Status.HEALTHY, False))
    ro = Unit(InstanceState(Status.HEALTHY, True))
    down_rw = Unit(InstanceState(Status.UNHEALTHY, False))
    assert all(fits([rw], m) for m in Mode if m != Mode.RO) and not fits([rw], Mode.RO)
    assert all(fits([ro], m) for m in Mode if m != Mode.RW) and not fits([ro], Mode.RW)
    assert not any(fits([down_rw], m) for m in Mode) and not fits([], Mode.ANY)


def test_shared_options_mask_the_password() -> None:
    options = SharedOptions({"user": "app", "password": "s3cret"})
    assert "s3cret" not in repr(options) + str(options) and options["password"] == "s3cret"
