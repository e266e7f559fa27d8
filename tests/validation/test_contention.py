"""payflow's backoff reproduces the findings of "Exponential Backoff And Jitter" (AWS, 2015).

Each comparison is made on means over independent replications and asserted
only when the difference exceeds three standard errors -- no lucky seeds.
"""

from __future__ import annotations

import math
import statistics
from functools import cache

import pytest

from payflow.sim.contention import ALGORITHMS, run

REPLICATIONS = 40


@cache
def measure(clients: int, algorithm: str, what: str) -> tuple[float, float]:
    """Mean and standard error of ``what`` over independent replications."""
    values = [run(clients, algorithm, seed=s)[what] for s in range(REPLICATIONS)]
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))


def clearly_less(clients: int, a: str, b: str, what: str) -> bool:
    (ma, sa), (mb, sb) = measure(clients, a, what), measure(clients, b, what)
    return mb - ma > 3 * math.hypot(sa, sb)


@pytest.mark.parametrize("clients", [50, 100])
def test_no_jitter_exponential_is_the_clear_loser(clients: int) -> None:
    for jittered in ("full", "equal", "decorrelated"):
        assert clearly_less(clients, jittered, "exponential", "calls")
        assert clearly_less(clients, jittered, "exponential", "completion_ms")


@pytest.mark.parametrize("clients", [50, 100])
def test_every_backoff_does_less_work_than_no_backoff(clients: int) -> None:
    for algorithm in ("exponential", "full", "equal", "decorrelated"):
        assert clearly_less(clients, algorithm, "none", "calls")


@pytest.mark.parametrize("clients", [50, 100])
def test_equal_jitter_loses_among_the_jittered(clients: int) -> None:
    """The post: Equal Jitter does slightly more work than Full Jitter and takes much longer."""
    assert measure(clients, "equal", "calls")[0] > measure(clients, "full", "calls")[0]
    assert clearly_less(clients, "full", "equal", "completion_ms")
    assert clearly_less(clients, "decorrelated", "equal", "completion_ms")


@pytest.mark.parametrize("clients", [50, 100])
def test_full_jitter_less_work_decorrelated_less_time(clients: int) -> None:
    """The post: Full Jitter uses less work, Decorrelated Jitter slightly less time."""
    assert clearly_less(clients, "full", "decorrelated", "calls")
    assert (
        measure(clients, "decorrelated", "completion_ms")[0]
        < measure(clients, "full", "completion_ms")[0]
    )


def test_same_seed_same_numbers_and_work_grows_with_contention() -> None:
    assert run(20, "full", seed=3) == run(20, "full", seed=3)
    assert measure(50, "none", "calls")[0] > 4 * measure(10, "none", "calls")[0]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"clients": 0, "jitter": "full"}, "clients"), ({"clients": 5, "jitter": "fancy"}, "jitter")],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        run(**kwargs)  # type: ignore[arg-type]


def test_algorithms_are_the_posts() -> None:
    assert set(ALGORITHMS) == {"none", "exponential", "full", "equal", "decorrelated"}
