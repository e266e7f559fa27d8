"""Strategies are values; presets have names and one-line descriptions."""

from __future__ import annotations

import pytest

from payflow.core import KeyScope
from payflow.sim import PRESETS, Strategy, get_strategy, strategy_names

REQUIRED = {
    "naive",
    "answer-a",
    "answer-b",
    "exercise",
    "recommended",
    "retry-no-key",
    "timeout-only",
    "key-only",
    "debounce-only",
}


def test_required_presets_exist_with_one_line_descriptions() -> None:
    assert set(strategy_names()) >= REQUIRED
    for name, strategy in PRESETS.items():
        assert strategy.name == name
        assert strategy.description and "\n" not in strategy.description


def test_recommended_follows_the_seed_rules() -> None:
    s = get_strategy("recommended")
    policy = s.policy
    assert policy.key_scope is KeyScope.PER_ORDER
    assert (policy.retry.timeouts.write, policy.retry.timeouts.read) == (2.0, 0.5)
    assert policy.retry.timeouts.poll == 0.5
    assert policy.retry.max_attempts == 3
    assert policy.retry.backoff.kind.value == "full"
    assert policy.cancel_on_give_up
    # Late approvals are polled to their end and shipped, not refunded (email promised).
    assert policy.recover_pending == "poll" and not policy.refund_unclaimed
    assert s.budget is not None and s.new_budget() is not None
    assert s.debounce and s.mode == "async" and s.email
    assert s.order_lock and s.reconcile and s.recover_on_restart


def test_naive_retries_blindly_without_a_key() -> None:
    s = get_strategy("naive")
    assert s.policy.key_scope is KeyScope.NONE and s.policy.retry.retry_unsafe
    assert not s.provider_requires_key
    assert not (s.debounce or s.order_lock or s.reconcile or s.email)


def test_ablations_differ_from_naive_in_one_safeguard() -> None:
    naive = get_strategy("naive")
    for name in ("debounce-only", "lock-only", "recheck-only", "status-page-only", "budget-only"):
        s = get_strategy(name)
        differing = [
            field
            for field in Strategy.__dataclass_fields__
            if field not in ("name", "description") and getattr(s, field) != getattr(naive, field)
        ]
        assert len(differing) == 1, (name, differing)


def test_strategies_are_frozen_values() -> None:
    s = get_strategy("naive")
    with pytest.raises(AttributeError):
        s.debounce = True  # type: ignore[misc]
    assert s.but(debounce=True).debounce and not s.debounce


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"mode": "batch"}, "strategy.mode"),
        ({"feedback": "confetti"}, "strategy.feedback"),
        ({"budget": "infinite"}, "strategy.budget"),
        ({"gateway_timeout_s": 0}, "strategy.gateway_timeout_s"),
        ({"recheck_interval_s": -5}, "strategy.recheck_interval_s"),
    ],
)
def test_bad_knobs_are_named(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        get_strategy("naive").but(**changes)


def test_unknown_preset_lists_the_valid_ones() -> None:
    with pytest.raises(LookupError) as exc:
        get_strategy("yolo")
    for name in REQUIRED:
        assert name in str(exc.value)


def test_ambiguous_sentences_have_variants_that_differ_in_that_reading_only() -> None:
    from dataclasses import fields as dc_fields

    def knobs(s: Strategy) -> dict[str, object]:
        return {
            f.name: getattr(s, f.name)
            for f in dc_fields(s)
            if f.name not in ("name", "description")
        }

    pairs = {
        "exercise-settle": ("exercise", {"policy"}),
        "recommended-rollback": ("recommended", {"policy"}),
        "answer-a-release": ("answer-a", {"lock_until_answer"}),
    }
    for variant, (base, differ) in pairs.items():
        a, b = knobs(get_strategy(variant)), knobs(get_strategy(base))
        assert {k for k in a if a[k] != b[k]} == differ, variant
    settle, exercise = get_strategy("exercise-settle").policy, get_strategy("exercise").policy
    assert (settle.recover_pending, settle.refund_unclaimed) == ("poll", False)
    assert (exercise.recover_pending, exercise.refund_unclaimed) == ("cancel", True)
    assert get_strategy("answer-a").lock_until_answer


def test_answer_a_keeps_an_unanswered_order_locked() -> None:
    from payflow.sim import run

    result = run("slow-provider-day", "answer-a", seed=0)
    day = result._day
    assert day is not None
    refused = [
        o
        for o in day.orders
        if any(
            isinstance(e, tuple) and e[2] == "order locked: no answer from the provider yet"
            for e in o.trace or ()
        )
    ]
    assert refused  # customers do come back to an order whose payment got no answer
    assert all(o.flows == 1 and o.outcome == "unknown" for o in refused)
    released = run("slow-provider-day", "answer-a-release", seed=0, trace=False).orders
    assert released["pay_flows"].max() > 1  # the released lock lets a new payment start
