"""The answer a design review wants, computed from a summary: no strategy names in logic.

Given the pooled table of :func:`payflow.sim.sweep.pool_seeds` (one row per
scenario and strategy), these helpers rank strategies by cost, name the harms,
and write one or two sentences per scenario. The report and the notebooks call
them, so a conclusion printed anywhere is the same computation::

    summary = pool_seeds(sweep(["slow-provider-day"], ["naive", "recommended"], range(3)))
    order = strategy_order(summary)             # cheapest first, over all scenarios
    for line in verdict(summary, "slow-provider-day"):
        print(line)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

__all__ = [
    "HARM_KINDS",
    "harm_text",
    "interval_text",
    "money_text",
    "ranked",
    "settings",
    "strategy_order",
    "verdict",
]

#: The kinds of harm to a customer, as (rate column, count column, label).
HARM_KINDS: tuple[tuple[str, str, str], ...] = (
    ("duplicate_charge_rate", "duplicate_charges", "double capture"),
    ("duplicate_hold_rate", "duplicate_holds", "duplicate hold"),
    ("silent_charge_rate", "silent_charges", "silent charge"),
    ("told_failed_but_charged_rate", "told_failed_but_charged", "told failed, charged"),
    ("orphan_charge_rate", "orphan_charges", "orphan charge"),
)


def strategy_order(summary: pd.DataFrame) -> list[str]:
    """Strategies from cheapest to dearest: mean cost per order over the scenarios
    (ties: fewer harmed, then name). One order for a whole page or notebook."""
    harm = "harmed_rate" if "harmed_rate" in summary else "cost_per_order"
    means = summary.groupby("strategy", sort=False)[["cost_per_order", harm]].mean()
    ordered = sorted(
        means.index, key=lambda s: (means.at[s, "cost_per_order"], means.at[s, harm], str(s))
    )
    return [str(s) for s in ordered]


def ranked(
    summary: pd.DataFrame, scenario: str, order: Sequence[str] | None = None
) -> pd.DataFrame:
    """One scenario's rows in ``order`` (default: this scenario's cost, best first),
    with ``rank``: the strategy's place by cost in this scenario (1 = cheapest)."""
    rows = summary[summary["scenario"] == scenario].copy()
    if rows.empty:
        raise LookupError(f"no rows for scenario {scenario!r} in the summary")
    by_cost = rows.sort_values(["cost_per_order", "strategy"], kind="stable")
    rank = {s: i + 1 for i, s in enumerate(by_cost["strategy"])}
    rows["rank"] = rows["strategy"].map(rank)
    if order is None:
        return by_cost.assign(rank=by_cost["strategy"].map(rank)).reset_index(drop=True)
    position = {s: i for i, s in enumerate(order)}
    rows["_pos"] = rows["strategy"].map(lambda s: position.get(s, len(position)))
    return rows.sort_values(["_pos", "strategy"]).drop(columns="_pos").reset_index(drop=True)


def percent(rate: float) -> str:
    """A rate in percent, to a precision that does not hide a small one."""
    value = rate * 100
    if value == 0:
        return "0 %"
    if value < 0.1:
        return f"{value:.2f} %"
    return f"{value:.1f} %"


def interval_text(row: pd.Series | dict[str, Any], rate: str) -> str:
    """``"3.1 % (2.8–3.4 %)"``: the pooled rate with its 95% interval."""
    low, high = row.get(f"{rate}_low"), row.get(f"{rate}_high")
    text = percent(float(row[rate]))
    if low is None or high is None or _nan(low) or _nan(high):
        return text
    return f"{text} ({float(low) * 100:.1f}–{float(high) * 100:.1f} %)"


def money_text(minor_units: float, currency: str = "DKK") -> str:
    """Minor units as ``"41.20 DKK"``."""
    return f"{minor_units / 100:,.2f} {currency}"


def harm_text(row: pd.Series | dict[str, Any]) -> str:
    """The largest kind of harm of a row in words, or ``""`` if none."""
    kinds = [(int(row.get(count, 0) or 0), label) for _, count, label in HARM_KINDS]
    kinds = [k for k in kinds if k[0] > 0]
    if not kinds:
        return ""
    count, label = max(kinds)
    return f"mostly {label}s ({count})"


