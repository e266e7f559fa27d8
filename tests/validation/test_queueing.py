"""The provider model's own queue against Erlang C, with confidence intervals.

Independent replications (different seeds, warm-up discarded) give a 99%
Student-t interval for the mean wait; the theory must lie inside it, and the
interval must be narrow enough that the check could fail.
"""

from __future__ import annotations

import math
import statistics

import pytest

from payflow.sim.validate import erlang_c_wait, mmc

REPLICATIONS = 10
CUSTOMERS = 20_000
T_99_9DF = 3.250  # Student t, two-sided 99%, 9 degrees of freedom


def interval(values: list[float]) -> tuple[float, float, float]:
    mean = statistics.mean(values)
    half = T_99_9DF * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


@pytest.mark.parametrize(
    ("arrival_rate", "service_rate", "servers"),
    [(2.0, 1.0, 3), (8.0, 1.0, 10), (9.0, 1.0, 10)],  # utilisation 0.67, 0.8, 0.9
)
def test_mean_wait_matches_erlang_c(arrival_rate: float, service_rate: float, servers: int) -> None:
    runs = [
        mmc(arrival_rate, service_rate, servers, CUSTOMERS, seed=seed)
        for seed in range(REPLICATIONS)
    ]
    theory = erlang_c_wait(arrival_rate, service_rate, servers)
    mean, low, high = interval([r["mean_wait"] for r in runs])
    assert low <= theory <= high, (theory, mean, low, high)
    assert high - low < 0.6 * theory  # the interval is tight enough to mean something
    rho = arrival_rate / (service_rate * servers)
    u_mean, u_low, u_high = interval([r["utilization"] for r in runs])
    assert u_low <= rho <= u_high, (rho, u_mean)


@pytest.mark.parametrize(
    ("lam", "mu", "c", "expected"),
    [
        (0.5, 1.0, 1, 1.0),  # M/M/1: Wq = rho / (mu - lambda)
        (2.0, 1.0, 3, 0.4444444444),  # 4/9, a textbook value
        (9.0, 1.0, 10, 0.6687),
    ],
)
def test_erlang_c_formula(lam: float, mu: float, c: int, expected: float) -> None:
    assert erlang_c_wait(lam, mu, c) == pytest.approx(expected, rel=1e-3)


def test_unstable_queue_has_infinite_wait() -> None:
    assert erlang_c_wait(10.0, 1.0, 10) == math.inf


def test_same_seed_same_numbers() -> None:
    assert mmc(2.0, 1.0, 3, 2000, seed=4) == mmc(2.0, 1.0, 3, 2000, seed=4)
    assert mmc(2.0, 1.0, 3, 2000, seed=4) != mmc(2.0, 1.0, 3, 2000, seed=5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"arrival_rate": 0}, "arrival_rate"),
        ({"service_rate": -1}, "service_rate"),
        ({"servers": 0}, "servers"),
        ({"customers": 3}, "customers"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, float], field: str) -> None:
    args = {"arrival_rate": 1.0, "service_rate": 2.0, "servers": 1, "customers": 100}
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        mmc(**args)  # type: ignore[arg-type]
