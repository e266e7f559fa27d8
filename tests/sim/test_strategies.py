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
