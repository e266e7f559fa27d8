"""Core flows against scripted outcomes on a fake clock (no I/O)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from payflow.core import (
    Backoff,
    Context,
    Jitter,
    KeyScope,
    NotSent,
    Policy,
    PollSchedule,
    Request,
    RetryBudget,
    RetryPolicy,
    TimedOut,
    cancel,
    pay,
    recheck,
    refund,
)
from payflow.core.errors import (
    ConflictError,
    InvalidRequest,
    OutcomeUnknown,
    PaymentCancelled,
    PaymentDeclined,
    ProviderUnavailable,
    RequestRejected,
)
from payflow.core.events import Attempt, GaveUp, Retry

from .scripted import ScriptedDriver, clock, error, ok

FAST = RetryPolicy(deadline=30.0, backoff=Backoff(Jitter.CONSTANT, 0.1, 0.1))


def ctx(**policy: Any) -> Context:
    policy.setdefault("retry", FAST)
    return Context(Policy(**policy), random.Random(3), clock=clock)


def payment(state: str, pid: str = "p-1", **extra: Any) -> dict[str, Any]:
    body = {"paymentId": pid, "orderId": "o-1", "amount": 1000, "currency": "DKK"}
    return body | {"state": state, "pollDelayInMs": 200} | extra


def refunded(amount: int = 500, reference: str = "rf-1", pid: str = "p-1") -> dict[str, Any]:
    return {
        "refundId": "r-1", "paymentId": pid, "amount": amount,
        "reference": reference, "state": "completed",
    }  # fmt: skip


def test_happy_path_saves_before_sending_then_forgets() -> None:
    d = ScriptedDriver(
        [
            ok(payment("initiated"), 201),
            ok(payment("initiated")),
            ok(payment("reserved")),
            ok(payment("captured")),
        ]
    )
    result = d.run(pay("o-1", 1000, "DKK", ctx()))
    assert (result.payment_id, result.state) == ("p-1", "captured")
    assert d.saves[0].reference == "o-1" and d.saves[0].payment_id is None
    assert d.journal == {}  # forgotten at the end
    paths = [r.path for _, r, _ in d.calls]
    assert paths == [
        "/v10/payments",
        "/v10/payments/p-1",
        "/v10/payments/p-1",
        "/v10/payments/p-1/capture",
    ]
    assert d.sleeps == [0.2, 0.2]  # pollDelayInMs honoured


def test_keep_record_leaves_it_for_the_caller() -> None:
    d = ScriptedDriver([ok(payment("reserved"), 201), ok(payment("captured"))])
    d.run(pay("o-1", 1000, "DKK", ctx(), keep_record=True))
    (rec,) = d.journal.values()
    assert rec.payment_id == "p-1"


def test_retries_reuse_the_same_key() -> None:
    d = ScriptedDriver([TimedOut(), error(503), ok(payment("captured"), 201)])
    d.run(pay("o-1", 1000, "DKK", ctx()))
    keys = {r.idempotency_key for _, r, _ in d.calls if r.path == "/v10/payments"}
    assert len(keys) == 1 and None not in keys
    assert [type(e).__name__ for e in d.events].count("Retry") == 2


def test_per_attempt_scope_mints_new_keys_the_anti_pattern() -> None:
    d = ScriptedDriver([TimedOut(), TimedOut(), ok(payment("captured"), 201)])
    d.run(pay("o-1", 1000, "DKK", ctx(key_scope=KeyScope.PER_ATTEMPT)))
    keys = [r.idempotency_key for _, r, _ in d.calls if r.path == "/v10/payments"]
    assert len(set(keys)) == 3


def test_per_order_key_is_shared_by_two_submits() -> None:
    a = ScriptedDriver([ok(payment("captured"), 201)])
    b = ScriptedDriver([ok(payment("captured"), 201)])
    a.run(pay("o-1", 1000, "DKK", ctx(key_scope=KeyScope.PER_ORDER)))
    b.run(
        pay(
            "o-1",
            1000,
            "DKK",
            Context(Policy(key_scope=KeyScope.PER_ORDER), random.Random(9), clock=b.now),
        )
    )
    assert a.calls[0][1].idempotency_key == b.calls[0][1].idempotency_key


def test_keyless_create_that_timed_out_is_not_retried_and_is_looked_up() -> None:
    d = ScriptedDriver([TimedOut(), ok({"payments": [payment("captured")]})])
    result = d.run(pay("o-1", 1000, "DKK", ctx(key_scope=KeyScope.NONE)))
    creates = [r for _, r, _ in d.calls if r.path == "/v10/payments"]
    assert len(creates) == 1 and creates[0].idempotency_key is None
    assert result.state == "captured"


def test_unknown_create_with_failed_lookup_is_kept_for_recheck() -> None:
    d = ScriptedDriver(lambda req, now: TimedOut())
    with pytest.raises(OutcomeUnknown) as info:
        d.run(pay("o-1", 1000, "DKK", ctx()))
    (rec,) = d.journal.values()
    assert rec.state == "recheck"
    assert info.value.reference == "o-1"


def test_refused_connections_mean_nothing_was_sent() -> None:
    d = ScriptedDriver(lambda req, now: NotSent())
    with pytest.raises(ProviderUnavailable):
        d.run(pay("o-1", 1000, "DKK", ctx()))
    assert d.journal == {}
    assert len(d.calls) == 3


def test_declined_and_expired_raise_and_forget() -> None:
    for state in ("declined", "expired"):
        d = ScriptedDriver([ok(payment("initiated"), 201), ok(payment(state))])
        with pytest.raises(PaymentDeclined):
            d.run(pay("o-1", 1000, "DKK", ctx()))
        assert d.journal == {}


def test_rejected_create_forgets_and_names_the_code() -> None:
    d = ScriptedDriver([error(400, "invalid_amount")])
    with pytest.raises(RequestRejected) as info:
        d.run(pay("o-1", 1000, "DKK", ctx()))
    assert info.value.code == "invalid_amount" and d.journal == {}


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("o-1", 10.5, "DKK"), "amount"),
        (("o-1", 0, "DKK"), "amount"),
        (("o-1", True, "DKK"), "amount"),
        (("o-1", 100, "dkk"), "currency"),
        (("", 100, "DKK"), "order_id"),
        (("a b", 100, "DKK"), "order_id"),
    ],
)
def test_invalid_arguments_fail_before_anything_happens(args: tuple[Any, ...], field: str) -> None:
    d = ScriptedDriver([])
    with pytest.raises(InvalidRequest) as info:
        d.run(pay(*args, ctx()))
    assert info.value.field == field and isinstance(info.value, ValueError)
    assert d.calls == [] and d.saves == []


def test_polling_deadline_cancels() -> None:
    def provider(req: Request, now: float) -> Any:
        if req.path.endswith("/cancel"):
            return ok(payment("cancelled"))
        return ok(payment("initiated"), 201 if req.method == "POST" else 200)

    d = ScriptedDriver(provider)
    with pytest.raises(PaymentCancelled):
        d.run(pay("o-1", 1000, "DKK", ctx(polling=PollSchedule(deadline=5.0))))
    assert d.clock < 5.0 + 3  # never waits past the polling deadline (+ the cancel call)
    assert d.journal == {}


def test_cancel_that_loses_the_race_reports_the_real_state() -> None:
    d = ScriptedDriver([error(409, "payment_not_cancellable"), ok(payment("reserved"))])
    view = d.run(cancel("p-1", ctx()))
    assert view.state == "reserved"


def test_polling_deadline_then_approved_in_the_race_is_a_success() -> None:
    approved = []

    def provider(req: Request, now: float) -> Any:
        if req.path.endswith("/cancel"):
            approved.append(now)  # the payer approved just before our cancel arrived
            return error(409, "payment_not_cancellable")
        if req.path.endswith("/capture"):
            return ok(payment("captured"))
        if req.method == "GET" and approved:
            return ok(payment("reserved"))
        return ok(payment("initiated"), 201 if req.method == "POST" else 200)

    d = ScriptedDriver(provider)
    result = d.run(pay("o-1", 1000, "DKK", ctx(polling=PollSchedule(deadline=5.0))))
    assert result.state == "captured"


def test_polling_deadline_without_cancel_keeps_for_recheck() -> None:
    d = ScriptedDriver(lambda req, now: ok(payment("initiated"), 201))
    with pytest.raises(OutcomeUnknown):
        d.run(
            pay(
                "o-1", 1000, "DKK", ctx(polling=PollSchedule(deadline=3.0), cancel_on_give_up=False)
            )
        )
    (rec,) = d.journal.values()
    assert rec.state == "recheck" and rec.payment_id == "p-1"


def test_refund_is_journalled_and_retried_with_the_same_key() -> None:
    d = ScriptedDriver([TimedOut(), ok(refunded(), 201)])
    done = d.run(refund("p-1", 500, "rf-1", ctx()))
    assert done.refund_id == "r-1"
    assert d.saves[0].operation == "refund"
    keys = {r.idempotency_key for _, r, _ in d.calls}
    assert len(keys) == 1 and d.journal == {}


def test_unanswered_refund_stays_in_the_journal() -> None:
    d = ScriptedDriver(lambda req, now: TimedOut())
    with pytest.raises(OutcomeUnknown):
        d.run(refund("p-1", 500, "rf-1", ctx()))
    assert [r.operation for r in d.journal.values()] == ["refund"]


# -- recheck ---------------------------------------------------------------


def _record(d: ScriptedDriver, **changes: Any) -> Any:
    from dataclasses import replace

    from payflow.core import PendingRecord

    rec = PendingRecord("o-1", "k-1", "pay", 1000, "DKK", 0.0)
    rec = replace(rec, **changes)
    d.journal[rec.idempotency_key] = rec
    return rec


@pytest.mark.parametrize(
    ("provider_states", "action"),
    [
        (["initiated", "cancelled"], "cancelled"),  # pending -> cancel
        (["reserved"], "refunded"),  # approved -> refund
        (["captured"], "refunded"),
        (["declined"], "forgotten"),
        (["cancelled"], "forgotten"),
    ],
)
def test_recheck_follows_laybuy(provider_states: list[str], action: str) -> None:
    states = iter(provider_states)

    def provider(req: Request, now: float) -> Any:
        if req.path == "/v10/refunds":
            return ok(refunded(1000, "o-1"), 201)
        return ok(payment(next(states)))

    d = ScriptedDriver(provider)
    rec = _record(d, payment_id="p-1")
    result = d.run(recheck(rec, ctx()))
    assert result.action == action and d.journal == {}
    if action == "refunded":
        assert result.refunded_amount == 1000


def test_recheck_can_report_instead_of_refunding() -> None:
    d = ScriptedDriver([ok(payment("captured"))])
    rec = _record(d, payment_id="p-1")
    result = d.run(recheck(rec, ctx(refund_unclaimed=False)))
    assert result.action == "reported"
    assert next(iter(d.journal.values())).state == "reported"


def test_recheck_captures_a_reservation_it_reports() -> None:
    """A late approval reported for the caller to apply is money taken: captured."""
    d = ScriptedDriver([ok(payment("reserved")), ok(payment("captured"))])
    rec = _record(d, payment_id="p-1")
    result = d.run(recheck(rec, ctx(refund_unclaimed=False)))
    assert (result.action, result.state) == ("reported", "captured")
    assert [c[1].operation for c in d.calls] == ["status", "capture"]

    d = ScriptedDriver([ok(payment("reserved"))])  # a policy that leaves capturing to the caller
    rec = _record(d, payment_id="p-1")
    result = d.run(recheck(rec, ctx(refund_unclaimed=False, capture=False)))
    assert (result.action, result.state) == ("reported", "reserved") and len(d.calls) == 1


def test_recheck_keeps_a_reservation_whose_capture_got_no_answer() -> None:
    def provider(req: Request, now: float) -> Any:
        if req.operation == "capture" or (req.operation == "status" and now > 0):
            return TimedOut()
        return ok(payment("reserved"))

    d = ScriptedDriver(provider)
    rec = _record(d, payment_id="p-1")
    result = d.run(recheck(rec, ctx(refund_unclaimed=False)))
    assert result.action == "kept" and next(iter(d.journal.values())).state == "recheck"


def test_recheck_keeps_a_reservation_whose_capture_is_refused() -> None:
    d = ScriptedDriver([ok(payment("reserved")), error(409, "conflict"), ok(payment("reserved"))])
    rec = _record(d, payment_id="p-1")
    result = d.run(recheck(rec, ctx(refund_unclaimed=False)))
    assert result.action == "kept"  # reported only once the money is taken
    assert [c[1].operation for c in d.calls] == ["status", "capture", "status"]


def test_recheck_captures_only_its_own_payment_and_never_a_mismatched_one() -> None:
    d = ScriptedDriver([ok(payment("reserved", amount=2500)), ok(payment("captured"))])
    rec = _record(d, payment_id="p-1")  # the record says 1000; the provider says 2500
    result = d.run(recheck(rec, ctx(refund_unclaimed=False)))
    assert (result.action, result.state) == ("kept", "mismatch")
    assert [c[1].operation for c in d.calls] == ["status"]  # nothing captured
    assert next(iter(d.journal.values())).state == "recheck"

    # A keyless record finds the order's payments by lookup: they may be another
    # operation's, so a reservation is reported as it is, not captured.
    found = {"payments": [payment("reserved", pid="p-9", amount=2500)]}
    d = ScriptedDriver([ok(found)])
    rec = _record(d, key_sent=False)
    result = d.run(recheck(rec, ctx(refund_unclaimed=False)))
    assert (result.action, result.state) == ("reported", "reserved")
    assert [c[1].operation for c in d.calls] == ["lookup"]


def test_recheck_without_payment_id_replays_the_create_with_the_same_key() -> None:
    d = ScriptedDriver([ok(payment("initiated"), 201), ok(payment("cancelled"))])
    rec = _record(d)
    result = d.run(recheck(rec, ctx()))
    assert d.calls[0][1].idempotency_key == "k-1"
    assert result.action == "cancelled"


def test_recheck_with_provider_down_keeps_the_record() -> None:
    d = ScriptedDriver(lambda req, now: TimedOut())
    rec = _record(d, payment_id="p-1")
    result = d.run(recheck(rec, ctx()))
    assert result.action == "kept" and len(d.journal) == 1


def test_recheck_of_a_refund_repeats_it_with_its_key() -> None:
    d = ScriptedDriver([ok(refunded(1000, "o-1"), 201)])
    rec = _record(d, operation="refund", payment_id="p-1", idempotency_key="rk")
    result = d.run(recheck(rec, ctx()))
    assert result.action == "refunded" and d.calls[0][1].idempotency_key == "rk"


def test_events_describe_attempts_retries_and_give_ups() -> None:
    d = ScriptedDriver(lambda req, now: TimedOut())
    with pytest.raises(OutcomeUnknown):
        d.run(pay("o-1", 1000, "DKK", ctx()))
    kinds = [type(e) for e in d.events]
    assert kinds.count(Attempt) >= 3 and Retry in kinds and GaveUp in kinds


def test_a_create_only_ever_throttled_was_never_sent() -> None:
    d = ScriptedDriver(lambda req, now: error(429, "too_many_requests", **{"Retry-After": "0"}))
    with pytest.raises(ProviderUnavailable):
        d.run(pay("o-1", 1000, "DKK", ctx()))
    assert d.journal == {}


# -- after an unknown create: re-send with the same key -------------------------


def _resend_provider(in_progress_until: float, created: list[str]) -> Any:
    """The first create is lost; re-sends see 409 in progress until the commit."""

    def answer(req: Request, now: float) -> Any:
        if req.path == "/v10/payments" and req.method == "POST":
            created.append(req.idempotency_key or "")
            if len(created) == 1:
                return TimedOut()
            if now < in_progress_until:
                return error(409, "request_in_progress")
            return ok(payment("captured"), 201)
        return ok(payment("captured"))

    return answer


def test_in_progress_create_is_awaited_and_replayed() -> None:
    sends: list[str] = []
    d = ScriptedDriver(_resend_provider(5.0, sends))
    result = d.run(pay("o-1", 1000, "DKK", ctx()))
    assert result.state == "captured"
    assert len(set(sends)) == 1 and len(sends) <= 6  # MobilePay: at most 6 requests


def test_in_progress_past_the_deadline_is_unknown_not_a_conflict() -> None:
    sends: list[str] = []
    d = ScriptedDriver(_resend_provider(1e9, sends))
    policy = RetryPolicy(deadline=10.0, backoff=Backoff(Jitter.CONSTANT, 0.1, 0.1))
    with pytest.raises(OutcomeUnknown):
        d.run(pay("o-1", 1000, "DKK", ctx(retry=policy)))
    assert d.clock <= 10.0 and len(sends) <= 6
    assert next(iter(d.journal.values())).state == "recheck"


def test_resends_after_an_unknown_create_spend_the_retry_budget() -> None:
    """A re-send is a retry: an exhausted budget leaves the outcome to the recheck."""
    sends: list[str] = []
    budget = RetryBudget.grpc(max_tokens=10.0)
    budget.tokens = 4.0  # below half: every retry is refused
    d = ScriptedDriver(_resend_provider(5.0, sends))
    with pytest.raises(OutcomeUnknown):
        d.run(
            pay(
                "o-1",
                1000,
                "DKK",
                Context(Policy(retry=FAST), random.Random(3), budget, clock=clock),
            )
        )
    assert len(sends) == 1  # the lost create only: no retry, no re-send
    assert budget.retries_refused >= 2  # the policy's retry and the re-send
    assert next(iter(d.journal.values())).state == "recheck"

    sends.clear()
    full = RetryBudget.grpc(max_tokens=10.0)
    d = ScriptedDriver(_resend_provider(5.0, sends))
    ctx_full = Context(Policy(retry=FAST), random.Random(3), full, clock=clock)
    assert d.run(pay("o-1", 1000, "DKK", ctx_full)).state == "captured"
    assert len(sends) > 1 and full.retries_allowed == len(sends) - 1


@pytest.mark.parametrize(("first", "price"), [("timeout", 10.0), ("in-progress", 5.0)])
def test_a_successful_resend_is_refunded_like_a_retried_call(first: str, price: float) -> None:
    """AWS standard: a re-send costs 10 after no answer, 5 after an answer; a success
    refunds it, as for any retried call that succeeds."""
    creates: list[float] = []

    def provider(req: Request, now: float) -> Any:
        if req.operation == "create":
            creates.append(now)
            if len(creates) == 1:
                return TimedOut() if first == "timeout" else error(409, "request_in_progress")
            return ok(payment("captured"), 201)
        return ok(payment("captured"))

    spent: list[float] = []

    class Spy(RetryBudget):
        def acquire_retry(self, after_timeout: bool = False) -> float | None:
            cost = super().acquire_retry(after_timeout)
            spent.append(cost or 0.0)
            return cost

    aws = RetryBudget.aws_standard()
    budget = Spy(**{f.name: getattr(aws, f.name) for f in dataclasses.fields(aws)})
    one_attempt = RetryPolicy(max_attempts=1, deadline=30.0)
    d = ScriptedDriver(provider)
    result = d.run(
        pay(
            "o-1",
            1000,
            "DKK",
            Context(Policy(retry=one_attempt), random.Random(3), budget, clock=clock),
        )
    )
    assert result.state == "captured" and len(creates) == 2
    assert spent == [price]
    assert budget.tokens == budget.max_tokens  # refunded, nothing leaked


def test_every_create_timing_out_never_passes_the_deadline() -> None:
    d = ScriptedDriver(lambda req, now: TimedOut())
    policy = RetryPolicy(deadline=10.0)
    with pytest.raises(OutcomeUnknown):
        d.run(pay("o-1", 1000, "DKK", ctx(retry=policy)))
    assert d.clock <= 10.0
    assert len(d.calls) <= 6


def test_failure_after_the_payment_exists_is_unknown_not_unavailable() -> None:
    def provider(req: Request, now: float) -> Any:
        if req.method == "POST" and req.path == "/v10/payments":
            return ok(payment("reserved"), 201)
        return TimedOut()  # capture and the status read both go unanswered

    d = ScriptedDriver(provider)
    with pytest.raises(OutcomeUnknown):
        d.run(pay("o-1", 1000, "DKK", ctx()))
    assert next(iter(d.journal.values())).state == "recheck"


@pytest.mark.parametrize("status", [401, 403, 404, 500])
def test_recheck_keeps_the_record_when_the_replay_says_nothing(status: int) -> None:
    d = ScriptedDriver(lambda req, now: error(status))
    rec = _record(d)
    result = d.run(recheck(rec, ctx(retry=RetryPolicy(max_attempts=1))))
    assert result.action == "kept" and len(d.journal) == 1


def test_recheck_forgets_when_the_replay_was_refused_for_what_it_is() -> None:
    d = ScriptedDriver([error(400, "invalid_amount")])
    rec = _record(d)
    assert d.run(recheck(rec, ctx())).action == "forgotten" and d.journal == {}


def test_refund_without_key_derives_it_from_the_reference() -> None:
    a = ScriptedDriver([ok(refunded(), 201)])
    b = ScriptedDriver([ok(refunded(), 201)])
    a.run(refund("p-1", 500, "rf-1", ctx()))
    b.run(refund("p-1", 500, "rf-1", Context(Policy(), random.Random(99), clock=b.now)))
    assert a.calls[0][1].idempotency_key == b.calls[0][1].idempotency_key


def test_a_bad_key_is_refused_before_anything_happens() -> None:
    d = ScriptedDriver([])
    with pytest.raises(InvalidRequest) as info:
        d.run(pay("o-1", 1000, "DKK", ctx(), key="has spaces"))
    assert info.value.field == "key" and d.saves == []


def test_repeat_kind_counts_repeated_polls_and_resends_once_each() -> None:
    from payflow.core.events import repeat_kind

    sent: set[tuple[str, str]] = set()
    first = Attempt("create", "o-1", 1, "k-1", 2.0, 0.0)
    assert repeat_kind(first, sent) is None  # the first send of an operation
    assert repeat_kind(first, sent) == "resend"  # the same key again: a repeat
    assert repeat_kind(Attempt("refund", "o-1", 1, "k-1", 2.0, 0.0), sent) is None
    assert repeat_kind(Attempt("poll", "o-1", 1, None, 0.5, 0.0), sent) is None
    assert repeat_kind(Attempt("poll", "o-1", 2, None, 0.5, 0.0), sent) == "poll"
    # attempts after the first of one call come with a Retry event: not counted here
    assert repeat_kind(Attempt("create", "o-1", 2, "k-2", 2.0, 0.0), sent) is None


# -- the order of effects: durable before sent ----------------------------------------------


def test_the_pending_record_is_saved_before_the_create_is_sent() -> None:
    """Laybuy's crash rule: the journal holds the payment before any request can."""
    d = ScriptedDriver([ok(payment("initiated"), 201), ok(payment("reserved")),
                        ok(payment("captured"))])  # fmt: skip
    d.run(pay("o-1", 1000, "DKK", ctx(), keep_record=True))
    first_save, first_call = d.log.index("Save"), d.log.index("Call")
    assert first_save < first_call
    assert d.saves[0].payment_id is None and d.saves[0].state == "pending"
    # The payment id is saved after the create answered and before the first poll.
    calls = [i for i, kind in enumerate(d.log) if kind == "Call"]
    saves = [i for i, kind in enumerate(d.log) if kind == "Save"]
    assert calls[0] < saves[1] < calls[1] and d.saves[1].payment_id == "p-1"
    assert "Forget" not in d.log  # keep_record: the caller forgets it


