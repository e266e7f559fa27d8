"""``payflow report``: the design-review page, answer first.

Runs a sweep (built-in scenarios x strategies x seeds), then writes
``index.html`` from a Jinja2 template (``payflow/templates/report.html.j2``):
per scenario a verdict table (strategy, shipped, harmed by kind with counts and
intervals, time to outcome, provider calls, cost per order) and one or two
sentences computed from the data by :mod:`payflow.sim.verdict`; then charts
(PNG at 2x, also in ``charts/``), the day drawn, sensitivity (``--sensitivity``),
validity notes and each strategy's settings. The tidy data sits beside the page:
``runs.csv`` (one row per run), ``summary.csv`` (seeds pooled, with counts and
95% intervals) and ``hourly.csv`` (per hour of arrival).

By default the page shows the seed answers, ``naive`` and ``recommended``
(:data:`DEFAULT_STRATEGIES`) at 2 000 orders per run, which fits in about a
minute and a half on two cores; ``--ablations`` adds every preset.
"""

from __future__ import annotations

import argparse
import base64
import io
import math
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from markupsafe import Markup

# matplotlib, pandas and the simulation are imported when the report runs, so
# that `payflow --help` (which registers this subcommand) stays fast.

__all__ = [
    "DEFAULT_STRATEGIES",
    "VERDICT_COLUMNS",
    "build_report",
    "register",
    "verdict_cell",
]

#: The default page: the seed answers, the naive shop and the recommended strategy.
DEFAULT_STRATEGIES = ("naive", "answer-a", "answer-b", "exercise", "recommended")
DEFAULT_SEEDS = 2
DEFAULT_ORDERS = 2000
SENSITIVITY_ORDERS = 400

#: The verdict table: (key, header). Harm kinds come from payflow.sim.verdict.HARM_KINDS.
VERDICT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("strategy", "strategy"),
    ("rank", "rank by cost here"),
    ("shipped_rate", "shipped %"),
    ("harmed_rate", "harmed % (count) [95 % interval]"),
    ("duplicate_charge_rate", "harmed: double capture %"),
    ("duplicate_hold_rate", "harmed: duplicate hold %"),
    ("silent_charge_rate", "harmed: silent charge %"),
    ("told_failed_but_charged_rate", "harmed: told failed, charged %"),
    ("orphan_charge_rate", "harmed: orphan charge %"),
    ("outcome_p50_s", "time to outcome p50 (s)"),
    ("outcome_p95_s", "time to outcome p95 (s)"),
    ("provider_calls_per_order", "provider calls / order"),
    ("cost_per_order", "cost / order"),
)

_COUNTS = {
    "harmed_rate": "harmed",
    "duplicate_charge_rate": "duplicate_charges",
    "duplicate_hold_rate": "duplicate_holds",
    "silent_charge_rate": "silent_charges",
    "told_failed_but_charged_rate": "told_failed_but_charged",
    "orphan_charge_rate": "orphan_charges",
}


def verdict_cell(key: str, row: Any, currency: str = "DKK") -> str:
    """How a verdict-table cell is written (tests parse these back against the CSV)."""
    value = row[key]
    if key == "strategy":
        return str(value)
    if key == "rank":
        return str(int(value))
    if key in _COUNTS:
        low, high = float(row[f"{key}_low"]), float(row[f"{key}_high"])
        return (
            f"{float(value) * 100:.2f} ({int(row[_COUNTS[key]])}) "
            f"[{low * 100:.2f}–{high * 100:.2f}]"
        )
    if key.endswith("_rate"):
        return f"{float(value) * 100:.1f}"
    if key.startswith("outcome_"):
        if value is None or value != value:
            return "-"
        return "never" if float(value) == math.inf else f"{float(value):.1f}"
    if key == "cost_per_order":
        return f"{int(value) / 100:.2f} {currency}"
    return f"{float(value):.2f}"


