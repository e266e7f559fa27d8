"""The simulation next to the real thing: the same fault profile, two drivers.

:func:`real_run` drives the shipped :class:`payflow.PaymentClient` from many
threads against the reference provider server (real sockets, uvicorn) whose
fault profile runs ``time_scale`` times faster than the clock on the wall, and
reads the server's ledger for the ground truth. :func:`sim_run` simulates the
same window of the same profile with :func:`payflow.sim.run`. Both return one
row per order with the same columns, so :func:`compare` can put the
simulated rates next to the real run's confidence intervals::

    real = real_run("slow-provider-day", "naive", orders=40, start="12:00",
                    duration_s=900, time_scale=100)
    sim = sim_run("slow-provider-day", "naive", orders=40, start="12:00",
                  duration_s=900, seeds=range(10))
    compare(real, sim)

The real run reads the server's ledger only once its queue has drained (every
request answered, no slot busy), then waits the same settling time the
simulation's window gives, so both stop at the same point: after the last
request, not while an overloaded server still holds queued creates.
:func:`compare` judges agreement with the *simulation's seed-to-seed spread*,
which includes the coupling between orders (a shared retry budget, a shared
queue) that a binomial interval of one run ignores (see :func:`compare`).

What is compared is the shop's *backend*: each order is one ``pay`` call, as
soon as the order arrives; there are no customers clicking twice or giving
up (the simulated customers are made patient and single-clicking, and the
strategy's UI and reconciliation knobs are switched off). Times in the
client's policy (timeouts, backoff, deadlines) are divided by ``time_scale``
so that the real client lives on the same compressed clock as the server.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx
import pandas as pd

from payflow.client import PaymentClient
from payflow.core._backoff import Backoff
from payflow.core._policy import Policy
from payflow.core.events import Attempt, AttemptResult, Retry, repeat_kind
from payflow.core.states import charged as is_charged
from payflow.errors import PayflowError
from payflow.provider.faults import load_profile
from payflow.provider.ledger import PayerModel
from payflow.provider.testing import running_provider
from payflow.sim import Strategy, get_strategy, parse_scenario, run
from payflow.sim._scenarios import parse_time_of_day
from payflow.sim.sweep import wilson_interval

__all__ = [
    "AGREEMENT",
    "COLUMNS",
    "METRICS",
    "backend_strategy",
    "compare",
    "real_run",
    "scale_policy",
    "sim_run",
    "summarize_orders",
    "window_scenario",
]

#: The per-order columns both drivers produce.
COLUMNS: tuple[str, ...] = (
    "order_id",
    "arrival_s",
    "fulfilled",
    "payments",
    "charged",
    "duplicate_charge",
    "orphan_charge",
    "timeouts",
    "retries",
    "provider_calls",
)

#: What :func:`compare` compares: (name, kind) with kind "rate" (a per-order
#: flag, Wilson interval) or "mean" (a per-order count, normal interval).
METRICS: tuple[tuple[str, str, str], ...] = (
    ("duplicate_charge_rate", "rate", "duplicate_charge"),
    ("orphan_charge_rate", "rate", "orphan_charge"),
    ("fulfilled_rate", "rate", "fulfilled"),
    ("timeouts_per_order", "mean", "timeouts"),
    ("retries_per_order", "mean", "retries"),
    ("provider_calls_per_order", "mean", "provider_calls"),
)

#: The payer both worlds use unless told otherwise (as in the built-in scenarios).
DEFAULT_PAYER = PayerModel(
    approve_probability=0.95, decide_after_s=(1.0, 4.0), expire_after_s=180.0
)

#: How :func:`compare` judges each metric (written into its ``interval`` column).
AGREEMENT = (
    "95% interval for the real mean from the simulation's seed-to-seed spread: "
    "sim mean +/- t(k-1) * sqrt(s^2/k + s_real^2/R), s = sd of the k per-seed values "
    "(s_real: the real replicates' sd, or s when there is one real run), never narrower "
    "than the binomial / normal standard error of one run"
)

_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """The 97.5th percentile of Student's t with ``df`` degrees of freedom (a table; 1.96
    beyond 120)."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    return 2.000 if df <= 60 else (1.980 if df <= 120 else 1.960)


