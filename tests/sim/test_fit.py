"""payflow fit / payflow provider sample: the round trip, and bad logs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from payflow.cli import main
from payflow.provider._sample import sample_log
from payflow.provider.faults import FaultProfile, load_profile
from payflow.sim.fit import FIT_COLUMNS, LogError, check_log, fit, fit_profile, read_log

KNOWN = Path(__file__).parent / "data" / "afternoon-slowdown.toml"
CALLS = 50_000


#: Tolerance of a fitted percentile, as a relative error: 4 standard errors of the
#: sample percentile of ``n`` answered calls of a lognormal of shape ``sigma``
#: (``sqrt(q(1-q)/n) / phi(z_q) * sigma`` on the log scale), plus 5% for the
#: shape of a bin whose latency ramps (a mixture, not one lognormal). For the
#: 1-hour bins of this test (~600 creates): about 17% for p50 and 26% for p95.
def tolerance(q: float, n: int, sigma: float) -> float:
    from statistics import NormalDist

    z = NormalDist().inv_cdf(q)
    se = math.sqrt(q * (1 - q) / n) / NormalDist().pdf(z) * sigma
    return math.exp(4 * se) - 1 + 0.05


def _seconds(clock: str) -> float:
    h, m, s = (int(x) for x in clock.split(":"))
    return h * 3600.0 + m * 60 + s


def expected_bin(profile: FaultProfile, kind: str, start: float, end: float) -> dict[str, float]:
    """The bin's true percentiles (of the mixture over the bin) and rates."""
    grid = start + (np.arange(240) + 0.5) * (end - start) / 240
    medians, sigmas, weights, rates = [], [], [], np.zeros(3)
    for t in grid:
        f = profile.at(float(t)).for_kind(kind)
        pt = f.p_throttle
        pe = (1 - pt) * f.p_server_error
        pl = (1 - pt) * (1 - f.p_server_error) * f.p_lost_after_commit
        rates += (pe, pt, pl)
        medians.append(f.latency_p50_s)
        sigmas.append(max(f.latency_sigma, 1e-9))
        weights.append(1 - pt - pe - pl)
    m, s, w = np.array(medians), np.array(sigmas), np.array(weights) / sum(weights)
    from statistics import NormalDist

    cdf = np.vectorize(NormalDist().cdf)

    def quantile(q: float) -> float:
        lo, hi = math.log(1e-4), math.log(1e4)
        for _ in range(80):
            mid = (lo + hi) / 2
            if float((w * cdf((mid - np.log(m)) / s)).sum()) < q:
                lo = mid
            else:
                hi = mid
        return math.exp(lo)

    r = rates / len(grid)
    return {
        "p50_s": quantile(0.5),
        "p95_s": quantile(0.95),
        "error_rate": r[0],
        "throttle_rate": r[1],
        "no_response_rate": r[2],
    }


@pytest.fixture(scope="module")
def known() -> FaultProfile:
    return load_profile(str(KNOWN))


@pytest.fixture(scope="module")
def first(known: FaultProfile) -> pd.DataFrame:
    return fit(sample_log(known, CALLS, seed=1), bin="1h").table


def _rate_ok(observed: float, expected: float, n: int, sigmas: float = 4.5) -> bool:
    return abs(observed - expected) <= sigmas * math.sqrt(max(expected, 1e-3) / n) + 0.002


def test_round_trip_recovers_the_known_profile(known: FaultProfile, first: pd.DataFrame) -> None:
    assert list(first.columns[: len(FIT_COLUMNS)]) == list(FIT_COLUMNS)
    checked = 0
    for row in first.itertuples():
        if row.endpoint not in ("create", "read"):
            continue
        end = _seconds(row.end) if row.end != "24:00:00" else 86400.0
        want = expected_bin(known, row.endpoint, _seconds(row.start), end)
        n, sigma = row.answered, row.sigma
        assert row.p50_s == pytest.approx(want["p50_s"], rel=tolerance(0.5, n, sigma)), row
        assert row.p95_s == pytest.approx(want["p95_s"], rel=tolerance(0.95, n, sigma)), row
        for rate in ("error_rate", "throttle_rate", "no_response_rate"):
            assert _rate_ok(getattr(row, rate), want[rate], row.calls), (rate, row)
        checked += 1
    assert checked == 48
    # the shape of the day is there: the slowdown, then the throttling hour
    creates = first[first.endpoint == "create"].set_index("start")
    assert creates.loc["14:00:00", "p50_s"] > 10 * creates.loc["10:00:00", "p50_s"]
    assert creates.loc["15:00:00", "throttle_rate"] == pytest.approx(0.3, abs=0.06)
    assert creates.drop(index="15:00:00")["throttle_rate"].max() == 0


