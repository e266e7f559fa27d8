from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payflow.core import RetryBudget


def test_grpc_allows_retries_only_above_half() -> None:
    b = RetryBudget.grpc(max_tokens=10, token_ratio=0.1)
    allowed = 0
    for _ in range(20):
        b.record_failure()
        if b.acquire_retry() is not None:
            allowed += 1
    # tokens 9,8,7,6 are above 5; at 5 and below, refused.
    assert allowed == 4
    assert b.retries_refused == 16


def test_grpc_successes_refill_by_ratio() -> None:
    b = RetryBudget.grpc(max_tokens=10, token_ratio=0.5)
    for _ in range(10):
        b.record_failure()
    assert b.tokens == 0
    for _ in range(12):
        b.record_success()
    assert b.tokens == 6
    b.record_failure()
    assert b.acquire_retry() is None  # 5 is not above half
    b.record_success()
    b.record_success()
    assert b.acquire_retry() is not None  # 6 > 5


def test_aws_standard_costs_and_refunds() -> None:
    b = RetryBudget.aws_standard()
    assert b.acquire_retry() == 5
    assert b.acquire_retry(after_timeout=True) == 10
    assert b.tokens == 485
    b.record_success(retry_cost_paid=15)
    assert b.tokens == 500
    b.tokens = 7
    assert b.acquire_retry(after_timeout=True) is None
    assert b.acquire_retry() == 5


def test_tokens_never_exceed_max() -> None:
    b = RetryBudget.aws_standard(quota=20)
    for _ in range(100):
        b.record_success()
    assert b.tokens == 20


@settings(max_examples=50)
@given(
    st.floats(min_value=0.05, max_value=1.0),
    st.floats(min_value=0.3, max_value=0.95),
    st.integers(0, 2**32),
)
def test_grpc_budget_bounds_retries_per_call_over_long_runs(ratio, p_fail, seed) -> None:
    """In steady state a retry needs 1 token and a success gives `ratio`, so
    retries per call cannot exceed about `ratio` (plus the initial bucket)."""
    rng = random.Random(seed)
    budget = RetryBudget.grpc(max_tokens=10, token_ratio=ratio)
    calls = 20_000
    retries = 0
    for _ in range(calls):
        while True:
            if rng.random() >= p_fail:
                budget.record_success()
                break
            budget.record_failure()
            if budget.acquire_retry() is None:
                break
            retries += 1
    assert retries <= ratio * calls + budget.max_tokens


def test_bad_presets() -> None:
    with pytest.raises(ValueError, match="token_ratio"):
        RetryBudget.grpc(max_tokens=10, token_ratio=0)
    with pytest.raises(ValueError, match="max_tokens"):
        RetryBudget.grpc(max_tokens=0)