def _seconds(value: str | float, where: str) -> float:
    return parse_time_of_day(value, where)


def _scale_backoff(backoff: Backoff, k: float) -> Backoff:
    return replace(backoff, base=backoff.base / k, cap=backoff.cap / k)


def scale_policy(policy: Policy, time_scale: float) -> Policy:
    """``policy`` with every duration divided by ``time_scale``.

    Timeouts, retry deadline, backoff, the largest server-requested delay, the
    shortest attempt timeout, and the polling deadline, delays and backoff.
    Counts (attempts) and rules are unchanged.
    """
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise ValueError(f"time_scale: must be a positive number, got {time_scale!r}")
    k = float(time_scale)
    retry, polling = policy.retry, policy.polling
    timeouts = replace(
        retry.timeouts,
        write=retry.timeouts.write / k,
        read=retry.timeouts.read / k,
        poll=retry.timeouts.poll / k,
    )
    retry = replace(
        retry,
        timeouts=timeouts,
        deadline=None if retry.deadline is None else retry.deadline / k,
        backoff=_scale_backoff(retry.backoff, k),
        max_server_delay=retry.max_server_delay / k,
        min_attempt_timeout=retry.min_attempt_timeout / k,
        min_delay=retry.min_delay / k,
    )
    polling = replace(
        polling,
        deadline=polling.deadline / k,
        default_delay=polling.default_delay / k,
        min_delay=polling.min_delay / k,
        backoff=_scale_backoff(polling.backoff, k),
    )
    return replace(policy, retry=retry, polling=polling)


def backend_strategy(strategy: str | Strategy) -> Strategy:
    """The backend half of a strategy: its policy and retry budget, nothing else.

    Synchronous, no gateway timeout, no UI, no lock or paid-order check, no
    reconciliation or crash recovery: what a real run of ``PaymentClient.pay``
    per order does.
    """
    st = get_strategy(strategy)
    return st.but(
        name=st.name,
        mode="sync",
        gateway_timeout_s=None,
        debounce=False,
        feedback="none",
        delay_notice_s=None,
        email=False,
        order_lock=False,
        dedupe_paid=False,
        reconcile=False,
        recover_on_restart=False,
    )


def window_scenario(
    faults: str,
    orders: int,
    start: str | float,
    duration_s: float,
    payer: PayerModel = DEFAULT_PAYER,
    settle_s: float = 3600.0,
) -> Any:
    """A scenario whose ``orders`` arrive uniformly within one window of the day.

    Customers are patient and click once (they never resubmit), the provider
    applies the profile's full latency to every request (``read_latency=1``,
    as the HTTP server does) and the backend never crashes.
    """
    t0 = _seconds(start, "start")
    t1 = t0 + float(duration_s)
    if not (duration_s > 0 and t0 >= 1.0 and t1 <= 86_400.0 - 1.0):
        raise ValueError("start/duration_s: the window must lie within the day, away from midnight")
    return parse_scenario(
        {
            "name": f"{faults}@{int(t0)}+{int(duration_s)}s",
            "description": f"{orders} orders between {t0:.0f} s and {t1:.0f} s",
            "traffic": {
                "orders": orders,
                "diurnal": [
                    [0, 0.0],
                    [t0 - 0.5, 0.0],
                    [t0, 1.0],
                    [t1, 1.0],
                    [t1 + 0.5, 0.0],
                    [86_400, 0.0],
                ],
            },
            "customers": {
                "click_again": 0.0,
                "reload": 0.0,
                "retry_after_error": 0.0,
                "double_click": 0.0,
                "patience_median_s": 600.0,
                "patience_sigma": 0.0,
            },
            "provider": {
                "faults": faults,
                "read_latency": 1.0,
                "payer": {
                    "approve_probability": payer.approve_probability,
                    "decide_after_s": list(payer.decide_after_s),
                    "expire_after_s": payer.expire_after_s,
                    "abandon_probability": payer.abandon_probability,
                },
            },
            "backend": {"settle_s": settle_s},
        },
        source=f"<window of {faults}>",
    )