def test_a_refund_is_saved_before_it_is_sent() -> None:
    d = ScriptedDriver([ok(refunded(), 201)])
    d.run(refund("p-1", 500, "rf-1", ctx()))
    assert d.log.index("Save") < d.log.index("Call") < d.log.index("Forget")


def test_recheck_keeps_a_payment_still_pending_after_an_unconfirmed_cancel() -> None:
    d = ScriptedDriver(
        [ok(payment("initiated")), error(409, "payment_not_cancellable"), ok(payment("initiated"))]
    )
    rec = _record(d, payment_id="p-1")
    result = d.run(recheck(rec, ctx()))
    assert result.action == "kept" and next(iter(d.journal.values())).state == "recheck"
    assert [c[1].operation for c in d.calls] == ["status", "cancel", "status"]


def test_recheck_keeps_a_payment_whose_cancel_reply_is_not_a_cancel() -> None:
    """A 200 to the cancel that does not say "cancelled" is not a confirmation."""
    d = ScriptedDriver(
        [ok(payment("initiated")), ok(payment("initiated")), ok(payment("initiated"))]
    )
    rec = _record(d, payment_id="p-1")
    assert d.run(recheck(rec, ctx())).action == "kept" and len(d.journal) == 1


def test_a_409_to_a_create_is_explained_by_the_orders_payments() -> None:
    """Nothing of the order holds money: the refusal stands and the record goes."""
    d = ScriptedDriver([error(409, "active_payment_on_pos"), ok({"payments": []})])
    with pytest.raises(ConflictError):
        d.run(pay("o-1", 1000, "DKK", ctx()))
    assert d.journal == {} and [c[1].operation for c in d.calls] == ["create", "lookup"]
    # The order has a payment that may be this one: outcome unknown, record kept.
    d = ScriptedDriver(
        [error(409, "active_payment_on_pos"), ok({"payments": [payment("initiated")]})]
    )
    with pytest.raises(OutcomeUnknown):
        d.run(pay("o-1", 1000, "DKK", ctx()))
    assert [r.state for r in d.journal.values()] == ["recheck"]


