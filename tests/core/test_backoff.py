from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payflow.core import Backoff, Jitter

bases = st.floats(min_value=0.0, max_value=5.0, allow_nan=False)
extra = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
attempts = st.integers(min_value=0, max_value=200)
previous = st.none() | st.floats(min_value=0.0, max_value=1000.0, allow_nan=False)


@given(st.sampled_from(list(Jitter)), bases, extra, attempts, previous, st.integers(0, 2**32))
def test_every_delay_lies_in_zero_to_cap(kind, base, more, attempt, prev, seed) -> None:
    b = Backoff(kind, base, base + more)
    d = b.delay(attempt, prev, random.Random(seed))
    assert 0.0 <= d <= b.cap


@given(bases, extra, attempts, previous, st.integers(0, 2**32))
def test_decorrelated_stays_in_base_to_cap(base, more, attempt, prev, seed) -> None:
    b = Backoff(Jitter.DECORRELATED, base, base + more)
    assert b.base <= b.delay(attempt, prev, random.Random(seed)) <= b.cap


@pytest.mark.parametrize(
    ("kind", "attempt", "expected"),
    [
        (Jitter.NONE, 3, 0.0),
        (Jitter.CONSTANT, 3, 0.1),
        (Jitter.EXPONENTIAL, 0, 0.1),
        (Jitter.EXPONENTIAL, 3, 0.8),
        (Jitter.EXPONENTIAL, 10, 2.0),  # capped
    ],
)
def test_deterministic_kinds(kind: Jitter, attempt: int, expected: float) -> None:
    assert Backoff(kind, 0.1, 2.0).delay(attempt, None, random.Random(0)) == pytest.approx(expected)


class _Fixed:
    """An rng whose random() is a fixed value, to check the formulas exactly."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value

    def getrandbits(self, k: int) -> int:
        return 0


@pytest.mark.parametrize("u", [0.0, 0.25, 0.999])
def test_formulas_match_the_aws_post(u: float) -> None:
    base, cap, attempt = 0.1, 2.0, 3
    temp = min(cap, base * 2**attempt)
    rng = _Fixed(u)
    assert Backoff(Jitter.FULL, base, cap).delay(attempt, None, rng) == pytest.approx(temp * u)
    assert Backoff(Jitter.EQUAL, base, cap).delay(attempt, None, rng) == pytest.approx(
        temp / 2 + temp / 2 * u
    )
    assert Backoff(Jitter.DECORRELATED, base, cap).delay(attempt, 0.4, rng) == pytest.approx(
        min(cap, base + (0.4 * 3 - base) * u)
    )


def test_same_seed_same_delays() -> None:
    b = Backoff(Jitter.FULL, 0.1, 10.0)
    a = [b.delay(i, None, random.Random(7)) for i in range(5)]
    c = [b.delay(i, None, random.Random(7)) for i in range(5)]
    assert a == c


@pytest.mark.parametrize(("base", "cap"), [(-1.0, 1.0), (2.0, 1.0)])
def test_bad_parameters_name_the_field(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match=r"base|cap"):
        Backoff(Jitter.FULL, base, cap)


def test_jitter_by_name() -> None:
    assert Backoff("full", 0.1, 1.0).kind is Jitter.FULL  # type: ignore[arg-type]
