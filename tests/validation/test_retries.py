"""Retry amplification against its closed forms, and a retry storm that outlives
its trigger unless a retry budget ends it -- both through the shipped retry loop."""

from __future__ import annotations

import math

import pytest

from payflow.sim.validate import amplification, retry_storm

REQUESTS = 8_000


@pytest.mark.parametrize("p", [0.1, 0.3, 0.6])
@pytest.mark.parametrize("retries", [1, 2, 5])
def test_amplification_matches_the_closed_forms(p: float, retries: int) -> None:
    r = amplification(p, retries, requests=REQUESTS, seed=11)
    expected_calls = sum(p**k for k in range(retries + 1))
    expected_success = 1 - p ** (retries + 1)
    assert r["expected_calls"] == pytest.approx(expected_calls)
    # Calls per request: attempts are geometric, truncated; bound its variance by
    # the untruncated one, p / (1 - p)**2, and allow 4 standard errors.
    se_calls = math.sqrt(p / (1 - p) ** 2 / REQUESTS)
    assert abs(r["calls_per_request"] - expected_calls) < 4 * se_calls
    se_success = math.sqrt(expected_success * (1 - expected_success) / REQUESTS)
    assert abs(r["success_rate"] - expected_success) < 4 * se_success + 1 / REQUESTS


def test_no_failures_means_no_retries() -> None:
    r = amplification(0.0, 5, requests=500)
    assert r["calls_per_request"] == 1.0 and r["success_rate"] == 1.0


AFTER_SPIKE = 180.0  # the spike ends at 80 s; judge the last two minutes


@pytest.mark.parametrize(
    "seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]
)
def test_immediate_retries_keep_the_provider_down_after_the_spike(seed: int) -> None:
    df = retry_storm(strategy="immediate", seed=seed)
    before = df[df["t"] < 60]
    after = df[df["t"] >= AFTER_SPIKE]
    assert before["goodput"].mean() > 30  # healthy before the spike (35/s offered)
    assert after["goodput"].mean() < 3  # metastable: the trigger is gone, the outage is not
    assert after["offered"].mean() > 3 * 35  # retries multiply the load
    assert after["queue"].iloc[-1] > after["queue"].iloc[0]  # and the backlog keeps growing


@pytest.mark.parametrize(
    "seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]
)
def test_a_retry_budget_ends_the_storm(seed: int) -> None:
    df = retry_storm(strategy="backoff+budget", seed=seed)
    after = df[df["t"] >= AFTER_SPIKE]
    assert after["goodput"].mean() > 0.85 * 35
    assert after["offered"].mean() < 1.3 * 35
    assert after["queue"].max() < 50


def test_backoff_alone_does_not_end_it_in_an_open_system() -> None:
    """Brooker's point: backoff delays retries but cannot remove the extra work."""
    df = retry_storm(strategy="backoff", seed=0)
    assert df[df["t"] >= AFTER_SPIKE]["goodput"].mean() < 3


def test_storm_strategy_is_validated() -> None:
    with pytest.raises(ValueError, match="strategy"):
        retry_storm(strategy="hope")