def test_a_sample_of_the_fitted_profile_agrees_with_the_first(
    known: FaultProfile, first: pd.DataFrame
) -> None:
    fitted = fit_profile(sample_log(known, CALLS, seed=1), bin="1h")
    second = fit(sample_log(fitted, CALLS, seed=2), bin="1h").table
    merged = first.merge(second, on=["start", "endpoint"], suffixes=("_a", "_b"))
    assert len(merged) == len(first)
    for row in merged.itertuples():
        if row.answered_a < 100:
            continue
        n, sigma = min(row.answered_a, row.answered_b), row.sigma_a
        # two samples: the difference has sqrt(2) times the standard error
        assert row.p50_s_b == pytest.approx(row.p50_s_a, rel=tolerance(0.5, n // 2, sigma)), row
        assert row.p95_s_b == pytest.approx(row.p95_s_a, rel=tolerance(0.95, n // 2, sigma)), row
        for rate in ("error_rate", "throttle_rate", "no_response_rate"):
            a, b = getattr(row, f"{rate}_a"), getattr(row, f"{rate}_b")
            n = min(row.calls_a, row.calls_b)
            assert abs(a - b) <= 4.5 * math.sqrt(2 * max(a, 1e-3) / n) + 0.002, (rate, row)


def test_cli_round_trip_files_and_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "day.csv"
    assert (
        main(
            [
                "provider",
                "sample",
                "--faults",
                str(KNOWN),
                "--calls",
                "3000",
                "--seed",
                "4",
                "--out",
                str(log),
            ]
        )
        == 0
    )
    out = tmp_path / "mine.toml"
    assert main(["fit", str(log), "--out", str(out)]) == 0
    table = pd.read_csv(tmp_path / "mine.fit.csv")
    assert list(table.columns[: len(FIT_COLUMNS)]) == list(FIT_COLUMNS)
    assert load_profile(str(out)).name == "mine"
    # 3000 calls in 15-minute bins: thin bins are merged, so every group has 30 calls
    assert (table["calls"] >= 30).all()
    assert (table.groupby("endpoint")["calls"].sum() > 0).all()
    # the same calls as JSON lines with ISO-8601 timestamps fit the same
    iso = sample_log(load_profile(str(KNOWN)), 3000, seed=4, date="2026-03-02")
    jsonl = tmp_path / "day.jsonl"
    iso.to_json(jsonl, orient="records", lines=True)
    a = fit(read_log(log)).table
    b = fit(read_log(jsonl)).table
    pd.testing.assert_frame_equal(a, b)


def test_seconds_since_midnight_timestamps() -> None:
    log = sample_log(load_profile(str(KNOWN)), 500, seed=3)
    numeric = log.assign(timestamp=[_seconds(t[:8]) + float(t[8:]) for t in log["timestamp"]])
    a = check_log(log)
    b = check_log(numeric)
    np.testing.assert_allclose(a["tod_s"], b["tod_s"])


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


GOOD = "timestamp,method,path,status,latency_ms\n12:00:00,POST,/v10/payments,201,800\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "timestamp,method,path,latency_ms\n12:00,POST,/v10/payments,800\n",
            "line 1: missing column 'status'",
        ),
        (
            GOOD + "12:61:00,GET,/v10/payments/x,200,10\n",
            "line 3, column timestamp: cannot read '12:61:00'",
        ),
        (GOOD + "yesterday,GET,/v10/payments/x,200,10\n", "line 3, column timestamp"),
        (
            GOOD + "12:01:00,GET,/v10/payments/x,200,-5\n",
            "line 3, column latency_ms: '-5' is negative",
        ),
        (
            GOOD + GOOD.splitlines()[1] + "\n12:02:00,GET,/admin/stats,200,5\n",
            "line 4, column path: GET /admin/stats is no known endpoint",
        ),
        (GOOD + "12:01:00,GET,/v10/payments/x,2OO,10\n", "line 3, column status"),
    ],
)
def test_bad_logs_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    assert main(["fit", str(path), "--out", str(tmp_path / "p.toml")]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(path) in err
    assert not (tmp_path / "p.toml").exists()


def test_unknown_paths_can_be_skipped_or_classified(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "12:02:00,GET,/admin/stats,200,5\n")
    assert len(read_log(path, unknown="skip")) == 1
    rules = (("create", "POST", r"/v10/payments"), ("read", "GET", r"/admin/.*"))
    assert list(read_log(path, rules)["kind"]) == ["create", "read"]


def test_parquet_without_pyarrow_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pyarrow(*args: object, **kwargs: object) -> None:
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd, "read_parquet", no_pyarrow)
    path = tmp_path / "log.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(LogError, match="reading Parquet needs pyarrow"):
        read_log(path)


def test_sampled_timestamps_never_read_60_seconds() -> None:
    from payflow.provider._sample import _clock

    assert _clock(13 * 3600 + 46 * 60 + 59.9996) == "13:47:00.000"
    assert _clock(86_399.9999) == "23:59:59.999"


def test_a_scenario_file_takes_a_fitted_profile_by_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "day.csv"
    sample_log(load_profile(str(KNOWN)), 2000, seed=5).to_csv(log, index=False)
    profile = tmp_path / "mine.toml"
    assert main(["fit", str(log), "--out", str(profile), "--bin", "2h"]) == 0
    scenario = tmp_path / "my-day.toml"
    scenario.write_text(
        f'name = "my-day"\n[traffic]\norders_per_day = 100\norders = 20\n'
        f'[provider]\nfaults = "{profile}"\n'
    )
    capsys.readouterr()
    code = main(["simulate", "--scenario", str(scenario), "--strategy", "recommended", "--json"])
    assert code == 0
    assert '"scenario": "my-day"' in capsys.readouterr().out
    # ... and so does the report (issue 15: `payflow report --scenario PATH`).
    out = tmp_path / "report"
    args = ["report", "--scenario", str(scenario), "--strategy", "naive,recommended"]
    assert main([*args, "--seeds", "1", "--orders", "20", "--no-progress", "--out", str(out)]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "my-day" in page and (out / "summary.csv").exists()
