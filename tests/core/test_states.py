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


def test_the_derived_sets_say_what_their_names_say() -> None:
    from payflow.core.states import (
        FINAL,
        FINAL_PAYMENT_STATES,
        MONEY_HELD,
        MONEY_TAKEN,
        MONEY_TAKEN_STATES,
        NOTHING_TAKEN,
        PAYMENT_STATES,
    )

    S = PaymentState
    assert {S.RESERVED} == MONEY_HELD and {S.RESERVED, S.CAPTURED} == MONEY_TAKEN
    assert {S.DECLINED, S.CANCELLED, S.EXPIRED} == NOTHING_TAKEN
    assert NOTHING_TAKEN | {S.CAPTURED, S.REFUNDED} == FINAL
    assert {"reserved", "captured"} == MONEY_TAKEN_STATES
    assert {"captured", "declined", "cancelled", "expired"} == FINAL_PAYMENT_STATES
    assert MONEY_TAKEN_STATES | FINAL_PAYMENT_STATES | {"initiated"} == PAYMENT_STATES
    assert from_provider("initiated") is S.PENDING  # waiting for the payer, not "sent"


def test_decisions_never_compare_a_state_string_by_hand() -> None:
    """The core's flows ask the vocabulary (``view.stage``, the sets), never ``state == "x"``."""
    import ast
    from pathlib import Path

    import payflow.core

    core = Path(payflow.core.__file__).parent
    offenders = []
    for name in ("_flows.py", "_recheck.py", "_calls.py"):
        for node in ast.walk(ast.parse((core / name).read_text())):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                names_state = any(isinstance(s, ast.Attribute) and s.attr == "state" for s in sides)
                literal = any(
                    isinstance(s, ast.Constant | ast.Tuple | ast.Set) for s in node.comparators
                )
                if names_state and literal:
                    offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


def test_charged_and_held_read_the_vocabulary() -> None:
    from payflow.core.states import charged, held

    assert charged("captured", 0, 1000) and not charged("captured", 1000, 1000)
    assert not charged("reserved", 0, 1000) and held("reserved", 0, 1000)
    assert not held("reserved", 1000, 1000) and not held("captured", 0, 1000)
    assert not charged("initiated", 0, 1000) and not held("bogus", 0, 1000)


def test_no_money_decision_outside_the_provider_compares_a_state_string() -> None:
    """Metrics, stories, compare and the core ask :mod:`payflow.core.states` (``charged``,
    ``held``, ``stage``), never ``state == "captured"``; the provider's ledger is the one
    place that *sets* states, so it is the one place that names them."""
    import ast
    from pathlib import Path

    import payflow

    root = Path(payflow.__file__).parent
    money = {"reserved", "captured"}
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if "provider" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                literals = {
                    s.value
                    for s in [node.left, *node.comparators]
                    if isinstance(s, ast.Constant) and isinstance(s.value, str)
                }
                if literals & money:
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []
