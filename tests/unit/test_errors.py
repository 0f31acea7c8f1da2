"""The exception hierarchy: the reference's DatabaseError, and ServerError for server answers."""

from __future__ import annotations

import pytest

import trio_tarantool as tt


@pytest.mark.parametrize("cls", [tt.ServerError, tt.NetworkError, tt.ProtocolError,
                                 tt.ConnectionClosedError, tt.TarantoolTimeoutError,
                                 tt.SchemaError, tt.PoolTopologyError, tt.CrudModuleError,
                                 tt.CrudModuleManyError])
def test_ported_except_database_error_catches_what_it_caught_in_the_reference(cls: type) -> None:
    assert issubclass(cls, tt.DatabaseError)
    assert issubclass(cls, tt.Error)


def test_server_error_means_exactly_the_server_answered() -> None:
    for cls in (tt.NetworkError, tt.SchemaError, tt.PoolTopologyError, tt.ConfigurationError):
        assert not issubclass(cls, tt.ServerError)
    assert issubclass(tt.CrudModuleError, tt.ServerError)


def test_the_reference_way_of_making_one_gives_a_server_error() -> None:
    error = tt.DatabaseError(tt.ErrorCode.ER_READONLY, "read-only")
    assert type(error) is tt.ServerError
    assert error.code == 7 and error.message == "read-only"
    assert error.may_have_executed is False
    assert str(error) == "(ER_READONLY) read-only"


def test_non_server_errors_have_code_zero_and_a_message() -> None:
    network = tt.NetworkError("lost", may_have_executed=False)
    assert network.code == 0 and network.message == "lost"
    topology = tt.PoolTopologyError("no instance fits mode RW")
    assert topology.code == 0 and topology.message == "no instance fits mode RW"
    with pytest.raises(tt.DatabaseError):
        raise tt.ConnectionClosedError("closed", may_have_executed=False)
