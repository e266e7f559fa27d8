"""`payflow report` at small scale: the page holds every chart and its tables match the data."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from payflow.cli import main
from payflow.report import VERDICT_COLUMNS

SCENARIOS = ["calm-day", "slow-provider-day"]
STRATEGIES = ["naive", "answer-a", "recommended"]


class _Page(HTMLParser):
    """Collects the charts and the verdict tables (headers and cell text) of the report."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[str] = []
        self.orders: list[list[str]] = []  # the strategy order of every chart and table
        self.images: list[str] = []
        self.tables: dict[str, list[dict[str, str]]] = {}
        self.headers: dict[str, list[str]] = {}
        self.first: str | None = None
        self._table: str | None = None
        self._cells: list[str] | None = None
        self._in_cell = False
        self._head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "figure" and a.get("data-chart"):
            self.charts.append(a["data-chart"] or "")
            if a.get("data-order"):
                self.orders.append((a["data-order"] or "").split("|"))
        if tag == "img" and (a.get("src") or "").startswith("data:image/png;base64,"):
            self.images.append(a["src"] or "")
        if tag == "table" and "verdict" in (a.get("class") or ""):
            self._table = a.get("data-scenario") or ""
            self.first = self.first or self._table
            self.tables[self._table], self.headers[self._table] = [], []
            self.orders.append((a.get("data-order") or "").split("|"))
        if tag == "thead":
            self._head = True
        if tag == "tr" and self._table is not None:
            self._cells = []
        if tag in ("td", "th") and self._cells is not None:
            self._cells.append("")
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False
        if tag == "thead":
            self._head = False
        if tag == "tr" and self._table is not None and self._cells is not None:
            cells = [c.strip() for c in self._cells]
            if self._head:
                self.headers[self._table] = cells
            else:
                self.tables[self._table].append(
                    dict(zip(self.headers[self._table], cells, strict=True))
                )
            self._cells = None
        if tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cells is not None and self._in_cell:
            self._cells[-1] += data


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    code = main(
        [
            "report",
            "--out",
            str(out),
            "--seeds",
            "2",
            "--orders",
            "80",
            "--no-progress",
            "--scenario",
            ",".join(SCENARIOS),
            "--strategy",
            ",".join(STRATEGIES),
            "--tune",
            "retries=0,1",
            "--tune-scenario",
            SCENARIOS[0],
        ]
    )
    assert code == 0
    return out


def parse(report: Path) -> _Page:
    page = _Page()
    page.feed((report / "index.html").read_text(encoding="utf-8"))
    return page


def test_the_first_table_is_the_verdict(report: Path) -> None:
    page = parse(report)
    text = (report / "index.html").read_text(encoding="utf-8")
    first_table = text.index("<table")
    assert 'class="verdict"' in text[first_table : first_table + 300]
    headers = " | ".join(page.headers[page.first or ""])
    for word in ("shipped", "harmed", "outcome", "calls", "cost"):
        assert word in headers, word
    for scenario, rows in page.tables.items():
        assert sorted(r["strategy"] for r in rows) == sorted(STRATEGIES), scenario


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", cell)]


def test_every_number_equals_the_csv_beside_it(report: Path) -> None:
    page = parse(report)
    summary = pd.read_csv(report / "summary.csv")
    header = dict(VERDICT_COLUMNS)
    for scenario, rows in page.tables.items():
        data = summary[summary["scenario"] == scenario].set_index("strategy")
        for row in rows:
            d = data.loc[row["strategy"]]
            assert _numbers(row[header["shipped_rate"]]) == [round(d["shipped_rate"] * 100, 1)]
            for key, count in (
                ("harmed_rate", "harmed"),
                ("duplicate_charge_rate", "duplicate_charges"),
                ("duplicate_hold_rate", "duplicate_holds"),
                ("silent_charge_rate", "silent_charges"),
                ("told_failed_but_charged_rate", "told_failed_but_charged"),
                ("orphan_charge_rate", "orphan_charges"),
            ):
                rate, n, low, high = _numbers(row[header[key]])
                assert rate == round(d[key] * 100, 2) and n == d[count], (scenario, key)
                assert (low, high) == (
                    round(d[f"{key}_low"] * 100, 2),
                    round(d[f"{key}_high"] * 100, 2),
                )
            assert _numbers(row[header["provider_calls_per_order"]]) == [
                round(d["provider_calls_per_order"], 2)
            ]
            assert _numbers(row[header["cost_per_order"]]) == [round(d["cost_per_order"] / 100, 2)]
            for q in ("outcome_p50_s", "outcome_p95_s"):
                cell = row[header[q]]
                expected = "never" if d[q] == float("inf") else f"{d[q]:.1f}"
                assert cell == expected


