from __future__ import annotations

import itertools

import pytest

from payflow.core.states import (
    FINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    PaymentState,
    advance,
    from_provider,
)


@pytest.mark.parametrize(("a", "b"), list(itertools.product(PaymentState, PaymentState)))
def test_accepts_exactly_the_table(a: PaymentState, b: PaymentState) -> None:
    if a is b or b in TRANSITIONS[a]:
        assert advance(a, b) is b
    else:
        with pytest.raises(IllegalTransition, match=f"{a.value} to {b.value}"):
            advance(a, b)


def test_final_states_have_no_way_out() -> None:
    assert {s.value for s in FINAL_STATES} == {"declined", "cancelled", "expired", "refunded"}


def test_every_state_is_in_the_table() -> None:
    assert set(TRANSITIONS) == set(PaymentState)


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("initiated", PaymentState.PENDING),
        ("reserved", PaymentState.RESERVED),
        ("captured", PaymentState.CAPTURED),
        ("bogus", PaymentState.UNKNOWN),
    ],
)
def test_provider_names(name: str, state: PaymentState) -> None:
    assert from_provider(name) is state
