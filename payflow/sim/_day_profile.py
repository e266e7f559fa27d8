"""The provider's day as a table: what the fault profile and traffic say, every few minutes.

:func:`day_profile` reads a scenario's :class:`~payflow.provider.faults.FaultProfile`
and traffic curve (no simulation): latency percentiles of one create call
(before + after commit, the lognormal the model draws from), the 5xx, 429 and
lost-reply probabilities, the provider's capacity (concurrent slots) and the
shop's arrival rate. The report draws it beside each strategy's harm by hour.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import pandas as pd

__all__ = ["day_profile"]

_Z = {50: 0.0, 95: NormalDist().inv_cdf(0.95), 99: NormalDist().inv_cdf(0.99)}


def _lognormal_q(median: float, sigma: float, cap: float, q: int) -> float:
    if median <= 0:
        return 0.0
    return min(median * math.exp(sigma * _Z[q]), cap)


def day_profile(scenario: Any, step_s: float = 600.0) -> pd.DataFrame:
    """One row per ``step_s`` of the day: ``t_s`` (seconds since midnight), ``time``
    (``HH:MM``), ``latency_p50_s`` / ``_p95_s`` / ``_p99_s`` (one create, before +
    after commit, each part at that percentile: an upper bound for the sum),
    ``error_rate`` (5xx), ``throttle_rate`` (429), ``lost_rate`` (reply lost after
    commit), ``capacity`` (slots) and ``arrivals_per_min`` (first clicks)."""
    from payflow.sim._runner import resolve_scenario

    sc = resolve_scenario(scenario)
    if not step_s > 0:
        raise ValueError(f"step_s: must be > 0 seconds, got {step_s!r}")
    profile = sc.profile()
    traffic = sc.traffic
    steps = int(86_400 // step_s)
    times = [i * step_s for i in range(steps + 1)]
    weights = [traffic.rate_weight(t) for t in times]
    mean_w = sum(weights) / len(weights) or 1.0
    per_min = traffic.day_orders / 1440.0
    rows = []
    for t, w in zip(times, weights, strict=True):
        f = profile.at(t)
        row: dict[str, Any] = {"t_s": t, "time": f"{int(t // 3600):02d}:{int(t % 3600 // 60):02d}"}
        for q in (50, 95, 99):
            row[f"latency_p{q}_s"] = _lognormal_q(
                f.latency_before_s, f.latency_sigma, f.latency_max_s, q
            ) + _lognormal_q(f.latency_after_s, f.latency_sigma, f.latency_max_s, q)
        row["error_rate"] = f.p_server_error
        row["throttle_rate"] = f.p_throttle
        row["lost_rate"] = f.p_lost_after_commit
        row["capacity"] = f.capacity
        row["arrivals_per_min"] = per_min * w / mean_w
        rows.append(row)
    return pd.DataFrame(rows)
