"""Tests of the pool's ``addrs`` validation (``trio_tarantool._addrs``)."""

from __future__ import annotations

from typing import Any

import pytest

from trio_tarantool import ConnectionPool
from trio_tarantool._addrs import Address, validate_addrs
from trio_tarantool._errors import ConfigurationError
from trio_tarantool._tls import TLSOptions


def test_valid_addresses_are_normalised() -> None:
    result = validate_addrs([
        {"host": "127.0.0.1", "port": 3301},
        {"host": "localhost", "port": "3302"},
        {"host": None, "port": "/tmp/t.sock", "auth_type": "chap-sha1"},
        {"host": "::1", "port": 3303, "transport": ""},
    ])
    assert result == [
        Address("127.0.0.1", 3301),
        Address("localhost", 3302),
        Address(None, "/tmp/t.sock", {"auth_type": "chap-sha1"}),
        Address("::1", 3303, {"transport": ""}),
    ]
    assert [a.key for a in result] == ["127.0.0.1:3301", "localhost:3302", "/tmp/t.sock", "[::1]:3303"]
    assert result[2].as_dict() == {"host": None, "port": "/tmp/t.sock", "auth_type": "chap-sha1"}


def test_ssl_options_with_ssl_transport() -> None:
    (address,) = validate_addrs([{
        "host": "h", "port": 1, "transport": "ssl", "ssl_ca_file": "ca.pem",
        "ssl_cert_file": "c.pem", "ssl_key_file": "k.pem", "auth_type": "pap-sha256",
    }])
    assert address.options == {
        "transport": "ssl", "ssl_ca_file": "ca.pem", "ssl_cert_file": "c.pem",
        "ssl_key_file": "k.pem", "auth_type": "pap-sha256",
    }


def test_none_options_are_dropped() -> None:
    assert validate_addrs([{"host": "h", "port": 1, "ssl_key_file": None}]) == [Address("h", 1)]