def sim_run(
    faults: str,
    strategy: str | Strategy,
    orders: int,
    start: str | float,
    duration_s: float,
    seeds: Iterable[int] = range(5),
    payer: PayerModel = DEFAULT_PAYER,
) -> pd.DataFrame:
    """Simulate the window once per seed: one row per order (:data:`COLUMNS` + ``seed``)."""
    scenario = window_scenario(faults, orders, start, duration_s, payer)
    st = backend_strategy(strategy)
    frames = []
    for seed in seeds:
        result = run(scenario, st, seed=seed, trace=False)
        frame = result.orders.loc[:, list(COLUMNS)].copy()
        frame.insert(0, "seed", seed)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "strategy", st.name)
    out.insert(0, "driver", "simulation")
    return out


class _Counts(threading.local):
    current: dict[str, int] | None = None
    keys_sent: set[tuple[str, str]]

    def __init__(self) -> None:
        self.keys_sent = set()


def real_run(
    faults: str,
    strategy: str | Strategy,
    orders: int,
    start: str | float,
    duration_s: float,
    *,
    time_scale: float = 100.0,
    seed: int = 0,
    payer: PayerModel = DEFAULT_PAYER,
    max_threads: int = 128,
    settle_s: float | None = None,
    drain_timeout_s: float = 120.0,
) -> pd.DataFrame:
    """Run the window for real: ``PaymentClient.pay`` per order against the provider server.

    Orders arrive uniformly at random (drawn from ``seed``) within the window
    ``[start, start + duration_s)`` of the profile's day; the server's clock
    runs ``time_scale`` times faster than real time, and the client's policy
    is scaled to match (:func:`scale_policy`). After the last payment the run
    waits until the server's queue has drained -- no request waiting for a
    slot, none being served -- for at most ``drain_timeout_s`` seconds on the
    wall clock, then ``settle_s`` simulated seconds more (default: the payer's
    expiry plus a minute) so payments nobody is waiting for reach their final
    state, then takes the ledger's snapshot. Returns one row per order
    (:data:`COLUMNS`); ``attrs`` say whether the queue drained (``drained``)
    and how long that took in simulated seconds (``drain_wait_s``).
    """
    st = backend_strategy(strategy)
    t0 = _seconds(start, "start")
    if not (duration_s > 0 and t0 + duration_s <= 86_400.0):
        raise ValueError("duration_s: the window must be positive and end within the day")
    if isinstance(orders, bool) or not isinstance(orders, int) or orders < 1:
        raise ValueError(f"orders: must be an integer >= 1, got {orders!r}")
    rng = random.Random(f"{seed}:real-arrivals")
    arrivals = sorted(t0 + rng.random() * duration_s for _ in range(orders))
    amounts = [rng.randint(5_000, 150_000) for _ in range(orders)]
    ids = [f"order-{i + 1:06d}" for i in range(orders)]
    counts: dict[str, dict[str, int]] = {
        order_id: {"timeouts": 0, "retries": 0, "provider_calls": 0} for order_id in ids
    }
    local = _Counts()

    def hook(event: Any) -> None:
        mine = local.current
        if mine is None:
            return
        cls = type(event)
        if cls is Attempt:
            mine["provider_calls"] += 1
            # The simulation's rule for repeats the core emits no Retry for.
            if repeat_kind(event, local.keys_sent) is not None:
                mine["retries"] += 1
        elif cls is AttemptResult:
            if event.outcome == "timeout":
                mine["timeouts"] += 1
        elif cls is Retry:
            mine["retries"] += 1

    fulfilled: dict[str, bool] = dict.fromkeys(ids, False)
    wait_s = (payer.expire_after_s + 60.0) if settle_s is None else settle_s
    policy = scale_policy(st.policy, time_scale)
    with running_provider(
        faults=load_profile(faults),
        time_scale=time_scale,
        day_offset_s=t0,
        seed=seed,
        payer=payer,
        require_idempotency_key=st.provider_requires_key,
        lost_hold_s=max(1.0, 600.0 / time_scale),
    ) as provider:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=max_threads)
        with (
            httpx.Client(limits=limits) as http,
            PaymentClient(
                provider.base_url,
                provider.client_id,
                provider.token,
                policy=policy,
                http=http,
                hooks=hook,
                rng=random.Random(f"{seed}:real-client"),
                budget=st.new_budget(),
            ) as client,
        ):
            begin = time.monotonic()
            offset = provider.now() - t0  # the server's clock started a little earlier

            def pay(i: int) -> None:
                due = begin + max(0.0, arrivals[i] - t0 - offset) / time_scale
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                local.current = counts[ids[i]]
                local.keys_sent = set()  # per order, as the simulation counts
                try:
                    client.pay(ids[i], amounts[i])
                    fulfilled[ids[i]] = True
                except PayflowError:
                    pass
                finally:
                    local.current = None

            with ThreadPoolExecutor(max_workers=min(max_threads, orders)) as pool:
                for future in [pool.submit(pay, i) for i in range(orders)]:
                    future.result()
        drain_started = provider.now()
        drained = _wait_for_drain(provider, drain_timeout_s)
        drain_wait_s = provider.now() - drain_started
        time.sleep(wait_s / time_scale)
        ledger = provider.ledger()
    refunded: dict[str, int] = {}
    for refund in ledger.get("refunds", []):
        refunded[refund["paymentId"]] = refunded.get(refund["paymentId"], 0) + int(refund["amount"])
    payments: dict[str, int] = dict.fromkeys(ids, 0)
    charged: dict[str, int] = dict.fromkeys(ids, 0)
    for p in ledger["payments"]:
        order_id = p["orderId"]
        if order_id not in payments:
            continue
        payments[order_id] += 1
        back = max(int(p.get("refundedAmount", 0)), refunded.get(p["paymentId"], 0))
        # Money taken and kept: captured, not refunded in full (a reservation is a hold,
        # released when it expires), as the simulation counts it.
        taken = int(p.get("capturedAmount", p["amount"]))
        if is_charged(p["state"], back, taken):
            charged[order_id] += 1
    rows = [
        {
            "order_id": order_id,
            "arrival_s": arrivals[i],
            "fulfilled": fulfilled[order_id],
            "payments": payments[order_id],
            "charged": charged[order_id],
            "duplicate_charge": charged[order_id] > 1,
            "orphan_charge": charged[order_id] > 0 and not fulfilled[order_id],
            **counts[order_id],
        }
        for i, order_id in enumerate(ids)
    ]
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    out.insert(0, "seed", seed)
    out.insert(0, "strategy", st.name)
    out.insert(0, "driver", "real")
    out.attrs["drained"] = drained
    out.attrs["drain_wait_s"] = drain_wait_s
    return out


