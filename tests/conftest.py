"""Suite-wide settings: hypothesis profiles, no silent skips in CI, and hang guards.

Hang guards
-----------
``pytest-timeout`` gives every test a budget (``timeout`` in pyproject.toml,
or ``@pytest.mark.timeout(seconds)``) covering its setup, call and teardown.
Its own way of stopping a test does not suit trio: the ``signal`` method
raises from a SIGALRM handler wherever the main thread is, which inside
``trio.run`` corrupts trio's run state so that every later trio test fails
with "Attempted to call run() from inside a run()"; the ``thread`` method
prints every thread's stack and ends the whole session with ``os._exit``.

So the suite uses ``thread`` as the last resort and, for trio tests, first
tries something gentler (:class:`_TrioHangGuard`): at the budget's end a
watchdog thread asks the trio loop (``TrioToken.run_sync_soon``) to cancel the
test, and the test fails with the tree of trio tasks and where each one
waits. Fixtures are torn down, tarantool processes stopped, and the session
goes on. Only if the cancelled test still does not finish within
:data:`BACKSTOP_GRACE` seconds (a task blocked outside trio, a busy loop)
does the ``thread`` method end the session, with every thread's stack.

The watchdog measures wall time, so tests on a virtual clock (``autojump_clock``)
are limited by how long they really take, not by their virtual time.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import pytest
import trio
import trio.lowlevel
from hypothesis import HealthCheck, settings

#: The project's own test kit, enabled the way a user's project enables it
#: (it is opt-in: installing trio-tarantool loads nothing into pytest), and
#: pytester, with which tests/sim/test_user_kit.py runs pytest on scratch projects.
pytest_plugins = ["pytester", "trio_tarantool.testing"]

# "ci" is derandomized so CI is reproducible; failures print the blob to replay.
settings.register_profile(
    "ci", derandomize=True, print_blob=True, deadline=None, max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", print_blob=True, deadline=None, max_examples=100)
settings.register_profile(
    "long", print_blob=True, deadline=None, max_examples=2000,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

#: Seconds a cancelled trio test gets to finish (fixture teardown included)
#: before pytest-timeout's ``thread`` method ends the session.
BACKSTOP_GRACE = 60.0

#: ``(deadline, budget)`` of the running trio test: its wall-clock deadline
#: (``time.monotonic()``) and its timeout in seconds.
_DEADLINE_KEY = pytest.StashKey[tuple[float, float]]()
#: The trio task dump taken when the guard cancelled the test.
_DUMP_KEY = pytest.StashKey[str]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: real-server tests must run, not skip."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = len(reporter.stats.get("skipped", []))
    if skipped and session.exitstatus == 0:
        reporter.write_line(f"CI: {skipped} test(s) were skipped; every test must run in CI", red=True)
        session.exitstatus = 1


def pytest_configure(config: pytest.Config) -> None:
    """Install the trio hang guard when pytest-timeout is there (it is in the test extra)."""
    if config.pluginmanager.hasplugin("timeout"):
        config.pluginmanager.register(_TrioHangGuard(), "trio-hang-guard")


def _is_trio_test(item: pytest.Item) -> bool:
    return item.get_closest_marker("trio") is not None


class _TrioHangGuard:
    """pytest-timeout's timer for trio tests: cancel at the deadline, kill as a last resort."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Make pytest-trio run every trio test through :func:`_guarded_run`.

        pytest-trio takes the runner from the first ``trio`` marker that names
        one; trylast puts this after its automarking, and the marker goes in
        front. (Hypothesis tests are run by pytest-trio with plain
        ``trio.run`` per example; they get only the backstop.)
        """
        for item in items:
            if _is_trio_test(item):
                item.add_marker(pytest.mark.trio(run=_runner_for(item)), append=False)

    @pytest.hookimpl(tryfirst=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool | None:
        """For a trio test: note the deadline for the guard and arm the backstop."""
        if not _is_trio_test(item):
            return None  # pytest-timeout's own timer (method from the config)
        timeout = float(settings.timeout)
        item.stash[_DEADLINE_KEY] = (time.monotonic() + timeout, timeout)
        backstop = threading.Timer(
            timeout + BACKSTOP_GRACE, _backstop, (item, settings)
        )
        backstop.name = f"hang backstop {item.nodeid}"
        backstop.daemon = True

        def cancel() -> None:
            backstop.cancel()
            backstop.join()

        item.cancel_timeout = cancel  # type: ignore[attr-defined]  # read by pytest-timeout
        backstop.start()
        return True


def _backstop(item: pytest.Item, settings: Any) -> None:
    """The cancelled trio test did not finish: print its task dump, then end the session."""
    dump = item.stash.get(_DUMP_KEY, None)
    if dump is not None:
        # Goes to the captured stderr, which timeout_timer prints.
        sys.stderr.write(
            f"\nHang guard: {item.nodeid} was cancelled at its deadline but did not finish "
            f"within {BACKSTOP_GRACE:g}s. Its trio tasks when it was cancelled:\n{dump}\n"
        )
    importlib.import_module("pytest_timeout").timeout_timer(item, settings)


def _runner_for(item: pytest.Item) -> Callable[..., Any]:
    def run(async_fn: Callable[..., Any], *args: Any, **run_kwargs: Any) -> Any:
        return _guarded_run(item, async_fn, *args, **run_kwargs)

    return run


def _guarded_run(
    item: pytest.Item, async_fn: Callable[..., Any], *args: Any, **run_kwargs: Any
) -> Any:
    """``trio.run(async_fn, *args)``, cancelled with a task dump at the item's deadline."""
    guard = item.stash.get(_DEADLINE_KEY, None)
    if guard is None:  # timeouts disabled (--timeout=0)
        return trio.run(async_fn, *args, **run_kwargs)
    deadline, budget = guard
    async def main() -> Any:
        token = trio.lowlevel.current_trio_token()
        ended_with: BaseException | None = None
        with trio.CancelScope() as scope:

            def fire() -> None:  # in the trio thread
                root = trio.lowlevel.current_root_task()
                item.stash[_DUMP_KEY] = "(no tasks)" if root is None else _task_tree(root)
                scope.cancel()

            def on_deadline() -> None:  # in the watchdog thread
                try:
                    token.run_sync_soon(fire)
                except trio.RunFinishedError:
                    pass

            watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), on_deadline)
            watchdog.name = f"hang guard {item.nodeid}"
            watchdog.daemon = True
            watchdog.start()
            try:
                return await async_fn(*args)
            except BaseException as exc:
                if _DUMP_KEY not in item.stash:
                    raise
                ended_with = exc  # reported below, outside this handler
            finally:
                watchdog.cancel()
        # Only a guard cancel gets here: nothing else cancels this scope.
        _fail_timed_out(budget, item.stash.get(_DUMP_KEY, "(no dump)"), ended_with)

    return trio.run(main, **run_kwargs)


