"""``payflow simulate``: run scenarios under strategies and print what happened.

::

    payflow simulate --scenario slow-provider-day --strategy naive,recommended --seed 1
    payflow simulate --scenario calm-day --strategy recommended --seed 0 --orders 300 --json
    payflow simulate --list

By default a table a person can read (one column per strategy); ``--json``
prints the JSON list of summaries, one object per (scenario, strategy, seed).
A progress bar goes to stderr on long runs when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from payflow.sim._runner import MAX_ORDERS, check_orders, resolve_scenario, run
from payflow.sim._scenarios import scenario_names
from payflow.sim._strategies import PRESETS, get_strategy

__all__ = ["format_table", "main", "register"]

#: Runs with at least this many orders get a progress bar (on a terminal).
PROGRESS_MIN_ORDERS = 5000


def register(subparsers: Any) -> None:
    """Add ``simulate`` to the ``payflow`` command."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a day of payments under one or more strategies",
        description="Simulate a day of a shop's payments against a struggling provider, "
        "with the shipped client flows on a virtual clock.",
    )
    parser.add_argument("--scenario", metavar="NAME", help="a scenario (see --list)")
    parser.add_argument(
        "--strategy", metavar="NAME[,NAME...]", help="one or more strategies (see --list)"
    )
    parser.add_argument("--seed", type=_non_negative, default=0, metavar="N", help="random seed")
    parser.add_argument(
        "--orders",
        type=_positive,
        default=None,
        metavar="N",
        help=f"orders to track (the sample; the load is the scenario's orders_per_day; "
        f"at most {MAX_ORDERS})",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of summaries")
    parser.add_argument(
        "--list", action="store_true", help="name the scenarios and strategies, then exit"
    )
    parser.set_defaults(handler=main)


def _int(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be an integer {what}, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    return _int(text, 0, ">= 0")


def _positive(text: str) -> int:
    return _int(text, 1, ">= 1")


def _names(text: str | None, option: str, valid: Sequence[str]) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if not names:
        raise ValueError(f"{option}: required (valid: {', '.join(valid)})")
    return names


def _listing() -> str:
    lines = ["scenarios:"]
    names = scenario_names()
    width = max(len(n) for n in [*names, *PRESETS]) + 2
    for name in names:
        lines.append(f"  {name:<{width}}{resolve_scenario(name).description}")
    lines.append("strategies:")
    for name, strategy in PRESETS.items():
        lines.append(f"  {name:<{width}}{strategy.description}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """The ``simulate`` handler: returns the exit code (bad names raise LookupError)."""
    if args.list:
        print(_listing())
        return 0
    scenarios = _names(args.scenario, "--scenario", scenario_names())
    strategies = _names(args.strategy, "--strategy", list(PRESETS))
    # Check every name and count before running anything.
    if args.orders is not None:
        check_orders("--orders", args.orders)
    resolved = [resolve_scenario(name) for name in scenarios]
    for name in strategies:
        get_strategy(name)
    if args.orders is None:
        for scenario in resolved:
            check_orders(f"{scenario.name}: traffic.orders", scenario.traffic.orders)
    summaries: list[dict[str, Any]] = []
    show_progress = not args.json and sys.stderr.isatty()
    for scenario in resolved:
        orders = args.orders if args.orders is not None else scenario.traffic.orders
        for name in strategies:
            progress = (
                _progress_bar(f"{scenario.name} / {name}")
                if show_progress and orders >= PROGRESS_MIN_ORDERS
                else None
            )
            try:
                result = run(
                    scenario,
                    name,
                    seed=args.seed,
                    orders=args.orders,
                    trace=False,
                    progress=progress,
                )
            finally:
                if progress is not None:
                    progress(-1.0, -1.0)
            summaries.append(result.summary)
    if args.json:
        print(json.dumps([_json_safe(s) for s in summaries], indent=2))
    else:
        print(format_table(summaries))
    return 0


def _progress_bar(label: str) -> Callable[[float, float], None]:
    """A bar drawn at once (tqdm draws on creation, while the run still draws its
    orders), then advanced over the simulated day."""
    from tqdm import tqdm

    bar = tqdm(total=100, desc=f"{label}: drawing orders", unit="%", file=sys.stderr, leave=False)
    state = {"done": 0, "started": 0}

    def update(now: float, end: float) -> None:
        if end < 0:
            bar.close()
            return
        if not state["started"]:
            state["started"] = 1
            bar.set_description(label, refresh=False)
        pct = int(100 * now / end) if end > 0 else 100
        bar.update(pct - state["done"])
        state["done"] = pct

    return update


def _json_safe(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in summary.items()
    }


def _count_rate(summary: dict[str, Any], count_key: str, rate_key: str) -> str:
    return f"{summary[count_key]} ({100 * summary[rate_key]:.1f}%)"


def _seconds(value: Any) -> str:
    if value is None:
        return "-"
    return "never" if value == math.inf else f"{value:.1f}"


_ROWS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("orders", lambda s: str(s["orders"])),
    ("duplicate charges", lambda s: _count_rate(s, "duplicate_charges", "duplicate_charge_rate")),
    ("duplicate holds", lambda s: _count_rate(s, "duplicate_holds", "duplicate_hold_rate")),
    ("silent charges", lambda s: _count_rate(s, "silent_charges", "silent_charge_rate")),
    (
        "told failed, charged",
        lambda s: _count_rate(s, "told_failed_but_charged", "told_failed_but_charged_rate"),
    ),
    ("orphan charges", lambda s: _count_rate(s, "orphan_charges", "orphan_charge_rate")),
    ("orphan holds", lambda s: _count_rate(s, "orphan_holds", "orphan_hold_rate")),
    ("lost sales", lambda s: _count_rate(s, "lost_sales", "lost_sale_rate")),
    ("shipped (charged once)", lambda s: _count_rate(s, "shipped", "shipped_rate")),
    ("orders fulfilled", lambda s: _count_rate(s, "fulfilled", "fulfilled_rate")),
    ("timeouts / order", lambda s: f"{s['timeouts_per_order']:.2f}"),
    ("retries / order", lambda s: f"{s['retries_per_order']:.2f}"),
    ("provider calls / order", lambda s: f"{s['provider_calls_per_order']:.2f}"),
    (
        "first message p50/p95/p99 s",
        lambda s: "/".join(
            _seconds(s[k]) for k in ("feedback_p50_s", "feedback_p95_s", "feedback_p99_s")
        ),
    ),
    ("no first message", lambda s: _count_rate(s, "no_feedback", "no_feedback_rate")),
    (
        "outcome p50/p95/p99 s",
        lambda s: "/".join(
            _seconds(s[k]) for k in ("outcome_p50_s", "outcome_p95_s", "outcome_p99_s")
        ),
    ),
    (
        "never told the outcome",
        lambda s: _count_rate(s, "never_told_outcome", "never_told_outcome_rate"),
    ),
    ("cost / order", lambda s: f"{s['cost_per_order']} {s.get('currency', '')}".rstrip()),
    ("promised email unsent", lambda s: _count_rate(s, "emails_unsent", "emails_unsent_rate")),
    ("refunds", lambda s: str(s["refunds"])),
    ("unresolved", lambda s: str(s["unresolved"])),
)


def format_table(summaries: Sequence[dict[str, Any]]) -> str:
    """Summaries as text: one block per (scenario, seed), one column per strategy."""
    blocks: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for summary in summaries:
        blocks.setdefault((summary["scenario"], summary["seed"]), []).append(summary)
    out: list[str] = []
    label_width = max(len(label) for label, _ in _ROWS)
    for (scenario, seed), group in blocks.items():
        cells = [[fmt(s) for s in group] for _, fmt in _ROWS]
        widths = [
            max(len(s["strategy"]), *(len(row[i]) for row in cells)) for i, s in enumerate(group)
        ]
        out.append(f"{scenario}, seed {seed}")
        header = " " * label_width + "".join(
            f"  {s['strategy']:>{w}}" for s, w in zip(group, widths, strict=True)
        )
        out.append(header)
        for (label, _), row in zip(_ROWS, cells, strict=True):
            out.append(
                f"{label:<{label_width}}"
                + "".join(f"  {c:>{w}}" for c, w in zip(row, widths, strict=True))
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"
