"""Strategy.but takes flat knobs; Scenario takes a profile and traffic built in code."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from payflow.core._backoff import Jitter
from payflow.core._keys import KeyScope
from payflow.core._policy import Timeouts
from payflow.provider.faults import FaultProfile, Faults
from payflow.sim import Scenario, get_strategy, run
from payflow.sim._scenarios import Traffic


def test_flat_knobs_set_the_nested_policy() -> None:
    base = get_strategy("recommended")
    s = base.but(
        timeout_s=8,
        read_timeout_s=0.5,
        retries=2,
        retry_deadline_s=None,
        backoff="equal",
        budget=None,
        poll_deadline_s=120,
        key_scope="order",
    )
    retry = s.policy.retry
    assert retry.timeouts == Timeouts(8.0, 0.5, 0.5)
    assert retry.max_attempts == 3 and retry.deadline is None
    assert retry.backoff.kind is Jitter.EQUAL
    assert s.budget is None and s.policy.polling.deadline == 120
    assert s.policy.key_scope is KeyScope.PER_ORDER
    knobs = s.knobs()
    assert knobs["timeout_s"] == 8 and knobs["retries"] == 2 and knobs["key_scope"] == "order"
    # the nested form still works and means the same
    nested = base.but(
        policy=replace(
            base.policy,
            retry=replace(base.policy.retry, timeouts=Timeouts(8.0, 0.5, 0.5)),
        )
    )
    assert nested.policy.retry.timeouts == base.but(timeout_s=8).policy.retry.timeouts


@pytest.mark.parametrize(
    ("preset", "knobs", "message"),
    [
        ("recommended", {"timeuot_s": 8}, "timeuot_s: unknown knob"),
        ("recommended", {"retries": 9}, "retries: must be an integer 0..5"),
        ("recommended", {"timeout_s": -1}, "timeout_s: must be a number > 0"),
        ("recommended", {"key_scope": "cart"}, "key_scope: must be none"),
        ("recommended", {"backoff": "wild"}, "backoff: must be one of"),
        ("naive", {"recheck_interval_s": 60}, "recheck_interval_s: naive cannot use it"),
        ("naive", {"operator_patience_s": 60}, "operator_patience_s: naive cannot use it"),
        ("recommended", {"timeout_s": 12, "retries": 2}, "retries: recommended's retry_deadline_s"),
    ],
)
def test_bad_knobs_are_named(preset: str, knobs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_strategy(preset).but(**knobs)


def test_a_knob_needing_another_works_when_both_are_given() -> None:
    s = get_strategy("naive").but(reconcile=True, recheck_interval_s=60)
    assert s.recheck_interval_s == 60


def test_scenario_takes_a_profile_and_traffic_built_in_code() -> None:
    profile = FaultProfile(
        "mine",
        [(0.0, Faults(latency_before_s=0.5)), (12 * 3600.0, Faults(latency_before_s=8.0))],
    )
    traffic = Traffic(orders=50, diurnal=(("00:00", 1.0), ("24:00", 1.0)))  # type: ignore[arg-type]
    assert traffic.diurnal == ((0.0, 1.0), (86400.0, 1.0))
    scenario = Scenario("mine", faults=profile, traffic=traffic)
    assert scenario.profile() is profile
    a = run(scenario, get_strategy("recommended").but(timeout_s=4), seed=2)
    b = run(pickle.loads(pickle.dumps(scenario)), "recommended", seed=2)
    assert a.summary["orders"] == b.summary["orders"] == 50
    with pytest.raises(ValueError, match="faults: must be"):
        Scenario("bad", faults=3)  # type: ignore[arg-type]