@pytest.mark.parametrize(
    ("addrs", "message"),
    [
        (None, "addrs must be a non-empty list of dicts, got NoneType"),
        ({"host": "h", "port": 1}, "addrs must be a non-empty list of dicts, got dict"),
        ("127.0.0.1:3301", "addrs must be a non-empty list of dicts, got str"),
        ([], "addrs must be a non-empty list of dicts, got an empty list"),
        ([("h", 1)], "addrs[0]: must be a dict with 'host' and 'port', got tuple"),
        ([{"host": "h"}], "addrs[0]: missing mandatory key 'port'"),
        ([{"port": 1}], "addrs[0]: missing mandatory key 'host'"),
        ([{"host": "h", "port": 1, "hots": "x"}], "addrs[0]: unknown key(s) 'hots'"),
        ([{"host": 127, "port": 1}], "addrs[0]: host must be a str or None, got int 127"),
        ([{"host": "", "port": 1}], "addrs[0]: host is an empty string"),
        ([{"host": "h", "port": 1}, {"host": "h", "port": 2}, {"host": "h", "port": 70000}],
         "addrs[2]: port 70000 is outside 1..65535"),
        ([{"host": "h", "port": 0}], "addrs[0]: port 0 is outside 1..65535"),
        ([{"host": "h", "port": "99999"}], "addrs[0]: port 99999 is outside 1..65535"),
        ([{"host": "h", "port": 1.5}], "addrs[0]: port must be an int or a str, got float 1.5"),
        ([{"host": "h", "port": True}], "addrs[0]: port must be an int or a str, got bool True"),
        ([{"host": "h", "port": ""}], "addrs[0]: port is an empty string"),
        ([{"host": "h", "port": "/tmp/x.sock"}], "addrs[0]: port '/tmp/x.sock' is neither a number"),
        ([{"host": None, "port": 3301}], "addrs[0]: host is None but port 3301 is a number"),
        ([{"host": "h", "port": 1, "auth_type": 5}], "addrs[0]: auth_type must be a str, got int 5"),
        ([{"host": "h", "port": 1, "auth_type": "ldap"}], "addrs[0]: auth_type must be one of ('chap-sha1', 'pap-sha256'), got 'ldap'"),
        ([{"host": "h", "port": 1, "transport": "tls"}], "addrs[0]: transport must be '' (plain) or 'ssl', got 'tls'"),
        ([{"host": "h", "port": 1, "ssl_ca_file": "ca.pem"}], "addrs[0]: ssl_ca_file given but transport is not 'ssl'"),
        ([{"host": "h", "port": 1}, {"host": "H", "port": "1"}], "addrs[1]: H:1 duplicates addrs[0]"),
        ([{"host": None, "port": "/s"}, {"host": None, "port": "/s"}], "addrs[1]: /s duplicates addrs[0]"),
        ([{"host": "h", "port": 1, "transport": "ssl", "ssl_verify": "false"}],
         "addrs[0]: ssl_verify must be a bool, got str 'false'"),
        ([{"host": "h", "port": 1, "transport": "ssl", "ssl_check_hostname": 0}],
         "addrs[0]: ssl_check_hostname must be a bool, got int 0"),
        ([{"host": "h", "port": 1, "ssl_verify": False}],
         "addrs[0]: ssl_verify given but transport is not 'ssl'"),
        ([{"host": "h", "port": 1}, {"host": "h", "port": 2, "auth_type": "pap-sha256"}],
         "addrs[1]: auth_type='pap-sha256' sends the password in clear: use it only with "
         "transport='ssl'"),
        ([{"host": "h", "port": 1, "transport": "", "auth_type": "pap-sha256"}],
         "addrs[0]: auth_type='pap-sha256' sends the password in clear"),
        ([{"host": "h", "port": 1, "transport": "ssl", "ssl_verify": False, "ssl_ca_file": "ca.pem"}],
         "addrs[0]: ssl_ca_file 'ca.pem' is given but ssl_verify=False turns verification off"),
        ([{"host": "h", "port": 1, "transport": "ssl", "ssl_key_file": "k.pem"}],
         "addrs[0]: ssl_key_file 'k.pem' is given without ssl_cert_file"),
        ([{"host": None, "port": "/t.sock", "transport": "ssl"}],
         "addrs[0]: transport='ssl' over a unix socket has no host name to check against the "
         "certificate: set ssl_check_hostname=False"),
    ],
)
def test_invalid_addresses(addrs: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        validate_addrs(addrs)
    assert str(info.value).startswith(message), str(info.value)
    assert isinstance(info.value, ValueError)


def test_tls_verification_opt_outs_per_address() -> None:
    strict, chain_only, insecure = validate_addrs([
        {"host": "a", "port": 1, "transport": "ssl"},
        {"host": "b", "port": 1, "transport": "ssl", "ssl_check_hostname": False,
         "ssl_ca_file": "ca.pem"},
        {"host": "c", "port": 1, "transport": "ssl", "ssl_verify": False},
    ])
    assert strict.tls == TLSOptions()
    assert chain_only.options == {"transport": "ssl", "ssl_check_hostname": False, "ssl_ca_file": "ca.pem"}
    assert chain_only.tls == TLSOptions(ca_file="ca.pem", check_hostname=False)
    assert insecure.tls == TLSOptions(verify=False)
    assert validate_addrs([{"host": "d", "port": 1}])[0].tls is None
    (unix,) = validate_addrs([{"host": None, "port": "/t.sock", "transport": "ssl",
                               "ssl_check_hostname": False}])
    assert unix.tls == TLSOptions(check_hostname=False)


SECRET = "s3cr3t-PW-addrs"


def test_ssl_password_is_masked_in_every_rendering_but_kept_for_use() -> None:
    entry = {"host": "h", "port": 1, "transport": "ssl", "ssl_cert_file": "c.pem",
             "ssl_password": SECRET, "ssl_password_file": "pw.txt"}
    (address,) = validate_addrs([entry])
    as_dict = address.as_dict()
    renderings = [repr(address), str(address), repr(address.options), str(address.options),
                  repr(as_dict), str(as_dict), f"{as_dict}", repr([as_dict]), repr(address.tls),
                  repr(Address("h", 1, {"ssl_password": SECRET}))]
    for text in renderings:
        assert SECRET not in text, text
    assert "'ssl_password': '***'" in repr(as_dict)
    assert repr(address) == (
        "Address(host='h', port=1, options={'transport': 'ssl', 'ssl_cert_file': 'c.pem', "
        "'ssl_password': '***', 'ssl_password_file': 'pw.txt'})"
    )
    # The values themselves are intact: the connection needs them, and as_dict()
    # is the user's own configuration handed back.
    assert as_dict == entry
    assert as_dict["ssl_password"] == SECRET
    assert address.tls is not None and address.tls.password == SECRET


def test_a_bad_ssl_password_type_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        validate_addrs([{"host": "h", "port": 1, "transport": "ssl", "ssl_password": [SECRET]}])
    assert str(info.value) == "addrs[0]: ssl_password must be a str, got list"


def test_pool_refuses_pap_sha256_over_plain_tcp_at_construction() -> None:
    with pytest.raises(ConfigurationError, match=r"^addrs\[1\]: auth_type='pap-sha256' sends the password"):
        ConnectionPool([{"host": "127.0.0.1", "port": 3301},
                        {"host": "127.0.0.1", "port": 3302, "auth_type": "pap-sha256"}],
                       user="u", password="p")


def test_a_connection_refuses_ssl_options_without_ssl_as_an_address_does() -> None:
    """One validator: the same rule, the same words, for connect() and for addrs."""
    from trio_tarantool import Connection

    with pytest.raises(ConfigurationError) as by_conn:
        Connection("h", 1, ssl_ca_file="ca.pem")
    with pytest.raises(ConfigurationError) as by_addr:
        validate_addrs([{"host": "h", "port": 1, "ssl_ca_file": "ca.pem"}])
    assert str(by_addr.value) == f"addrs[0]: {by_conn.value}"
    assert "ssl_ca_file given but transport is not 'ssl'" in str(by_conn.value)