def _wait_for_drain(provider: Any, timeout_s: float) -> bool:
    """Wait (wall clock) until the server has no request queued or in service."""
    capacity = provider.state.capacity
    deadline = time.monotonic() + timeout_s
    while True:
        if capacity.busy <= 0 and capacity.queued == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def summarize_orders(orders: pd.DataFrame) -> dict[str, Any]:
    """The :data:`METRICS` of a set of orders, each with a 95% interval.

    Rates use the Wilson interval of their count; per-order means use the
    normal approximation ``mean ± 1.96 sd / sqrt(n)``, never narrower than
    the Wilson upper bound of 0 of ``n`` (so that orders that all made the
    same count do not claim a zero-width interval).
    """
    n = len(orders)
    out: dict[str, Any] = {"orders": n}
    for name, kind, column in METRICS:
        values = orders[column].astype(float)
        if kind == "rate":
            count = int(values.sum())
            low, high = wilson_interval(count, n)
            out[name], out[f"{name}_count"] = (count / n if n else math.nan), count
        else:
            mean = float(values.mean()) if n else math.nan
            half = 1.96 * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
            # Resolution floor: n orders that all made the same count cannot rule out
            # that a share of orders up to the Wilson bound of 0-of-n differ by one.
            half = max(half, wilson_interval(0, n)[1]) if n > 1 else half
            out[name] = mean
            low, high = mean - half, mean + half
        out[f"{name}_low"], out[f"{name}_high"] = low, high
    return out