def _nan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def verdict(summary: pd.DataFrame, scenario: str, currency: str = "DKK") -> list[str]:
    """One or two sentences for a scenario: the cheapest strategy, what it ships and
    harms, and how the dearest compares. Computed from the table only."""
    rows = ranked(summary, scenario)
    best, worst = rows.iloc[0], rows.iloc[-1]
    orders = int(best["orders"])
    harmed = int(best.get("harmed", 0))
    harm = (
        f"harms none of {orders:,} orders (at most {float(best['harmed_rate_high']) * 100:.2f} %)"
        if harmed == 0 and "harmed_rate_high" in best
        else f"harms {interval_text(best, 'harmed_rate')} of {orders:,} orders"
    )
    lines = [
        f"On {scenario}, {best['strategy']} costs least "
        f"({money_text(float(best['cost_per_order']), currency)} per order): it ships "
        f"{percent(float(best['shipped_rate']))} and {harm}."
    ]
    if len(rows) > 1:
        extra = float(worst["cost_per_order"]) - float(best["cost_per_order"])
        what = harm_text(worst)
        lines.append(
            f"{worst['strategy']} costs most: it harms {interval_text(worst, 'harmed_rate')}"
            + (f", {what}" if what else "")
            + f", ships {percent(float(worst['shipped_rate']))}"
            + _lost_sales_text(worst)
            + f" and costs {money_text(extra, currency)} per order more."
        )
    return lines


def _lost_sales_text(row: pd.Series | dict[str, Any]) -> str:
    """ ", loses N sales (x %)" when customers gave up with nothing charged: a cost the
    harm columns do not show, so the sentence names it (empty when there are none)."""
    lost = int(row.get("lost_sales", 0) or 0)
    if lost <= 0 or "lost_sale_rate" not in row:
        return ""
    return (
        f", loses {lost:,} sales ({percent(float(row['lost_sale_rate']))}: customers who gave up)"
    )


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:g} s"


def _backoff(backoff: Any) -> str:
    kind = getattr(backoff.kind, "value", str(backoff.kind))
    if kind == "none":
        return "none (at once)"
    jitter = {"full": "full jitter", "equal": "equal jitter", "decorrelated": "decorrelated"}
    return f"{jitter.get(kind, kind)}, {backoff.base:g}–{backoff.cap:g} s"


def settings(strategy: Any) -> dict[str, str]:
    """A strategy's settings in words, for a reviewer (no Python reprs)."""
    policy = strategy.policy
    retry = policy.retry
    t = retry.timeouts
    ui = []
    if strategy.debounce:
        ui.append("button disabled after a click")
    if strategy.feedback == "spinner":
        ui.append("spinner")
    if strategy.delay_notice_s is not None:
        ui.append(f"'taking longer' after {strategy.delay_notice_s:g} s")
    if strategy.email:
        ui.append("emails the outcome")
    if strategy.mode == "async":
        ui.append("status page (accept, then pay)")
    guards = []
    if strategy.order_lock:
        guards.append("order lock" + (" until answered" if strategy.lock_until_answer else ""))
    if strategy.dedupe_paid:
        guards.append("paid-order check")
    if strategy.reconcile:
        every = f"every {strategy.recheck_interval_s:g} s"
        guards.append(
            f"recheck unknowns {every}" + (", backing off" if strategy.recheck_backoff else "")
        )
    if strategy.recover_on_restart:
        guards.append("recheck journal after a crash")
    if strategy.operator_every_s is not None:
        guards.append(f"operator asked every {strategy.operator_every_s:g} s")
    settle = []
    settle.append("cancel on give-up" if policy.cancel_on_give_up else "no cancel on give-up")
    settle.append(f"pending after a crash: {policy.recover_pending}")
    if policy.refund_unclaimed:
        settle.append("refund unclaimed money")
    key = getattr(policy.key_scope, "value", str(policy.key_scope))
    return {
        "timeouts": f"write {t.write:g} s, read {t.read:g} s, poll {t.poll:g} s"
        + (
            f"; page gives up after {strategy.gateway_timeout_s:g} s"
            if strategy.mode == "sync" and strategy.gateway_timeout_s
            else ""
        ),
        "attempts": f"{retry.max_attempts}"
        + (f" within {retry.deadline:g} s" if retry.deadline else "")
        + ("; retries unsafe POSTs" if retry.retry_unsafe else ""),
        "backoff": _backoff(retry.backoff),
        "idempotency key": {
            "none": "none",
            "per-attempt": "new per attempt",
            "per-operation": "one per operation",
            "per-order": "one per order",
        }.get(key, key),
        "retry budget": {None: "none", "grpc": "gRPC-style (10 %)", "aws": "AWS SDK standard"}.get(
            strategy.budget, str(strategy.budget)
        ),
        "polling": f"up to {policy.polling.deadline:g} s, "
        f"{policy.polling.on_no_answer} on no answer",
        "UI": ", ".join(ui) or "nothing (a plain form)",
        "backend guards": ", ".join(guards) or "none",
        "settle rule": "; ".join(settle),
    }
