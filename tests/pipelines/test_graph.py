"""The graph and the states: order, cycles, ancestors, which steps start or are skipped."""

from __future__ import annotations

import pytest

from appyard.domain.pipeline import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    CycleError,
    RetryOn,
    RunState,
    SkipReason,
    StepRule,
    StepState,
    StepView,
    When,
    ancestors,
    can_run_move,
    can_step_move,
    fan_out_state,
    find_cycle,
    items_to_start,
    plan,
    ready_steps,
    retry_delay,
    run_outcome,
    to_resume,
    topological_order,
)

P, R, F, E, S, K = (
    StepState.PENDING,
    StepState.RUNNING,
    StepState.FINISHED,
    StepState.ERROR,
    StepState.STOPPED,
    StepState.SKIPPED,
)


def views(**states: StepState | tuple[StepState, SkipReason]) -> dict[str, StepView]:
    out = {}
    for name, st in states.items():
        out[name] = StepView(*st) if isinstance(st, tuple) else StepView(st)
    return out


def test_order_keeps_the_document_order_among_ties() -> None:
    needs = {"c": ["a"], "a": [], "b": [], "d": ["c", "b"], "e": []}
    assert topological_order(needs) == ["a", "c", "b", "d", "e"]
    assert topological_order({"x": [], "y": ["x", "x"]}) == ["x", "y"]


def test_a_cycle_is_named() -> None:
    needs = {"a": [], "b": ["a", "d"], "c": ["b"], "d": ["c"]}
    assert find_cycle(needs) == ["b", "d", "c", "b"]
    with pytest.raises(CycleError) as e:
        topological_order(needs)
    assert e.value.cycle == ["b", "d", "c", "b"]
    assert str(e.value) == "the needs go round: b -> d -> c -> b"
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"a": ["nope"], "b": ["a"]}) is None


def test_ancestors_go_through_steps() -> None:
    needs = {"a": [], "b": ["a"], "c": ["b"], "d": ["a"], "e": ["c", "d", "unknown"]}
    got = ancestors(needs)
    assert got["a"] == frozenset()
    assert got["c"] == {"a", "b"}
    assert got["e"] == {"a", "b", "c", "d"}
    looped = ancestors({"a": ["b"], "b": ["a"], "c": ["a"]})
    assert looped == {"a": {"a", "b"}, "b": {"a", "b"}, "c": {"a", "b"}}


def test_a_long_chain_needs_no_recursion() -> None:
    needs = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(5000)}
    assert topological_order(needs)[-1] == "s4999"
    assert len(ancestors({k: needs[k] for k in list(needs)[:300]})["s299"]) == 299
    needs["s0"] = ["s4999"]
    cycle = find_cycle(needs)
    assert cycle is not None and len(cycle) == 5001


DIAMOND = {
    "a": StepRule(),
    "b": StepRule(("a",)),
    "c": StepRule(("a",)),
    "d": StepRule(("b", "c")),
}


def test_ready_steps_follow_the_needs() -> None:
    assert ready_steps(DIAMOND, views(a=P, b=P, c=P, d=P)) == ["a"]
    assert ready_steps(DIAMOND, views(a=R, b=P, c=P, d=P)) == []
    assert ready_steps(DIAMOND, views(a=F, b=P, c=P, d=P)) == ["b", "c"]
    assert ready_steps(DIAMOND, views(a=F, b=F, c=R, d=P)) == []
    assert ready_steps(DIAMOND, views(a=F, b=F, c=F, d=P)) == ["d"]
    assert ready_steps(DIAMOND, {}) == ["a"]  # a step with no view is pending


def test_a_failure_skips_all_success_steps_down_the_graph_at_once() -> None:
    got = plan(DIAMOND, views(a=F, b=E, c=R, d=P))
    assert got.start == ()
    assert got.skip == {"d": SkipReason.UPSTREAM_FAILED}  # without waiting for c
    got = plan(DIAMOND, views(a=E, b=P, c=P, d=P))
    assert got.skip == {
        "b": SkipReason.UPSTREAM_FAILED,
        "c": SkipReason.UPSTREAM_FAILED,
        "d": SkipReason.UPSTREAM_FAILED,
    }


def test_independent_branches_go_on_after_a_failure() -> None:
    rules = {"a": StepRule(), "b": StepRule(("a",)), "x": StepRule(), "y": StepRule(("x",))}
    got = plan(rules, views(a=E, b=P, x=F, y=P))
    assert got.start == ("y",)
    assert got.skip == {"b": SkipReason.UPSTREAM_FAILED}


def test_all_done_runs_after_any_end() -> None:
    rules = {**DIAMOND, "d": StepRule(("b", "c"), When.ALL_DONE)}
    assert plan(rules, views(a=F, b=E, c=R, d=P)).start == ()
    assert plan(rules, views(a=F, b=E, c=F, d=P)).start == ("d",)
    # a skipped need counts as done
    got = plan(rules, views(a=E, b=P, c=P, d=P))
    assert got.start == ("d",)
    assert got.skip == {"b": SkipReason.UPSTREAM_FAILED, "c": SkipReason.UPSTREAM_FAILED}


