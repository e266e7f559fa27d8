"""`payflow report` at small scale: the page holds every chart and its tables match the data."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from payflow.cli import main
from payflow.report import TABLE_COLUMNS, format_cell

SCENARIOS = ["calm-day", "slow-provider-day"]
STRATEGIES = ["naive", "answer-a", "recommended"]


class _Page(HTMLParser):
    """Collects the charts and the summary tables of the report."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[str] = []
        self.images: list[str] = []
        self.tables: dict[str, list[dict[str, str]]] = {}
        self._table: str | None = None
        self._row: dict[str, str] | None = None
        self._col: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "figure" and a.get("data-chart"):
            self.charts.append(a["data-chart"] or "")
        if tag == "img" and (a.get("src") or "").startswith("data:image/png;base64,"):
            self.images.append(a["src"] or "")
        if tag == "table" and "summary" in (a.get("class") or ""):
            self._table = a.get("data-scenario") or ""
            self.tables[self._table] = []
        if tag == "tr" and self._table is not None:
            self._row = {}
        if tag == "td" and self._row is not None:
            self._col = a.get("data-col")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        if tag == "tr" and self._row and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        if tag == "td":
            self._col = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._col:
            self._row[self._col] = self._row.get(self._col, "") + data


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
        ]
    )
    assert code == 0
    return out


def parse(report: Path) -> _Page:
    page = _Page()
    page.feed((report / "index.html").read_text(encoding="utf-8"))
    return page


def test_every_chart_is_present_and_embedded(report: Path) -> None:
    page = parse(report)
    expected = {"duplicate_charge_rate", "silent_charge_rate", "orphan_charge_rate"} | {
        f"{s}: harm, load and feedback" for s in SCENARIOS
    }
    assert expected <= set(page.charts)
    assert len(page.images) == len(page.charts)
    assert len(list((report / "charts").glob("*.png"))) == len(page.charts)
    for src in page.images:
        png = base64.b64decode(src.split(",", 1)[1])
        assert png.startswith(b"\x89PNG") and len(png) > 5_000  # a real picture


def test_tables_equal_the_data_file(report: Path) -> None:
    page = parse(report)
    summary = pd.read_csv(report / "summary.csv")
    assert set(page.tables) == set(SCENARIOS)
    for scenario, rows in page.tables.items():
        data = summary[summary["scenario"] == scenario].set_index("strategy")
        assert sorted(r["strategy"] for r in rows) == sorted(STRATEGIES)
        for row in rows:
            assert set(row) == {c for c, _ in TABLE_COLUMNS}  # every column is shown
            for column, _ in TABLE_COLUMNS[1:]:  # the first is the strategy itself
                assert row[column] == format_cell(column, data.loc[row["strategy"], column]), (
                    scenario,
                    row["strategy"],
                    column,
                )


def test_pooled_counts_match_the_runs_file(report: Path) -> None:
    """The summary is recomputed here from the per-run data, not read back."""
    page = parse(report)
    runs = pd.read_csv(report / "runs.csv")
    for scenario, rows in page.tables.items():
        for row in rows:
            mine = runs[(runs["scenario"] == scenario) & (runs["strategy"] == row["strategy"])]
            orders = int(mine["orders"].sum())
            assert row["orders"] == str(orders)
            for count, rate in (
                ("duplicate_charges", "duplicate_charge_rate"),
                ("silent_charges", "silent_charge_rate"),
                ("orphan_charges", "orphan_charge_rate"),
            ):
                n = int(mine[count].sum())
                assert row[count] == str(n)
                assert row[rate] == f"{n / orders * 100:.2f}"
            assert row["refunds"] == str(int(mine["refunds"].sum()))


@pytest.mark.parametrize("bad", ["README.md", "/proc/payflow-nope"])
def test_a_bad_out_folder_is_refused_before_the_sweep(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = bad if bad.startswith("/") else str(Path(__file__).resolve().parents[2] / bad)
    assert main(["report", "--out", target, "--seeds", "1", "--orders", "10"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "Traceback" not in err


def test_tables_are_sorted_by_harm(report: Path) -> None:
    from payflow.report import HARM_COLUMNS

    # Harm: duplicate charges and holds, silent, told-failed-but-charged and orphan charges.
    assert set(HARM_COLUMNS) >= {
        "duplicate_charge_rate",
        "duplicate_hold_rate",
        "silent_charge_rate",
        "told_failed_but_charged_rate",
        "orphan_charge_rate",
    }
    page = parse(report)
    for rows in page.tables.values():
        harm = [sum(float(r[c]) for c in HARM_COLUMNS) for r in rows]
        assert harm == sorted(harm, reverse=True)


def test_runs_file_has_one_row_per_run_and_page_names_version_and_seeds(report: Path) -> None:
    import payflow

    runs = pd.read_csv(report / "runs.csv")
    assert len(runs) == len(SCENARIOS) * len(STRATEGIES) * 2
    text = (report / "index.html").read_text(encoding="utf-8")
    assert f"payflow {payflow.__version__}" in text and "seeds 0, 1" in text
    for name in STRATEGIES + SCENARIOS:
        assert f"<code>{name}</code>" in text  # definitions present


def test_unknown_names_are_refused_with_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--scenario", "sunny-day", "--out", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "sunny-day" in err and "calm-day" in err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium package is not installed")
def test_page_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
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