def _per_seed(orders: pd.DataFrame, column: str) -> list[float]:
    return [float(v) for v in orders.groupby("seed")[column].mean().astype(float)]


def compare(real: pd.DataFrame, sim: pd.DataFrame) -> pd.DataFrame:
    """Simulated metrics next to the real run's, per strategy, judged honestly.

    One row per (strategy, metric): ``real`` (the mean over the real runs, one
    per seed in ``real``) with its binomial / normal interval ``real_low`` /
    ``real_high`` (for reference: it ignores coupling between orders); ``sim``
    (pooled over the simulation's seeds) with ``sim_low`` / ``sim_high``; and
    the judgement: ``low`` / ``high``, the 95% interval the real value must
    fall in -- built from the simulation's seed-to-seed spread, which includes
    the coupling of orders through a shared retry budget and queue
    (:data:`AGREEMENT`) -- ``within`` (the real value lies in it), ``sim_seeds``,
    ``real_runs``, and ``interval`` (how it was built).
    """
    rows = []
    for strategy, real_orders in real.groupby("strategy", sort=False):
        sim_orders = sim[sim["strategy"] == strategy]
        r, s = summarize_orders(real_orders), summarize_orders(sim_orders)
        k = int(sim_orders["seed"].nunique())
        runs = int(real_orders["seed"].nunique())
        per_run = r["orders"] / runs if runs else math.nan
        for name, kind, column in METRICS:
            sim_values = _per_seed(sim_orders, column)
            real_values = _per_seed(real_orders, column)
            sim_mean = sum(sim_values) / k if k else math.nan
            real_mean = sum(real_values) / runs if runs else math.nan
            sd = _sd(sim_values)
            real_sd = _sd(real_values) if runs > 1 else sd
            se = math.sqrt(sd**2 / k + real_sd**2 / runs) if k and runs else math.nan
            # Never narrower than one run's own sampling error (orders independent).
            floor = _independent_se(sim_orders, column, kind, per_run * runs)
            se = max(se, floor) if not math.isnan(se) else floor
            half = t975(k - 1) * se if k > 1 else math.inf
            low, high = sim_mean - half, sim_mean + half
            rows.append(
                {
                    "strategy": strategy,
                    "metric": name,
                    "real": real_mean,
                    "real_low": r[f"{name}_low"],
                    "real_high": r[f"{name}_high"],
                    "real_orders": r["orders"],
                    "real_runs": runs,
                    "sim": s[name],
                    "sim_low": s[f"{name}_low"],
                    "sim_high": s[f"{name}_high"],
                    "sim_orders": s["orders"],
                    "sim_seeds": k,
                    "low": low,
                    "high": high,
                    "within": bool(low - 1e-12 <= real_mean <= high + 1e-12),
                    "interval": "seed spread (t, k-1 df), floor: one run's sampling error",
                }
            )
    out = pd.DataFrame(rows)
    out.attrs["agreement"] = AGREEMENT
    out.attrs["drained"] = real.attrs.get("drained")
    return out


def _sd(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def _independent_se(orders: pd.DataFrame, column: str, kind: str, n: float) -> float:
    """The standard error of one run's mean of ``n`` independent orders, from the
    simulation's pooled orders (binomial for a rate, the orders' sd for a mean)."""
    if not n or len(orders) == 0:
        return math.nan
    values = orders[column].astype(float)
    if kind == "rate":
        p = float(values.mean())
        return math.sqrt(max(p * (1 - p), 0.0) / n)
    return float(values.std(ddof=1)) / math.sqrt(n) if len(values) > 1 else 0.0