def _fail_timed_out(budget: float, dump: str, cause: BaseException | None) -> NoReturn:
    """Fail the test as timed out, with the task dump (and what else the cancel raised)."""
    message = (
        f"Timeout (>{budget:g}s) from pytest-timeout: the trio test was cancelled "
        "(the budget covers its setup, call and teardown).\n"
        "Trio tasks at that moment (trio's own frames left out), innermost frame last:\n"
        + dump
    )
    others = [exc for exc in _leaves(cause) if not isinstance(exc, trio.Cancelled)]
    if others:
        message += "\nThe cancelled test also raised: " + "; ".join(map(repr, others))
    pytest.fail(message, pytrace=False)


def _leaves(exc: BaseException | None) -> list[BaseException]:
    """The non-group exceptions inside ``exc`` (itself if it is not a group)."""
    if exc is None:
        return []
    inner = getattr(exc, "exceptions", None)  # an exception group (3.10: the backport)
    if isinstance(inner, (list, tuple)):
        return [leaf for sub in inner for leaf in _leaves(sub)]
    return [exc]


#: Frames from these directories say nothing about where a test hangs.
_QUIET_DIRS = tuple(
    os.path.dirname(importlib.import_module(name).__file__ or "") + os.sep
    for name in ("trio", "pytest_trio")
)


def _task_tree(task: trio.lowlevel.Task, depth: int = 0) -> str:
    """Each task's name and the frames it waits in, children indented below it."""
    pad = "  " * depth
    lines = [f"{pad}- task {task.name}"]
    for frame, lineno in task.iter_await_frames():
        code = frame.f_code
        if code.co_filename.startswith(_QUIET_DIRS) or code.co_filename == __file__:
            continue
        lines.append(f"{pad}    {code.co_filename}:{lineno} in {code.co_name}")
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            lines.append(_task_tree(child, depth + 1))
    return "\n".join(lines)
