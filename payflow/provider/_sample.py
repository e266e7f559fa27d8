"""``payflow provider sample``: an access log drawn from a fault profile.

The inverse of ``payflow fit`` (:mod:`payflow.sim.fit`), for tests and teaching:
``calls`` calls spread *uniformly* over one day (a fault profile has no traffic of
its own), each of an endpoint kind drawn from ``mix``, each meeting the fate the
profile draws for that kind at that time of day (:meth:`Faults.draw`). One row a
call, in the log format ``fit`` reads::

    timestamp,method,path,status,latency_ms
    00:00:03.512,POST,/v10/payments,201,812.4
    00:00:09.020,GET,/v10/payments/3f2a...,200,240.1
    00:00:11.874,POST,/v10/payments,429,0.0
    00:00:15.330,POST,/v10/payments,,30000.0      <- no response: the time waited

``ok`` calls answer 201 (creates, refunds) or 200 after the latency before and
after commit; a throttled call answers 429 at once; a server error answers 500
after the latency before commit (and after it, when the change was made); a reset
or a lost answer leaves ``status`` empty, and ``latency_ms`` is how long the
client waited: the reset's latency, or for a lost answer ``timeout_s`` (default:
the profile's ``latency_max_s``). With ``timeout_s`` set, an answer slower than
it is logged the same way (the client gave up) -- leave it unset for the log of
a caller that waits as long as it takes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Final

import pandas as pd

from payflow.provider.faults import DAY_S, ENDPOINT_KINDS, FaultProfile

__all__ = ["DEFAULT_MIX", "LOG_COLUMNS", "sample_log"]

#: The columns of an access log.
LOG_COLUMNS: Final = ("timestamp", "method", "path", "status", "latency_ms")

#: Shares of calls per endpoint kind: a create, about one and a half polls, a capture,
#: and now and then a cancel or a refund.
DEFAULT_MIX: Final[Mapping[str, float]] = {
    "create": 0.30,
    "read": 0.45,
    "capture": 0.15,
    "cancel": 0.05,
    "refund": 0.05,
}

_METHOD_PATH: Final = {
    "create": ("POST", "/v10/payments"),
    "read": ("GET", "/v10/payments/{id}"),
    "capture": ("POST", "/v10/payments/{id}/capture"),
    "cancel": ("POST", "/v10/payments/{id}/cancel"),
    "refund": ("POST", "/v10/refunds"),
}


def _clock(t: float) -> str:
    ms = min(round(t * 1000.0), round(DAY_S * 1000.0) - 1)  # whole milliseconds: no "60.000"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    return f"{h:02d}:{m:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def sample_log(
    profile: FaultProfile,
    calls: int,
    seed: int = 0,
    *,
    mix: Mapping[str, float] | None = None,
    timeout_s: float | None = None,
    date: str | None = None,
) -> pd.DataFrame:
    """``calls`` calls of one day drawn from ``profile`` (see the module docs).

    ``timestamp`` is ``HH:MM:SS.mmm`` or, with ``date`` (``YYYY-MM-DD``), an
    ISO-8601 date and time. Same arguments, same log.
    """
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise ValueError(f"calls: must be an integer >= 1, got {calls!r}")
    shares = dict(DEFAULT_MIX if mix is None else mix)
    for kind, share in shares.items():
        if kind not in ENDPOINT_KINDS:
            raise ValueError(
                f"mix.{kind}: unknown endpoint kind (valid: {', '.join(ENDPOINT_KINDS)})"
            )
        if not share >= 0:
            raise ValueError(f"mix.{kind}: must be >= 0, got {share!r}")
    total = sum(shares.values())
    if not total > 0:
        raise ValueError("mix: at least one share must be > 0")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s: must be > 0 seconds, got {timeout_s!r}")
    kinds = list(shares)
    cumulative: list[float] = []
    acc = 0.0
    for kind in kinds:
        acc += shares[kind] / total
        cumulative.append(acc)
    rng = random.Random(f"payflow-sample:{seed}")
    times = sorted(rng.uniform(0.0, DAY_S) for _ in range(calls))
    rows: list[tuple[Any, ...]] = []
    for t in times:
        u = rng.random()
        kind = next((k for k, c in zip(kinds, cumulative, strict=True) if u < c), kinds[-1])
        method, path = _METHOD_PATH[kind]
        if "{id}" in path:
            path = path.replace("{id}", f"{rng.getrandbits(64):016x}")
        faults = profile.at(t)
        before, after, action, _ = faults.draw_parts(rng, kind)
        waited = faults.for_kind(kind).latency_max_s if timeout_s is None else timeout_s
        status: int | None
        if action == "ok":
            status, latency = (
                (201 if method == "POST" and kind in ("create", "refund") else 200),
                (before + after),
            )
        elif action == "throttle":
            status, latency = 429, 0.0
        elif action == "error_before":
            status, latency = 500, before
        elif action == "error_after":
            status, latency = 500, before + after
        elif action == "reset":
            status, latency = None, before
        else:  # lost
            status, latency = None, waited
        if timeout_s is not None and latency > timeout_s:
            status, latency = None, timeout_s
        stamp = _clock(t) if date is None else f"{date}T{_clock(t)}"
        rows.append((stamp, method, path, status, round(latency * 1000.0, 3)))
    frame = pd.DataFrame(rows, columns=list(LOG_COLUMNS))
    frame["status"] = frame["status"].astype("Int64")
    return frame
