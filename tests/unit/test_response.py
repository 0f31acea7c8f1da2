"""Response (what a successful request returns) and database_error (what a failed one raises)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit._msgpack_strategies import msgpack_values
from trio_tarantool._errors import BoxError, DatabaseError, Error, ErrorCode, ProtocolError
from trio_tarantool._iproto import Decoder, Reply
from trio_tarantool._iproto import _constants as C
from trio_tarantool._response import Response, database_error


def reply(body: dict[int, Any], *, code: int = 0, sync: int = 1, schema_version: int = 80) -> Reply:
    return Reply(sync, code, schema_version, body)


def decoded(hex_text: str) -> Reply:
    """A Reply decoded from hand-written header+body bytes."""
    payload = bytes.fromhex(" ".join(line.split("#", 1)[0] for line in hex_text.splitlines()))
    decoder = Decoder()
    decoder.feed(b"\xce" + len(payload).to_bytes(4, "big") + payload)
    (result,) = decoder.replies()
    return result


ROWS = [[1, "a"], [2, "b"], [3, "c"]]


# -- sequence protocol -----------------------------------------------------------------


def test_sequence_protocol() -> None:
    r = Response(reply({C.DATA: [list(row) for row in ROWS]}))
    assert isinstance(r, Sequence)
    assert len(r) == 3
    assert r[0] == [1, "a"]
    assert r[-1] == [3, "c"]
    assert r[1:] == [[2, "b"], [3, "c"]]
    assert list(r) == ROWS
    assert [2, "b"] in r
    assert [9, "z"] not in r
    assert r.index([3, "c"]) == 2
    assert r.count([1, "a"]) == 1
    assert list(reversed(r)) == ROWS[::-1]
    assert bool(r)
    with pytest.raises(IndexError):
        r[3]


def test_attributes_from_the_header() -> None:
    r = Response(reply({C.DATA: []}, sync=42, schema_version=99))
    assert (r.sync, r.code, r.schema_version) == (42, 0, 99)


def test_is_read_only() -> None:
    r = Response(reply({C.DATA: [list(row) for row in ROWS]}))
    with pytest.raises(TypeError):
        r[0] = [0]  # type: ignore[index]
    with pytest.raises(TypeError):
        del r[0]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        r.extra = 1  # type: ignore[attr-defined]


def test_equality_and_hash() -> None:
    r = Response(reply({C.DATA: [[1], [2]]}))
    assert r == [[1], [2]]
    assert r == ([1], [2])
    assert r == Response(reply({C.DATA: [[1], [2]]}, sync=7))
    assert r != [[1]]
    assert r != "[[1], [2]]"
    with pytest.raises(TypeError):
        hash(r)


def test_empty_and_missing_data() -> None:
    """Ping-like replies have no DATA key: an empty sequence, not an error."""
    r = Response(reply({}))
    assert r.data == []
    assert len(r) == 0
    assert not r
    assert r.rowcount == 0


def test_call_result_is_the_data_array() -> None:
    """A CALL returning (1, 'x', nil) has DATA [1, 'x', nil]."""
    r = Response(reply({C.DATA: [1, "x", None]}))
    assert list(r) == [1, "x", None]


def test_repr() -> None:
    assert repr(Response(reply({C.DATA: [[1]]}, sync=3))) == "<Response sync=3 [[1]]>"
    long = Response(reply({C.DATA: [[i] for i in range(8)]}, sync=4))
    assert repr(long) == "<Response sync=4 rows=8 [[0], [1], [2], [3], [4]]...>"


# -- rowcount and SQL ---------------------------------------------------------------------


def test_rowcount_without_sql_info_is_the_number_of_tuples() -> None:
    r = Response(reply({C.DATA: [list(row) for row in ROWS]}))
    assert r.rowcount == 3
    assert r.affected_row_count is None
    assert r.autoincrement_ids == []


def test_sql_dml_reply() -> None:
    """INSERT ... with AUTOINCREMENT: SQL_INFO {ROW_COUNT: 2, AUTOINCREMENT_IDS: [5, 6]}."""
    r = Response(decoded("""
        83 00 00 01 05 05 50
        81 42 82 00 02 01 92 05 06
    """))
    assert r.rowcount == 2
    assert r.affected_row_count == 2
    assert r.autoincrement_ids == [5, 6]
    assert r.data == []


def test_sql_info_without_ids() -> None:
    r = Response(reply({C.SQL_INFO: {C.SQL_INFO_ROW_COUNT: 0}}))
    assert (r.rowcount, r.affected_row_count, r.autoincrement_ids) == (0, 0, [])


def test_sql_select_metadata() -> None:
    r = Response(decoded("""
        83 00 00 01 05 05 50
        82
          32 92                                     # METADATA: 2 columns
            82 00 a2 49 44  01 a7 69 6e 74 65 67 65 72      # {NAME: "ID", TYPE: "integer"}
            86 00 a4 4e 41 4d 45  01 a6 73 74 72 69 6e 67   # {NAME: "NAME", TYPE: "string",
               02 a7 75 6e 69 63 6f 64 65                   #  COLL: "unicode",
               03 c3  04 c2                                 #  IS_NULLABLE: true, IS_AUTOINCREMENT: false,
               05 c0                                        #  SPAN: nil}
          30 91 92 01 a1 61                         # DATA: [[1, "a"]]
    """))
    assert r.metadata == [
        {"name": "ID", "type": "integer"},
        {"name": "NAME", "type": "string", "collation": "unicode", "is_nullable": True,
         "is_autoincrement": False, "span": None},
    ]
    assert list(r) == [[1, "a"]]
    assert r.rowcount == 1


def test_metadata_in_raw_mode_has_str_names_and_types() -> None:
    """encoding=None leaves strings as bytes; column names and types are still str."""
    r = Response(reply({C.METADATA: [{C.FIELD_NAME: b"ID", C.FIELD_TYPE: b"integer", 9: b"x"}]}))
    assert r.metadata == [{"name": "ID", "type": "integer", "9": b"x"}]


def test_prepare_reply() -> None:
    """PREPARE answers with STMT_ID, BIND_COUNT, BIND_METADATA (and METADATA)."""
    r = Response(decoded("""
        83 00 00 01 05 05 50
        84
          43 cd 30 39                               # STMT_ID 12345
          34 01                                     # BIND_COUNT 1
          33 91 82 00 a1 3f 01 a3 41 4e 59          # BIND_METADATA [{NAME: "?", TYPE: "ANY"}]
          32 91 82 00 a1 31 01 a7 69 6e 74 65 67 65 72  # METADATA [{NAME: "1", TYPE: "integer"}]
    """))
    assert r.stmt_id == 12345
    assert r.bind_count == 1
    assert r.bind_metadata == [{"name": "?", "type": "ANY"}]
    assert r.metadata == [{"name": "1", "type": "integer"}]


def test_non_sql_reply_has_no_statement() -> None:
    r = Response(reply({C.DATA: []}))
    assert (r.stmt_id, r.bind_count, r.bind_metadata, r.metadata) == (None, 0, [], [])


def test_raw_body_is_available() -> None:
    body = {C.DATA: [], 0x57: "key"}
    assert Response(reply(body)).body is body


# -- database_error ------------------------------------------------------------------------

ERROR_HEX = """
    83 00 cd 80 24  01 08  05 50
    82
      31 a5 6f 6f 70 73 21                          # ERROR_24 "oops!"
      52 81 00 92                                   # ERROR: 2-entry stack
        86 00 ab 43 6c 69 65 6e 74 45 72 72 6f 72  01 a3 66 2e 63  02 05
           03 a5 6f 6f 70 73 21  04 00  05 24
        84 00 a8 4c 75 61 45 72 72 6f 72  03 a5 63 61 75 73 65  05 20  02 07
