"""Shared helpers for the simulation tests: small cached runs."""

from __future__ import annotations

from functools import cache
from typing import Any

from payflow.sim import run

SEEDS = range(6)
SMALL = 150


@cache
def summary(scenario: str, strategy: str, seed: int, orders: int = SMALL) -> dict[str, Any]:
    """A run's summary, cached across tests (runs are deterministic)."""
    return run(scenario, strategy, seed=seed, orders=orders, trace=False).summary


def total(scenario: str, strategy: str, key: str, orders: int = SMALL) -> int:
    """``key`` summed over :data:`SEEDS`."""
    return sum(summary(scenario, strategy, seed, orders)[key] for seed in SEEDS)
