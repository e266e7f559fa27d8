"""The provider's queue over the day: ProviderStats.queue_by_slot, checked by hand."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import simpy

from payflow.core import _api as api
from payflow.provider.faults import FaultDraw, FaultProfile, Faults
from payflow.sim._provider import ProviderModel


def _model(env: simpy.Environment, services: list[float], capacity: int, slot_s: float) -> Any:
    draws: Iterator[float] = iter(services)

    def service(faults: Faults, rng: random.Random) -> FaultDraw:
        return FaultDraw(next(draws), 0.0, "ok")

    profile = FaultProfile.constant(Faults(capacity=capacity))
    return ProviderModel(env, None, profile, random.Random(0), service=service, queue_slot_s=slot_s)


def test_three_requests_on_one_slot_by_hand() -> None:
    # Three requests at t=0, capacity 1, service 4, 6 and 8 s: the first is served
    # 0-4, the second waits 0-4 and is served 4-10, the third waits 0-10 (18 s end).
    # Waiting: 2 requests over [0, 4), 1 over [4, 10), none after.
    env = simpy.Environment()
    model = _model(env, [4.0, 6.0, 8.0], capacity=1, slot_s=5.0)
    for _ in range(3):
        model.submit(api.get_payment("p"), simpy.Event(env))
    env.run(until=20.0)
    stats = model.stats
    assert stats.queue_slot_s == 5.0
    # slot [0,5): 2*4 + 1*1 = 9; [5,10): 1*5 = 5; [10,15): 0; [15,20): 0 -- per 5 s
    assert stats.queue_by_slot == [9 / 5, 5 / 5, 0.0, 0.0]
    assert stats.max_queue == 2
    # Little's law: the area under the queue is the time waited, over the run's length
    area = sum(q * stats.queue_slot_s for q in stats.queue_by_slot)
    assert area == pytest.approx(stats.wait_s) and stats.wait_s == 0 + 4 + 10
    assert sum(stats.queue_by_slot) / len(stats.queue_by_slot) == pytest.approx(14 / 20)


def test_a_partial_last_slot_is_the_mean_over_its_covered_part() -> None:
    env = simpy.Environment()
    model = _model(env, [4.0, 6.0, 8.0], capacity=1, slot_s=10.0)
    for _ in range(3):
        model.submit(api.get_payment("p"), simpy.Event(env))
    env.run()  # ends at 18 s
    assert env.now == 18.0
    stats = model.stats
    assert stats.queue_by_slot == [14 / 10, 0.0]
    weighted = stats.queue_by_slot[0] * 10 + stats.queue_by_slot[1] * 8
    assert weighted / env.now == pytest.approx(stats.wait_s / env.now)


def test_the_default_slot_is_a_quarter_hour_and_an_idle_run_is_all_zero() -> None:
    env = simpy.Environment()
    model = _model(env, [1.0] * 10, capacity=4, slot_s=900.0)
    env.run(until=3600.0)
    assert model.stats.queue_slot_s == 900.0
    assert model.stats.queue_by_slot == [0.0, 0.0, 0.0, 0.0]


def test_the_mean_over_slots_is_the_total_area_over_the_duration() -> None:
    """An M/M/c queue in slots of 60 s: all served, so the area is the time waited."""
    env = simpy.Environment()
    rng = random.Random(5)
    model = _model(env, [rng.expovariate(1.0) for _ in range(5000)], capacity=3, slot_s=60.0)
    arrivals = random.Random(6)

    def source() -> Any:
        for _ in range(5000):
            model.submit(api.get_payment("p"), simpy.Event(env))
            yield env.timeout(arrivals.expovariate(2.7))

    env.process(source())
    env.run(until=3000.0)  # a whole number of slots, past the last service
    stats = model.stats
    assert stats.served == 5000 and len(stats.queue_by_slot) == 50
    mean = sum(stats.queue_by_slot) / len(stats.queue_by_slot)
    assert mean == pytest.approx(stats.wait_s / 3000.0, rel=1e-9)
    assert max(stats.queue_by_slot) <= stats.max_queue and mean > 0
