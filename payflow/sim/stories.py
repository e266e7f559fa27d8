"""One order's story, ready for :func:`payflow.plots.order_timeline`.

:meth:`payflow.sim.Result.trace` is a complete log (``order_id, at_s, kind,
detail``); a timeline chart wants fewer, shorter rows in the kinds the plot
knows (``click``, ``call``, ``timeout``, ``refund``, ``ui``) with time
counted from the first click::

    from payflow.sim import run, stories
    result = run("slow-provider-day", "naive", seed=1, orders=500)
    order_id = stories.pick_unhappy(result, 2)
    plots.order_timeline(stories.timeline(result.trace(order_id)))
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from payflow.core.states import MONEY_TAKEN_STATES
from payflow.core.states import charged as is_charged
from payflow.core.states import held as is_held

__all__ = ["TIMELINE_KINDS", "ledger_outcome", "pick_unhappy", "timeline", "unhappy_counts"]

#: The rows a timeline has, top to bottom.
TIMELINE_KINDS: tuple[str, ...] = (
    "click",
    "ui",
    "call",
    "timeout",
    "provider",
    "charge seen",
    "refund",
    "backend",
)

_PAGES = {
    "email": "page: we will email you",
    "error": "error page",
    "success": "page: success",
    "failed": "page: payment failed",
}

_PAYMENT = re.compile(r"payment ([0-9a-fA-F-]{8,})")
_CALL = re.compile(r"^(\w+) #(\d+)")


def _short_payments(trace: pd.DataFrame) -> dict[str, str]:
    names: dict[str, str] = {}
    for detail in trace["detail"].astype(str):
        for pid in _PAYMENT.findall(detail):
            names.setdefault(pid, f"payment {len(names) + 1}")
    return names


def _rename(text: str, names: dict[str, str]) -> str:
    return _PAYMENT.sub(lambda m: names.get(m.group(1), "payment"), text)


def timeline(trace: pd.DataFrame, *, polls: bool = False) -> pd.DataFrame:
    """Adapt a :meth:`Result.trace` to the ``t, kind, label`` rows of ``order_timeline``.

    ``t`` is seconds since the order's first row (the first click). Kinds:
    ``click`` (submits, double clicks, reloads, leaving), ``ui`` (pages and
    emails), ``call`` (creates, captures, lookups, cancels, refunds; polls
    only with ``polls=True``, unlabelled), ``timeout``, ``provider`` (a
    payment created), ``charge seen`` (the shop learns that a payment is
    reserved or captured; a payment nobody looks at again is taken silently,
    see :func:`ledger_outcome`), ``refund``, ``backend`` (order shipped,
    giving up, crashes, rechecks). Each label is written once, at its first
    occurrence. The end-of-run ``ledger`` rows are left out. Payment ids
    become "payment 1", "payment 2" in order of appearance.
    """
    if trace.empty:
        return pd.DataFrame({"t": [], "kind": [], "label": []})
    names = _short_payments(trace)
    start = float(trace["at_s"].iloc[0])
    rows: list[tuple[float, str, str]] = []
    for at, kind, detail in zip(
        trace["at_s"], trace["kind"], trace["detail"].astype(str), strict=True
    ):
        t = float(at) - start
        text = _rename(detail, names)
        if kind == "customer":
            if "leaves" in text or "gives up" in text:
                rows.append((t, "click", text))
            else:
                rows.append((t, "click", text.replace("clicks submit", "submit")))
        elif kind in ("page", "email"):
            label = f"email: {text}" if kind == "email" else _PAGES.get(text, f"page: {text}")
            rows.append((t, "ui", label))
        elif kind == "call":
            match = _CALL.match(text)
            op = match.group(1) if match else text
            if op in ("poll", "status") and not polls:
                continue
            label = "" if op in ("poll", "status") else (f"{op} #{match.group(2)}" if match else op)
            rows.append((t, "call", label))
        elif kind == "timeout":
            op = text.split(" ", 1)[0]
            if op in ("poll", "status") and not polls:
                continue
            rows.append((t, "timeout", ""))
        elif kind == "state":
            new = text.rsplit("-> ", 1)[-1].strip()
            # A state row names the client's view (PaymentState values), not the
            # provider's; the two agree on the money-taken states (a hold or a charge),
            # which tests/sim/test_stories.py checks.
            if new in MONEY_TAKEN_STATES:
                rows.append((t, "charge seen", new))
        elif kind == "provider":
            if "refund" in text:
                rows.append((t, "refund", text))
            else:
                rows.append((t, "provider", text))
        elif kind in ("backend", "recheck"):
            if "pay flow starts" in text or "pay flow ends: paid" in text:
                continue
            rows.append((t, "backend", text if kind == "backend" else f"recheck: {text}"))
        elif kind == "gave up":
            rows.append((t, "backend", f"gives up: {text}"))
    frame = pd.DataFrame(_quiet_repeats(rows), columns=["t", "kind", "label"])
    order = {k: i for i, k in enumerate(TIMELINE_KINDS)}
    frame["_rank"] = frame["kind"].map(order)
    frame = frame.sort_values(["_rank", "t"], kind="stable").drop(columns="_rank")
    return frame.reset_index(drop=True)


def _quiet_repeats(rows: list[tuple[float, str, str]]) -> list[tuple[float, str, str]]:
    """Label each (kind, label) once, at its first occurrence (later markers stay, unlabelled)."""
    seen: set[tuple[str, str]] = set()
    out: list[tuple[float, str, str]] = []
    for t, kind, label in rows:
        out.append((t, kind, "" if (kind, label) in seen else label))
        seen.add((kind, label))
    return out


def ledger_outcome(trace: pd.DataFrame) -> str:
    """The end-of-run ground truth of an order's payments, in one line.

    Money is *taken* when a payment is captured (and not refunded in full); a
    payment still ``reserved`` *holds* the money until the provider releases it
    (it is never captured after the run). For example ``"2 payments: captured,
    captured (money taken twice)"`` or ``"2 payments: captured, reserved (money
    taken once, and held by 1 more reservation until it expires)"``.
    """
    ledger = trace[trace["kind"] == "ledger"]["detail"].astype(str)
    states: list[str] = []
    taken = held = 0
    for detail in ledger:
        match = re.search(r"ends (\w+), (\d+) \(refunded (\d+)\)", detail)
        if match is None:
            continue
        state, amount, refunded = match.group(1), int(match.group(2)), int(match.group(3))
        if refunded >= amount > 0:
            states.append(f"{state}, refunded")
        else:
            states.append(state)
            taken += is_charged(state, refunded, amount)
            held += is_held(state, refunded, amount)
    if not states:
        return "no payment reached the provider"
    what = {0: "no money taken", 1: "money taken once"}.get(taken, f"money taken {taken} times")
    if held:
        more = " more" if taken else ""
        until = "they expire" if held > 1 else "it expires"
        what += (
            f"{'; ' if not taken else ', and '}held by {held}{more} "
            f"reservation{'s' if held > 1 else ''} until {until}"
        )
    plural = "payment" if len(states) == 1 else "payments"
    return f"{len(states)} {plural}: {', '.join(states)} ({what})"


def _story_score(kind: int, order: Any, trace: pd.DataFrame) -> int:
    """How closely an order tells the exercise's story of customer ``kind`` (higher: closer)."""
    charged = int(order["charged"])
    if kind == 1:  # "waits 30 seconds -> nothing happens -> charged and shipped"
        return (charged == 1) + (20.0 <= float(order["patience_s"]) <= 45.0)
    if kind == 2:  # "charged twice -> UI updates to say order is shipped", after one submit
        # Two captures tell the story best; a lasting second hold is the next best.
        shown = trace[trace["kind"] == "page"]["detail"].astype(str)
        return (charged == 2) + int(bool((shown == "success").any()))
    # 3: "nothing happens -> clicks submit again -> ... charged twice, shipped once"
    details = trace["detail"].astype(str)
    return 2 * int(bool(details.str.contains("nothing happens").any())) + (charged == 2)


