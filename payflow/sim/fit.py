"""Fit a fault profile from an access log: ``payflow fit`` and :func:`fit_profile`.

The log has one row per call to the provider, with the columns
``timestamp,method,path,status,latency_ms``:

* ``timestamp``: ISO-8601 (``2026-03-02T13:05:10.5+01:00``; the wall-clock time
  of day as written is used, whatever the offset) or seconds since midnight;
* ``method``, ``path``: classified into an endpoint kind (``create``, ``read``,
  ``capture``, ``cancel``, ``refund``) by :func:`~payflow.provider.faults.endpoint_kind`
  (the MobilePay-style paths of ``docs/api.md``; pass ``endpoints`` to change it);
* ``status``: the HTTP status, empty when no response came;
* ``latency_ms``: the time to the answer, or the time waited for none.

Calls are binned by time of day (``bin``, default 15 minutes) and endpoint kind.
For each bin: ``calls``; the 50th/95th/99th latency percentiles of the calls the
provider answered (not 429, not 5xx); ``throttle_rate`` (429), ``error_rate``
(5xx) and ``no_response_rate`` (no status), each a share of all calls. A bin with
fewer than ``min_calls`` calls is merged with the bins after it (the last with
the one before) until the group has enough; a kind with fewer in the whole day
becomes one all-day group flagged ``thin``. Nothing is extrapolated: a kind
absent from the log gets the ``create`` faults (or the first fitted kind's).

The profile has two keyframes a bin (its start, and one second before its end, so
each bin's values hold for the whole bin), in the percentile form
(``docs/provider.md``): ``p50_s`` is the median, ``p95_s`` (and ``p99_s`` for
groups of at least 200 answered calls) pin the lognormal shape. A log cannot say
how much of the latency came after commit: that is ``after_commit_share``
(default 0.3, an assumption). Capacity and ``pollDelayInMs`` keep their defaults.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from payflow.provider.faults import (
    DAY_S,
    DEFAULT_ENDPOINTS,
    ENDPOINT_KINDS,
    EndpointRule,
    FaultProfile,
    endpoint_kind,
    parse_profile,
    sigma_from_percentiles,
)

__all__ = [
    "FIT_COLUMNS",
    "LOG_COLUMNS",
    "Fit",
    "LogError",
    "fit",
    "fit_profile",
    "fitted_vs_observed",
    "read_log",
    "register",
]

#: The columns a log must have.
LOG_COLUMNS: Final = ("timestamp", "method", "path", "status", "latency_ms")

#: The columns of ``PROFILE.fit.csv`` (then ``sigma`` and ``thin``).
FIT_COLUMNS: Final = (
    "start",
    "end",
    "endpoint",
    "calls",
    "p50_s",
    "p95_s",
    "p99_s",
    "error_rate",
    "throttle_rate",
    "no_response_rate",
)

#: Answered calls a group needs before its p99 is used to fit the shape.
P99_MIN_ANSWERED: Final = 200


class LogError(ValueError):
    """A bad log: the message names the file, line (or row) and column."""


@dataclass(frozen=True)
class Fit:
    """What :func:`fit` found: the ``profile``, its TOML text and the per-bin ``table``."""

    profile: FaultProfile
    toml: str
    table: pd.DataFrame


def _where(source: str, index: int, lines: str) -> str:
    if lines == "csv":
        return f"{source}: line {index + 2}"  # the header is line 1
    if lines == "jsonl":
        return f"{source}: line {index + 1}"
    return f"{source}: row {index + 1}"


def _first_bad(mask: Any) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def read_log(
    path: str | Path,
    endpoints: Sequence[EndpointRule] = DEFAULT_ENDPOINTS,
    unknown: str = "error",
) -> pd.DataFrame:
    """Read a log file (``.csv``, ``.parquet``, ``.jsonl``/``.ndjson``/``.json``) and
    check it; the result has ``tod_s`` (time of day) and the columns checked.

    Raises :class:`LogError` naming the file, line and column of the first bad value.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.is_file():
        raise LogError(f"{p}: no such file")
    try:
        if suffix == ".parquet":
            try:
                frame = pd.read_parquet(p)
            except ImportError:
                raise LogError(
                    f"{p}: reading Parquet needs pyarrow (pip install pyarrow), or give a CSV "
                    "or JSON-lines log"
                ) from None
            lines = "parquet"
        elif suffix in (".jsonl", ".ndjson", ".json"):
            frame = pd.read_json(p, lines=True, dtype=False)
            lines = "jsonl"
        else:
            frame = pd.read_csv(p, dtype={"status": "string", "timestamp": "string"})
            lines = "csv"
    except LogError:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LogError(f"{p}: cannot read the log: {first}") from None
    return check_log(frame, str(p), lines, endpoints, unknown)


def _time_of_day(values: pd.Series, where: Any) -> np.ndarray:
    text = values.astype("string").str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    out = numeric.to_numpy(dtype=float, na_value=np.nan)
    todo = np.isnan(out)
    if todo.any():
        parsed = pd.Series(pd.NaT, index=values.index, dtype="object")
        sub = text[todo]
        # A bare time of day ("13:05:10.5") reads as today's: only its time counts.
        try:
            stamps = pd.to_datetime(sub, format="ISO8601", errors="coerce", utc=False)
        except (ValueError, TypeError):
            stamps = pd.Series([pd.to_datetime(v, errors="coerce") for v in sub], index=sub.index)
        parsed[todo] = list(stamps) if len(stamps) else []
        for i in np.flatnonzero(todo):
            stamp = parsed.iloc[i]
            if stamp is None or stamp is pd.NaT or (isinstance(stamp, float) and math.isnan(stamp)):
                bare = _clock_seconds(str(text.iloc[i]))
                if bare is None:
                    raise LogError(
                        f"{where(i)}, column timestamp: cannot read {str(values.iloc[i])!r} "
                        "(ISO-8601 or seconds since midnight)"
                    )
                out[i] = bare
                continue
            ts = pd.Timestamp(stamp)
            out[i] = ts.hour * 3600 + ts.minute * 60 + ts.second + ts.microsecond / 1e6
    bad = ~np.isfinite(out) | (out < 0)
    if bad.any():
        j = _first_bad(bad)
        raise LogError(
            f"{where(j)}, column timestamp: {str(values.iloc[j])!r} is not a time "
            "(seconds since midnight must be >= 0)"
        )
    result: np.ndarray = np.mod(out, DAY_S)
    return result


def _clock_seconds(text: str) -> float | None:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        return None
    try:
        h, m = int(parts[0]), int(parts[1])
        s = float(parts[2]) if len(parts) == 3 else 0.0
    except ValueError:
        return None
    if not (0 <= h <= 24 and 0 <= m < 60 and 0 <= s < 60):
        return None
    return h * 3600 + m * 60 + s


