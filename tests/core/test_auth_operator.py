"""The core's side of expiring tokens (Authenticate) and the operator (AskOperator)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from payflow.core import Context, Policy, PollSchedule, RetryPolicy, TimedOut, pay, recheck
from payflow.core._backoff import Backoff, Jitter
from payflow.core.errors import (
    AuthenticationFailed,
    OutcomeUnknown,
    PaymentCancelled,
    RequestRejected,
)
from payflow.core.events import Attempt, OperatorAsked, Reauthenticated, Retry, repeat_kind
from payflow.core.messages import AskOperator

from .scripted import ScriptedDriver, clock, error, ok

FAST = RetryPolicy(deadline=30.0, backoff=Backoff(Jitter.CONSTANT, 0.1, 0.1))


def ctx(operator_every: float | None = None, **policy: Any) -> Context:
    policy.setdefault("retry", FAST)
    return Context(Policy(**policy), random.Random(3), None, operator_every, clock=clock)


def payment(state: str, pid: str = "p-1") -> dict[str, Any]:
    body = {"paymentId": pid, "orderId": "o-1", "amount": 1000, "currency": "DKK"}
    return body | {"state": state, "pollDelayInMs": 200}


def _retries(events: list[Any]) -> int:
    sent: set[tuple[str, str]] = set()
    repeats = sum(1 for e in events if isinstance(e, Attempt) and repeat_kind(e, sent))
    return repeats + sum(1 for e in events if isinstance(e, Retry))


def test_a_401_is_sent_again_with_fresh_credentials_under_the_same_key() -> None:
    d = ScriptedDriver(
        [error(401, "token_expired"), ok(payment("initiated"), 201),
         error(401, "token_expired"), ok(payment("reserved")), ok(payment("captured"))],
        fresh_credentials=True,
    )  # fmt: skip
    result = d.run(pay("o-1", 1000, "DKK", ctx()))
    assert result.state == "captured" and d.journal == {}
    assert d.authentications == 2
    creates = [c[1] for c in d.calls if c[1].operation == "create"]
    assert len(creates) == 2 and creates[0].idempotency_key == creates[1].idempotency_key
    assert _retries(d.events) == 0  # neither re-send is a retry
    assert [e.operation for e in d.events if isinstance(e, Reauthenticated)] == ["create", "poll"]


def test_two_401s_in_a_row_fail_and_keep_the_record() -> None:
    d = ScriptedDriver([error(401), error(401)], fresh_credentials=True)
    with pytest.raises(AuthenticationFailed) as info:
        d.run(pay("o-1", 1000, "DKK", ctx()))
    assert info.value.status == 401
    assert [r.state for r in d.journal.values()] == ["recheck"]


def test_a_401_after_a_timed_out_create_then_401_again_keeps_the_record() -> None:
    d = ScriptedDriver([TimedOut(), error(401), error(401)], fresh_credentials=True)
    with pytest.raises(AuthenticationFailed):
        d.run(pay("o-1", 1000, "DKK", ctx()))
    assert [r.state for r in d.journal.values()] == ["recheck"]


def test_a_fixed_token_leaves_a_401_as_it_was() -> None:
    d = ScriptedDriver([error(401)])  # fresh_credentials=False: nothing new to try
    with pytest.raises(RequestRejected):
        d.run(pay("o-1", 1000, "DKK", ctx()))
    assert d.journal == {} and len(d.calls) == 1 and d.authentications == 1


def test_two_401s_while_polling_keep_the_record() -> None:
    d = ScriptedDriver(
        [ok(payment("initiated"), 201), error(401), error(401)], fresh_credentials=True
    )
    with pytest.raises(AuthenticationFailed):
        d.run(pay("o-1", 1000, "DKK", ctx()))
    assert [r.payment_id for r in d.journal.values()] == ["p-1"]


def test_recheck_with_two_401s_keeps_the_record() -> None:
    d = ScriptedDriver(lambda req, now: error(401), fresh_credentials=True)
    record = pay("o-1", 1000, "DKK", ctx())
    saved = next(record)
    rec = saved.record  # type: ignore[union-attr]
    d.journal[rec.idempotency_key] = rec
    assert d.run(recheck(rec, ctx())).action == "kept" and len(d.journal) == 1


def _pending_forever(req: Any, now: float) -> Any:
    if req.method == "POST" and req.path.endswith("/cancel"):
        return ok(payment("cancelled"))
    return ok(payment("initiated"), 201 if req.method == "POST" else 200)


SLOW_POLL = PollSchedule(deadline=1000.0, default_delay=1.0)


def test_the_operator_is_asked_every_interval_and_may_keep_waiting() -> None:
    d = ScriptedDriver(_pending_forever)
    d.operator = lambda q: q.waited_s < 25.0
    with pytest.raises(PaymentCancelled):
        d.run(pay("o-1", 1000, "DKK", ctx(operator_every=10.0, polling=SLOW_POLL)))
    waited = [q.waited_s for q in d.questions]
    assert len(waited) == 3 and all(isinstance(q, AskOperator) for q in d.questions)
    assert 10.0 <= waited[0] < 11.0 and waited[-1] >= 25.0
    asked = [e for e in d.events if isinstance(e, OperatorAsked)]
    assert [e.give_up for e in asked] == [False, False, True]
    assert d.calls[-1][1].operation == "cancel" and d.journal == {}


def test_an_operator_giving_up_while_the_payer_approves_takes_the_payment() -> None:
    """Give up races an approval: the cancel is refused, the payment read, and captured."""

    approved: list[bool] = []

    def provider(req: Any, now: float) -> Any:
        if req.method == "POST" and req.path.endswith("/cancel"):
            approved.append(True)  # the payer approved just before the cancel arrived
            return error(409, "payment_not_cancellable")
        if req.method == "POST" and req.path.endswith("/capture"):
            return ok(payment("captured"))
        if req.method == "GET" and approved:
            return ok(payment("reserved"))
        return ok(payment("initiated"), 201 if req.method == "POST" else 200)

    d = ScriptedDriver(provider)
    d.operator = lambda q: False
    result = d.run(pay("o-1", 1000, "DKK", ctx(operator_every=10.0, polling=SLOW_POLL)))
    assert result.state == "captured" and len(d.questions) == 1


def test_no_operator_no_question() -> None:
    d = ScriptedDriver(_pending_forever)
    with pytest.raises(PaymentCancelled):
        d.run(pay("o-1", 1000, "DKK", ctx(polling=PollSchedule(deadline=30.0))))
    assert d.questions == []


def test_operator_gave_up_without_cancel_keeps_the_record() -> None:
    d = ScriptedDriver(_pending_forever)
    d.operator = lambda q: False
    context = ctx(operator_every=5.0, polling=SLOW_POLL, cancel_on_give_up=False)
    with pytest.raises(OutcomeUnknown, match="operator gave up"):
        d.run(pay("o-1", 1000, "DKK", context))
    assert [r.state for r in d.journal.values()] == ["recheck"]


def test_operator_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="operator_every"):
        ctx(operator_every=0.0)
