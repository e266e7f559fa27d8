"""``payflow simulate`` as a person and a machine use it."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from payflow.cli import main
from payflow.sim import scenario_names, strategy_names
from tests.contract import SUMMARY_KEYS as CONTRACT_KEYS


def test_table_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--scenario", "slow-provider-day", "--strategy", "naive,recommended"]
    code = main([*argv, "--seed", "1", "--orders", "300"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "slow-provider-day, seed 1"
    assert "naive" in lines[1] and "recommended" in lines[1]
    for label in (
        "duplicate charges",
        "silent charges",
        "orphan charges",
        "timeouts / order",
        "provider calls / order",
        "first message p50/p95/p99 s",
        "outcome p50/p95/p99 s",
        "never told the outcome",
        "duplicate holds",
        "told failed, charged",
        "shipped (charged once)",
        "cost / order",
        "refunds",
        "unresolved",
    ):
        assert any(line.startswith(label) for line in lines), label
    assert max(len(line) for line in lines) <= 120  # fits a terminal
    assert "%" in out


def test_json_for_machines(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "simulate",
            "--scenario",
            "calm-day",
            "--strategy",
            "naive,recommended",
            "--seed",
            "2",
            "--orders",
            "60",
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["strategy"] for d in data] == ["naive", "recommended"]
    for item in data:
        assert set(CONTRACT_KEYS) <= set(item)
        assert item["scenario"] == "calm-day" and item["seed"] == 2 and item["orders"] == 60
        assert "duplicate_charges" in item and "lost_sale_rate" in item


def test_list_names_every_scenario_and_strategy_with_a_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["simulate", "--list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in [*scenario_names(), *strategy_names()]:
        line = next(line for line in lines if line.strip().startswith(name + " "))
        assert len(line.strip()) > len(name) + 10


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--scenario", "mars", "--strategy", "naive"], "slow-provider-day"),
        (["--scenario", "calm-day", "--strategy", "naive,yolo"], "recommended"),
        (["--scenario", "calm-day"], "--strategy"),
        (["--strategy", "naive"], "--scenario"),
    ],
)
def test_bad_names_exit_2_listing_the_valid_ones(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err


@pytest.mark.parametrize("bad", [["--seed", "-1"], ["--orders", "0"], ["--orders", "many"]])
def test_bad_values_exit_2(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--scenario", "calm-day", "--strategy", "naive", *bad])
    assert exc.value.code == 2
    assert "must be an integer" in capsys.readouterr().err


def test_console_script_runs_without_a_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "payflow.cli", "simulate", "--scenario", "nope", "--strategy", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown scenario 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import payflow.sim._cli as sim_cli

    monkeypatch.setattr(sim_cli, "PROGRESS_MIN_ORDERS", 10)
    terminal = _FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["simulate", "--scenario", "calm-day", "--strategy", "naive", "--orders", "20"]
    assert main(argv) == 0
    assert "calm-day / naive" in terminal.getvalue()
    terminal.truncate(0)
    assert main([*argv, "--json"]) == 0  # machines get no bar
    assert terminal.getvalue() == ""
    capsys.readouterr()