def test_any_failed_runs_only_when_a_need_failed() -> None:
    rules = {**DIAMOND, "d": StepRule(("b", "c"), When.ANY_FAILED)}
    assert plan(rules, views(a=F, b=E, c=R, d=P)).start == ()  # waits for every need
    assert plan(rules, views(a=F, b=E, c=F, d=P)).start == ("d",)
    assert plan(rules, views(a=F, b=S, c=F, d=P)).start == ("d",)
    got = plan(rules, views(a=F, b=F, c=F, d=P))
    assert got.start == () and got.skip == {"d": SkipReason.WHEN_NOT_MET}
    # a need skipped because its own need failed counts as failed
    assert plan(rules, views(a=E, b=P, c=P, d=P)).start == ("d",)


def test_after_a_when_not_met_all_success_steps_are_not_met_either() -> None:
    rules = {
        "a": StepRule(),
        "cleanup": StepRule(("a",), When.ANY_FAILED),
        "report": StepRule(("cleanup",)),
    }
    got = plan(rules, views(a=F, cleanup=P, report=P))
    assert got.skip == {"cleanup": SkipReason.WHEN_NOT_MET, "report": SkipReason.WHEN_NOT_MET}


def test_continue_on_failure() -> None:
    rules = {
        "flaky": StepRule(continue_on_failure=True),
        "next": StepRule(("flaky",)),
        "on-fail": StepRule(("flaky",), When.ANY_FAILED),
    }
    got = plan(rules, views(flaky=E, next=P))
    assert got.start == ("next", "on-fail")  # tolerated for all_success, seen by any_failed
    assert plan(rules, views(flaky=F)).skip == {"on-fail": SkipReason.WHEN_NOT_MET}
    assert plan(rules, views(flaky=F)).start == ("next",)
    ended = views(flaky=E, next=F, **{"on-fail": F})
    assert run_outcome(rules, ended) is RunState.FINISHED


def test_stopping_skips_what_has_not_started() -> None:
    got = plan(DIAMOND, views(a=F, b=R, c=P, d=P), stopping=True)
    assert got.start == ()
    assert got.skip == {"c": SkipReason.RUN_STOPPED, "d": SkipReason.RUN_STOPPED}


def test_retrying_steps_are_left_to_their_policy() -> None:
    assert ready_steps(DIAMOND, views(a=StepState.RETRYING)) == []


def test_run_outcome() -> None:
    assert run_outcome(DIAMOND, views(a=F, b=F, c=R, d=P)) is None
    assert run_outcome(DIAMOND, views(a=F, b=F, c=F, d=F)) is RunState.FINISHED
    failed = views(a=F, b=E, c=F, d=(K, SkipReason.UPSTREAM_FAILED))
    assert run_outcome(DIAMOND, failed) is RunState.ERROR
    stopped = views(a=F, b=S, c=(K, SkipReason.RUN_STOPPED), d=(K, SkipReason.RUN_STOPPED))
    assert run_outcome(DIAMOND, stopped, stopping=True) is RunState.STOPPED
    assert run_outcome(DIAMOND, views(a=F, b=F, c=F, d=(K, SkipReason.WHEN_NOT_MET))) is (
        RunState.FINISHED
    )


def test_resume_runs_again_what_did_not_finish() -> None:
    ended = views(a=F, b=E, c=S, d=(K, SkipReason.UPSTREAM_FAILED))
    again = to_resume(ended)
    assert again == ["b", "c", "d"]
    assert all(can_step_move(ended[s].state, P) for s in again)
    assert not can_step_move(F, P)
    resumed = {**ended, **{s: StepView() for s in again}}
    assert ready_steps(DIAMOND, resumed) == ["b", "c"]


def test_state_tables() -> None:
    assert set(STEP_TRANSITIONS) == set(StepState)
    assert set(RUN_TRANSITIONS) == set(RunState)
    assert can_step_move(P, R) and can_step_move(R, StepState.RETRYING)
    assert can_step_move(StepState.RETRYING, R) and not can_step_move(P, S)
    assert can_run_move(RunState.RUNNING, RunState.TERMINATING)
    assert can_run_move(RunState.TERMINATING, RunState.STOPPED)
    assert not can_run_move(RunState.TERMINATING, RunState.FINISHED)
    assert can_run_move(RunState.ERROR, RunState.RUNNING)  # resume
    assert not can_run_move(RunState.FINISHED, RunState.RUNNING)


def test_fan_out() -> None:
    assert fan_out_state([]) is F
    assert fan_out_state([F, R, E]) is R
    assert fan_out_state([F, E, S]) is E
    assert fan_out_state([F, S]) is S
    assert fan_out_state([F, F]) is F
    assert items_to_start([P] * 10, 4) == [0, 1, 2, 3]
    assert items_to_start([F, R, StepState.RETRYING, P, P, P], 4) == [3, 4]
    assert items_to_start([R, R, P], 2) == []
    assert items_to_start([R, P, P], None) == [1, 2]


def test_retry_delay() -> None:
    policy = {"limit": 2, "backoff_s": 5.0, "retry_on": [RetryOn.ERROR, RetryOn.TIMEOUT]}
    assert retry_delay(**policy, attempts=1, end=RetryOn.ERROR) == 5.0
    assert retry_delay(**policy, attempts=2, end=RetryOn.TIMEOUT) == 5.0
    assert retry_delay(**policy, attempts=3, end=RetryOn.ERROR) is None
    assert retry_delay(**policy, attempts=1, end=RetryOn.STOPPED) is None
    assert (
        retry_delay(limit=0, backoff_s=0, retry_on=[RetryOn.ERROR], attempts=1, end=RetryOn.ERROR)
        is None
    )