def test_a_refusal_after_a_timed_out_attempt_keeps_the_record() -> None:
    """A 401 on the second attempt says nothing about the first, which may have landed."""
    d = ScriptedDriver([TimedOut(), error(401, "unauthorized")])
    with pytest.raises(OutcomeUnknown):
        d.run(pay("o-1", 1000, "DKK", ctx()))
    assert [r.state for r in d.journal.values()] == ["recheck"]
    d = ScriptedDriver([error(401, "unauthorized")])  # the first attempt: refused, nothing held
    with pytest.raises(RequestRejected):
        d.run(pay("o-1", 1000, "DKK", ctx()))
    assert d.journal == {}


def test_recheck_of_a_payment_the_provider_does_not_know_asks_by_the_key() -> None:
    """A create reply named a payment that does not exist (404): the key still names
    the operation's real payment, which the recheck then settles."""
    d = ScriptedDriver(
        [error(404, "not_found"), ok(payment("reserved", pid="p-real"), 201),
         ok(refunded(1000, "o-1", pid="p-real"), 201)]
    )  # fmt: skip
    rec = _record(d, payment_id="p-bogus")
    result = d.run(recheck(rec, ctx()))
    assert (result.action, result.payment_ids) == ("refunded", ("p-real",))
    assert [c[1].operation for c in d.calls] == ["status", "create", "refund"]
    assert d.journal == {}


def test_no_poll_outlives_the_polling_deadline() -> None:
    """Polls that never answer: the last one is cut to the time left, never past it."""

    def provider(req: Request, now: float) -> Any:
        return ok(payment("initiated"), 201) if req.method == "POST" else TimedOut()

    schedule = PollSchedule(deadline=2.0, default_delay=0.3, backoff=Backoff(Jitter.NONE, 0.3, 0.3))
    d = ScriptedDriver(provider)
    with pytest.raises(OutcomeUnknown):
        d.run(pay("o-1", 1000, "DKK", ctx(polling=schedule, cancel_on_give_up=False)))
    polls = [(at, timeout) for at, r, timeout in d.calls if r.operation == "poll"]
    start = d.calls[0][0] + d.latency  # polling starts when the create answered
    assert polls and all(at + timeout <= start + 2.0 + 1e-9 for at, timeout in polls)
    assert polls[-1][1] < 0.5  # the last poll was cut
