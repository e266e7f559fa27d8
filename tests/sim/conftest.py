"""Shared helpers for the simulation tests: cached runs of whole days."""

from __future__ import annotations

from functools import cache
from typing import Any

from payflow.sim import run

#: Every run simulates the scenario's whole day (its real load, 2 000 orders) and, by
#: default, tracks all of it: three seeds are 6 000 orders per strategy, more than the
#: six seeds of 150-order (lighter) days these tests were first written with.
SEEDS = range(3)


@cache
def summary(scenario: str, strategy: str, seed: int, orders: int | None = None) -> dict[str, Any]:
    """A run's summary, cached across tests (runs are deterministic)."""
    return run(scenario, strategy, seed=seed, orders=orders, trace=False).summary


def total(scenario: str, strategy: str, key: str, orders: int | None = None) -> int:
    """``key`` summed over :data:`SEEDS`."""
    return sum(summary(scenario, strategy, seed, orders)[key] for seed in SEEDS)