def _png(fig: Any, save_as: Path | None = None) -> tuple[str, int]:
    """The figure as base64 PNG at 2x (and its CSS width); also written to ``save_as``."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    width = int(fig.get_figwidth() * 96)
    fig.savefig(buffer, format="png", dpi=192)
    plt.close(fig)
    if save_as is not None:
        save_as.write_bytes(buffer.getvalue())
    return base64.b64encode(buffer.getvalue()).decode(), width


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _figure(title: str, png: tuple[str, int], caption: str, order: Sequence[str] = ()) -> str:
    from markupsafe import escape

    data, width = png
    return (
        f'<figure class="chart" data-chart="{escape(title)}" '
        f'data-order="{escape("|".join(order))}">'
        f'<img alt="{escape(title)}" width="{width}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _tuning(tune: pd.DataFrame, charts: Path, plt: Any) -> dict[str, Any]:
    """The tuning section (``payflow report --tune``): the best settings in a sentence,
    the Pareto chart and the table, from a :func:`payflow.sim.tune` result."""
    from markupsafe import Markup

    from payflow import plots
    from payflow.sim.tune import tune_table

    knobs = list(tune.columns[: list(tune.columns).index("scenario")])
    table = tune_table(tune)
    cost = next(c for c in table.columns if c.startswith("cost_per_order"))
    best = table.iloc[0]
    chosen = ", ".join(f"{k} = {best[k]}" for k in knobs)
    text = (
        f"Best settings of {tune['strategy'].iloc[0]} on {tune['scenario'].iloc[0]}: {chosen} "
        f"-- {best[cost] / 100:.2f} DKK per order ({best['cost_low'] / 100:.2f}"
        f"\u2013{best['cost_high'] / 100:.2f}), {best['shipped'] * 100:.1f} % shipped, "
        f"{best['calls_per_order']:.2f} provider calls per order; "
        f"{int(table['pareto'].sum())} of {len(table)} points are on the Pareto front."
    )
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    plots.pareto(tune, ax=ax)
    chart = _figure(
        "pareto",
        _png(fig, charts / "pareto.png"),
        "Each tuned point: cost per order against time to outcome p95 (95 % intervals); "
        "the Pareto points (no other point is better on cost, time to outcome and calls) "
        "are highlighted and labelled with their settings.",
    )
    return {
        "text": text,
        "table": Markup(table.style.hide(axis="index").format(precision=2).to_html()),
        "chart": Markup(chart),
    }


def _github_anchor(heading: str) -> str:
    text = heading.strip().lstrip("#").strip().replace("`", "").lower()
    text = re.sub(r"[^a-z0-9 \-]", "", text)
    return text.replace(" ", "-")


def _strategy_docs() -> tuple[Path | None, dict[str, str]]:
    """``docs/strategies.md`` of a source checkout, and each preset's section anchor."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "strategies.md"
    if not docs.is_file():
        return None, {}
    anchors: dict[str, str] = {}
    for line in docs.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            for name in re.findall(r"`([a-z0-9-]+)`", line):
                anchors.setdefault(name, _github_anchor(line))
            if "ablation" in line.lower():
                anchors.setdefault("*ablations", _github_anchor(line))
    return docs, anchors


def _verdict_table(rows: pd.DataFrame, scenario: str, currency: str, vmax: dict[str, float]) -> str:
    import pandas as pd

    shown = pd.DataFrame(
        {h: [verdict_cell(k, r, currency) for _, r in rows.iterrows()] for k, h in VERDICT_COLUMNS}
    )
    styler = shown.style.hide(axis="index").set_uuid(_slug(scenario))
    styler = styler.set_table_attributes(
        f'class="verdict" data-scenario="{scenario}" data-order="{"|".join(rows["strategy"])}"'
    )
    # One shared colour scale per metric family across every scenario's table; the text
    # colour follows each cell's darkness (Styler's text_color_threshold).
    for key, cmap in (("harmed_rate", "Reds"), ("cost_per_order", "Oranges")):
        header = dict(VERDICT_COLUMNS)[key]
        styler = styler.background_gradient(
            cmap=cmap,
            subset=[header],
            gmap=rows[key].astype(float).to_numpy(),
            vmin=0.0,
            vmax=vmax[key] or 1.0,
        )
    html: str = styler.to_html()
    return html


