"""The last validation figures, kept in a file so the report can quote them.

Checking the simulation against the real client takes real sockets and a few
minutes (:mod:`payflow.compare`), too slow for every ``payflow report``. So
``payflow validate --save data/validation/last.json`` runs the checks once and
writes what they found, with the date, the machine and the commit; the report
renders its validity section from that file (:func:`load`), and a test checks
that the page says what the file says.

The file holds three checks, each computed by existing code:

* ``sim_vs_real``: notebook 05's cases (:data:`CASES`), each strategy paid for
  real against the reference server and simulated over :data:`SIM_SEEDS`
  seeds, judged per metric by :func:`payflow.compare.compare`;
* ``erlang_c``: the provider model's own queue as M/M/c
  (:func:`payflow.sim.validate.mmc`) against Erlang C, over independent
  replications, as ``tests/validation/test_queueing.py`` judges it;
* ``jitter``: the AWS backoff-and-jitter study re-run with the shipped backoff
  (:func:`payflow.sim.contention.study`) and whether its findings hold;
* ``amplification``: the shipped retry loop against independent failures
  (:func:`payflow.sim.validate.amplification`) and its closed forms.

:func:`agreement_table`, :func:`erlang_table`, :func:`jitter_table` and
:func:`amplification_table` turn the saved figures into the tables the report
shows (strings, as printed), and :func:`disagreements` says plainly where the
simulation and the real client disagree.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# pandas, the simulation and the real client are imported when a check runs, so that
# `payflow --help` (which registers the `validate` subcommand) stays fast.

__all__ = [
    "CASES",
    "MMC",
    "SIM_SEEDS",
    "STRATEGIES",
    "agreement_table",
    "amplification_check",
    "amplification_table",
    "disagreements",
    "erlang_c",
    "erlang_table",
    "jitter",
    "jitter_findings",
    "jitter_table",
    "load",
    "measure",
    "metric_cell",
    "register",
    "save",
    "shipped_path",
    "sim_vs_real",
]

#: Notebook 05's full-size cases: (fault profile, window start, window length in simulated
#: seconds, orders, time scale).
CASES: tuple[tuple[str, str, int, int, int], ...] = (
    ("slow-provider-day", "10:15", 1200, 150, 60),  # latency climbing: 3-12 s per call
    ("slow-provider-day", "12:30", 1200, 150, 60),  # the worst: ~45 s per call, 16 slots
    ("lost-responses", "10:30", 600, 150, 20),  # 10 % of answers lost after commit
)
#: The small case the test suite and ``--small`` use.
SMALL_CASES: tuple[tuple[str, str, int, int, int], ...] = (
    ("slow-provider-day", "10:15", 240, 16, 120),
)
STRATEGIES: tuple[str, ...] = ("naive", "recommended")
SIM_SEEDS = 30
#: (arrival rate, service rate, servers) of the Erlang C check, as in docs/validation.md.
MMC: tuple[tuple[float, float, int], ...] = ((2.0, 1.0, 3), (8.0, 1.0, 10), (9.0, 1.0, 10))
MMC_REPLICATIONS = 10
MMC_CUSTOMERS = 20_000
_T99_9DF = 3.250  # Student t, two-sided 99 %, 9 degrees of freedom (10 replications)
JITTER_CLIENTS = (50, 100)
JITTER_REPLICATIONS = 30
#: (failure probability p, retries N) of the amplification check, as in docs/validation.md.
AMPLIFICATION: tuple[tuple[float, int], ...] = ((0.1, 2), (0.3, 2), (0.3, 5), (0.6, 2), (0.6, 5))
AMPLIFICATION_REQUESTS = 10_000
#: How each compared metric is named on the page, and whether it is a rate (shown in %).
METRIC_LABELS: dict[str, tuple[str, bool]] = {
    "duplicate_charge_rate": ("double capture", True),
    "orphan_charge_rate": ("orphan charge", True),
    "fulfilled_rate": ("fulfilled", True),
    "timeouts_per_order": ("timeouts / order", False),
    "retries_per_order": ("retries / order", False),
    "provider_calls_per_order": ("provider calls / order", False),
}


def shipped_path() -> Path:
    """Where the shipped figures live: ``data/validation/last.json`` of the source checkout
    this module belongs to, else of the installed ``payflow.data`` package."""
    from importlib.resources import files

    # A checkout's own file first: an editable install of another checkout maps
    # payflow.data to *that* checkout's data/, which may hold older figures.
    beside = Path(__file__).resolve().parents[1] / "data" / "validation" / "last.json"
    if beside.is_file():
        return beside
    return Path(str(files("payflow.data"))) / "validation" / "last.json"


def sim_vs_real(
    cases: Iterable[tuple[str, str, int, int, int]] = CASES,
    strategies: Iterable[str] = STRATEGIES,
    sim_seeds: Iterable[int] = range(SIM_SEEDS),
    real_seed: int = 0,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Notebook 05's comparison: each case paid for real, then simulated.

    One row per (case, strategy, metric) from :func:`payflow.compare.compare`, with
    ``case`` (profile, start and length), ``time_scale`` and ``real_wall_s`` (how long
    the real run took on the wall clock). ``progress`` shows a bar over the
    (case, strategy) pairs (by default in a terminal, and as a widget in JupyterLab).
    """
    import pandas as pd

    from payflow import compare
    from payflow.sim.progress import bar

    seeds = list(sim_seeds)
    jobs = [(case, strategy) for case in cases for strategy in strategies]
    tables = []
    for (faults, start, duration_s, orders, time_scale), strategy in bar(
        jobs, desc="real + simulated", unit="case", progress=progress
    ):
        case = f"{faults} {start} +{duration_s // 60} min"
        began = time.monotonic()
        real = compare.real_run(
            faults, strategy, orders, start, duration_s, time_scale=time_scale, seed=real_seed
        )
        wall = time.monotonic() - began
        sim = compare.sim_run(faults, strategy, orders, start, duration_s, seeds=seeds)
        tables.append(
            compare.compare(real, sim).assign(case=case, time_scale=time_scale, real_wall_s=wall)
        )
    return pd.concat(tables, ignore_index=True)


