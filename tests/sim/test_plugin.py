"""The pytest plugin (``trio_tarantool.testing``) as other projects meet it.

Each test runs pytest in a fresh process on a scratch project (pytester), the
way a user's project runs: installing trio-tarantool must load nothing into
an unrelated project's pytest, and a project that asks for the
``tarantool_sim`` fixture without what it needs must be told what to
install or set.
"""

from __future__ import annotations

import pytest

APP_TEST = """
from trio_tarantool import connect


async def test_app(tarantool_sim):
    tarantool_sim.create_space("t", [("id", "unsigned")], indexes=[("pk", [("id", "unsigned")], True)])
    async with connect(**tarantool_sim.addrs[0]) as conn:
        await conn.insert("t", [1])
        assert (await conn.select("t", 1)).data == [[1]]
"""


def test_an_unrelated_project_loads_nothing_of_trio_tarantool(pytester: pytest.Pytester) -> None:
    """Installed is not enabled: no module of the package (or its msgpack) gets imported."""
    pytester.makepyfile(test_unrelated="""
        import sys

        def test_nothing_of_trio_tarantool_was_imported():
            loaded = [m for m in sys.modules if m.split(".")[0] in ("trio_tarantool", "msgpack")]
            assert loaded == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_fixture_without_pytest_trio_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["trio_tarantool.testing"]')
    pytester.makepyfile(test_app=APP_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:trio")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*test_app.py::test_app: the tarantool_sim fixture runs on pytest-trio, which is not "
        "installed*pip install 'trio-tarantool[[]pytest]'*trio_mode = true*",
    ])


def test_the_fixture_without_trio_mode_is_a_usage_error_and_with_it_runs(
    pytester: pytest.Pytester,
) -> None:
    """pytest-trio loaded, but the test is no trio test until trio_mode is on."""
    pytester.makepyfile(test_app=APP_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "trio_tarantool.testing")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*test_app.py::test_app: the tarantool_sim fixture needs a trio test*"
        "trio_mode = true under [[]tool.pytest.ini_options]*@pytest.mark.trio*",
    ])
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "trio_tarantool.testing")
    result.assert_outcomes(passed=1)


def test_a_user_project_runs_the_fixture_in_virtual_time(pytester: pytest.Pytester) -> None:
    """As a user's project has it (no runner of its own): an hour's sleep costs
    nothing; a test that asks for a clock itself keeps it."""
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(test_clock="""
        import time

        import trio
        import trio.testing


        async def test_alone(tarantool_sim):
            assert isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
            started = time.monotonic()
            await trio.sleep(3600)
            assert time.monotonic() - started < 30


        async def test_with_its_own_clock(tarantool_sim, mock_clock):
            assert trio.lowlevel.current_clock() is mock_clock
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "trio_tarantool.testing")
    result.assert_outcomes(passed=2)


@pytest.mark.trio
async def test_the_fixture_alone_runs_in_virtual_time(tarantool_sim: object) -> None:
    """What the plugin's docstring promises: "in virtual time (the fixture asks for
    pytest-trio's autojump_clock, so sleeps cost nothing)".

    Regression: pytest-trio takes the clock only from the test function's own
    arguments, so the fixture's autojump_clock was ignored and a test taking
    ``tarantool_sim`` alone (the README's example) ran on the real clock."""
    import trio
    import trio.testing

    assert isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
