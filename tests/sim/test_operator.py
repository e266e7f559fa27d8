"""The modelled operator: asked while a payment is pending, gives up once patience is spent."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from payflow.core.events import OperatorAsked
from payflow.sim._model import Day
from payflow.sim._runner import resolve_scenario
from payflow.sim._strategies import Strategy, get_strategy


def _operator_strategy(every: float = 30.0, patience: float = 45.0) -> Strategy:
    base = get_strategy("recommended")
    polling = replace(base.policy.polling, deadline=900.0)
    return base.but(
        name="operator",
        operator_every_s=every,
        operator_patience_s=patience,
        policy=replace(base.policy, polling=polling),
    )


def _asked(day: Day) -> list[Any]:
    return [e for o in day.orders for e in (o.trace or []) if isinstance(e, OperatorAsked)]


def test_the_operator_is_asked_and_gives_up_by_patience_reproducibly() -> None:
    scenario = resolve_scenario("slow-provider-day")
    scenario = replace(scenario, traffic=replace(scenario.traffic, orders=150))
    first = _asked(Day(scenario, _operator_strategy(), seed=3).run())
    again = _asked(Day(scenario, _operator_strategy(), seed=3).run())
    assert first and first == again  # same seed, same questions and answers
    assert {e.give_up for e in first} == {True, False}
    for event in first:  # every answer follows from the waited time and some patience
        assert event.waited_s >= 30.0


def test_without_an_operator_nobody_is_asked() -> None:
    scenario = resolve_scenario("slow-provider-day")
    scenario = replace(scenario, traffic=replace(scenario.traffic, orders=100))
    assert _asked(Day(scenario, get_strategy("recommended"), seed=3).run()) == []


def test_operator_knobs_are_checked() -> None:
    with pytest.raises(ValueError, match="operator_every_s"):
        get_strategy("recommended").but(operator_every_s=0.0)
    with pytest.raises(ValueError, match="operator_patience_s"):
        get_strategy("recommended").but(operator_patience_s=-1.0)