def erlang_c(
    configs: Iterable[tuple[float, float, int]] = MMC,
    replications: int = MMC_REPLICATIONS,
    customers: int = MMC_CUSTOMERS,
) -> pd.DataFrame:
    """The provider model's queue against Erlang C: one row per (λ, μ, c) with the
    theory's mean wait, the replications' mean and 99 % Student-t interval, the
    utilisation, and ``within`` (the theory lies inside the interval)."""
    import pandas as pd

    from payflow.sim.validate import erlang_c_wait, mmc

    if replications != MMC_REPLICATIONS:
        raise ValueError("replications: the interval uses t with 9 df, so it must be 10")
    rows = []
    for lam, mu, c in configs:
        runs = [mmc(lam, mu, c, customers, seed=seed) for seed in range(replications)]
        waits = [r["mean_wait"] for r in runs]
        mean = statistics.mean(waits)
        half = _T99_9DF * statistics.stdev(waits) / math.sqrt(len(waits))
        theory = erlang_c_wait(lam, mu, c)
        rows.append(
            {
                "arrival_rate": lam,
                "service_rate": mu,
                "servers": c,
                "rho": lam / (mu * c),
                "erlang_c_wait_s": theory,
                "mean_wait_s": mean,
                "low": mean - half,
                "high": mean + half,
                "utilization": statistics.mean(r["utilization"] for r in runs),
                "within": bool(mean - half <= theory <= mean + half),
            }
        )
    return pd.DataFrame(rows)


def jitter(
    clients: Iterable[int] = JITTER_CLIENTS, replications: int = JITTER_REPLICATIONS
) -> pd.DataFrame:
    """The AWS backoff-and-jitter study (:func:`payflow.sim.contention.study`)."""
    from payflow.sim.contention import study

    return study(clients=tuple(clients), replications=replications)