def _day_chart(scenario: Any, hourly: pd.DataFrame, order: Sequence[str], vmax: float) -> Any:
    import matplotlib.pyplot as plt

    from payflow import plots
    from payflow.sim._day_profile import day_profile

    day = day_profile(scenario, 600.0)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.4), layout="constrained")
    ax = axes[0]
    for q, style in ((50, "-"), (95, "--"), (99, ":")):
        ax.plot(day["t_s"], day[f"latency_p{q}_s"], style, color="#333", label=f"p{q}")
    ax.set_ylabel("one create call (s)")
    ax.set_title("provider latency")
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1]
    ax.plot(day["t_s"], day["error_rate"] * 100, color="#c0392b", label="5xx")
    ax.plot(day["t_s"], day["throttle_rate"] * 100, color="#e67e22", label="429")
    ax.plot(day["t_s"], day["lost_rate"] * 100, color="#8e44ad", label="reply lost")
    ax.set_ylabel("% of calls")
    ax.set_title("errors and throttling")
    ax.legend(fontsize=8, loc="upper left")
    twin = ax.twinx()
    twin.plot(day["t_s"], day["capacity"], color="#2980b9", lw=0.8, alpha=0.6)
    twin.set_ylabel("provider slots (blue)")
    twin.set_ylim(bottom=0)
    ax = axes[2]
    colours = plt.get_cmap("tab10")
    for i, name in enumerate(order):
        mine = hourly[hourly["strategy"] == name]
        ax.plot(
            mine["hour"] * 3600 + 1800,
            mine["harmed_rate"] * 100,
            "-o",
            ms=3,
            color=colours(i % 10),
            label=name,
        )
    ax.set_ylim(0, max(vmax * 100 * 1.05, 1.0))
    ax.set_ylabel("harmed (% of orders arriving)")
    ax.set_title("harm by hour of arrival")
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    ax = axes[3]
    for i, name in enumerate(order):
        mine = hourly[hourly["strategy"] == name]
        ax.plot(mine["hour"] * 3600 + 1800, mine["queue_waiting"], "-o", ms=3,
                color=colours(i % 10), label=name)  # fmt: skip
    ax.set_ylim(bottom=0)
    ax.set_ylabel("requests waiting for a slot (mean)")
    ax.set_title("provider queue by hour (from the runs)")
    for ax in axes:
        plots.hhmm_axis(ax)
        ax.set_xlim(0, 86_400)
        ax.set_xlabel("time of day (HH:MM)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{scenario}: the day")
    return fig


def _styled(frame: pd.DataFrame, name: str) -> Markup:
    """A small table of strings (already formatted) as HTML, tagged for tests."""
    from markupsafe import Markup

    styler = frame.style.hide(axis="index").set_uuid(name)
    styler = styler.set_table_attributes(f'class="validity" data-table="{name}"')
    if "agrees" in frame:
        # A disagreement is the thing a reviewer must not miss.
        styler = styler.map(
            lambda v: "background:#f5b7b1;font-weight:bold" if v == "NO" else "",
            subset=["agrees"],
        )
    return Markup(styler.to_html())