"""


def test_database_error_from_an_error_reply() -> None:
    exc = database_error(decoded(ERROR_HEX))
    assert isinstance(exc, DatabaseError)
    assert isinstance(exc, Error)
    assert exc.code == 36
    assert exc.code == ErrorCode.ER_NO_SUCH_SPACE
    assert exc.message == "oops!"
    assert exc.args == (36, "oops!")
    assert str(exc) == "(ER_NO_SUCH_SPACE) oops!"
    assert exc.may_have_executed
    assert exc.extra_info == BoxError(
        "ClientError", "f.c", 5, "oops!", 0, 36, {},
        BoxError("LuaError", "", 7, "cause", 0, 32, {}, None),
    )


def test_database_error_message_from_the_stack_alone() -> None:
    """Servers may send only the extended error (key 0x52)."""
    stack = {0: [{3: "from stack", 5: 7}]}
    exc = database_error(reply({C.ERROR: stack}, code=C.TYPE_ERROR | 7))
    assert exc.message == "from stack"
    assert exc.code == ErrorCode.ER_READONLY
    assert not exc.may_have_executed
    assert exc.extra_info is not None and exc.extra_info.errcode == 7


def test_database_error_without_a_stack() -> None:
    exc = database_error(reply({C.ERROR_24: "Duplicate key exists"}, code=C.TYPE_ERROR | 3))
    assert (exc.code, exc.message, exc.extra_info) == (3, "Duplicate key exists", None)
    assert str(exc) == "(ER_TUPLE_FOUND) Duplicate key exists"


def test_database_error_raw_message() -> None:
    exc = database_error(reply({C.ERROR_24: "é".encode() + b"\xff"}, code=C.TYPE_ERROR | 1))
    assert exc.message == "é\ufffd"


def test_database_error_unknown_code() -> None:
    exc = database_error(reply({C.ERROR_24: "new"}, code=C.TYPE_ERROR | 0x7FFF))
    assert exc.code == 0x7FFF
    assert str(exc) == "(ER_32767) new"


@pytest.mark.parametrize(
    "stack",
    [
        [1, 2],                                  # not a map
        {0: "x"},                                # stack not an array
        {0: [{2: "five"}]},                      # line a string
        {0: [{5: [36]}]},                        # errcode a list
        {0: [{6: [1]}]},                         # fields not a map
    ],
)
def test_database_error_with_a_malformed_stack(stack: Any) -> None:
    """The message and code still come through; a bad stack is just dropped.
    (Regression for the last three: int()/dict() raised out of database_error.)"""
    exc = database_error(reply({C.ERROR_24: "msg", C.ERROR: stack}, code=C.TYPE_ERROR | 36))
    assert (exc.code, exc.message, exc.extra_info) == (36, "msg", None)


# -- malformed replies: ProtocolError for that request, never a builtin (issue 8, item 10) ---


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({C.DATA: {1: [1]}}, r"reply to SELECT \(sync 1\): DATA is a map, expected an array"),
        ({C.DATA: 5}, r"DATA is an integer, expected an array"),
        ({C.DATA: "rows"}, r"DATA is a string, expected an array"),
        ({C.DATA: b"rows"}, r"DATA is binary, expected an array"),
        ({C.DATA: True}, r"DATA is a boolean"),
        ({C.SQL_INFO: [1, 2]}, r"SQL_INFO is an array, expected a map"),
        ({C.SQL_INFO: 3}, r"SQL_INFO is an integer, expected a map"),
        ({C.SQL_INFO: {C.SQL_INFO_ROW_COUNT: "2"}}, r"SQL_INFO ROW_COUNT is a string, expected an integer"),
        ({C.SQL_INFO: {C.SQL_INFO_ROW_COUNT: 1.0}}, r"SQL_INFO ROW_COUNT is a float"),
        ({C.SQL_INFO: {C.SQL_INFO_AUTOINCREMENT_IDS: 5}}, r"AUTOINCREMENT_IDS is an integer, expected an array"),
        ({C.SQL_INFO: {C.SQL_INFO_AUTOINCREMENT_IDS: [1, "x"]}}, r"AUTOINCREMENT_IDS\[1\] is a string"),
        ({C.STMT_ID: "12345"}, r"STMT_ID is a string, expected a non-negative integer"),
        ({C.STMT_ID: -1}, r"STMT_ID is an integer, expected a non-negative"),
        ({C.STMT_ID: [1]}, r"STMT_ID is an array"),
        ({C.BIND_COUNT: "1"}, r"BIND_COUNT is a string"),
        ({C.BIND_COUNT: None, C.STMT_ID: 1.5}, r"STMT_ID is a float"),
        ({C.METADATA: {0: "x"}}, r"METADATA is a map, expected an array"),
        ({C.METADATA: ["ID"]}, r"METADATA\[0\] is a string, expected a map"),
        ({C.METADATA: [{C.FIELD_NAME: 1}]}, r"METADATA\[0\] name is an integer, expected a string"),
        ({C.METADATA: [{C.FIELD_NAME: "a", C.FIELD_TYPE: None}]}, r"METADATA\[0\] type is nil"),
        ({C.BIND_METADATA: 7}, r"BIND_METADATA is an integer, expected an array"),
        ({C.DATA: [], C.BIND_METADATA: [[]]}, r"BIND_METADATA\[0\] is an array, expected a map"),
    ],
)
def test_malformed_reply_is_a_protocol_error(body: dict[int, Any], match: str) -> None:
    """Regression: these gave a Response whose properties raised AttributeError,
    TypeError or ValueError (or, for DATA as a map, a Response that indexed by key)."""
    with pytest.raises(ProtocolError, match=match) as info:
        Response(reply(body), request_type=C.SELECT)
    assert isinstance(info.value, Error)
    assert info.value.may_have_executed is True  # the server received and answered it


def test_message_without_the_request_type_names_the_sync() -> None:
    with pytest.raises(ProtocolError, match=r"reply to request sync=9: DATA is a map"):
        Response(reply({C.DATA: {}}, sync=9))


def test_undecodable_reply_is_a_protocol_error() -> None:
    """A reply the decoder could not decode (decode_error set) is no empty success."""
    bad = Reply(4, 0, 1, {}, "the reply holds a value of unknown msgpack extension type 42")
    with pytest.raises(ProtocolError, match=r"reply to EXECUTE \(sync 4\): .*extension type 42"):
        Response(bad, request_type=C.EXECUTE)


def test_properties_check_what_they_parse() -> None:
    """A body changed after the Response was built (``body`` is the raw map) still
    gives ProtocolError from the properties, never a builtin."""
    r = Response(reply({C.DATA: []}))
    r.body[C.SQL_INFO] = [1]
    r.body[C.METADATA] = 3
    r.body[C.STMT_ID] = "x"
    r.body[C.BIND_COUNT] = {}
    r.body[C.BIND_METADATA] = [1]
    for prop in ("rowcount", "affected_row_count", "autoincrement_ids", "metadata",
                 "stmt_id", "bind_count", "bind_metadata"):
        with pytest.raises(ProtocolError):
            getattr(r, prop)


def test_data_given_as_a_tuple_is_a_list() -> None:
    assert Response(reply({C.DATA: ((1,), (2,))})).data == [(1,), (2,)]


def test_plain_select_data_is_not_copied_or_walked() -> None:
    """The hot path: DATA is handed over as is (rows are never checked one by one)."""
    rows: list[Any] = [[1], "not a tuple, but a call may return anything", None]
    assert Response(reply({C.DATA: rows})).data is rows


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({C.ERROR_24: "msg", C.ERROR: {0: [{0: "ClientError", 2: "five"}]}}, "msg"),
        ({C.ERROR: "garbage"}, "(malformed error reply: its ERROR stack is malformed "
                               "(error: the error payload must be a map))"),
        ({C.ERROR_24: {1: 2}}, "(malformed error reply: ERROR_24 is a map, expected a string)"),
        ({C.ERROR_24: 5, C.ERROR: {0: [{3: "from stack"}]}}, "from stack"),
        ({}, ""),
    ],
)
def test_malformed_error_reply_is_still_a_database_error(body: dict[int, Any], message: str) -> None:
    """The code is in the header and trusted; a bad body costs detail only."""
    exc = database_error(reply(body, code=C.TYPE_ERROR | 36))
    assert (exc.code, exc.message) == (36, message)


def test_undecodable_error_reply_keeps_code_and_says_why() -> None:
    bad = Reply(4, C.TYPE_ERROR | 7, 1, {C.ERROR_24: "Can't modify data on a read-only instance"},
                "the reply holds a malformed msgpack extension value (decimal: no digits)")
    exc = database_error(bad)
    assert exc.code == ErrorCode.ER_READONLY and not exc.may_have_executed
    assert exc.message == "Can't modify data on a read-only instance"
    assert exc.extra_info is None
    bad = Reply(4, C.TYPE_ERROR | 7, 1, {}, "the reply holds a string that is not valid UTF-8")
    assert database_error(bad).message == "(malformed error reply: the reply holds a string that is not valid UTF-8)"


# -- hypothesis: any msgpack value in any field -----------------------------------------

_FIELDS = st.sampled_from([C.DATA, C.SQL_INFO, C.METADATA, C.BIND_METADATA, C.BIND_COUNT, C.STMT_ID,
                           C.ERROR_24, C.ERROR, 0x57, 0x99])


def _touch(r: Response) -> None:
    """Everything an application can read from a Response."""
    len(r)
    list(r)
    repr(r)
    if len(r):
        r[0]
        r[-1:]
    for prop in ("rowcount", "affected_row_count", "autoincrement_ids", "metadata",
                 "stmt_id", "bind_count", "bind_metadata", "body"):
        getattr(r, prop)


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(_FIELDS, msgpack_values, max_size=4) | st.dictionaries(
    _FIELDS, st.fixed_dictionaries({}, optional={0: msgpack_values, 1: msgpack_values}), max_size=3))
def test_any_body_is_a_response_or_a_protocol_error(body: dict[int, Any]) -> None:
    try:
        r = Response(reply(body), request_type=C.SELECT)
    except ProtocolError:
        return
    _touch(r)  # a Response that was built never raises anything


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(_FIELDS, msgpack_values, max_size=4)
       | st.fixed_dictionaries({C.ERROR: st.fixed_dictionaries({}, optional={
           0: st.lists(st.dictionaries(st.integers(0, 7), msgpack_values, max_size=5), max_size=3)
           | msgpack_values})}),
       st.integers(0, 0x7FFF))
def test_any_error_body_is_a_database_error(body: dict[int, Any], code: int) -> None:
    exc = database_error(reply(body, code=C.TYPE_ERROR | code))
    assert isinstance(exc, DatabaseError)
    assert exc.code == code
    str(exc)


def test_reference_names_of_a_successful_response() -> None:
    from trio_tarantool._iproto._decoder import Reply
    from trio_tarantool._response import Response

    response = Response(Reply(7, 0, 1, {0x30: [[1]]}))
    assert response.return_code == 0
    assert response.return_message == ""
    assert response.strerror == ("ER_UNKNOWN", "")