def jitter_findings(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The study's findings, each checked against ``table`` (one per number of clients):
    ``{"clients", "finding", "holds"}``. A finding holds when the means are in the
    stated order (the tests also require the gaps to exceed three standard errors)."""
    found = []
    for n, rows in table.groupby("clients", sort=True):
        by = rows.set_index("algorithm")
        calls, done = by["calls"], by["completion_ms"]
        jittered = [a for a in ("full", "equal", "decorrelated") if a in by.index]
        checks = []
        if "exponential" in by.index and jittered:
            checks.append(
                (
                    "exponential backoff without jitter does more work and takes longer "
                    "than every jittered kind",
                    all(
                        calls["exponential"] > calls[a] and done["exponential"] > done[a]
                        for a in jittered
                    ),
                )
            )
        if {"full", "equal", "decorrelated"} <= set(by.index):
            checks.append(
                (
                    "full jitter does the least work; decorrelated finishes soonest of the "
                    "jittered kinds",
                    calls["full"] == min(calls[a] for a in jittered)
                    and done["decorrelated"] == min(done[a] for a in jittered),
                )
            )
        found += [{"clients": int(str(n)), "finding": f, "holds": bool(h)} for f, h in checks]
    return found


def amplification_check(
    cases: Iterable[tuple[float, int]] = AMPLIFICATION, requests: int = AMPLIFICATION_REQUESTS
) -> pd.DataFrame:
    """Calls per request and success rate of the shipped retry loop against the closed
    forms, one row per (p, N); ``within``: both inside four standard errors, as
    ``tests/validation/test_retries.py`` judges (the calls' variance bounded by the
    untruncated geometric one, p / (1 - p)^2)."""
    import pandas as pd

    from payflow.sim.validate import amplification

    rows = []
    for p, retries in cases:
        r = amplification(p, retries, requests=requests, seed=11)
        se_calls = math.sqrt(p / (1 - p) ** 2 / requests)
        ok = r["expected_success"]
        se_success = math.sqrt(ok * (1 - ok) / requests)
        rows.append(
            {
                "p": p,
                "retries": retries,
                "expected_calls": r["expected_calls"],
                "calls_per_request": r["calls_per_request"],
                "expected_success": ok,
                "success_rate": r["success_rate"],
                "within": bool(
                    abs(r["calls_per_request"] - r["expected_calls"]) < 4 * se_calls
                    and abs(r["success_rate"] - ok) < 4 * se_success + 1 / requests
                ),
            }
        )
    return pd.DataFrame(rows)


def _commit() -> str:
    """The commit the figures were made at (``+dirty`` if the tree had changes)."""
    where = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=where, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if dirty else "")


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for row in frame.loc[:, list(columns)].to_dict("records"):
        clean: dict[str, Any] = {}
        for key, value in row.items():
            if hasattr(value, "item"):  # numpy scalars -> Python numbers for JSON
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                value = None  # JSON has no inf / nan; None reads back as "no bound"
            clean[str(key)] = value
        out.append(clean)
    return out


_SIM_VS_REAL_COLUMNS = (
    "case", "strategy", "metric", "sim", "real", "low", "high", "within",
    "sim_seeds", "sim_orders", "real_orders", "time_scale", "real_wall_s",
)  # fmt: skip


def measure(*, small: bool = False, command: str = "") -> dict[str, Any]:
    """Run the three checks; return the figures as a JSON-ready dict.

    ``small`` runs notebook 05's small case and fewer replications (seconds, for
    tests); the shipped file is made full size.
    """
    from payflow.compare import AGREEMENT
    from payflow.sim.notes import agreement_verdict

    # The real runs live on a compressed clock: a busy machine can turn a late thread into
    # a timeout, so the load at the start is part of what the figures mean.
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    commit = _commit()  # at the start: the code that runs, whatever changes meanwhile
    table = sim_vs_real(SMALL_CASES, sim_seeds=range(5)) if small else sim_vs_real()
    queue = erlang_c(MMC[:1], customers=2_000) if small else erlang_c()
    study = jitter((50,), 5) if small else jitter()
    amp = amplification_check(AMPLIFICATION[:2], 1_000) if small else amplification_check()
    return {
        "made": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load_at_start:.1f} at the start",
        "command": command or "payflow.validity.measure()",
        "small": small,
        "sim_vs_real": {
            "agreement": AGREEMENT,
            "verdict": agreement_verdict(table),
            "rows": _records(table, _SIM_VS_REAL_COLUMNS),
        },
        "erlang_c": {
            "replications": MMC_REPLICATIONS,
            "customers": MMC_CUSTOMERS if not small else 2_000,
            "interval": "99 % Student t over independent replications, first 10 % of "
            "customers discarded",
            "rows": _records(queue, list(queue.columns)),
        },
        "jitter": {
            "replications": JITTER_REPLICATIONS if not small else 5,
            "interval": "95 % normal over replications",
            "rows": _records(study, list(study.columns)),
            "findings": jitter_findings(study),
        },
        "amplification": {
            "requests": AMPLIFICATION_REQUESTS if not small else 1_000,
            "interval": "four standard errors",
            "rows": _records(amp, list(amp.columns)),
        },
    }


def _pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f} %"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _yes(value: bool) -> str:
    return "yes" if value else "NO"


def metric_cell(metric: str, value: float | None) -> str:
    """A compared metric as the page prints it: rates in % (2 decimals), means to 3."""
    _, rate = METRIC_LABELS.get(metric, (metric, metric.endswith("_rate")))
    return _pct(value) if rate else _num(value)


def agreement_table(figures: dict[str, Any]) -> pd.DataFrame:
    """Sim vs real, one row per (case, strategy, metric), as the page prints it."""
    import pandas as pd

    rows = []
    for r in figures["sim_vs_real"]["rows"]:
        metric = str(r["metric"])
        low, high = metric_cell(metric, r["low"]), metric_cell(metric, r["high"])
        rows.append(
            {
                "case": r["case"],
                "strategy": r["strategy"],
                "metric": METRIC_LABELS.get(metric, (metric, False))[0],
                "simulation": metric_cell(metric, r["sim"]),
                "real": metric_cell(metric, r["real"]),
                "95 % interval for the real value": f"{low} – {high}",
                "agrees": _yes(bool(r["within"])),
            }
        )
    return pd.DataFrame(rows)


def disagreements(figures: dict[str, Any]) -> list[str]:
    """Every real value outside the simulation's interval, one plain sentence each
    (or one sentence saying there is none)."""
    rows = figures["sim_vs_real"]["rows"]
    misses = [r for r in rows if not r["within"]]
    if not misses:
        return [f"No disagreement: all {len(rows)} real values fell inside the simulation's "
                "interval."]  # fmt: skip
    lines = [f"Disagreement in {len(misses)} of {len(rows)} comparisons:"]
    for r in misses:
        metric = str(r["metric"])
        side = "above" if r["high"] is not None and r["real"] > r["high"] else "below"
        lines.append(
            f"{r['case']}, {r['strategy']}: the real {METRIC_LABELS.get(metric, (metric,))[0]} "
            f"was {metric_cell(metric, r['real'])}, {side} the simulation's interval "
            f"{metric_cell(metric, r['low'])} – {metric_cell(metric, r['high'])} "
            f"(simulated {metric_cell(metric, r['sim'])})."
        )
    return lines


def erlang_table(figures: dict[str, Any]) -> pd.DataFrame:
    """The Erlang C check as the page prints it."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "λ/μ/c": f"{r['arrival_rate']:g}/{r['service_rate']:g}/{r['servers']}",
                "ρ": f"{r['rho']:.2f}",
                "Erlang C W_q (s)": f"{r['erlang_c_wait_s']:.3f}",
                "simulated mean [99 % interval] (s)": f"{r['mean_wait_s']:.3f} "
                f"[{r['low']:.3f} – {r['high']:.3f}]",
                "utilisation": f"{r['utilization']:.3f}",
                "agrees": _yes(bool(r["within"])),
            }
            for r in figures["erlang_c"]["rows"]
        ]
    )


