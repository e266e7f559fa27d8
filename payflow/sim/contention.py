"""The optimistic-concurrency study of "Exponential Backoff And Jitter" (AWS
Architecture Blog, Marc Brooker, 2015), re-run with payflow's own backoff.

``clients`` writers start together and each wants to update one row once.
A writer reads the row's version, then writes with that version; the write
succeeds only if nobody wrote in between. After a failed write the writer
sleeps for a backoff delay and starts over. Every message crosses a network
whose delay is ``|Normal(10 ms, 2 ms)|``, as in the post's simulator.

The post reports two measures, both returned by :func:`run`:

``calls``
    the writes sent to the row ("work" -- the load the server sees);
``completion_ms``
    the time until the last writer succeeded.

The delays come from :class:`payflow.core.Backoff`, so the study checks the
code the client ships. The post's attempt count starts at 1 for the first
retry, and ``base * 2**attempt`` uses it directly.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Generator, Iterable
from dataclasses import dataclass

import pandas as pd
import simpy

from payflow.core import Backoff, Jitter

__all__ = ["ALGORITHMS", "run", "study"]

#: The algorithms of the post, by the names this module accepts.
ALGORITHMS: tuple[str, ...] = ("none", "exponential", "full", "equal", "decorrelated")


@dataclass(slots=True)
class _Row:
    version: int = 0
    writes: int = 0


def run(
    clients: int,
    jitter: str | Jitter,
    seed: int = 0,
    base_ms: float = 5.0,
    cap_ms: float = 2000.0,
    net_mean_ms: float = 10.0,
    net_sd_ms: float = 2.0,
) -> dict[str, float]:
    """Run one contention experiment; return ``{"calls", "completion_ms", ...}``.

    ``jitter`` is one of :data:`ALGORITHMS` (or a :class:`~payflow.core.Jitter`).
    All randomness comes from ``random.Random(seed)``.
    """
    if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
        raise ValueError(f"clients must be a positive integer, got {clients!r}")
    try:
        kind = jitter if isinstance(jitter, Jitter) else Jitter(jitter)
    except ValueError:
        raise ValueError(f"jitter must be one of {', '.join(ALGORITHMS)}; got {jitter!r}") from None
    backoff = Backoff(kind, base_ms, cap_ms)
    rng = random.Random(seed)
    env = simpy.Environment()
    row = _Row()
    finished: list[float] = []

    def net() -> float:
        return abs(rng.normalvariate(net_mean_ms, net_sd_ms))

    def writer() -> Generator[simpy.Event, None, None]:
        attempt, previous = 0, None
        while True:
            yield env.timeout(net())  # read request
            seen = row.version
            yield env.timeout(net())  # read response
            yield env.timeout(net())  # conditional write request
            row.writes += 1
            won = seen == row.version
            if won:
                row.version += 1
            yield env.timeout(net())  # write response
            if won:
                finished.append(env.now)
                return
            attempt += 1
            sleep = backoff.delay(attempt, previous, rng)
            previous = sleep
            yield env.timeout(sleep)

    for _ in range(clients):
        env.process(writer())
    env.run()
    return {
        "clients": float(clients),
        "calls": float(row.writes),
        "completion_ms": max(finished),
    }


def study(
    clients: Iterable[int] = (10, 25, 50, 75, 100),
    algorithms: Iterable[str] = ALGORITHMS,
    replications: int = 20,
    progress: bool | None = None,
    **kwargs: float,
) -> pd.DataFrame:
    """The post's experiment: means over independent replications, with 95% intervals.

    One row per (clients, algorithm) with ``calls``, ``completion_ms`` and their
    ``_low`` / ``_high`` bounds (normal approximation over replications).
    ``progress`` shows a bar over the (clients, algorithm) pairs (by default in a
    terminal, and as a widget in JupyterLab).
    """
    from payflow.sim.progress import bar

    if replications < 2:
        raise ValueError(f"replications must be >= 2, got {replications}")
    rows = []
    pairs = [(n, a) for n in clients for a in algorithms]
    for n, algorithm in bar(pairs, desc="contention", unit="setting", progress=progress):
        runs = [run(n, algorithm, seed=s, **kwargs) for s in range(replications)]
        row: dict[str, float | str] = {"clients": n, "algorithm": algorithm}
        for what in ("calls", "completion_ms"):
            values = [r[what] for r in runs]
            mean = statistics.mean(values)
            half = 1.96 * statistics.stdev(values) / math.sqrt(len(values))
            row[what], row[f"{what}_low"], row[f"{what}_high"] = mean, mean - half, mean + half
        rows.append(row)
    return pd.DataFrame(rows)
