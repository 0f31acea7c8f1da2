"""Hypothesis: under any sequence of world faults, replicas converge on every committed write."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tarantool import sim

ACTIONS = st.one_of(
    st.tuples(st.sampled_from(["crash", "restart", "partition", "unpartition", "pause", "resume"]),
              st.integers(0, 2)),
    st.tuples(st.just("set_rw"), st.integers(0, 2)),
    st.tuples(st.just("write"), st.integers(0, 2)),
    st.tuples(st.just("failover"), st.just(0)),
    st.tuples(st.just("heal"), st.just(0)),
    st.tuples(st.just("advance"), st.sampled_from([0.0, 0.01, 0.05, 0.1, 1.0])),
)


@settings(max_examples=60, deadline=None)
@given(actions=st.lists(ACTIONS, max_size=40), seed=st.integers(0, 1000))
def test_replicas_converge_on_committed_writes(actions: list[tuple[str, Any]], seed: int) -> None:
    async def main() -> None:
        committed: set[int] = set()
        next_id = 0
        async with sim.open_replicaset(n=3, seed=seed, lag=0.05, lag_jitter=0.05,
                                       failover_window=(0.0, 0.2)) as rs:
            rs.create_space("t", [("id", "unsigned")], indexes=[("primary", [("id", "unsigned")], True)])
            for action, arg in actions:
                if action == "write":
                    next_id += 1
                    inst = rs[arg]
                    if inst.up and not inst.paused:
                        try:
                            inst.insert(512, [next_id])
                            committed.add(next_id)
                        except sim.BoxError as exc:
                            assert exc.code == 7 and inst.ro  # refused only when read-only
                elif action == "failover":
                    await rs.failover()
                elif action == "set_rw":
                    for i in range(len(rs)):
                        rs.set_ro(i, i != arg)
                elif action == "heal":
                    rs.heal()
                elif action == "advance":
                    await rs.advance(arg)
                else:
                    getattr(rs, action)(arg)
            rs.heal()
            for i in range(len(rs)):
                rs.restart(i)
                rs.resume(i)
            await rs.advance(0.2)
            stored = [{t[0] for t in inst.db.space(512).primary._tuples} for inst in rs.instances]
            assert stored == [committed] * 3
            assert len({inst.lsn for inst in rs.instances}) == 1 or committed == set()

    sim.run(main, seed=None)