def jitter_table(figures: dict[str, Any]) -> pd.DataFrame:
    """The AWS jitter study as the page prints it."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "clients": str(int(r["clients"])),
                "backoff": r["algorithm"],
                "writes (work) [95 %]": f"{r['calls']:.0f} "
                f"[{r['calls_low']:.0f} – {r['calls_high']:.0f}]",
                "completion (ms) [95 %]": f"{r['completion_ms']:,.0f} "
                f"[{r['completion_ms_low']:,.0f} – {r['completion_ms_high']:,.0f}]",
            }
            for r in figures["jitter"]["rows"]
        ]
    )


def amplification_table(figures: dict[str, Any]) -> pd.DataFrame:
    """The retry-amplification check as the page prints it."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "p": f"{r['p']:g}",
                "retries N": str(r["retries"]),
                "calls / request: theory": f"{r['expected_calls']:.3f}",
                "calls / request: measured": f"{r['calls_per_request']:.3f}",
                "success: theory": f"{r['expected_success']:.4f}",
                "success: measured": f"{r['success_rate']:.4f}",
                "agrees": _yes(bool(r["within"])),
            }
            for r in figures.get("amplification", {}).get("rows", [])
        ]
    )


def save(figures: dict[str, Any], path: str | Path) -> Path:
    """Write ``figures`` (from :func:`measure`) as JSON; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


def load(path: str | Path | None = None) -> dict[str, Any] | None:
    """The saved figures (default: :func:`shipped_path`), or ``None`` if there are none."""
    target = Path(path) if path is not None else shipped_path()
    if not target.is_file():
        return None
    figures: dict[str, Any] = json.loads(target.read_text(encoding="utf-8"))
    return figures


def _validate(args: argparse.Namespace) -> int:
    command = "payflow validate" + (" --small" if args.small else "")
    if args.save:
        command += f" --save {args.save}"
    figures = measure(small=args.small, command=command)
    for line in figures["sim_vs_real"]["verdict"]:
        print(line)
    for row in figures["erlang_c"]["rows"]:
        print(
            f"Erlang C {row['arrival_rate']:g}/{row['service_rate']:g}/{row['servers']}: "
            f"theory {row['erlang_c_wait_s']:.3f} s, measured {row['mean_wait_s']:.3f} s "
            f"[{row['low']:.3f}, {row['high']:.3f}] -> "
            + ("agrees" if row["within"] else "DISAGREES")
        )
    for row in figures["amplification"]["rows"]:
        print(
            f"amplification p={row['p']:g} N={row['retries']}: calls {row['calls_per_request']:.3f}"
            f" (theory {row['expected_calls']:.3f}) -> "
            + ("agrees" if row["within"] else "DISAGREES")
        )
    for finding in figures["jitter"]["findings"]:
        print(
            f"jitter study, {finding['clients']} clients: {finding['finding']}: "
            + ("holds" if finding["holds"] else "DOES NOT HOLD")
        )
    if args.save:
        print(f"wrote {save(figures, args.save)}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``validate`` subcommand to the ``payflow`` command."""
    parser = subparsers.add_parser(
        "validate",
        help="check the simulation against the real client, Erlang C and the AWS jitter "
        "study, and save the figures the report quotes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--save",
        metavar="PATH",
        help="write the figures as JSON (the report reads data/validation/last.json)",
    )
    parser.add_argument(
        "--small",
        action="store_true",
        help="one small case and few replications (seconds; for trying it out)",
    )
    parser.set_defaults(handler=_validate)