def test_one_strategy_order_in_every_chart_and_table(report: Path) -> None:
    page = parse(report)
    assert page.orders and all(o == page.orders[0] for o in page.orders)
    summary = pd.read_csv(report / "summary.csv")
    cost = summary.groupby("strategy")["cost_per_order"].mean()
    assert list(cost.loc[page.orders[0]]) == sorted(cost)  # cheapest first


def test_no_python_reprs_in_the_page(report: Path) -> None:
    text = (report / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"&lt;\w+\.\w+: |<\w+\.\w+: ", text)
    for bad in ("Backoff(", "Jitter.", "KeyScope.", "Policy(", "RetryPolicy("):
        assert bad not in text, bad


def test_every_chart_is_present_and_embedded(report: Path) -> None:
    page = parse(report)
    expected = (
        {f"{s}: harm, load and cost" for s in SCENARIOS}
        | {f"{s}: the day" for s in SCENARIOS}
        | {"pareto"}
    )
    assert expected <= set(page.charts)
    assert len(page.images) == len(page.charts)
    assert len(list((report / "charts").glob("*.png"))) == len(page.charts)
    for src in page.images:
        png = base64.b64decode(src.split(",", 1)[1])
        assert png.startswith(b"\x89PNG") and len(png) > 5_000  # a real picture


def test_tune_puts_the_best_settings_and_the_pareto_chart_on_the_page(report: Path) -> None:
    """``--tune``: a sentence at the top naming the cheapest point, the Pareto chart and
    one table row per point of the grid."""
    page = parse(report)
    text = (report / "index.html").read_text(encoding="utf-8")
    assert "pareto" in page.charts and (report / "charts" / "pareto.png").exists()
    top = text.index('<a href="#tune">Tuned</a>')
    assert top < text.index("<table"), "the best settings come with the verdict, first"
    sentence = text[top : text.index("</p>", top)]
    assert "Best settings of recommended on calm-day: retries = " in sentence
    section = text[text.index('id="tune"') :]
    rows = section[: section.index("</table>")].count("<tr") - 1  # minus the header row
    assert rows == 2


def test_pooled_counts_match_the_runs_file(report: Path) -> None:
    """The summary is recomputed here from the per-run data, not read back."""
    page = parse(report)
    runs = pd.read_csv(report / "runs.csv")
    header = dict(VERDICT_COLUMNS)
    for scenario, rows in page.tables.items():
        for row in rows:
            mine = runs[(runs["scenario"] == scenario) & (runs["strategy"] == row["strategy"])]
            orders = int(mine["orders"].sum())
            n = int(mine["duplicate_charges"].sum())
            rate, count, _, _ = _numbers(row[header["duplicate_charge_rate"]])
            assert count == n and rate == round(n / orders * 100, 2)


