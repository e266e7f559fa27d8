"""``payflow report``: the design-review page.

Runs a sweep (built-in scenarios x strategy presets x a few seeds), then writes
``index.html`` -- self-contained, charts embedded as PNG -- and the tidy data
beside it (``runs.csv``: one row per run; ``summary.csv``: seeds pooled, with
counts and 95% intervals), and each chart as a PNG file in ``charts/``. The
page holds a summary table per scenario sorted by harm, the strategy and
scenario definitions, the payflow version and the seeds used.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import html
import io
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# matplotlib, pandas and the simulation are imported when the report runs, so
# that `payflow --help` (which registers this subcommand) stays fast.

__all__ = ["HARM_COLUMNS", "TABLE_COLUMNS", "build_report", "register"]

#: The rates whose sum orders the tables: harm to customers.
HARM_COLUMNS = (
    "duplicate_charge_rate",
    "duplicate_hold_rate",
    "silent_charge_rate",
    "told_failed_but_charged_rate",
    "orphan_charge_rate",
)

#: Columns of each scenario's table, with headers; rates are shown in percent.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("strategy", "strategy"),
    ("orders", "orders"),
    ("duplicate_charges", "duplicate charges"),
    ("duplicate_charge_rate", "duplicate %"),
    ("duplicate_hold_rate", "duplicate hold %"),
    ("silent_charges", "silent charges"),
    ("silent_charge_rate", "silent %"),
    ("orphan_charges", "orphan charges"),
    ("orphan_charge_rate", "orphan %"),
    ("told_failed_but_charged_rate", "told failed, charged %"),
    ("lost_sales", "lost sales"),
    ("shipped_rate", "shipped %"),
    ("timeouts_per_order", "timeouts / order"),
    ("retries_per_order", "retries / order"),
    ("provider_calls_per_order", "calls / order"),
    ("feedback_p50_s", "feedback p50 (s)"),
    ("feedback_p95_s", "feedback p95 (s)"),
    ("outcome_p50_s", "outcome p50 (s)"),
    ("outcome_p95_s", "outcome p95 (s)"),
    ("never_told_outcome_rate", "never told %"),
    ("cost_per_order", "cost / order"),
    ("refunds", "refunds"),
    ("unresolved", "unresolved"),
)

DEFAULT_SEEDS = 3
DEFAULT_ORDERS = 600


def format_cell(column: str, value: Any) -> str:
    """How a table cell is written (tests compare these with the CSV)."""
    if column == "strategy":
        return str(value)
    if column.endswith("_rate"):
        return f"{float(value) * 100:.2f}"
    if column.startswith("outcome_"):
        if value is None or value != value:  # None or NaN: nobody at all
            return "-"
        return "never" if float(value) == float("inf") else f"{float(value):.2f}"
    if column == "cost_per_order":
        return str(int(value))
    if column.endswith("_per_order") or column.startswith("feedback_"):
        return f"{float(value):.2f}"
    return str(int(value))


def _png(fig: Any, save_as: Path | None = None) -> str:
    """The figure as base64 PNG for embedding; also written to ``save_as`` if given."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    if save_as is not None:
        save_as.write_bytes(buffer.getvalue())
    return base64.b64encode(buffer.getvalue()).decode()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _figure(title: str, png: str, caption: str) -> str:
    return (
        f'<figure class="chart" data-chart="{html.escape(title)}">'
        f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _table(rows: pd.DataFrame, scenario: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in TABLE_COLUMNS if _ in rows)
    body = []
    for _, row in rows.iterrows():
        cells = "".join(
            f'<td data-col="{c}">{html.escape(format_cell(c, row[c]))}</td>'
            for c, _ in TABLE_COLUMNS
            if c in rows
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<table class="summary" data-scenario="{html.escape(scenario)}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _definitions(items: Sequence[tuple[str, str, str]], kind: str) -> str:
    rows = "".join(
        f"<tr><td><code>{html.escape(n)}</code></td><td>{html.escape(d)}</td>"
        f"<td><small>{html.escape(k)}</small></td></tr>"
        for n, d, k in items
    )
    return (
        f'<table class="definitions" data-kind="{kind}"><thead><tr><th>name</th>'
        f"<th>what it is</th><th>settings</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _knobs(value: Any) -> str:
    if not dataclasses.is_dataclass(value):
        return ""
    parts = []
    for f in dataclasses.fields(value):
        if f.name in ("name", "description"):
            continue
        parts.append(f"{f.name}={getattr(value, f.name)!r}")
    return "; ".join(parts)


def _harm_order(summary: pd.DataFrame) -> pd.DataFrame:
    harm = summary[[c for c in HARM_COLUMNS if c in summary]].sum(axis=1)
    return summary.assign(_harm=harm).sort_values(["_harm", "strategy"], ascending=[False, True])


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}
table.definitions td{text-align:left;vertical-align:top}
figure.chart{display:inline-block;margin:0.5em}figure.chart img{max-width:100%}
figcaption{font-size:12px;color:#555;max-width:700px}
.meta{color:#555;font-size:13px}
"""


def build_report(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    out: Path,
    *,
    seeds: Sequence[int],
    orders: int | None,
    elapsed_s: float,
) -> Path:
    """Write ``index.html``, ``runs.csv`` and ``summary.csv`` into ``out``."""
    import matplotlib

    matplotlib.use("Agg")  # the report never needs a screen
    import matplotlib.pyplot as plt

    from payflow import __version__, plots
    from payflow.sim import get_strategy, load_scenario

    out.mkdir(parents=True, exist_ok=True)
    charts = out / "charts"  # the same charts as files, for slides and READMEs
    charts.mkdir(exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    scenarios = list(dict.fromkeys(summary["scenario"]))
    strategies = list(dict.fromkeys(summary["strategy"]))
    parts: list[str] = []
    overview = []
    for rate, caption in (
        ("duplicate_charge_rate", "Customers charged more than once and not refunded."),
        ("silent_charge_rate", "Charged, but shown nothing before giving up (unhappy customer 1)."),
        ("orphan_charge_rate", "Charged for an order that was never fulfilled nor refunded."),
    ):
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(strategies) + 1.8), layout="constrained")
        plots.rate_grid(summary, rate, ax=ax)
        png = _png(fig, charts / f"{_slug(rate)}.png")
        overview.append(_figure(rate, png, caption + " Percent of orders."))
    for scenario in scenarios:
        rows = _harm_order(summary[summary["scenario"] == scenario])
        description = getattr(load_scenario(scenario), "description", "")
        fig, axes = plt.subplots(1, 3, figsize=(15, 0.4 * len(rows) + 2.5), layout="constrained")
        plots.rate_by_strategy(rows, "duplicate_charge_rate", ax=axes[0])
        plots.metric_by_strategy(
            rows,
            ["provider_calls_per_order", "retries_per_order"],
            ax=axes[1],
            title="load on the provider",
            ylabel="per order",
        )
        plots.metric_by_strategy(
            rows,
            ["feedback_p50_s", "feedback_p95_s"],
            ax=axes[2],
            title="time to the first message",
            ylabel="seconds",
        )
        parts.append(
            f'<section data-scenario="{html.escape(scenario)}"><h2>{html.escape(scenario)}</h2>'
            f"<p>{html.escape(description)}</p>{_table(rows, scenario)}"
            + _figure(
                f"{scenario}: harm, load and feedback",
                _png(fig, charts / f"{_slug(scenario)}.png"),
                "Left: duplicate charges with 95% interval (count of orders). Middle: "
                "provider calls and retries per order (load amplification). Right: "
                "time from the first click to a definite message.",
            )
            + "</section>"
        )
    strategy_defs = [(s, get_strategy(s).description, _knobs(get_strategy(s))) for s in strategies]
    scenario_defs = [(s, load_scenario(s).description, _knobs(load_scenario(s))) for s in scenarios]
    seeds_text = ", ".join(str(s) for s in seeds)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>payflow report</title><style>{_STYLE}</style></head><body>
<h1>payflow: which payment strategy hurts customers least?</h1>
<p class="meta">payflow {html.escape(__version__)} &middot; seeds {seeds_text} &middot;
{"orders per run: " + str(orders) if orders else "orders per run: as each scenario says"}
&middot; {len(runs)} runs in {elapsed_s:.0f} s &middot; data: <a href="runs.csv">runs.csv</a>,
<a href="summary.csv">summary.csv</a></p>
<p>Each cell is a rate over all orders of all seeds. Lower is better. Tables are sorted by harm
(duplicate charge + duplicate hold + silent + told-failed-but-charged + orphan rates); every
rate comes with the count it was computed from, so 0 of 5 000 can be told from 0 of 5. A charge
is money captured and kept; a reservation the shop never captures is released by the provider
and counts as a hold. Time to outcome counts customers never told as never.</p>
<h2>Overview</h2>{"".join(overview)}
{"".join(parts)}
<h2>Strategies</h2>{_definitions(strategy_defs, "strategy")}
<h2>Scenarios</h2>{_definitions(scenario_defs, "scenario")}
</body></html>"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _split(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _writable_folder(value: str) -> Path:
    """The output folder, created if needed; a clear error naming --out otherwise."""
    import os

    out = Path(value)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {value!r}: cannot create the folder ({exc.strerror})") from None
    if not os.access(out, os.W_OK):
        raise ValueError(f"--out {value!r}: the folder is not writable")
    return out


def _report(args: argparse.Namespace) -> int:
    from payflow.sim import get_strategy, load_scenario, scenario_names, strategy_names
    from payflow.sim.sweep import summarize, sweep

    scenarios = _split(args.scenario) or scenario_names()
    strategies = _split(args.strategy) or strategy_names()
    for name in scenarios:
        load_scenario(name)  # a clear LookupError listing valid names
    for name in strategies:
        get_strategy(name)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.orders is not None and args.orders < 1:
        raise ValueError(f"--orders must be >= 1, got {args.orders}")
    out = _writable_folder(args.out)  # before the sweep: never lose a run to a bad path
    seeds = list(range(args.seeds))
    started = time.perf_counter()
    runs = sweep(scenarios, strategies, seeds, orders=args.orders, progress=args.progress)
    summary = summarize(runs)
    index = build_report(
        runs,
        summary,
        out,
        seeds=seeds,
        orders=args.orders,
        elapsed_s=time.perf_counter() - started,
    )
    print(f"wrote {index} ({len(runs)} runs)")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand to the ``payflow`` command."""
    parser = subparsers.add_parser(
        "report",
        help="run the default sweep and write an HTML report with charts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="report", help="output folder (default: report)")
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="NAME[,NAME...]",
        help="scenarios to include (default: all built-in)",
    )
    parser.add_argument(
        "--strategy",
        action="append",
        metavar="NAME[,NAME...]",
        help="strategies to include (default: all presets)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=DEFAULT_SEEDS,
        help=f"seeds 0..N-1 per combination (default: {DEFAULT_SEEDS})",
    )
    parser.add_argument(
        "--orders",
        type=int,
        default=DEFAULT_ORDERS,
        help=f"orders per run (default: {DEFAULT_ORDERS})",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )
    parser.set_defaults(handler=_report)