def _validity(figures: Mapping[str, Any] | None) -> dict[str, Any]:
    """The validity section from the saved figures (:mod:`payflow.validity`)."""
    from payflow import validity

    if figures is None:
        return {"missing": True}
    fig = dict(figures)
    jitter = fig["jitter"]
    holds = [f for f in jitter["findings"] if f["holds"]]
    fails = [f for f in jitter["findings"] if not f["holds"]]
    jitter_lines = [
        f"{f['clients']} clients: {f['finding']} — "
        + ("holds." if f["holds"] else "DOES NOT HOLD.")
        for f in holds + fails
    ]
    erlang = fig["erlang_c"]
    erlang_misses = [r for r in erlang["rows"] if not r["within"]]
    amp = fig.get("amplification", {"rows": []})
    return {
        "missing": False,
        "made": fig["made"],
        "commit": fig["commit"],
        "machine": fig["machine"],
        "command": fig["command"],
        "small": bool(fig.get("small")),
        "agreement": fig["sim_vs_real"]["agreement"],
        "verdict": list(fig["sim_vs_real"]["verdict"]),
        "disagreements": validity.disagreements(fig),
        "sim_real": _styled(validity.agreement_table(fig), "sim-vs-real"),
        "erlang": _styled(validity.erlang_table(fig), "erlang-c"),
        "erlang_text": (
            f"{len(erlang['rows']) - len(erlang_misses)} of {len(erlang['rows'])} queues agree "
            f"with Erlang C ({erlang['replications']} replications of {erlang['customers']:,} "
            f"customers; {erlang['interval']})."
        ),
        "jitter": _styled(validity.jitter_table(fig), "jitter"),
        "jitter_lines": jitter_lines,
        "jitter_text": f"{jitter['replications']} replications, {jitter['interval']}.",
        "amplification": _styled(validity.amplification_table(fig), "amplification")
        if amp["rows"]
        else None,
    }


def _identical_notes(
    summary: pd.DataFrame,
    order: Sequence[str],
    scenarios: Sequence[Any],
    seeds: Sequence[int],
    orders: int | None,
) -> list[str]:
    """A sentence for every pair of strategies with identical rows in every scenario,
    saying why from a measurement (:mod:`payflow.sim._differ`): both are run again on
    the page's scenarios and seeds with timelines kept, and the branches of the
    settings they differ in are counted."""
    from payflow.sim._differ import explain_identical, path_counts

    cols = [c for c in summary.columns if c.endswith("_rate") or c.endswith("_per_order")]
    by = {s: summary[summary["strategy"] == s].sort_values("scenario")[cols] for s in order}
    notes: list[str] = []
    seen: set[str] = set()
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            if b in seen or not by[a].reset_index(drop=True).equals(by[b].reset_index(drop=True)):
                continue
            seen.add(b)
            counts = path_counts(a, b, scenarios, seeds, orders)
            notes.append(
                f"{a} and {b} give identical rows in every scenario. "
                + explain_identical(a, b, counts)
            )
    return notes