def check_log(
    frame: pd.DataFrame,
    source: str = "<log>",
    lines: str = "rows",
    endpoints: Sequence[EndpointRule] = DEFAULT_ENDPOINTS,
    unknown: str = "error",
) -> pd.DataFrame:
    """Check a log already in a DataFrame; add ``tod_s``, ``kind``, ``answered``.

    ``unknown="skip"`` drops calls whose path no endpoint rule knows instead of
    raising. Raises :class:`LogError` naming the line (or row) and column.
    """

    def where(i: int) -> str:
        return _where(source, int(i), lines)

    missing = [c for c in LOG_COLUMNS if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns)) or "none"
        line = "line 1" if lines == "csv" else "header"
        raise LogError(f"{source}: {line}: missing column {missing[0]!r} (found: {found})")
    if frame.empty:
        raise LogError(f"{source}: the log has no calls")
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    out["tod_s"] = _time_of_day(frame["timestamp"], where)
    for column in ("method", "path"):
        values = frame[column]
        bad = values.isna() | ~values.map(lambda v: isinstance(v, str) and bool(v.strip()))
        if bad.any():
            i = _first_bad(bad)
            raise LogError(f"{where(i)}, column {column}: empty or not text ({values.iloc[i]!r})")
        out[column] = values.str.strip()
    out["method"] = out["method"].str.upper()
    raw_status = frame["status"].astype("string").str.strip()
    raw_status = raw_status.mask(raw_status == "")
    status = pd.to_numeric(raw_status, errors="coerce")
    bad = raw_status.notna() & (status.isna() | (status % 1 != 0) | (status < 100) | (status > 599))
    if bad.any():
        i = _first_bad(bad)
        raise LogError(
            f"{where(i)}, column status: {str(frame['status'].iloc[i])!r} is not an HTTP status "
            "(100-599, or empty for no response)"
        )
    out["status"] = status.astype("Int64")
    latency = pd.to_numeric(frame["latency_ms"], errors="coerce")
    bad = latency.isna() | ~np.isfinite(latency.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        i = _first_bad(bad)
        raise LogError(
            f"{where(i)}, column latency_ms: {str(frame['latency_ms'].iloc[i])!r} is not a number"
        )
    if (latency < 0).any():
        i = _first_bad(latency < 0)
        raise LogError(
            f"{where(i)}, column latency_ms: {str(frame['latency_ms'].iloc[i])!r} is negative"
        )
    out["latency_s"] = latency.astype(float) / 1000.0
    kinds = [
        endpoint_kind(m, p, endpoints) for m, p in zip(out["method"], out["path"], strict=True)
    ]
    out["kind"] = kinds
    unknown_mask = out["kind"].isna()
    if unknown_mask.any():
        if unknown != "skip":
            i = _first_bad(unknown_mask)
            raise LogError(
                f"{where(i)}, column path: {out['method'].iloc[i]} {out['path'].iloc[i]} is no "
                "known endpoint (give endpoint rules, or skip unknown calls)"
            )
        out = out[~unknown_mask].reset_index(drop=True)
        if out.empty:
            raise LogError(f"{source}: no call in the log is to a known endpoint")
    s = out["status"]
    out["answered"] = s.notna() & (s != 429) & (s < 500)
    return out


def _bin_seconds(value: str | float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        try:
            seconds = pd.Timedelta(str(value)).total_seconds()
        except ValueError:
            raise ValueError(f"--bin: {value!r} is not a duration (like 15min, 1h)") from None
    if not 60 <= seconds <= DAY_S or DAY_S % seconds:
        raise ValueError(f"--bin: {value!r} must divide the day, from 1 minute to 24 hours")
    return seconds


def _groups(counts: Sequence[int], min_calls: int) -> list[tuple[int, int]]:
    """Consecutive bins ``[first, last]`` merged until each has ``min_calls`` calls."""
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, n in enumerate(counts):
        current.append(i)
        total += n
        if total >= min_calls:
            groups.append(current)
            current, total = [], 0
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return [(g[0], g[-1]) for g in groups]


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def fit(
    log: pd.DataFrame,
    *,
    bin: str | float = "15min",
    min_calls: int = 30,
    after_commit_share: float = 0.3,
    name: str = "fitted",
    endpoints: Sequence[EndpointRule] = DEFAULT_ENDPOINTS,
    unknown: str = "error",
    source: str = "<log>",
) -> Fit:
    """Fit a profile to ``log`` (a DataFrame with the log columns, or one from
    :func:`read_log`); see the module docs for what is fitted and how."""
    if "kind" not in log.columns or "tod_s" not in log.columns:
        log = check_log(log, source, "rows", endpoints, unknown)
    width = _bin_seconds(bin)
    if isinstance(min_calls, bool) or not isinstance(min_calls, int) or min_calls < 1:
        raise ValueError(f"min_calls: must be an integer >= 1, got {min_calls!r}")
    if not 0 <= after_commit_share <= 1:
        raise ValueError(f"after_commit_share: must be in [0, 1], got {after_commit_share!r}")
    nbins = round(DAY_S / width)
    bins = np.minimum((log["tod_s"].to_numpy() // width).astype(int), nbins - 1)
    log = log.assign(bin=bins)
    rows: list[dict[str, Any]] = []
    per_kind: dict[str, list[dict[str, Any]]] = {}
    for kind in ENDPOINT_KINDS:
        calls = log[log["kind"] == kind]
        if calls.empty:
            continue
        counts = np.bincount(calls["bin"].to_numpy(), minlength=nbins)
        thin = int(counts.sum()) < min_calls
        for first, last in _groups(list(counts), min_calls):
            group = calls[(calls["bin"] >= first) & (calls["bin"] <= last)]
            n = len(group)
            answered = group.loc[group["answered"], "latency_s"].to_numpy(dtype=float)
            status = group["status"]
            row: dict[str, Any] = {
                "start": _clock(first * width),
                "end": _clock((last + 1) * width),
                "endpoint": kind,
                "calls": n,
                "p50_s": math.nan,
                "p95_s": math.nan,
                "p99_s": math.nan,
                "error_rate": float((status >= 500).sum()) / n if n else 0.0,
                "throttle_rate": float((status == 429).sum()) / n if n else 0.0,
                "no_response_rate": float(status.isna().sum()) / n if n else 0.0,
                "sigma": math.nan,
                "thin": thin,
                "answered": len(answered),
                "_first": first,
                "_last": last,
            }
            if len(answered):
                p50, p95, p99 = np.percentile(answered, [50, 95, 99])
                row["p50_s"], row["p95_s"], row["p99_s"] = float(p50), float(p95), float(p99)
            rows.append(row)
            per_kind.setdefault(kind, []).append(row)
    if not per_kind:
        raise LogError(f"{source}: no calls to fit")
    # Groups without an answered call take the latency of the nearest group that has one.
    for groups in per_kind.values():
        with_latency = [g for g in groups if g["answered"]]
        if not with_latency:
            for g in groups:
                g["p50_s"] = g["p95_s"] = g["p99_s"] = math.nan
            continue
        for g in groups:
            if not g["answered"]:
                near = min(with_latency, key=lambda h: abs(h["_first"] - g["_first"]))
                g["_latency_from"] = near
    base_kind = "create" if "create" in per_kind else next(iter(per_kind))
    keyframes: list[dict[str, Any]] = []
    index = {
        kind: {b: g for g in groups for b in range(g["_first"], g["_last"] + 1)}
        for kind, groups in per_kind.items()
    }
    for b in range(nbins):
        values: dict[str, Any] = {}
        base = _frame_values(index[base_kind][b])
        if base is None:
            raise LogError(f"{source}: no answered {base_kind} call in the whole log")
        values.update(base)
        for kind in per_kind:
            if kind == base_kind:
                continue
            kind_values = _frame_values(index[kind][b])
            if kind_values is not None:
                values[kind] = kind_values
        # Two keyframes a bin, at its start and a second before its end: the profile
        # holds each bin's values for the whole bin (and ramps within that second).
        keyframes.append({"at": _clock(b * width), **values})
        keyframes.append({"at": _clock((b + 1) * width - 1), **values})
    data = {
        "name": name,
        "description": f"fitted by payflow fit from {source}: {len(log)} calls, "
        f"{width / 60:g}-minute bins",
        "defaults": {"after_commit_share": after_commit_share},
        "keyframes": keyframes,
    }
    profile = parse_profile(data, f"<fit of {source}>")
    sigmas = []
    for g in rows:
        fitted = _frame_values(g)
        sigmas.append(
            math.nan
            if fitted is None
            else sigma_from_percentiles(fitted["p50_s"], fitted["p95_s"], fitted.get("p99_s"))
        )
    table = pd.DataFrame(rows).drop(columns=["_first", "_last", "_latency_from"], errors="ignore")
    table["sigma"] = sigmas
    return Fit(profile, _toml(data), table)


def _frame_values(group: dict[str, Any]) -> dict[str, Any] | None:
    src = group.get("_latency_from", group)
    if not src["answered"]:
        return None
    p50 = max(src["p50_s"], 1e-3)
    p95 = max(src["p95_s"], p50)
    values: dict[str, Any] = {"p50_s": round(p50, 6), "p95_s": round(p95, 6)}
    if src["answered"] >= P99_MIN_ANSWERED:
        values["p99_s"] = round(max(src["p99_s"], p95), 6)
    for rate in ("error_rate", "throttle_rate", "no_response_rate"):
        values[rate] = round(group[rate], 6)
    return values


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _toml(data: dict[str, Any]) -> str:
    lines = [
        f"name = {_toml_value(data['name'])}",
        f"description = {_toml_value(data['description'])}",
        "",
        "[defaults]",
    ]
    lines += [f"{k} = {_toml_value(v)}" for k, v in data["defaults"].items()]
    for frame in data["keyframes"]:
        lines += ["", "[[keyframes]]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in frame.items() if not isinstance(v, dict)]
        for kind, values in frame.items():
            if isinstance(values, dict):
                lines.append(f"[keyframes.{kind}]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def fitted_vs_observed(table: pd.DataFrame, profile: FaultProfile) -> pd.DataFrame:
    """``table`` (a fit's per-bin rows: what was observed) with the percentiles the
    fitted ``profile`` gives in the middle of each row's bin: ``fitted_p50_s``,
    ``fitted_p95_s``, ``fitted_p99_s`` and ``mid_h`` (hour of day)."""
    from payflow.provider.faults import Z95, Z99

    out = table.copy()
    mids, p50s, p95s, p99s = [], [], [], []
    for row in table.itertuples(index=False):
        start = _clock_seconds(str(row.start)) or 0.0
        end = _clock_seconds(str(row.end)) or DAY_S
        mid = (start + end) / 2
        f = profile.at(mid).for_kind(str(row.endpoint))
        m, s = f.latency_p50_s, f.latency_sigma
        mids.append(mid / 3600.0)
        p50s.append(m)
        p95s.append(m * math.exp(s * Z95))
        p99s.append(m * math.exp(s * Z99))
    out["mid_h"], out["fitted_p50_s"] = mids, p50s
    out["fitted_p95_s"], out["fitted_p99_s"] = p95s, p99s
    return out


def fit_profile(log: pd.DataFrame, **options: Any) -> FaultProfile:
    """The :class:`FaultProfile` of :func:`fit` (same options)."""
    return fit(log, **options).profile


# ------------------------------------------------------------------ command line
def _rule(text: str) -> EndpointRule:
    kind, sep, rest = text.partition("=")
    method, sep2, regex = rest.partition(":")
    if not sep or not sep2 or kind not in ENDPOINT_KINDS or not method or not regex:
        raise argparse.ArgumentTypeError(
            f"--endpoint: {text!r} must be KIND=METHOD:REGEX with KIND one of "
            f"{', '.join(ENDPOINT_KINDS)}"
        )
    return (kind, method.upper(), regex)


def register(subparsers: Any) -> None:
    """Add ``fit`` to the ``payflow`` command."""
    parser = subparsers.add_parser(
        "fit",
        help="fit a fault profile from an access log",
        description="Fit a fault profile (percentiles and rates per endpoint kind and time "
        "bin) from an access log with columns timestamp,method,path,status,latency_ms; "
        "writes PROFILE.toml and PROFILE.fit.csv.",
    )
    parser.add_argument("log", metavar="LOG", help="the log: .csv, .parquet or .jsonl")
    parser.add_argument("--out", required=True, metavar="PROFILE.toml", help="profile to write")
    parser.add_argument("--bin", default="15min", help="bin width (default: 15min)")
    parser.add_argument(
        "--min-calls",
        type=int,
        default=30,
        metavar="N",
        help="merge bins with fewer calls than this (default: 30)",
    )
    parser.add_argument(
        "--after-commit-share",
        type=float,
        default=0.3,
        metavar="X",
        help="share of latency after commit (a log cannot tell; default 0.3)",
    )
    parser.add_argument(
        "--endpoint",
        action="append",
        type=_rule,
        metavar="KIND=METHOD:REGEX",
        help="an endpoint rule (repeatable; replaces the MobilePay-style paths)",
    )
    parser.add_argument(
        "--skip-unknown", action="store_true", help="skip calls to unknown paths (default: error)"
    )
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".toml":
        raise ValueError(f"--out: {args.out!r} must end in .toml")
    endpoints = tuple(args.endpoint) if args.endpoint else DEFAULT_ENDPOINTS
    log = read_log(args.log, endpoints, "skip" if args.skip_unknown else "error")
    result = fit(
        log,
        bin=args.bin,
        min_calls=args.min_calls,
        after_commit_share=args.after_commit_share,
        name=out.stem,
        source=Path(args.log).name,
    )
    out.write_text(result.toml, encoding="utf-8")
    table_path = out.with_suffix(".fit.csv")
    result.table.to_csv(table_path, index=False, float_format="%.6g")
    thin = int(result.table["thin"].sum())
    print(
        f"wrote {out} ({len(result.profile.keyframes)} keyframes) and {table_path} "
        f"({len(result.table)} rows{f', {thin} thin' if thin else ''})"
    )
    return 0