@pytest.mark.parametrize("bad", ["README.md", "/proc/payflow-nope"])
def test_a_bad_out_folder_is_refused_before_the_sweep(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = bad if bad.startswith("/") else str(Path(__file__).resolve().parents[2] / bad)
    assert main(["report", "--out", target, "--seeds", "1", "--orders", "10"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "Traceback" not in err


def test_runs_file_has_one_row_per_run_and_page_names_version_and_seeds(report: Path) -> None:
    import payflow

    runs = pd.read_csv(report / "runs.csv")
    assert len(runs) == len(SCENARIOS) * len(STRATEGIES) * 2
    text = (report / "index.html").read_text(encoding="utf-8")
    assert f"payflow {payflow.__version__}" in text and "seeds 0, 1" in text
    for name in STRATEGIES + SCENARIOS:
        assert f">{name}<" in text  # definitions present


def test_unknown_names_are_refused_with_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--scenario", "sunny-day", "--out", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "sunny-day" in err and "calm-day" in err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _chromium() is None and not os.environ.get("PAYFLOW_REQUIRE_CHROMIUM"),
    reason="Debian's chromium package is not installed",
)
def test_page_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    assert _chromium(), "PAYFLOW_REQUIRE_CHROMIUM is set but chromium is not on PATH"
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            _chromium() or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,2400",
            f"--screenshot={shot}",
            (report / "index.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 50_000  # charts, not a blank page


def test_order_timeline_draws_every_kind() -> None:
    from payflow import plots

    trace = pd.DataFrame(
        {
            "t": [0.0, 0.1, 2.1, 2.2, 5.0, 9.0],
            "kind": ["click", "call", "timeout", "charge", "refund", "ui"],
            "label": ["submit", "create", "2 s", "paid", "refund", "shipped"],
        }
    )
    ax = plots.order_timeline(trace)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(trace["kind"])
    ax.figure.savefig(io.BytesIO(), format="png")  # renders without error


class _Tables(HTMLParser):
    """Every table tagged ``data-table`` (the validity section's): rows of cell text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._name: str | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("data-table"):
            self._name = a["data-table"] or ""
            self.tables[self._name] = []
        if tag == "tr" and self._name is not None:
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._row.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._name is not None and self._row is not None:
            self.tables[self._name].append([c.strip() for c in self._row])
            self._row = None
        if tag == "table":
            self._name = None

    def handle_data(self, data: str) -> None:
        if self._row:
            self._row[-1] += data


def _validity_tables(report: Path) -> dict[str, list[dict[str, str]]]:
    parser = _Tables()
    parser.feed((report / "index.html").read_text(encoding="utf-8"))
    return {
        name: [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
        for name, rows in parser.tables.items()
    }


def test_validity_table_equals_the_saved_figures(report: Path) -> None:
    from payflow import validity

    figures = validity.load()
    assert figures is not None, "data/validation/last.json is missing: payflow validate --save"
    tables = _validity_tables(report)
    page = tables["sim-vs-real"]
    rows = figures["sim_vs_real"]["rows"]
    assert len(page) == len(rows) > 0
    for shown, saved in zip(page, rows, strict=True):
        label, rate = validity.METRIC_LABELS[saved["metric"]]
        assert (shown["case"], shown["strategy"], shown["metric"]) == (
            saved["case"],
            saved["strategy"],
            label,
        )
        scale, digits = (100, 2) if rate else (1, 3)
        for column, key in (("simulation", "sim"), ("real", "real")):
            assert _numbers(shown[column]) == [round(saved[key] * scale, digits)], column
        interval = [
            float(x) for x in re.findall(r"-?\d+\.\d+", shown["95 % interval for the real value"])
        ]
        assert interval == [
            round(saved["low"] * scale, digits),
            round(saved["high"] * scale, digits),
        ]
        assert shown["agrees"] == ("yes" if saved["within"] else "NO")
    text = (report / "index.html").read_text(encoding="utf-8")
    misses = [r for r in rows if not r["within"]]
    if misses:
        assert f"Disagreement in {len(misses)} of {len(rows)} comparisons" in text
    else:
        assert "No disagreement" in text
    assert figures["made"] in text and figures["commit"] in text
    erlang = tables["erlang-c"]
    assert [_numbers(r["Erlang C W_q (s)"])[0] for r in erlang] == [
        round(r["erlang_c_wait_s"], 3) for r in figures["erlang_c"]["rows"]
    ]
    assert [r["agrees"] for r in erlang] == [
        "yes" if r["within"] else "NO" for r in figures["erlang_c"]["rows"]
    ]
    assert len(tables["jitter"]) == len(figures["jitter"]["rows"])
    for finding in figures["jitter"]["findings"]:
        assert finding["finding"] in text


def test_without_saved_figures_the_page_says_so() -> None:
    from payflow.report import _validity

    assert _validity(None) == {"missing": True}


def test_queue_by_hour_averages_the_slots_of_each_hour() -> None:
    from payflow.sim.hourly import queue_by_bin

    def queue_by_hour(slots: list[float], slot_s: float, hours: int) -> list[float]:
        return queue_by_bin(slots, slot_s, 3600.0, hours)

    slots = [1.0, 1.0, 3.0, 3.0, 2.0, 2.0, 2.0, 2.0, 5.0]  # 15-min slots; the run ends at 02:15
    assert queue_by_hour(slots, 900.0, 4) == [2.0, 2.0, 5.0, 0.0]
    assert queue_by_hour(slots, 1800.0, 3) == [1.0, 3.0, 2.0]  # 30-min slots: two per hour


def test_hourly_csv_has_the_provider_queue_from_the_runs(report: Path) -> None:
    hourly = pd.read_csv(report / "hourly.csv")
    assert "queue_waiting" in hourly.columns
    assert (hourly["queue_waiting"] >= 0).all() and hourly["queue_waiting"].notna().all()
    # one value per scenario, strategy and hour: pooled over seeds (a mean, not a sum)
    assert not hourly.duplicated(["scenario", "strategy", "hour"]).any()
    # It comes from the runs: the slow day's shrunken provider queues, the calm day's never.
    peak = hourly.groupby("scenario")["queue_waiting"].max()
    assert peak["slow-provider-day"] > 0 and peak["calm-day"] == 0
