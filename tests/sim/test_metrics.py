"""Metric definitions: retries include repeated polls and re-sent writes, unkept email
promises count, the order limit, and the three unhappy customers as separate columns."""

from __future__ import annotations

import io
from dataclasses import replace
from functools import cache

import pytest

from payflow.cli import main
from payflow.core.events import Attempt, AttemptResult, Poll, Retry
from payflow.sim import get_strategy, load_scenario, run
from payflow.sim._backend import Backend
from payflow.sim._cli import _progress_bar
from payflow.sim._model import Order
from payflow.sim._runner import MAX_ORDERS, Result


def _order() -> Order:
    return Order(1, 0.0, 100, 10.0, trace=False)


def _poll(attempt: int, at: float) -> Attempt:
    return Attempt("poll", "order-000001", attempt, None, 0.5, at)


def test_a_poll_after_an_unanswered_poll_is_a_retry() -> None:
    order = _order()
    events = [
        _poll(1, 1.0),
        AttemptResult("poll", "order-000001", 1, "timeout", None, 1.5),
        Poll("p1", "order-000001", None, 1000, 1.5),
        _poll(2, 2.5),  # repeats the unanswered poll
        AttemptResult("poll", "order-000001", 2, "response", 503, 2.6),
        Poll("p1", "order-000001", None, 1000, 2.6),
        _poll(3, 3.6),  # and again
        AttemptResult("poll", "order-000001", 3, "response", 200, 3.7),
        Poll("p1", "order-000001", "initiated", 1000, 3.7),
        _poll(1, 4.7),  # the previous poll was answered: a new poll, not a retry
    ]
    for event in events:
        order.counts.on_event(event)
    assert (order.counts.retries, order.counts.poll_retries, order.counts.timeouts) == (2, 2, 1)


def test_a_write_resent_with_the_same_key_is_a_retry_and_a_retry_event_counts_once() -> None:
    order = _order()
    for event in (
        Attempt("create", "order-000001", 1, "k1", 2.0, 0.0),
        Retry("create", "order-000001", 1, 0.1, "timeout", 2.0),
        Attempt("create", "order-000001", 2, "k1", 2.0, 2.1),  # counted by its Retry
        Attempt("create", "order-000001", 1, "k1", 2.0, 300.0),  # a recheck replays it
        Attempt("capture", "order-000001", 1, "k1", 2.0, 301.0),  # another operation
        Attempt("create", "order-000001", 1, None, 2.0, 302.0),  # keyless: a new payment
    ):
        order.counts.on_event(event)
    assert (order.counts.retries, order.counts.resends, order.counts.poll_retries) == (2, 1, 0)


@cache
def _slow_recommended() -> Result:
    return run("slow-provider-day", "recommended", seed=1, orders=150)


def test_retries_per_order_counts_polls_that_time_out() -> None:
    result = _slow_recommended()
    frame, summary = result.orders, result.summary
    retry_events = repeated_polls = 0
    for order_id in frame["order_id"]:
        order = result._day.by_id[order_id]  # type: ignore[union-attr]
        previous_poll: Poll | None = None
        for event in order.trace or ():
            if isinstance(event, Retry):
                retry_events += 1
            elif isinstance(event, Poll):
                previous_poll = event
            elif isinstance(event, Attempt) and event.operation == "poll" and event.attempt > 1:
                # Every counted poll retry follows an unanswered poll.
                assert previous_poll is not None and previous_poll.state is None
                repeated_polls += 1
    assert repeated_polls > 0 and summary["poll_retries"] == repeated_polls
    assert summary["retries"] == retry_events + repeated_polls + summary["resends"]
    # Before polls and re-sent creates were counted, retries were the Retry events only.
    assert summary["retries_per_order"] > retry_events / len(frame)
    assert (frame["retries"] >= frame["poll_retries"] + frame["resends"]).all()


def test_retries_per_order_rises_when_polls_time_out() -> None:
    # The same day with polls that always time out (0.5 s) or mostly answer (30 s).
    strategy = get_strategy("recommended")
    policy = strategy.policy
    timeouts = policy.retry.timeouts
    patient = strategy.but(
        name="patient-polls",
        policy=replace(policy, retry=replace(policy.retry, timeouts=replace(timeouts, poll=30.0))),
    )
    short = run("slow-provider-day", strategy, seed=1, orders=150, trace=False).summary
    long = run("slow-provider-day", patient, seed=1, orders=150, trace=False).summary
    assert short["poll_retries"] > long["poll_retries"]
    assert short["poll_retries"] > 0


