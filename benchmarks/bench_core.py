"""Cost of the core's hot decisions, relative to a bare ``random.random()`` call.

Measured in one run, so the ratio is meaningful on any machine: the simulation's
overhead budget per retry decision and per backoff draw.

    python benchmarks/bench_core.py [--n 200000]
"""

from __future__ import annotations

import argparse
import random
import timeit

from payflow.core import Backoff, Jitter, Request, RetryBudget, RetryPolicy, TimedOut


def per_call(stmt: object, n: int, repeat: int = 5) -> float:
    """Best-of-``repeat`` seconds per call of ``stmt`` over ``n`` calls."""
    return min(timeit.repeat(stmt, number=n, repeat=repeat)) / n  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    n = parser.parse_args().n
    rng = random.Random(0)
    base = per_call(rng.random, n)
    rows: list[tuple[str, float]] = []
    for kind in (Jitter.FULL, Jitter.EQUAL, Jitter.DECORRELATED, Jitter.EXPONENTIAL):
        b = Backoff(kind, 0.1, 2.0)
        rows.append((f"backoff draw ({kind.value})", per_call(lambda b=b: b.delay(3, 0.4, rng), n)))
    policy = RetryPolicy()
    request = Request("POST", "/v10/payments", {"amount": 1}, "k-1")
    outcome = TimedOut()

    def decide() -> object:
        return policy.decide(request, outcome, attempt=1, elapsed=0.5, previous_delay=None, rng=rng)

    rows.append(("retry decision (timeout, keyed POST)", per_call(decide, n)))
    budget = RetryBudget.grpc(max_tokens=1e12, token_ratio=1.0)

    def decide_with_budget() -> object:
        return policy.decide(
            request, outcome, attempt=1, elapsed=0.5, previous_delay=None, rng=rng, budget=budget
        )

    rows.append(("retry decision + gRPC budget", per_call(decide_with_budget, n)))
    print(f"baseline random.random(): {base * 1e9:8.1f} ns/call (same run, n={n})")
    for name, t in rows:
        print(f"{name:40s} {t * 1e9:8.1f} ns/call  = {t / base:6.1f} x random.random()")


if __name__ == "__main__":
    main()