def build_report(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    out: Path,
    *,
    seeds: Sequence[int],
    orders: int | None,
    elapsed_s: float,
    hourly: pd.DataFrame | None = None,
    sensitivity: pd.DataFrame | None = None,
    tune: pd.DataFrame | None = None,
    note: str = "",
    sources: Mapping[str, Any] | None = None,
    validation: str | Path | None = None,
) -> Path:
    """Write ``index.html`` (from the Jinja2 template), ``runs.csv``, ``summary.csv``,
    ``hourly.csv`` and ``charts/`` into ``out``. ``hourly`` (pooled per-hour rows),
    ``sensitivity`` (:func:`payflow.sim._sensitivity.sensitivity`) and ``tune`` (any
    table, shown as is) are optional sections. ``validation`` is the file of saved
    validation figures the validity section quotes (default: the shipped
    ``data/validation/last.json``; ``"none"``: say there are none)."""
    import jinja2
    import matplotlib

    matplotlib.use("Agg")  # the report never needs a screen
    import matplotlib.pyplot as plt
    from markupsafe import Markup

    from payflow import __version__, plots
    from payflow.sim import get_strategy, load_scenario
    from payflow.sim.verdict import ranked, settings, strategy_order, verdict

    out.mkdir(parents=True, exist_ok=True)
    charts = out / "charts"  # the same charts as files, for slides and READMEs
    charts.mkdir(exist_ok=True)
    for old in charts.glob("*.png"):
        old.unlink()
    runs.to_csv(out / "runs.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    if hourly is not None:
        hourly.to_csv(out / "hourly.csv", index=False)
    scenarios = list(dict.fromkeys(summary["scenario"]))
    # A scenario given by path (or in code) is found again by its name through ``sources``.
    where = dict(sources or {})

    def scenario_of(name: str) -> Any:
        return load_scenario(where.get(name, name))

    order = strategy_order(summary)
    vmax = {
        "harmed_rate": float(summary["harmed_rate"].max()),
        "cost_per_order": float(summary["cost_per_order"].max()),
    }
    plt.rcParams.update({"font.size": 10})
    sections: list[dict[str, Any]] = []
    for scenario in scenarios:
        sc = scenario_of(scenario)
        currency = sc.traffic.currency
        rows = ranked(summary, scenario, order)
        fig, axes = plt.subplots(
            1, 3, figsize=(13, 0.42 * len(order) + 1.6), layout="constrained", sharey=True
        )
        plots.strategy_bars(
            rows,
            "harmed_rate",
            axes[0],
            order=order,
            scale=100,
            xmax=vmax["harmed_rate"] * 100,
            fmt="{:.1f} %",
            xlabel="harmed (% of orders, 95 % interval)",
            title="harm",
        )
        plots.strategy_bars(
            rows,
            "provider_calls_per_order",
            axes[1],
            order=order,
            xmax=float(summary["provider_calls_per_order"].max()),
            fmt="{:.1f}",
            xlabel="provider calls per order",
            title="load on the provider",
            colour="#2980b9",
        )
        plots.strategy_bars(
            rows,
            "cost_per_order",
            axes[2],
            order=order,
            scale=0.01,
            xmax=vmax["cost_per_order"] / 100,
            fmt="{:.2f}",
            xlabel=f"cost per order ({currency})",
            title="cost",
            colour="#e67e22",
        )
        fig.suptitle(f"{scenario}: harm, load and cost (same scales for every scenario)")
        chart = _figure(
            f"{scenario}: harm, load and cost",
            _png(fig, charts / f"{_slug(scenario)}.png"),
            "Bars in the page's strategy order; scales shared across scenarios.",
            order,
        )
        day_chart = ""
        if hourly is not None:
            mine = hourly[hourly["scenario"] == scenario]
            top = float(hourly["harmed_rate"].max(skipna=True) or 0.0)
            fig = _day_chart(where.get(scenario, scenario), mine, order, top)
            day_chart = _figure(
                f"{scenario}: the day",
                _png(fig, charts / f"{_slug(scenario)}-day.png"),
                "Left and middle: the provider as the scenario's fault profile describes it. "
                "Right: share of orders harmed by hour of arrival, pooled over seeds.",
                order,
            )
        sections.append(
            {
                "name": scenario,
                "verdict": verdict(summary, scenario, currency),
                "table": Markup(_verdict_table(rows, scenario, currency, vmax)),
                "chart": Markup(chart),
                "day_chart": Markup(day_chart),
            }
        )
    overview = []
    for key, cmap, scale, fmt, label in (
        ("harmed_rate", "Reds", 100.0, "{:.1f}", "harmed (% of orders)"),
        ("cost_per_order", "Oranges", 0.01, "{:.2f}", "cost per order (DKK)"),
        ("shipped_rate", "Greens", 100.0, "{:.0f}", "shipped (% of orders)"),
    ):
        grid = (
            summary.pivot(index="strategy", columns="scenario", values=key).reindex(
                index=order, columns=scenarios
            )
            * scale
        )
        fig, ax = plt.subplots(figsize=(9, 0.42 * len(order) + 1.9), layout="constrained")
        plots.heatmap(
            grid,
            ax,
            vmax=float(grid.max().max()) if key != "shipped_rate" else 100.0,
            cmap=cmap,
            fmt=fmt,
            label=label,
            title=label + ", by scenario and strategy",
        )
        overview.append(
            Markup(
                _figure(
                    key,
                    _png(fig, charts / f"{_slug(key)}.png"),
                    f"{label}; rows in the page's strategy order.",
                    order,
                )
            )
        )
    sens: dict[str, Any] | None = None
    if sensitivity is not None and not sensitivity.empty:
        from payflow.sim._sensitivity import ranking_holds

        _, text = ranking_holds(sensitivity)
        fig, ax = plt.subplots(figsize=(9, 3.2), layout="constrained")
        _tornado(sensitivity, ax)
        sens = {
            "text": text,
            "table": Markup(sensitivity.style.hide(axis="index").format(precision=2).to_html()),
            "chart": Markup(
                _figure(
                    "sensitivity",
                    _png(fig, charts / "sensitivity.png"),
                    "Cost per order of the cheapest strategy at each end of each range.",
                )
            ),
        }
    tuned = _tuning(tune, charts, plt) if tune is not None and not tune.empty else None
    docs, anchors = _strategy_docs()
    if docs is not None:
        shutil.copyfile(docs, out / "strategies.md")
    strategy_rows = []
    for name in order:
        st = get_strategy(name)
        strategy_rows.append(
            {
                "name": name,
                "anchor": anchors.get(name, anchors.get("*ablations", "")),
                "description": st.description,
                "settings": settings(st),
            }
        )
    setting_keys = list(strategy_rows[0]["settings"]) if strategy_rows else []
    scenario_defs = []
    for name in scenarios:
        sc = scenario_of(name)
        c = sc.customers
        scenario_defs.append(
            {
                "name": name,
                "description": sc.description,
                "orders": f"{sc.traffic.day_orders:,}",
                "customers": f"patience median {c.patience_median_s:g} s; click again "
                f"{c.click_again * 100:.0f} %, reload {c.reload * 100:.0f} %; email patience "
                f"median {c.email_patience_median_s / 60:g} min",
            }
        )
    from payflow import validity as saved

    checks = _validity(saved.load(validation) if validation != "none" else None)
    validity_notes = [
        "Known limits: latency and fault rates are assumptions written in data/faults, not "
        "fitted to a provider's logs; customer behaviour (patience, click-again habit) is a "
        "guess, which the sensitivity section varies.",
        *_identical_notes(
            summary, order, [where.get(n, n) for n in scenarios], list(seeds), orders
        ),
    ]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("payflow", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    page = env.get_template("report.html.j2").render(
        headline="Which payment strategy costs least, and whom does each one harm?",
        version=__version__,
        seeds=", ".join(str(s) for s in seeds),
        orders_text=f"orders per run: {orders:,}"
        if orders
        else "orders per run: as each scenario says",
        n_runs=len(runs),
        elapsed=f"{elapsed_s:.0f}",
        strategy_note=note,
        scenarios=sections,
        overview=overview,
        sensitivity=sens,
        tune=tuned,
        validity=checks,
        validity_notes=validity_notes,
        strategies=strategy_rows,
        setting_keys=setting_keys,
        scenario_defs=scenario_defs,
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _tornado(sensitivity: pd.DataFrame, ax: Any) -> None:
    labels, lows, highs, base = [], [], [], float("nan")
    for assumption, group in sensitivity.groupby("assumption", sort=False):
        group = group.sort_values("value")
        labels.append(f"{assumption} {group['value'].iloc[0]:g}…{group['value'].iloc[-1]:g}")
        lows.append(float(group["best_cost"].iloc[0]) / 100)
        highs.append(float(group["best_cost"].iloc[-1]) / 100)
        base = float(group["base_cost"].iloc[0]) / 100
    for i, (lo, hi) in enumerate(zip(lows, highs, strict=True)):
        ax.barh(i, hi - base, left=base, color="#e67e22", label="high end" if i == 0 else None)
        ax.barh(i, lo - base, left=base, color="#2980b9", label="low end" if i == 0 else None)
    ax.axvline(base, color="#333", lw=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("cost per order of the best strategy (DKK)")
    ax.legend(fontsize=8)


def _tune_param(text: str) -> tuple[str, list[Any]]:
    from payflow.sim.tune import _param

    return _param(text)


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
    import pandas as pd

    from payflow.sim import get_strategy, load_scenario, scenario_names, strategy_names
    from payflow.sim.hourly import pool_hours, run_with_hours
    from payflow.sim.sweep import map_runs, pool_seeds

    scenarios = _split(args.scenario) or scenario_names()
    chosen = _split(args.strategy)
    if chosen:
        strategies, note = chosen, "Strategies chosen with --strategy."
    elif args.ablations:
        strategies = strategy_names()
        note = "Every preset, ablations included (--ablations)."
    else:
        strategies = list(DEFAULT_STRATEGIES)
        note = (
            "This page shows the seed answers, naive and recommended; the ablations (one "
            "safeguard at a time) are left out so the default run stays near a minute and a "
            "half on two cores: add them with --ablations."
        )
    # A clear LookupError listing the valid names; a path is remembered under its name.
    sources = {load_scenario(name).name: name for name in scenarios}
    for name in strategies:
        get_strategy(name)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.orders is not None and args.orders < 1:
        raise ValueError(f"--orders must be >= 1, got {args.orders}")
    out = _writable_folder(args.out)  # before the sweep: never lose a run to a bad path
    seeds = list(range(args.seeds))
    started = time.perf_counter()
    results = map_runs(
        run_with_hours, scenarios, strategies, seeds, None, (args.orders, 3600.0), args.progress
    )
    runs = pd.DataFrame([summary for summary, _ in results]).reset_index(drop=True)
    summary = pool_seeds(runs)
    hourly = pool_hours(pd.concat([c for _, c in results], ignore_index=True))
    tuned = None
    if args.tune:
        from payflow.sim.tune import tune

        space: dict[str, list[Any]] = {}
        for name, values in args.tune:
            if name in space:
                raise ValueError(f"--tune: {name} given twice")
            space[name] = values
        target = args.tune_scenario or (
            "slow-provider-day" if "slow-provider-day" in scenarios else scenarios[0]
        )
        tuned = tune(
            target, args.tune_strategy, space, seeds=seeds,
            orders=args.orders or DEFAULT_ORDERS, progress=args.progress,
        )  # fmt: skip
    sens = None
    if args.sensitivity:
        from payflow.sim._sensitivity import sensitivity

        target = "slow-provider-day" if "slow-provider-day" in scenarios else scenarios[0]
        sens = sensitivity(target, strategies, seeds=[0], orders=SENSITIVITY_ORDERS)
        sens.insert(0, "scenario", target)
    index = build_report(
        runs,
        summary,
        out,
        seeds=seeds,
        orders=args.orders,
        elapsed_s=time.perf_counter() - started,
        hourly=hourly,
        sensitivity=sens,
        tune=tuned,
        note=note,
        sources=sources,
    )
    print(f"wrote {index} ({len(runs)} runs, {time.perf_counter() - started:.0f} s)")
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
        help="strategies to include (default: the seed answers, naive and recommended)",
    )
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="include every preset, the one-safeguard-at-a-time ablations too (slower)",
    )
    parser.add_argument(
        "--sensitivity",
        action="store_true",
        help=f"vary customer and provider assumptions one at a time ({SENSITIVITY_ORDERS} "
        "orders per run; slower)",
    )
    parser.add_argument(
        "--tune",
        action="append",
        type=_tune_param,
        metavar="KNOB=v1,v2",
        help="also tune a strategy over these knob values (repeatable; see payflow tune) "
        "and put the best settings and the Pareto chart on the page",
    )
    parser.add_argument(
        "--tune-strategy",
        default="recommended",
        metavar="NAME",
        help="the strategy --tune varies (default: recommended)",
    )
    parser.add_argument(
        "--tune-scenario",
        default=None,
        metavar="NAME_OR_PATH",
        help="the day --tune runs on (default: slow-provider-day if shown, else the first)",
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