@cache
def _unkept(scenario: str) -> Result:
    # Promises an email on the status page, but never rechecks an unknown outcome.
    strategy = get_strategy("recommended").but(
        name="email-without-recheck", reconcile=False, recover_on_restart=False
    )
    return run(scenario, strategy, seed=1, orders=150, trace=False)


def test_an_email_promised_and_never_sent_is_counted() -> None:
    result = _unkept("slow-provider-day")
    frame, summary = result.orders, result.summary
    unsent = frame[frame["email_unsent"]]
    assert summary["emails_unsent"] == len(unsent) > 0
    assert summary["emails_unsent_rate"] == len(unsent) / len(frame)
    assert unsent["email_sent_s"].isna().all() and unsent["email_promised_s"].notna().all()
    # Feedback stays as DESIGN defines it: "we will email you" was a definite message.
    assert (unsent["feedback"] == "email").all() and unsent["feedback_s"].notna().all()
    # The money taken for those customers is counted: orphan (not shipped) or silent.
    charged = unsent[unsent["charged"] > 0]
    assert len(charged) > 0
    assert (charged["orphan_charge"] | charged["silent_charge"]).all()
    # recommended keeps every promise on the same day.
    assert run("slow-provider-day", "recommended", seed=1, orders=150).summary["emails_unsent"] == 0


def test_a_shipped_charge_whose_promised_email_never_came_is_silent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A broken mailer: the status page promises an email, and none ever leaves.
    monkeypatch.setattr(Backend, "email", lambda self, order, outcome: None)
    frame = run("calm-day", "recommended", seed=2, orders=60, trace=False).orders
    shipped = frame["fulfilled"] & (frame["charged"] > 0)
    assert shipped.sum() > 0
    assert frame["email_unsent"].all()
    assert (frame["silent_charge"] == shipped).all()
    assert (frame.loc[shipped, "unhappy_customer"] == 1).all()
    # Nobody left the page without a message; those who gave up did so waiting for the email.
    assert (frame["gave_up"] == frame["email_gave_up"]).all()
    assert frame["never_told_outcome"].all()


def test_each_unhappy_customer_has_its_own_column() -> None:
    frame = run("slow-provider-day", "naive", seed=1, orders=150, trace=False).orders
    assert (frame["unhappy_1"] == frame["silent_charge"]).all()
    dup = frame["duplicate_charge"] | frame["duplicate_hold"]
    assert (frame["unhappy_2"] == (dup & (frame["submits"] == 1))).all()
    assert (frame["unhappy_3"] == (dup & (frame["submits"] > 1))).all()
    # A silent double charge is customer 1 and 2 (or 3): the label shows 1, the columns both.
    both = frame["unhappy_1"] & (frame["unhappy_2"] | frame["unhappy_3"])
    assert both.sum() > 0
    assert (frame.loc[both, "unhappy_customer"] == 1).all()
    label = frame["unhappy_customer"]
    assert ((label == 2) == (frame["unhappy_2"] & ~frame["unhappy_1"])).all()
    assert ((label == 3) == (frame["unhappy_3"] & ~frame["unhappy_1"])).all()
    summary = run("slow-provider-day", "naive", seed=1, orders=150, trace=False).summary
    assert summary["unhappy_2"] == int(frame["unhappy_2"].sum()) > (label == 2).sum()


def test_run_refuses_more_orders_than_the_limit() -> None:
    with pytest.raises(ValueError, match=rf"^orders: must be at most {MAX_ORDERS}, got"):
        run("calm-day", "naive", orders=MAX_ORDERS + 1)
    day = load_scenario("calm-day")
    too_big = day.with_orders(MAX_ORDERS + 1)
    with pytest.raises(ValueError, match=r"^traffic\.orders: must be at most"):
        run(too_big, "naive")


def test_cli_refuses_a_huge_orders_at_once_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["simulate", "--scenario", "calm-day", "--strategy", "naive"]
    code = main([*argv, "--orders", "99999999999"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err == (
        f"payflow: error: --orders: must be at most {MAX_ORDERS}, got 99999999999\n"
    )


def test_progress_bar_shows_before_the_orders_are_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    update = _progress_bar("calm-day / naive")
    assert "drawing orders" in err.getvalue()  # drawn before run() starts
    update(900.0, 1800.0)  # the day starts: the label drops "drawing orders"
    update(-1.0, -1.0)


def test_email_times_are_seconds_after_the_first_click() -> None:
    frame = _slow_recommended().orders
    promised, sent = frame["email_promised_s"], frame["email_sent_s"]
    assert promised.notna().all() and (promised >= 0).all()
    assert (sent.dropna() >= promised[sent.notna()]).all()