_BEST = {1: 2, 2: 2, 3: 3}


def pick_unhappy(result: Any, kind: int, *, candidates: int = 200) -> str:
    """The order id of a clear example of unhappy customer ``kind`` (1, 2 or 3).

    ``result`` is a :class:`payflow.sim.Result` run with traces. Among its
    orders whose ``unhappy_customer`` is ``kind`` it prefers one that tells
    the exercise's story most closely (1: charged once, patience of 20-45 s;
    2: charged twice, a page that said "success"; 3: clicked again because
    nothing happened, charged twice), and among
    those the one with the fewest provider calls (the shortest timeline),
    earliest first. Raises :class:`LookupError` if there is none of ``kind``.
    """
    if kind not in (1, 2, 3):
        raise ValueError(f"kind: an unhappy customer is 1, 2 or 3, got {kind!r}")
    orders: pd.DataFrame = result.orders
    rows = orders[orders["unhappy_customer"] == kind]
    if rows.empty:
        raise LookupError(f"no unhappy customer {kind} in these orders")
    rows = rows.sort_values(["provider_calls", "arrival_s"], kind="stable")
    best, best_score = str(rows.iloc[0]["order_id"]), -1
    for _, order in rows.head(candidates).iterrows():
        order_id = str(order["order_id"])
        score = _story_score(kind, order, result.trace(order_id))
        if score > best_score:
            best, best_score = order_id, score
        if score >= _BEST[kind]:
            break
    return best


def unhappy_counts(orders: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """How many orders of each run are unhappy customer 1, 2 and 3.

    ``orders`` maps a label (a strategy name) to a ``Result.orders`` frame;
    the result has one row per label and the columns ``orders``,
    ``customer 1``, ``customer 2``, ``customer 3``.
    """
    rows = []
    for label, frame in orders.items():
        kinds = frame["unhappy_customer"]
        rows.append(
            {
                "strategy": label,
                "orders": len(frame),
                **{f"customer {k}": int((kinds == k).sum()) for k in (1, 2, 3)},
            }
        )
    return pd.DataFrame(rows).set_index("strategy")
