"""The money rules, guarded line by line (issue 11: no surviving mutant on a money path).

Each test pins down *everything* observable about one money decision: the requests
sent (method, path, body, key), the journal records saved (every field, and whether
a save is a payment's first), what is forgotten and in which order relative to the
calls, and the exact exception class with its references. See docs/mutation.md.
"""

from __future__ import annotations

import contextlib
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
    PendingRecord,
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
from payflow.core import (
    _api as api,
)
from payflow.core._calls import PollingTimedOut, call, poll_until_settled
from payflow.core._flows import (
    PaymentResult,
    capture,
    find_payments,
    payment_key,
    refund_key,
    status,
)
from payflow.core._keys import derived_key, new_key
from payflow.core._policy import Done, GiveUp, RetryAfter, Verdict, classify
from payflow.core._recheck import RecheckResult
from payflow.core._replies import (
    Expected,
    PaymentStatus,
    Refund,
    read_payment,
    read_payments,
    read_refund,
)
from payflow.core.errors import (
    ConflictError,
    InvalidRequest,
    OutcomeUnknown,
    PayflowError,
    PaymentCancelled,
    PaymentDeclined,
    ProviderMismatch,
    ProviderUnavailable,
    ReplyNotUnderstood,
    RequestRejected,
)
from payflow.core.events import StateChanged
from payflow.core.messages import Effect, Response, Save, Sleep

from .scripted import ScriptedDriver, clock, error, ok

KEY = "key-1"
FAST = RetryPolicy(deadline=30.0, backoff=Backoff(Jitter.CONSTANT, 0.1, 0.1))
GOLDEN_PAY = "445b6f68-bffa-4c1c-9047-b08fd49d546c"  # derived_key("pay", "o-1")
GOLDEN_REFUND = "1b6857da-44a8-4bda-af46-086c5715028d"  # refund_key("p-1", "rf-1")
GOLDEN_NEW = "5bc8fbbc-bde5-4099-8164-d8399f767c45"  # new_key(random.Random(5))
T0 = 100.0  # the fake clock's start: a flow must measure time from it, not from 0


class Driver(ScriptedDriver):
    """A scripted driver that also keeps every effect (to see ``Save.first``)."""

    def __init__(self, script: Any, oversleep: float = 0.0, **kw: Any) -> None:
        super().__init__(script, clock=T0, **kw)
        self.effects: list[Effect] = []
        self.oversleep = oversleep  # a sleep that lasts longer than asked (a busy machine)

    def save(self, save: Save) -> None:
        self.effects.append(save)
        super().save(save)

    def sleep(self, sleep: Sleep) -> None:
        self.effects.append(sleep)
        super().sleep(sleep)
        self.clock += self.oversleep

    @property
    def firsts(self) -> list[bool]:
        return [e.first for e in self.effects if isinstance(e, Save)]

    @property
    def sent(self) -> list[tuple[str, str, dict[str, Any] | None, str | None]]:
        return [
            (r.method, r.path, None if r.body is None else dict(r.body), r.idempotency_key)
            for _, r, _ in self.calls
        ]

    @property
    def ops(self) -> list[str]:
        return [r.operation for _, r, _ in self.calls]

    @property
    def order(self) -> list[str]:
        """Saves, calls, sleeps and forgets in the order they happened."""
        return [k for k in self.log if k in ("Save", "Call", "Forget", "Sleep")]

    def references(self) -> set[str]:
        return {e.reference for e in self.events if not isinstance(e, StateChanged)}


def ctx(rng: int = 3, budget: RetryBudget | None = None, **policy: Any) -> Context:
    policy.setdefault("retry", FAST)
    return Context(Policy(**policy), random.Random(rng), budget, clock=clock)


def body(state: str, pid: str = "p-1", **extra: Any) -> dict[str, Any]:
    base = {"paymentId": pid, "orderId": "o-1", "amount": 1000, "currency": "DKK"}
    return base | {"state": state} | extra


def view(state: str, pid: str = "p-1", **extra: Any) -> PaymentStatus:
    return PaymentStatus(pid, "o-1", state, 1000, "DKK", **extra)


def refunded(amount: int = 1000, reference: str = "o-1", pid: str = "p-1") -> dict[str, Any]:
    return {"refundId": "r-1", "paymentId": pid, "amount": amount, "reference": reference,
            "state": "completed"}  # fmt: skip


def refs(exc: PayflowError) -> dict[str, Any]:
    return {
        "type": type(exc).__name__, "reference": exc.reference, "payment_id": exc.payment_id,
        "key": exc.idempotency_key, "correlation": exc.correlation_id, "status": exc.status,
        "code": exc.code,
    }  # fmt: skip


def err(
    cls: type,
    *,
    reference: Any = "o-1",
    payment_id: Any = None,
    key: Any = KEY,
    correlation: Any = None,
    status: Any = None,
    code: Any = None,
) -> dict[str, Any]:
    return {
        "type": cls.__name__, "reference": reference, "payment_id": payment_id, "key": key,
        "correlation": correlation, "status": status, "code": code,
    }  # fmt: skip


def rec(**changes: Any) -> PendingRecord:
    return dataclasses.replace(PendingRecord("o-1", KEY, "pay", 1000, "DKK", T0), **changes)


CREATE = ("POST", "/v10/payments", {"orderId": "o-1", "amount": 1000, "currency": "DKK"}, KEY)
STATUS = ("GET", "/v10/payments/p-1", None, None)
CAPTURE = ("POST", "/v10/payments/p-1/capture", {"amount": 1000}, None)
CANCEL = ("POST", "/v10/payments/p-1/cancel", None, None)
LOOKUP = ("GET", "/v10/payments?orderId=o-1", None, None)


def refund_req(amount: int = 1000, reference: str = "o-1", key: str = "rk") -> Any:
    return ("POST", "/v10/refunds", {"paymentId": "p-1", "amount": amount, "reference": reference},
            key)  # fmt: skip


# -- replies: every check --------------------------------------------------------------------


def test_a_payment_reply_is_read_field_by_field() -> None:
    full = body("reserved", refundedAmount=300, pollDelayInMs=0, correlationId="c-7")
    got = read_payment(full, payment_id="p-1", expect=Expected("o-1", 1000, "DKK"))
    assert got == PaymentStatus("p-1", "o-1", "reserved", 1000, "DKK", 300, 0, "c-7")
    assert read_payment(body("captured", amount=1)) == PaymentStatus(
        "p-1", "o-1", "captured", 1, "DKK", 0, None, None
    )
    assert read_payment(body("declined", refundedAmount=None)).refunded_amount == 0
    assert read_payment(body("expired", refundedAmount=1000)).refunded_amount == 1000


@pytest.mark.parametrize(
    ("delay", "read"),
    [(0, 0), (1, 1), (200, 200), (-1, None), (True, None), ("200", None), (1.5, None),
     (10**12, 86_400_000), (None, None)],
)  # fmt: skip
def test_poll_delay_is_advice_read_when_sane(delay: Any, read: int | None) -> None:
    assert read_payment(body("initiated", pollDelayInMs=delay)).poll_delay_ms == read


@pytest.mark.parametrize("value", [None, "", 5, ["c"]])
def test_an_odd_correlation_id_is_dropped(value: Any) -> None:
    assert read_payment(body("initiated", correlationId=value)).correlation_id is None


def _without(name: str) -> dict[str, Any]:
    b = body("reserved")
    del b[name]
    return b


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        ([body("reserved")], "empty or not a JSON object"),
        ("text", "empty or not a JSON object"),
        ({}, "empty or not a JSON object"),
        (_without("paymentId"), "the create reply has no 'paymentId'"),
        (body("reserved", pid=".."), "the create reply has no usable paymentId"),
        (body("reserved", pid=5), "the create reply has no usable paymentId"),
        (_without("orderId"), "the create reply has no 'orderId'"),
        (body("reserved", orderId=""), "the create reply has no usable orderId"),
        (body("reserved", orderId=7), "the create reply has no usable orderId"),
        (_without("amount"), "the create reply has no 'amount'"),
        (body("reserved", amount=0), "the create reply has no usable amount"),
        (body("reserved", amount=-5), "the create reply has no usable amount"),
        (body("reserved", amount=10.5), "the create reply has no usable amount"),
        (body("reserved", amount=True), "the create reply has no usable amount"),
        (body("reserved", amount="1000"), "the create reply has no usable amount"),
        (_without("currency"), "the create reply has no 'currency'"),
        (body("reserved", currency="DK"), "the create reply has no usable currency"),
        (body("reserved", currency="DKKK"), "the create reply has no usable currency"),
        (body("reserved", currency="DKÆ"), "the create reply has no usable currency"),
        (body("reserved", currency=208), "the create reply has no usable currency"),
        (_without("state"), "the create reply has no 'state'"),
        (body("refunded"), "the create reply has an unknown state"),
        (body("reserved", refundedAmount=-1), "the create reply has an impossible refundedAmount"),
        (body("reserved", refundedAmount=1001), "the create reply has an impossible"),
        (body("reserved", refundedAmount=True), "the create reply has an impossible"),
        (body("reserved", refundedAmount="5"), "the create reply has an impossible"),
    ],
)
def test_a_payment_reply_not_understood(reply: Any, words: str) -> None:
    with pytest.raises(ReplyNotUnderstood) as info:
        read_payment(reply, what="create")
    assert type(info.value) is ReplyNotUnderstood and words in info.value.message


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (body("reserved", pid="p-2"), "the poll reply names payment 'p-2', not 'p-1'"),
        (body("reserved", orderId="o-2"), "the poll reply names order 'o-2', not 'o-1'"),
        (body("reserved", amount=2500), "the poll reply names amount 2500, not 1000"),
        (body("reserved", currency="EUR"), "the poll reply names currency 'EUR', not 'DKK'"),
    ],
)
def test_a_payment_reply_about_something_else(reply: Any, words: str) -> None:
    with pytest.raises(ProviderMismatch) as info:
        read_payment(reply, payment_id="p-1", expect=Expected("o-1", 1000, "DKK"), what="poll")
    assert type(info.value) is ProviderMismatch and info.value.message == words


def test_a_lookup_reply_is_every_payment_of_the_order_or_nothing() -> None:
    two = {"payments": [body("declined"), body("reserved", pid="p-2")]}
    assert read_payments(two, order_id="o-1") == [view("declined"), view("reserved", pid="p-2")]
    assert read_payments({"payments": []}, order_id="o-1") == []
    for bad, cls, words in [
        ([], ReplyNotUnderstood, "the lookup reply is not a JSON object"),
        ({}, ReplyNotUnderstood, "the lookup reply has no 'payments' list"),
        ({"payments": {"p-1": body("declined")}}, ReplyNotUnderstood, "no 'payments' list"),
        ({"payments": [body("declined"), {}]}, ReplyNotUnderstood, "lookup reply is empty"),
        ({"payments": [body("declined", orderId="o-2")]}, ProviderMismatch,
         "the lookup reply names order 'o-2', not 'o-1'"),
    ]:  # fmt: skip
        with pytest.raises(cls) as info:
            read_payments(bad, order_id="o-1")
        assert type(info.value) is cls and words in info.value.message


def test_a_refund_reply_is_read_field_by_field() -> None:
    got = read_refund(refunded(500, "rf-1"), payment_id="p-1", amount=500, reference="rf-1")
    assert got == Refund("r-1", "p-1", 500, "rf-1", "completed")
    no_ref = {k: v for k, v in refunded(500, "rf-1").items() if k != "reference"}
    assert read_refund(no_ref, payment_id="p-1", amount=500, reference="rf-1").reference == "rf-1"


def _refund_without(name: str) -> dict[str, Any]:
    return {k: v for k, v in refunded(500, "rf-1").items() if k != name}


@pytest.mark.parametrize(
    ("reply", "cls", "words"),
    [
        ([refunded()], ReplyNotUnderstood, "the refund reply is empty or not a JSON object"),
        ({}, ReplyNotUnderstood, "the refund reply is empty or not a JSON object"),
        (_refund_without("refundId"), ReplyNotUnderstood, "the refund reply has no 'refundId'"),
        (refunded(500, "rf-1") | {"refundId": ""}, ReplyNotUnderstood, "no usable refundId"),
        (refunded(500, "rf-1") | {"refundId": 9}, ReplyNotUnderstood, "no usable refundId"),
        (_refund_without("paymentId"), ReplyNotUnderstood, "the refund reply has no 'paymentId'"),
        (_refund_without("amount"), ReplyNotUnderstood, "the refund reply has no 'amount'"),
        (refunded(500, "rf-1") | {"amount": "500"}, ReplyNotUnderstood, "no usable amount"),
        (refunded(500, "rf-1") | {"amount": True}, ReplyNotUnderstood, "no usable amount"),
        (_refund_without("state"), ReplyNotUnderstood, "the refund reply has no 'state'"),
        (refunded(500, "rf-1") | {"state": "pending"}, ReplyNotUnderstood, "unknown state"),
        (refunded(500, "rf-1", pid="p-2"), ProviderMismatch,
         "the refund reply names payment 'p-2', not 'p-1'"),
        (refunded(400, "rf-1"), ProviderMismatch, "the refund reply names amount 400, not 500"),
        (refunded(500, "rf-2"), ProviderMismatch,
         "the refund reply names reference 'rf-2', not 'rf-1'"),
    ],
)  # fmt: skip
def test_a_refund_reply_not_understood_or_about_something_else(
    reply: Any, cls: type, words: str
) -> None:
    with pytest.raises(cls) as info:
        read_refund(reply, payment_id="p-1", amount=500, reference="rf-1")
    assert type(info.value) is cls and words in info.value.message


# -- keys ------------------------------------------------------------------------------------


def test_keys_per_scope() -> None:
    assert payment_key("o-1", ctx(key_scope=KeyScope.NONE)) is None
    assert payment_key("o-1", ctx(key_scope=KeyScope.PER_ORDER)) == derived_key("pay", "o-1")
    assert payment_key("o-1", ctx(key_scope=KeyScope.PER_ORDER)) != derived_key("o-1")
    assert payment_key("o-1", ctx(rng=5)) == new_key(random.Random(5))
    assert refund_key("p-1", "rf-1") == derived_key("refund", "p-1", "rf-1")
    assert len({refund_key("p-1", "rf-1"), refund_key("p-2", "rf-1"), refund_key("p-1", "rf-2"),
                derived_key("p-1", "rf-1")}) == 4  # fmt: skip


# -- pay: what is saved, sent and forgotten --------------------------------------------------


def test_pay_saves_sends_and_forgets_exactly() -> None:
    d = Driver([ok(body("initiated", pollDelayInMs=250), 201), ok(body("reserved")),
                ok(body("captured", correlationId="c-cap"))])  # fmt: skip
    result = d.run(pay("o-1", 1000, "DKK", ctx(), pos_id="pos-1", key=KEY))
    assert result == PaymentResult("o-1", "p-1", "captured", 1000, "DKK", KEY, "c-cap")
    create = (*CREATE[:2], {**CREATE[2], "posId": "pos-1"}, KEY)
    poll = ("GET", "/v10/payments/p-1", None, None)
    assert d.sent == [create, poll, CAPTURE]
    assert d.ops == ["create", "poll", "capture"]
    assert d.saves == [rec(), rec(payment_id="p-1")] and d.firsts == [True, False]
    assert d.order == ["Save", "Call", "Save", "Sleep", "Call", "Call", "Forget"]
    assert d.sleeps == [0.25] and d.journal == {}
    assert d.references() == {"o-1"}
    changes = [(e.reference, e.payment_id, e.old, e.new) for e in d.events
               if isinstance(e, StateChanged)]  # fmt: skip
    assert changes == [("o-1", "p-1", "sent", "pending"),
                       ("o-1", "p-1", "pending", "reserved"),
                       ("o-1", "p-1", "reserved", "captured")]  # fmt: skip


def test_pay_keys_per_scope() -> None:
    d = Driver([ok(body("captured"), 201)])
    d.run(pay("o-1", 1000, "DKK", ctx(rng=5)))
    k = new_key(random.Random(5))
    assert d.sent == [(*CREATE[:3], k)] and d.saves[0] == rec(idempotency_key=k)

    d = Driver([ok(body("captured"), 201)])
    d.run(pay("o-1", 1000, "DKK", ctx(key_scope=KeyScope.PER_ORDER)))
    k = derived_key("pay", "o-1")
    assert d.sent == [(*CREATE[:3], k)] and d.saves[0] == rec(idempotency_key=k)

    # Keyless: nothing is sent as a key, the journal names the record with a random one.
    d = Driver([ok(body("captured"), 201)])
    d.run(pay("o-1", 1000, "DKK", ctx(rng=5, key_scope=KeyScope.NONE)))
    k = new_key(random.Random(5))
    assert d.sent == [(*CREATE[:3], None)]
    assert d.saves[0] == rec(idempotency_key=k, key_sent=False) and d.firsts == [True, False]
    assert d.order == ["Save", "Call", "Save", "Forget"] and d.journal == {}

    # A key the caller gives wins over the scope's.
    d = Driver([ok(body("captured"), 201)])
    d.run(pay("o-1", 1000, "DKK", ctx(key_scope=KeyScope.NONE), key=KEY))
    assert d.sent == [CREATE] and d.saves[0] == rec()


def test_pay_checks_pos_id_and_key_before_anything() -> None:
    for kwargs, field in [({"pos_id": "a b"}, "pos_id"), ({"key": "a b"}, "key")]:
        d = Driver([])
        with pytest.raises(InvalidRequest) as info:
            d.run(pay("o-1", 1000, "DKK", ctx(), **kwargs))
        assert info.value.field == field and d.log == []


def test_keep_record_leaves_the_paid_record() -> None:
    d = Driver([ok(body("captured"), 201)])
    d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY, keep_record=True))
    assert d.journal == {KEY: rec(payment_id="p-1")} and "Forget" not in d.log


def test_a_create_reply_naming_another_amount_is_a_mismatch_kept() -> None:
    d = Driver([ok(body("reserved", amount=2500, correlationId="c-9"), 201)])
    with pytest.raises(ProviderMismatch) as info:
        d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
    assert refs(info.value) == err(ProviderMismatch, correlation="c-9")
    assert "amount 2500, not 1000" in info.value.message
    assert d.sent == [CREATE] and d.saves == [rec(), rec(state="recheck")]
    for other in (body("reserved", currency="EUR"), body("reserved", orderId="o-2")):
        d = Driver([ok(other, 201)])
        with pytest.raises(ProviderMismatch):
            d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
        assert d.saves == [rec(), rec(state="recheck")]


def test_a_rejected_create_is_forgotten_with_every_reference() -> None:
    d = Driver([error(400, "invalid_amount")])
    with pytest.raises(RequestRejected) as info:
        d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
    assert refs(info.value) == err(RequestRejected, correlation="c-1", status=400,
                                   code="invalid_amount")  # fmt: skip
    assert info.value.message == "create refused with HTTP 400: invalid_amount"
    assert d.order == ["Save", "Call", "Forget"] and d.journal == {}


def test_a_refusal_after_an_unanswered_create_is_unknown_and_kept() -> None:
    d = Driver([TimedOut(), error(403, "forbidden")])
    with pytest.raises(OutcomeUnknown) as info:
        d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
    assert refs(info.value) == err(OutcomeUnknown, correlation="c-1", status=403, code="forbidden")
    assert info.value.message.startswith("create refused with HTTP 403 after an attempt")
    assert d.sent == [CREATE, CREATE] and d.saves == [rec(), rec(state="recheck")]


def test_an_unanswered_create_is_sent_again_with_its_key_and_settles() -> None:
    d = Driver([TimedOut(), TimedOut(), TimedOut(), ok(body("captured"), 201)])
    result = d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
    assert result.payment_id == "p-1" and d.sent == [CREATE] * 4
    assert d.saves == [rec(), rec(payment_id="p-1")] and d.journal == {}
    assert d.references() == {"o-1"}


def test_all_creates_unanswered_is_six_sends_then_unknown() -> None:
    d = Driver(lambda req, now: TimedOut())
    with pytest.raises(OutcomeUnknown) as info:
        d.run(pay("o-1", 1000, "DKK", ctx(retry=RetryPolicy(deadline=60.0)), key=KEY))
    assert d.sent == [CREATE] * 6  # MobilePay: at most 6 requests per operation
    assert refs(info.value) == err(OutcomeUnknown)
    assert info.value.message.startswith("create got no answer the client could use")
    assert d.saves == [rec(), rec(state="recheck")] and d.references() == {"o-1"}


def test_in_progress_forever_is_six_sends_then_unknown_with_its_correlation() -> None:
    d = Driver(lambda req, now: error(409, "request_in_progress"))
    with pytest.raises(OutcomeUnknown) as info:
        d.run(pay("o-1", 1000, "DKK", ctx(retry=RetryPolicy(deadline=60.0)), key=KEY))
    assert d.sent == [CREATE] * 6 and d.saves == [rec(), rec(state="recheck")]
    assert refs(info.value) == err(OutcomeUnknown, correlation="c-1")


def test_resends_are_paced_by_the_backoff_from_the_operation_start() -> None:
    policy = RetryPolicy(max_attempts=1, deadline=60.0, backoff=Backoff(Jitter.EXPONENTIAL, 0.1, 9))
    polling = PollSchedule(default_delay=0.05, min_delay=0.01)
    d = Driver([TimedOut(), error(409, "request_in_progress"), error(409, "request_in_progress"),
                error(409, "request_in_progress"), ok(body("captured"), 201)])  # fmt: skip
    d.run(pay("o-1", 1000, "DKK", ctx(retry=policy, polling=polling), key=KEY))
    assert d.sleeps == pytest.approx([0.1, 0.2, 0.4]) and d.sent == [CREATE] * 5
    # The pause is never shorter than the polling default delay.
    d = Driver([TimedOut(), error(409, "request_in_progress"), ok(body("captured"), 201)])
    d.run(pay("o-1", 1000, "DKK", ctx(retry=policy), key=KEY))
    assert d.sleeps == [1.0]
    # Decorrelated jitter grows from the previous pause.
    deco = Backoff(Jitter.DECORRELATED, 0.1, 9)
    d = Driver([TimedOut()] + [error(409, "request_in_progress")] * 3 + [ok(body("captured"), 201)])
    d.run(pay("o-1", 1000, "DKK", ctx(rng=8, retry=dataclasses.replace(policy, backoff=deco),
                                      polling=polling), key=KEY))  # fmt: skip
    r = random.Random(8)
    p1 = deco.delay(0, None, r)
    p2 = deco.delay(1, p1, r)
    p3 = deco.delay(2, p2, r)
    assert d.sleeps == [max(p, 0.05) for p in (p1, p2, p3)]


def test_a_resend_never_starts_that_could_not_finish_by_the_deadline() -> None:
    # Exact binary fractions: the create answers "in progress" at 0.25 s, the re-send
    # at 0.5 s; a pause of 0.25 s plus a 0.25 s attempt would end at 1 s, past the
    # 0.9375 s deadline.
    policy = RetryPolicy(
        max_attempts=1,
        deadline=0.9375,
        backoff=Backoff(Jitter.CONSTANT, 0.25, 0.25),
        min_attempt_timeout=0.25,
    )
    polling = PollSchedule(default_delay=0.25)
    d = Driver(lambda req, now: error(409, "request_in_progress"), latency=0.25)
    d.clock = 0.0
    with pytest.raises(OutcomeUnknown):
        d.run(pay("o-1", 1000, "DKK", ctx(retry=policy, polling=polling), key=KEY))
    assert d.sent == [CREATE, CREATE] and d.sleeps == []
    # One that could just finish *by* the deadline starts, as any retry may
    # (RetryPolicy.decide: the re-sends are the same loop), cut to the time left.
    d = Driver(lambda req, now: error(409, "request_in_progress"), latency=0.25)
    d.clock = 0.0
    with pytest.raises(OutcomeUnknown):
        d.run(pay("o-1", 1000, "DKK", ctx(retry=dataclasses.replace(policy, deadline=1.0),
                                          polling=polling), key=KEY))  # fmt: skip
    assert d.sent == [CREATE] * 3 and d.sleeps == [0.25]
    assert all(at + timeout <= 1.0 for at, _, timeout in d.calls)


def test_an_unreadable_create_reply_is_asked_again_not_believed() -> None:
    d = Driver([ok({}, 201), ok({"paymentId": "p-1"}, 201), ok(body("captured"), 201)])
    result = d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
    assert result.state == "captured" and d.sent == [CREATE] * 3


def test_a_resend_that_fails_is_followed_by_another() -> None:
    d = Driver([TimedOut(), NotSent(), TimedOut(), ok(body("captured"), 201)])
    pol = RetryPolicy(max_attempts=1, deadline=60.0, backoff=Backoff(Jitter.CONSTANT, 0.1, 0.1))
    assert d.run(pay("o-1", 1000, "DKK", ctx(retry=pol), key=KEY)).state == "captured"
    assert d.sent == [CREATE] * 4


def test_a_resend_refused_outright_leaves_it_to_the_recheck() -> None:
    for answer in (error(401, "unauthorized"), error(409, "conflict")):
        d = Driver([TimedOut(), TimedOut(), TimedOut(), answer])
        with pytest.raises(OutcomeUnknown):
            d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
        assert d.sent == [CREATE] * 4 and d.saves == [rec(), rec(state="recheck")]


def test_a_mismatched_resend_reply_is_a_mismatch() -> None:
    d = Driver([TimedOut(), TimedOut(), TimedOut(), ok(body("reserved", amount=5), 201)])
    with pytest.raises(ProviderMismatch):
        d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
    assert d.saves == [rec(), rec(state="recheck")]


def test_resends_take_the_retry_budget_as_retries_after_a_timeout_or_an_answer() -> None:
    flags: list[Any] = []

    class Spy(RetryBudget):
        def acquire_retry(self, after_timeout: bool = False) -> float | None:
            flags.append(after_timeout)
            return super().acquire_retry(after_timeout)

    aws = RetryBudget.aws_standard()
    one = RetryPolicy(max_attempts=1, deadline=60.0, backoff=Backoff(Jitter.CONSTANT, 0.1, 0.1))
    for script, want in [
        ([TimedOut(), TimedOut(), ok(body("captured"), 201)], [True, True]),
        ([TimedOut(), error(409, "request_in_progress"), ok(body("captured"), 201)],
         [True, False]),
        ([error(409, "request_in_progress"), TimedOut(), ok(body("captured"), 201)],
         [False, True]),
    ]:  # fmt: skip
        flags.clear()
        budget = Spy(**{f.name: getattr(aws, f.name) for f in dataclasses.fields(aws)})
        d = Driver(script)
        d.run(pay("o-1", 1000, "DKK", ctx(retry=one, budget=budget), key=KEY))
        assert flags == want


def test_a_keyless_unanswered_create_is_looked_up_by_its_order() -> None:
    d = Driver([TimedOut(), ok({"payments": [body("declined", pid="p-0"), body("reserved"),
                                             body("initiated", pid="p-2")]}),
                ok(body("captured"))])  # fmt: skip
    result = d.run(pay("o-1", 1000, "DKK", ctx(key_scope=KeyScope.NONE)))
    assert (result.payment_id, result.state) == ("p-1", "captured")
    assert d.sent == [(*CREATE[:3], None), LOOKUP, CAPTURE]
    # captured beats reserved beats initiated beats the rest
    for states, pick in [
        (["initiated", "captured"], 1),
        (["declined", "initiated"], 1),
        (["reserved", "captured"], 1),
        (["captured", "reserved"], 0),
        (["initiated", "reserved"], 1),
        (["expired", "cancelled"], 0),
    ]:
        found = {"payments": [body(s, pid=f"p-{i}") for i, s in enumerate(states)]}
        d = Driver(lambda req, now, found=found: ok(found) if req.operation == "lookup"
                   else TimedOut())  # fmt: skip
        flow = pay("o-1", 1000, "DKK", ctx(key_scope=KeyScope.NONE, capture=False,
                                           polling=PollSchedule(deadline=0.5)))  # fmt: skip
        with contextlib.suppress(PayflowError):
            d.run(flow)
        assert d.saves[1].payment_id == f"p-{pick}", states


def test_a_keyless_create_whose_lookup_fails_is_unknown() -> None:
    d = Driver([TimedOut(), error(500), error(500), error(500)])
    with pytest.raises(OutcomeUnknown):
        d.run(pay("o-1", 1000, "DKK", ctx(key_scope=KeyScope.NONE)))
    assert d.saves[-1].state == "recheck"
    d = Driver([TimedOut(), ok({"payments": [body("captured", orderId="o-9")]})])
    with pytest.raises(ProviderMismatch):
        d.run(pay("o-1", 1000, "DKK", ctx(key_scope=KeyScope.NONE)))
    d = Driver([TimedOut(), ok({"payments": []})])
    with pytest.raises(OutcomeUnknown):
        d.run(pay("o-1", 1000, "DKK", ctx(key_scope=KeyScope.NONE)))


# -- a 409 to a create -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "kept"),
    [([], False), (["declined", "cancelled", "expired"], False), (["initiated"], True),
     (["reserved"], True), (["captured"], True), (["declined", "captured"], True)],
)  # fmt: skip
def test_a_409_stands_only_if_no_payment_of_the_order_may_hold_money(
    states: list[str], kept: bool
) -> None:
    found = {"payments": [body(s, pid=f"p-{i}") for i, s in enumerate(states)]}
    d = Driver([error(409, "active_payment_on_pos"), ok(found)])
    with pytest.raises((ConflictError, OutcomeUnknown)) as info:
        d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
    assert d.sent == [CREATE, LOOKUP] and d.references() == {"o-1"}
    cls = OutcomeUnknown if kept else ConflictError
    assert refs(info.value) == err(cls, correlation="c-1", status=409, code="active_payment_on_pos")
    if kept:
        assert d.saves == [rec(), rec(state="recheck")]
        assert info.value.message.startswith("create answered 409 (active_payment_on_pos) but")
    else:
        assert d.order == ["Save", "Call", "Call", "Forget"] and d.journal == {}
        msg = "create answered 409 (active_payment_on_pos): active_payment_on_pos"
        assert info.value.message == msg


def test_a_409_conflict_message_and_code() -> None:
    for reply, msg in [
        (Response(409, {"message": "busy"}), "create answered 409: busy"),
        (Response(409, {"code": "", "message": ""}), "create answered 409: conflict"),
        (Response(409, {"message": "x" * 300}), "create answered 409: " + "x" * 200),
    ]:
        d = Driver([reply, ok({"payments": []})])
        with pytest.raises(ConflictError) as info:
            d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
        assert info.value.message == msg and info.value.code is None


def test_a_409_whose_lookup_fails_is_unknown() -> None:
    for lookup in ([error(404, "not_found")], [ok({"payments": [{}]})],
                   [error(503), error(503), error(503)]):  # fmt: skip
        d = Driver([error(409, "duplicate"), *lookup])
        with pytest.raises(OutcomeUnknown) as info:
            d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
        assert type(info.value) is OutcomeUnknown
        assert refs(info.value) == err(OutcomeUnknown, correlation="c-1", status=409,
                                       code="duplicate")  # fmt: skip
        assert isinstance(info.value.__cause__, PayflowError)
        assert info.value.message.startswith("create answered 409 (duplicate) and the order")
        assert d.saves == [rec(), rec(state="recheck")]


# -- settle: poll, capture, cancel -----------------------------------------------------------


@pytest.mark.parametrize(
    ("final", "cls"), [("declined", PaymentDeclined), ("expired", PaymentDeclined),
                       ("cancelled", PaymentCancelled)],
)  # fmt: skip
def test_a_confirmed_failure_forgets_and_says_which(final: str, cls: type) -> None:
    d = Driver([ok(body("initiated"), 201), ok(body(final))])
    with pytest.raises(cls) as info:
        d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
    assert type(info.value) is cls and refs(info.value) == err(cls, payment_id="p-1")
    assert info.value.message.endswith(final)
    assert d.order == ["Save", "Call", "Save", "Sleep", "Call", "Forget"] and d.journal == {}


def test_a_poll_answer_about_another_amount_is_a_mismatch_kept() -> None:
    d = Driver([ok(body("initiated"), 201), ok(body("reserved", amount=999))])
    with pytest.raises(ProviderMismatch) as info:
        d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
    assert refs(info.value)["type"] == "ProviderMismatch"
    assert d.saves == [rec(), rec(payment_id="p-1"), rec(payment_id="p-1", state="recheck")]
    for other in (body("reserved", orderId="o-2"), body("reserved", currency="SEK")):
        d = Driver([ok(body("initiated"), 201), ok(other)])
        with pytest.raises(ProviderMismatch):
            d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))


def test_a_refused_poll_is_unknown_with_the_payment_and_its_correlation() -> None:
    d = Driver([ok(body("initiated"), 201), error(404, "not_found")])
    with pytest.raises(OutcomeUnknown) as info:
        d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
    assert type(info.value) is OutcomeUnknown
    assert refs(info.value) == err(OutcomeUnknown, payment_id="p-1", correlation="c-1")
    assert isinstance(info.value.__cause__, RequestRejected) and info.value.message
    assert d.saves == [rec(), rec(payment_id="p-1"), rec(payment_id="p-1", state="recheck")]


def test_a_capture_is_sent_for_the_amount_and_checked() -> None:
    # The capture reply names another amount: a mismatch, kept.
    d = Driver([ok(body("reserved"), 201), ok(body("captured", amount=5))])
    with pytest.raises(ProviderMismatch):
        d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
    assert d.sent == [CREATE, CAPTURE] and d.saves[-1] == rec(payment_id="p-1", state="recheck")
    # A capture reply not understood, or not "captured": the status read decides.
    for reply in ({}, body("reserved")):
        d = Driver([ok(body("reserved"), 201), ok(reply), ok(body("captured"))])
        assert d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY)).state == "captured"
        assert d.sent == [CREATE, CAPTURE, STATUS]
    # Without capture, a reservation is the result.
    d = Driver([ok(body("reserved"), 201)])
    assert d.run(pay("o-1", 1000, "DKK", ctx(capture=False), key=KEY)).state == "reserved"
    assert d.sent == [CREATE]
    # A capture refused: the reservation stands, money is taken.
    d = Driver([ok(body("reserved"), 201), error(409), ok(body("reserved"))])
    assert d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY)).state == "reserved"
    assert d.journal == {}
    # A status read after the capture naming another order, amount or currency: kept.
    for other in (body("captured", amount=5), body("captured", orderId="o-2"),
                  body("captured", currency="EUR"), body("captured", pid="p-2")):  # fmt: skip
        d = Driver([ok(body("reserved"), 201), error(409), ok(other)])
        with pytest.raises(ProviderMismatch):
            d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
        assert d.saves[-1] == rec(payment_id="p-1", state="recheck")
        assert d.sent == [CREATE, CAPTURE, STATUS] and d.references() == {"o-1"}
    # The capture reply naming another order or currency is a mismatch too.
    for other in (body("captured", orderId="o-2"), body("captured", currency="EUR")):
        d = Driver([ok(body("reserved"), 201), ok(other)])
        with pytest.raises(ProviderMismatch):
            d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
    # A capture or cancel is safe to repeat: a timed-out one is sent again.
    d = Driver([ok(body("reserved"), 201), TimedOut(), ok(body("captured"))])
    assert d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY)).state == "captured"
    assert d.sent == [CREATE, CAPTURE, CAPTURE]
    d = Driver([TimedOut(), ok(body("cancelled"))])
    assert d.run(cancel("p-1", ctx(), "o-1")).state == "cancelled" and d.sent == [CANCEL] * 2
    # A reply describing an impossible change is not understood, and kept.
    d = Driver([ok(body("reserved"), 201), error(409), ok(body("initiated"))])
    with pytest.raises(ReplyNotUnderstood) as info:
        d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
    assert refs(info.value) == err(ReplyNotUnderstood, payment_id="p-1", key=None)
    assert "impossible change" in info.value.message
    assert d.saves[-1] == rec(payment_id="p-1", state="recheck")


def test_capture_and_status_on_their_own() -> None:
    d = Driver([ok(body("captured", correlationId="c-2"))])
    got = d.run(capture("p-1", 1000, ctx(), "o-1"))
    assert got == view("captured", correlation_id="c-2") and d.sent == [CAPTURE]
    assert d.references() == {"o-1"}
    d = Driver([ok(body("captured", amount=700))])
    with pytest.raises(ProviderMismatch):  # the reply is for another amount
        d.run(capture("p-1", 1000, ctx(), "o-1"))
    d = Driver([ok(body("captured", orderId="o-2"))])
    with pytest.raises(ProviderMismatch):
        d.run(capture("p-1", 1000, ctx(), "o-1", Expected("o-1")))
    d = Driver([ok(body("captured", amount=700))])  # an expectation given is kept
    assert d.run(capture("p-1", 700, ctx(), "o-1", Expected("o-1", 700))).amount == 700
    d = Driver([ok(body("captured", pid="p-2"))])
    with pytest.raises(ProviderMismatch):
        d.run(capture("p-1", 1000, ctx()))
    d = Driver([ok({}), ok(body("captured"))])
    assert d.run(capture("p-1", 1000, ctx())).state == "captured"
    d = Driver([ok(body("reserved", orderId="o-2"))])
    with pytest.raises(ProviderMismatch) as info:
        d.run(status("p-1", ctx(), "o-1", Expected("o-1")))
    assert refs(info.value) == err(ProviderMismatch, payment_id="p-1", key=None)
    assert "status reply names order" in info.value.message
    d = Driver([ok({"paymentId": "p-1"}, headers={"x-correlation-id": "c-5"})])
    d = Driver([Response(200, {"paymentId": "p-1"}, {"x-correlation-id": "c-5"})])
    with pytest.raises(ReplyNotUnderstood) as info2:
        d.run(status("p-1", ctx(), "o-1"))
    assert refs(info2.value) == err(ReplyNotUnderstood, payment_id="p-1", key=None,
                                    correlation="c-5")  # fmt: skip
    assert "status reply" in info2.value.message
    d = Driver([error(404, "not_found")])
    with pytest.raises(RequestRejected) as info3:
        d.run(status("p-1", ctx(), "o-1"))
    assert refs(info3.value) == err(RequestRejected, payment_id="p-1", key=None,
                                    correlation="c-1", status=404, code="not_found")  # fmt: skip
    assert info3.value.message == "status refused with HTTP 404: not_found"
    assert d.sent == [STATUS]
    d = Driver([error(404)])
    with pytest.raises(RequestRejected) as info3:
        d.run(status("p-1", ctx()))
    assert info3.value.reference is None


def test_cancel_believes_only_a_confirmed_cancel_of_this_payment() -> None:
    d = Driver([ok(body("cancelled"))])
    assert d.run(cancel("p-1", ctx(), "o-1")) == view("cancelled") and d.sent == [CANCEL]
    assert d.references() == {"o-1"}
    for reply in (body("cancelled", pid="p-2"), body("cancelled", amount=5)):
        d = Driver([ok(reply)])
        with pytest.raises(ProviderMismatch):
            d.run(cancel("p-1", ctx(), "o-1", Expected("o-1", 1000, "DKK")))
    for reply in ({}, body("reserved")):
        d = Driver([ok(reply), ok(body("reserved"))])
        got = d.run(cancel("p-1", ctx(), "o-1", Expected("o-1", 1000, "DKK")))
        assert got == view("reserved") and d.sent == [CANCEL, STATUS]
    d = Driver([error(409), ok(body("reserved", amount=5))])
    with pytest.raises(ProviderMismatch):
        d.run(cancel("p-1", ctx(), "o-1", Expected("o-1", 1000, "DKK")))
    d = Driver([TimedOut()] * 3 + [error(404, "gone")])
    with pytest.raises(OutcomeUnknown) as info:
        d.run(cancel("p-1", ctx(), "o-1"))
    assert type(info.value) is OutcomeUnknown and info.value.message
    assert refs(info.value) == err(OutcomeUnknown, payment_id="p-1", key=None, correlation="c-1")
    d = Driver([error(409), error(404)])
    with pytest.raises(OutcomeUnknown) as info:
        d.run(cancel("p-1", ctx()))
    assert info.value.reference is None
    d = Driver([error(409), error(404)])
    with pytest.raises(OutcomeUnknown):
        d.run(cancel("p-1", ctx(), "o-1"))
    assert d.references() == {"o-1"}
    d = Driver([error(409), error(404, "gone")])
    with pytest.raises(RequestRejected) as info2:
        d.run(capture("p-1", 1000, ctx(), "o-1"))
    assert refs(info2.value) == err(RequestRejected, payment_id="p-1", key=None,
                                    correlation="c-1", status=404, code="gone")  # fmt: skip
    assert d.references() == {"o-1"}
    d = Driver([ok(body("reserved", pid="p-2"))])
    with pytest.raises(ProviderMismatch):
        d.run(status("p-1", ctx(), "o-1"))
    d = Driver([error(404, "nope")])
    with pytest.raises(RequestRejected) as info2:
        d.run(find_payments("o-1", ctx()))
    assert refs(info2.value) == err(RequestRejected, key=None, correlation="c-1", status=404,
                                    code="nope")  # fmt: skip
    assert info2.value.message == "lookup refused with HTTP 404: nope"
    for reply, msg in [(Response(400, {"message": 5}), "create refused with HTTP 400"),
                       (Response(400, {"message": "m" * 300}),
                        "create refused with HTTP 400: " + "m" * 200)]:  # fmt: skip
        d = Driver([reply])
        with pytest.raises(RequestRejected) as info2:
            d.run(pay("o-1", 1000, "DKK", ctx(), key=KEY))
        assert info2.value.message == msg


def test_polling_gives_up_by_cancelling_then_keeps_what_is_not_confirmed() -> None:
    polling = PollSchedule(deadline=0.5, default_delay=0.2)
    # The cancel confirmed: cancelled and forgotten.
    d = Driver(lambda req, now: ok(body("cancelled")) if req.operation == "cancel"
               else ok(body("initiated"), 201 if req.operation == "create" else 200))  # fmt: skip
    with pytest.raises(PaymentCancelled):
        d.run(pay("o-1", 1000, "DKK", ctx(polling=polling), key=KEY))
    assert d.ops[-1] == "cancel" and d.sent[-1] == CANCEL and d.journal == {}
    assert d.references() == {"o-1"}
    # The cancel reply names another order, amount or currency: a mismatch, kept.
    for other in (body("cancelled", amount=5), body("cancelled", orderId="o-2"),
                  body("cancelled", currency="EUR")):  # fmt: skip

        def provider(req: Request, now: float, other: Any = other) -> Any:
            if req.operation == "cancel":
                return ok(other)
            return ok(body("initiated"), 201 if req.operation == "create" else 200)

        d = Driver(provider)
        with pytest.raises(ProviderMismatch):
            d.run(pay("o-1", 1000, "DKK", ctx(polling=polling), key=KEY))
        assert d.saves[-1] == rec(payment_id="p-1", state="recheck")
    # Cancel unanswered and the read fails: unknown, kept.
    d = Driver(lambda req, now: TimedOut() if req.operation in ("cancel", "status")
               else ok(body("initiated"), 201 if req.operation == "create" else 200))  # fmt: skip
    with pytest.raises(OutcomeUnknown) as info:
        d.run(pay("o-1", 1000, "DKK", ctx(polling=polling), key=KEY))
    assert refs(info.value) == err(OutcomeUnknown, payment_id="p-1")
    assert info.value.message.startswith("polling deadline reached")
    assert d.saves[-1] == rec(payment_id="p-1", state="recheck")
    # Still initiated after a cancel not confirmed: unknown, kept.
    d = Driver(lambda req, now: error(409) if req.operation == "cancel"
               else ok(body("initiated"), 201 if req.operation == "create" else 200))  # fmt: skip
    with pytest.raises(OutcomeUnknown):
        d.run(pay("o-1", 1000, "DKK", ctx(polling=polling), key=KEY))
    assert d.saves[-1] == rec(payment_id="p-1", state="recheck")


# -- refund ----------------------------------------------------------------------------------


def rrec(**changes: Any) -> PendingRecord:
    base = PendingRecord("rf-1", "rk", "refund", 500, "EUR", T0, "p-1")
    return dataclasses.replace(base, **changes)


def test_a_refund_is_saved_sent_and_forgotten_exactly() -> None:
    d = Driver([ok(refunded(500, "rf-1"), 201)])
    got = d.run(refund("p-1", 500, "rf-1", ctx(), key="rk", currency="EUR"))
    assert got == Refund("r-1", "p-1", 500, "rf-1", "completed")
    assert d.sent == [refund_req(500, "rf-1")] and d.saves == [rrec()] and d.firsts == [False]
    assert d.order == ["Save", "Call", "Forget"] and d.journal == {}
    assert d.references() == {"rf-1"}
    d = Driver([ok(refunded(500, "rf-1"), 201)])
    d.run(refund("p-1", 500, "rf-1", ctx()))
    assert d.sent == [refund_req(500, "rf-1", refund_key("p-1", "rf-1"))]
    assert d.saves == [rrec(idempotency_key=refund_key("p-1", "rf-1"), currency="DKK")]


def test_refund_checks_its_arguments_first() -> None:
    for args, field in [(("..", 500, "rf-1"), "payment_id"), (("p-1", 0, "rf-1"), "amount"),
                        (("p-1", 500, "a b"), "reference")]:  # fmt: skip
        d = Driver([])
        with pytest.raises(InvalidRequest) as info:
            d.run(refund(*args, ctx()))
        assert info.value.field == field and d.log == []
    with pytest.raises(InvalidRequest):
        Driver([]).run(refund("p-1", 500, "rf-1", ctx(), key="a b"))


def test_a_refund_not_understood_or_about_another_refund_is_kept() -> None:
    for reply, cls in [({}, ReplyNotUnderstood), (refunded(400, "rf-1"), ProviderMismatch),
                       (refunded(500, "rf-9"), ProviderMismatch),
                       (refunded(500, "rf-1", pid="p-2"), ProviderMismatch)]:  # fmt: skip
        d = Driver([Response(201, reply, {"x-correlation-id": "c-4"})])
        with pytest.raises(cls) as info:
            d.run(refund("p-1", 500, "rf-1", ctx(), key="rk", currency="EUR"))
        assert refs(info.value) == err(cls, reference="rf-1", payment_id="p-1", key="rk",
                                       correlation="c-4")  # fmt: skip
        assert info.value.message.startswith("the refund reply")
        assert d.saves == [rrec(), rrec(state="recheck")] and "Forget" not in d.log


def test_a_refund_never_sent_is_forgotten_an_unanswered_one_kept() -> None:
    d = Driver(lambda req, now: NotSent())
    with pytest.raises(ProviderUnavailable):
        d.run(refund("p-1", 500, "rf-1", ctx(), key="rk", currency="EUR"))
    assert d.saves == [rrec()] and d.order[-1] == "Forget" and d.journal == {}
    d = Driver(lambda req, now: TimedOut())
    with pytest.raises(OutcomeUnknown) as info:
        d.run(refund("p-1", 500, "rf-1", ctx(), key="rk", currency="EUR"))
    assert d.saves == [rrec(), rrec(state="recheck")]
    assert refs(info.value) == err(OutcomeUnknown, reference="rf-1", key="rk")


def test_a_refused_refund() -> None:
    d = Driver([error(400, "invalid")])
    with pytest.raises(RequestRejected) as info:
        d.run(refund("p-1", 500, "rf-1", ctx(), key="rk", currency="EUR"))
    assert refs(info.value) == err(RequestRejected, reference="rf-1", payment_id="p-1", key="rk",
                                   correlation="c-1", status=400, code="invalid")  # fmt: skip
    assert info.value.message == "refund refused with HTTP 400: invalid"
    assert d.saves == [rrec()] and d.order == ["Save", "Call", "Forget"] and d.journal == {}
    # The same refusal after an unanswered attempt: the first may have landed.
    d = Driver([TimedOut(), error(400, "invalid")])
    with pytest.raises(OutcomeUnknown) as info:
        d.run(refund("p-1", 500, "rf-1", ctx(), key="rk", currency="EUR"))
    assert type(info.value) is OutcomeUnknown
    assert refs(info.value) == err(OutcomeUnknown, reference="rf-1", payment_id="p-1", key="rk",
                                   correlation="c-1", status=400, code="invalid")  # fmt: skip
    assert info.value.message.startswith("refund refused with HTTP 400 after an attempt")
    assert d.saves == [rrec(), rrec(state="recheck")] and "Forget" not in d.log


@pytest.mark.parametrize(
    ("payment", "explained"),
    [(body("declined", amount=500), True), (body("initiated", amount=500), True),
     (body("captured", amount=500, refundedAmount=1), True),
     (body("captured", amount=500), False),
     (body("reserved", amount=600, refundedAmount=100), False),
     (body("captured", amount=900, refundedAmount=100), False)],
)  # fmt: skip
def test_a_409_to_a_refund_stands_only_if_the_payment_cannot_be_refunded_that_much(
    payment: dict[str, Any], explained: bool
) -> None:
    d = Driver([error(409, "refund_exceeds"), ok(payment | {"orderId": "o-7"})])
    with pytest.raises((ConflictError, OutcomeUnknown)) as info:
        d.run(refund("p-1", 500, "rf-1", ctx(), key="rk", currency="EUR"))
    assert d.sent == [refund_req(500, "rf-1"), STATUS] and d.references() == {"rf-1"}
    cls = ConflictError if explained else OutcomeUnknown
    assert refs(info.value) == err(
        cls,
        reference="rf-1",
        payment_id="p-1",
        key="rk",
        correlation="c-1",
        status=409,
        code="refund_exceeds",
    )
    if explained:
        assert d.saves == [rrec()] and d.order == ["Save", "Call", "Call", "Forget"]
        assert d.journal == {}
        left = payment["amount"] - payment.get("refundedAmount", 0)
        assert f"({payment['state']}, {left} left to refund)" in info.value.message
    else:
        assert d.saves == [rrec(), rrec(state="recheck")] and "Forget" not in d.log
        assert info.value.message.startswith("refund answered 409 (refund_exceeds) but")


def test_a_409_to_a_refund_whose_payment_cannot_be_read_is_kept() -> None:
    for read in ([error(404)], [ok({})], [TimedOut()] * 3):
        d = Driver([Response(409, {}), *read])
        with pytest.raises(OutcomeUnknown) as info:
            d.run(refund("p-1", 500, "rf-1", ctx(), key="rk", currency="EUR"))
        assert type(info.value) is OutcomeUnknown and info.value.code is None
        assert info.value.message.startswith("refund answered 409 but")
        assert d.saves == [rrec(), rrec(state="recheck")]


# -- recheck ---------------------------------------------------------------------------------


def run_recheck(script: Any, record: PendingRecord, **policy: Any) -> tuple[Driver, Any]:
    d = Driver(script)
    d.journal[record.idempotency_key] = record
    return d, d.run(recheck(record, ctx(**policy)))


def test_recheck_cancels_a_pending_payment_and_forgets_it() -> None:
    d, got = run_recheck([ok(body("initiated")), ok(body("cancelled"))], rec(payment_id="p-1"))
    assert got == RecheckResult("o-1", "pay", "cancelled", "cancelled", ("p-1",), 0)
    assert d.sent == [STATUS, CANCEL] and d.order == ["Call", "Call", "Forget"]
    assert d.journal == {} and d.references() == {"o-1"}
    # The cancel lost the race to a decline: forgotten, not "cancelled".
    d, got = run_recheck([ok(body("initiated")), error(409), ok(body("declined"))],
                         rec(payment_id="p-1"))  # fmt: skip
    assert (got.action, got.state) == ("forgotten", "declined") and d.journal == {}
    # Already cancelled: forgotten.
    d, got = run_recheck([ok(body("cancelled"))], rec(payment_id="p-1"))
    assert got == RecheckResult("o-1", "pay", "forgotten", "cancelled", ("p-1",), 0)


def test_recheck_checks_the_payment_against_the_record() -> None:
    for other in (body("initiated", amount=5), body("initiated", currency="EUR"),
                  body("initiated", orderId="o-2")):  # fmt: skip
        d, got = run_recheck([ok(other)], rec(payment_id="p-1"))
        assert got == RecheckResult("o-1", "pay", "kept", "mismatch", ("p-1",))
        assert d.journal == {KEY: rec(payment_id="p-1", state="recheck")} and d.sent == [STATUS]
    # The cancel reply is checked against the payment found.
    for other in (body("cancelled", amount=5), body("cancelled", orderId="o-2"),
                  body("cancelled", currency="EUR")):  # fmt: skip
        d, got = run_recheck([ok(body("initiated")), ok(other)], rec(payment_id="p-1"))
        assert (got.action, got.state) == ("kept", "mismatch")


def test_recheck_polls_a_pending_payment_when_told_to() -> None:
    polling = PollSchedule(deadline=2.0, default_delay=0.5)
    d, got = run_recheck([ok(body("initiated", pollDelayInMs=100)), ok(body("initiated")),
                          ok(body("declined"))], rec(payment_id="p-1"), recover_pending="poll",
                         polling=polling)  # fmt: skip
    assert got == RecheckResult("o-1", "pay", "forgotten", "declined", ("p-1",), 0)
    assert d.sent == [STATUS, STATUS, STATUS] and d.ops == ["status", "poll", "poll"]
    assert d.sleeps == [0.5, 0.5] and d.references() == {"o-1"}  # from the schedule
    d, got = run_recheck([ok(body("initiated")), ok(body("declined", amount=5))],
                         rec(payment_id="p-1"), recover_pending="poll")  # fmt: skip
    assert (got.action, got.state) == ("kept", "mismatch")
    # Polling to its deadline, then cancelled.
    d, got = run_recheck(lambda req, now: ok(body("cancelled")) if req.operation == "cancel"
                         else ok(body("initiated")), rec(payment_id="p-1"),
                         recover_pending="poll", polling=polling)  # fmt: skip
    assert (got.action, d.ops[-1]) == ("cancelled", "cancel") and d.journal == {}
    assert d.references() == {"o-1"}
    d, got = run_recheck(
        lambda req, now: (
            ok(body("cancelled", amount=3)) if req.operation == "cancel" else ok(body("initiated"))
        ),
        rec(payment_id="p-1"),
        recover_pending="poll",
        polling=polling,
    )
    assert (got.action, got.state) == ("kept", "mismatch")


def test_recheck_keeps_a_payment_still_pending_after_its_cancel() -> None:
    d, got = run_recheck([ok(body("initiated")), error(409), ok(body("initiated"))],
                         rec(payment_id="p-1"))  # fmt: skip
    assert got == RecheckResult("o-1", "pay", "kept", "unknown", ("p-1",))
    assert d.journal == {KEY: rec(payment_id="p-1", state="recheck")}


def test_recheck_refunds_what_is_left_with_a_key_derived_from_the_record() -> None:
    key = derived_key("refund", KEY, "p-1")
    d, got = run_recheck([ok(body("captured", refundedAmount=300)), ok(refunded(700), 201)],
                         rec(payment_id="p-1"))  # fmt: skip
    assert got == RecheckResult("o-1", "pay", "refunded", "captured", ("p-1",), 700)
    assert d.sent == [STATUS, refund_req(700, "o-1", key)]
    assert d.saves == [PendingRecord("o-1", key, "refund", 700, "DKK", T0 + 0.01, "p-1")]
    assert d.journal == {} and d.order == ["Call", "Save", "Call", "Forget", "Forget"]
    # A reservation in another currency is refunded in its currency.
    d, got = run_recheck([ok(body("reserved", currency="EUR")), ok(refunded(1000), 201)],
                         rec(payment_id="p-1", currency="EUR"))  # fmt: skip
    assert d.saves[0].currency == "EUR" and got.refunded_amount == 1000
    # Fully refunded already: nothing sent, forgotten as refunded.
    d, got = run_recheck([ok(body("captured", refundedAmount=1000))], rec(payment_id="p-1"))
    assert got == RecheckResult("o-1", "pay", "refunded", "captured", ("p-1",), 0)
    assert d.sent == [STATUS] and d.journal == {}
    # One unit left is refunded.
    d, got = run_recheck([ok(body("captured", refundedAmount=999)), ok(refunded(1), 201)],
                         rec(payment_id="p-1"))  # fmt: skip
    assert got.refunded_amount == 1
    # Two payments found by lookup: each settled, the sum refunded.
    found = {
        "payments": [body("captured"), body("reserved", pid="p-2"), body("declined", pid="p-3")]
    }
    d, got = run_recheck([ok(found), ok(refunded(1000), 201), ok(refunded(1000, pid="p-2"), 201)],
                         rec(key_sent=False))  # fmt: skip
    assert got == RecheckResult("o-1", "pay", "refunded", "captured,reserved,declined",
                                ("p-1", "p-2", "p-3"), 2000)  # fmt: skip
    assert d.sent[0] == LOOKUP and [s[2]["paymentId"] for s in d.sent[1:]] == ["p-1", "p-2"]  # type: ignore[index]


def test_recheck_reports_money_taken_and_keeps_it() -> None:
    d, got = run_recheck([ok(body("reserved")), ok(body("captured"))], rec(payment_id="p-1"),
                         refund_unclaimed=False)  # fmt: skip
    assert got == RecheckResult("o-1", "pay", "reported", "captured", ("p-1",), 0)
    assert d.sent == [STATUS, CAPTURE]
    assert d.journal == {KEY: rec(payment_id="p-1", state="reported")}
    # Its own payment by the key (no payment id yet) is captured too.
    d, got = run_recheck([ok(body("reserved"), 201), ok(body("captured"))], rec(),
                         refund_unclaimed=False)  # fmt: skip
    assert (got.action, d.sent) == ("reported", [CREATE, CAPTURE])
    # A capture reply naming another order, amount or currency: a mismatch, kept.
    for other in (body("captured", amount=4), body("captured", orderId="o-2"),
                  body("captured", currency="EUR")):  # fmt: skip
        d, got = run_recheck([ok(body("reserved")), ok(other)], rec(payment_id="p-1"),
                             refund_unclaimed=False)  # fmt: skip
        assert (got.action, got.state) == ("kept", "mismatch") and d.references() == {"o-1"}
    # Every payment found is settled, not only the first reported.
    found = {"payments": [body("captured"), body("declined", pid="p-2")]}
    d, got = run_recheck([ok(found)], rec(key_sent=False), refund_unclaimed=False)
    assert got == RecheckResult("o-1", "pay", "reported", "captured,declined", ("p-1", "p-2"), 0)
    # A capture not confirmed: kept, naming the payment.
    d, got = run_recheck([ok(body("reserved")), error(409), ok(body("reserved"))],
                         rec(payment_id="p-1"), refund_unclaimed=False)  # fmt: skip
    assert got == RecheckResult("o-1", "pay", "kept", "unknown", ("p-1",))


def test_recheck_without_payment_id_replays_the_create_exactly() -> None:
    d, got = run_recheck([ok(body("initiated"), 201), ok(body("cancelled"))], rec())
    assert got == RecheckResult("o-1", "pay", "cancelled", "cancelled", ("p-1",), 0)
    assert d.sent == [CREATE, CANCEL] and d.references() == {"o-1"}
    for other in (body("initiated", amount=5), body("initiated", currency="EUR"),
                  body("initiated", orderId="o-2")):  # fmt: skip
        d, got = run_recheck([ok(other, 201)], rec())
        assert got == RecheckResult("o-1", "pay", "kept", "mismatch", ())
    d, got = run_recheck([ok({}, 201)], rec())
    assert got == RecheckResult("o-1", "pay", "kept", "unknown", ())
    d, got = run_recheck([error(409, "request_in_progress")], rec())
    assert got == RecheckResult("o-1", "pay", "kept", "unknown", ()) and d.sent == [CREATE]
    assert d.journal == {KEY: rec(state="recheck")}


@pytest.mark.parametrize("status_code", [409, 422])
def test_recheck_of_a_refused_replay_asks_the_orders_payments(status_code: int) -> None:
    d, got = run_recheck([error(status_code, "dup"), ok({"payments": [body("declined")]})], rec())
    assert got == RecheckResult("o-1", "pay", "forgotten", "none", (), 0)
    assert d.sent == [CREATE, LOOKUP] and d.journal == {} and d.references() == {"o-1"}
    d, got = run_recheck([error(status_code, "dup"), ok({"payments": [body("captured")]})], rec())
    assert got == RecheckResult("o-1", "pay", "kept", "unknown", ())
    d, got = run_recheck([error(status_code), ok({"payments": [body("captured", orderId="x")]})],
                         rec())  # fmt: skip
    assert (got.action, d.journal) == ("kept", {KEY: rec(state="recheck")})


@pytest.mark.parametrize("status_code", [401, 403, 404, 410, 423])
def test_recheck_keeps_a_record_whose_replay_is_refused_for_no_reason_of_its_own(
    status_code: int,
) -> None:
    d, got = run_recheck([error(status_code)], rec())
    assert got == RecheckResult("o-1", "pay", "kept", "unknown", ())
    assert d.sent == [CREATE] and d.journal == {KEY: rec(state="recheck")}


def test_recheck_of_a_keyless_record_looks_the_order_up() -> None:
    d, got = run_recheck([ok({"payments": [body("initiated")]}), ok(body("cancelled"))],
                         rec(key_sent=False))  # fmt: skip
    assert got == RecheckResult("o-1", "pay", "cancelled", "cancelled", ("p-1",), 0)
    assert d.sent == [LOOKUP, CANCEL]
    # A reservation found by lookup is reported as it is, never captured.
    d, got = run_recheck([ok({"payments": [body("reserved")]})], rec(key_sent=False),
                         refund_unclaimed=False)  # fmt: skip
    assert (got.action, got.state, d.sent) == ("reported", "reserved", [LOOKUP])
    d, got = run_recheck([ok({"payments": []})], rec(key_sent=False))
    assert got == RecheckResult("o-1", "pay", "forgotten", "none", (), 0) and d.journal == {}


def test_recheck_of_a_payment_the_provider_does_not_know() -> None:
    d, got = run_recheck([error(404), ok(body("declined", pid="p-2"), 201)], rec(payment_id="p-1"))
    assert got == RecheckResult("o-1", "pay", "forgotten", "declined", ("p-2",), 0)
    assert d.sent == [STATUS, CREATE]
    # The replay names the very payment the provider said it does not know.
    d, got = run_recheck([error(404), ok(body("declined"), 201)], rec(payment_id="p-1"))
    assert got == RecheckResult("o-1", "pay", "kept", "unknown", ("p-1",))
    # Another refusal of the read keeps the record.
    d, got = run_recheck([error(403)], rec(payment_id="p-1"))
    assert got == RecheckResult("o-1", "pay", "kept", "unknown", ("p-1",)) and d.sent == [STATUS]


def test_recheck_of_a_refund() -> None:
    r = rrec(state="recheck")
    d, got = run_recheck([ok(refunded(500, "rf-1"), 201)], r)
    assert got == RecheckResult("rf-1", "refund", "refunded", "completed", ("p-1",), 500)
    assert d.sent == [refund_req(500, "rf-1")] and d.saves == [rrec()] and d.journal == {}
    # A 409 the payment explains: forgotten.
    d, got = run_recheck([error(409), ok(body("declined", amount=500))], r)
    assert got == RecheckResult("rf-1", "refund", "forgotten", "conflict", (), 0)
    assert d.journal == {} and d.order[-1] == "Forget"
    # Unanswered: kept.
    d, got = run_recheck(lambda req, now: TimedOut(), r)
    assert got == RecheckResult("rf-1", "refund", "kept", "unknown", ("p-1",))
    assert d.journal == {"rk": rrec(state="recheck")}
    d, got = run_recheck([ok(refunded(400, "rf-1"), 201)], r)
    assert got == RecheckResult("rf-1", "refund", "kept", "mismatch", ("p-1",))
    # A record without a payment id cannot be refunded: kept.
    d, got = run_recheck([], rrec(payment_id=None))
    assert got == RecheckResult("rf-1", "refund", "kept", "unknown", ())


# -- a call: retried, classified, given up ---------------------------------------------------


KEYED = api.create_payment("o-1", 1000, "DKK", KEY)
KEYLESS = api.create_payment("o-1", 1000, "DKK", None)
READ = api.get_payment("p-1", polling=False)


def run_call(script: Any, request: Request = KEYED, **kw: Any) -> tuple[Driver, Any]:
    d = Driver(script, oversleep=kw.pop("oversleep", 0.0))
    try:
        resp, sent = d.run(call(request, ctx(**kw), "o-1"))
    except PayflowError as exc:
        return d, exc
    assert sent == len(d.calls)  # the call reports every request it sent
    return d, resp


@pytest.mark.parametrize(
    ("script", "request_", "want"),
    [
        ([NotSent()] * 3, KEYED, err(ProviderUnavailable)),
        ([TimedOut(), NotSent(), NotSent()], KEYED, err(OutcomeUnknown)),
        ([error(503), NotSent(), NotSent()], KEYED, err(OutcomeUnknown)),
        ([NotSent(), NotSent(), error(500)], KEYED,
         err(OutcomeUnknown, correlation="c-1", status=500, code=None)),
        ([error(429, **{"Retry-After": "0"})] * 3, KEYED,
         err(ProviderUnavailable, correlation="c-1", status=429)),
        ([error(503)], KEYLESS, err(OutcomeUnknown, key=None, correlation="c-1", status=503)),
        ([TimedOut()], KEYLESS, err(OutcomeUnknown, key=None)),
        ([TimedOut()] * 3, READ, err(ProviderUnavailable, key=None)),
        ([error(502)] * 3, READ, err(ProviderUnavailable, key=None, correlation="c-1", status=502)),
    ],
)  # fmt: skip
def test_what_giving_up_on_a_call_means(script: Any, request_: Request, want: Any) -> None:
    d, exc = run_call(script, request_)
    assert refs(exc) == want and len(d.calls) == len(script)
    assert exc.message.startswith(f"{request_.operation}: ")
    assert d.references() == {"o-1"}


def test_a_call_measures_its_deadline_from_its_own_start() -> None:
    policy = RetryPolicy(deadline=3.0, backoff=Backoff(Jitter.CONSTANT, 0.5, 0.5))
    d, exc = run_call([TimedOut(), TimedOut(), TimedOut()], retry=policy)
    assert [c[2] for c in d.calls] == [2.0, 0.5] and type(exc) is OutcomeUnknown
    # A sleep that overran leaves no time for another attempt: given up, nothing more sent.
    policy = RetryPolicy(deadline=3.0, backoff=Backoff(Jitter.CONSTANT, 0.5, 0.5))
    d, exc = run_call([NotSent(), NotSent()], retry=policy, oversleep=2.6)
    assert len(d.calls) == 1 and refs(exc) == err(ProviderUnavailable)
    assert exc.message == "create: provider unavailable (deadline)"
    d, exc = run_call([TimedOut(), NotSent()], retry=policy, oversleep=2.0)
    assert len(d.calls) == 1 and refs(exc) == err(OutcomeUnknown)


def test_a_call_paces_its_retries() -> None:
    expo = RetryPolicy(deadline=60.0, backoff=Backoff(Jitter.EXPONENTIAL, 0.5, 8.0))
    d, resp = run_call([TimedOut(), TimedOut(), ok(body("initiated"), 201)], retry=expo)
    assert d.sleeps == [0.5, 1.0] and resp.status == 201
    deco = RetryPolicy(deadline=60.0, backoff=Backoff(Jitter.DECORRELATED, 0.5, 8.0))
    d, resp = run_call([TimedOut(), TimedOut(), ok(body("initiated"), 201)], retry=deco, rng=4)
    r = random.Random(4)
    first = deco.backoff.delay(0, None, r)
    assert d.sleeps == [first, deco.backoff.delay(1, first, r)]
    none = RetryPolicy(deadline=60.0, backoff=Backoff(Jitter.NONE, 0, 0))
    d, resp = run_call([TimedOut(), ok(body("initiated"), 201)], retry=none)
    assert d.sleeps == [] and "Sleep" not in d.log
    small = RetryPolicy(deadline=60.0, backoff=Backoff(Jitter.CONSTANT, 0.5, 0.5))
    d, resp = run_call([TimedOut(), ok(body("initiated"), 201)], retry=small)
    assert d.sleeps == [0.5]


def test_a_call_refunds_the_retry_budget_it_spent_on_success() -> None:
    budget = RetryBudget.aws_standard()
    _, resp = run_call([TimedOut(), error(503), ok(body("initiated"), 201)], budget=budget)
    assert budget.tokens == budget.max_tokens and resp.status == 201
    spent = RetryBudget.aws_standard()
    spent.tokens = 100.0
    _d, resp = run_call([TimedOut(), error(503), ok(body("initiated"), 201)], budget=spent)
    assert spent.tokens == 100.0


def test_classify_and_decide_on_the_edges() -> None:
    assert classify(KEYED, Response(300)) is Verdict.REJECTED
    assert classify(KEYED, Response(299)) is Verdict.SUCCESS
    assert classify(KEYLESS, TimedOut(), retry_unsafe=True) is Verdict.RETRYABLE
    pol = RetryPolicy(deadline=10.0, backoff=Backoff(Jitter.CONSTANT, 0.5, 0.5),
                      min_attempt_timeout=0.5, max_server_delay=5.0)  # fmt: skip
    rng = random.Random(1)

    def decide(outcome: Any, attempt: int = 1, elapsed: float = 0.0, policy: RetryPolicy = pol,
               **kw: Any) -> Any:  # fmt: skip
        request = kw.pop("request", KEYED)
        return policy.decide(request, outcome, attempt=attempt, elapsed=elapsed,
                             previous_delay=None, rng=rng, **kw)  # fmt: skip

    assert decide(Response(200)) == Done(Response(200), Verdict.SUCCESS)
    assert decide(Response(300)) == Done(Response(300), Verdict.REJECTED)
    assert decide(Response(409)) == Done(Response(409), Verdict.OUT_OF_SYNC)
    assert decide(Response(500), attempt=3) == GiveUp("attempts", Response(500), True)
    assert decide(Response(503), attempt=3) == GiveUp("attempts", Response(503), True)
    assert decide(Response(500), request=KEYLESS) == GiveUp("unknown", Response(500), True)
    assert decide(NotSent(), attempt=3) == GiveUp("attempts", NotSent(), False)
    assert decide(TimedOut()) == RetryAfter(0.5, "timeout", False, 0.0)
    assert decide(NotSent()) == RetryAfter(0.5, "not-sent", False, 0.0)
    # The deadline: an attempt that could just finish by it is allowed.
    assert decide(TimedOut(), elapsed=9.0) == RetryAfter(0.5, "timeout", False, 0.0)
    assert decide(TimedOut(), elapsed=9.25) == GiveUp("deadline", TimedOut(), True)
    # The server's delay: honoured up to max_server_delay, and only if it ends before the deadline.
    five = Response(429, headers={"Retry-After": "5"})
    assert decide(five) == RetryAfter(5.0, "http-429", True, 0.0)
    assert decide(Response(429, headers={"Retry-After": "6"})) == GiveUp(
        "server-delay", Response(429, headers={"Retry-After": "6"}), False
    )
    assert decide(five, elapsed=5.0) == GiveUp("server-delay", five, False)
    assert decide(five, elapsed=4.5) == RetryAfter(5.0, "http-429", True, 0.0)
    assert decide(five, elapsed=4.75) == GiveUp("deadline", five, False)
    # The retry budget: a retry after a timeout costs more; an empty budget stops.
    aws = RetryBudget.aws_standard()
    assert decide(TimedOut(), budget=aws) == RetryAfter(0.5, "timeout", False, 10.0)
    assert decide(error(503), budget=aws) == RetryAfter(0.5, "http-503", False, 5.0)
    aws.tokens = 1.0
    assert decide(error(503), budget=aws) == GiveUp("budget", error(503), True)
    assert decide(error(429), budget=aws) == GiveUp("budget", error(429), False)
    assert decide(error(429), budget=aws, maybe_sent=True) == GiveUp("budget", error(429), True)
    expo = dataclasses.replace(pol, backoff=Backoff(Jitter.EXPONENTIAL, 0.1, 8.0))
    assert decide(TimedOut(), attempt=2, policy=expo).delay == pytest.approx(0.2)
    naive = dataclasses.replace(pol, retry_unsafe=True)
    assert decide(TimedOut(), request=KEYLESS, policy=naive) == RetryAfter(0.5, "timeout")


# -- polling ---------------------------------------------------------------------------------


def run_poll(script: Any, first_ms: int | None = 100, **schedule: Any) -> tuple[Driver, Any]:
    d = Driver(script)
    sched = PollSchedule(**({"deadline": 60.0, "default_delay": 1.0} | schedule))
    flow = poll_until_settled("p-1", ctx(), "o-1", first_ms, sched,
                              expect=Expected("o-1", 1000, "DKK"))  # fmt: skip
    try:
        return d, d.run(flow)
    except (PayflowError, PollingTimedOut) as exc:
        return d, exc


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 422, 499])
def test_a_poll_refused_for_what_it_is_stops_the_polling(code: int) -> None:
    d, exc = run_poll([error(code, "nope")])
    assert refs(exc) == err(RequestRejected, payment_id="p-1", key=None, correlation="c-1",
                            status=code, code="nope")  # fmt: skip
    assert exc.message == f"poll refused with HTTP {code}" and len(d.calls) == 1


@pytest.mark.parametrize(
    "outcome", [error(408), error(409), error(429), error(500), error(503), TimedOut(), NotSent(),
                ok({}), ok(body("refunded"))],
)  # fmt: skip
def test_a_poll_without_a_usable_answer_polls_again(outcome: Any) -> None:
    d, got = run_poll([outcome, ok(body("declined"))])
    assert got == view("declined") and d.sent == [STATUS, STATUS] and d.ops == ["poll", "poll"]


def test_a_poll_answer_about_another_payment_is_a_mismatch() -> None:
    for other in (body("reserved", pid="p-2"), body("reserved", amount=1)):
        d, exc = run_poll([ok(other)])
        assert type(exc) is ProviderMismatch and len(d.calls) == 1


def test_polls_are_paced_by_the_answers_the_failures_and_retry_after() -> None:
    d, got = run_poll([ok(body("initiated", pollDelayInMs=300)), ok(body("initiated")),
                       ok(body("reserved"))])  # fmt: skip
    assert d.sleeps == [0.1, 0.3, 0.3] and got.state == "reserved"
    backoff = Backoff(Jitter.EXPONENTIAL, 0.5, 8.0)
    d, got = run_poll([TimedOut(), TimedOut(), TimedOut(), ok(body("initiated")),
                       TimedOut(), ok(body("reserved"))], backoff=backoff)  # fmt: skip
    assert d.sleeps == [0.1, 0.5, 1.0, 2.0, 0.1, 0.5]
    d, got = run_poll([TimedOut(), TimedOut(), ok(body("reserved"))], on_no_answer="last-delay")
    assert d.sleeps == [0.1, 0.1, 0.1]
    d, got = run_poll([error(429, **{"Retry-After": "2"}), ok(body("reserved"))])
    assert d.sleeps == [0.1, 2.0]
    d, got = run_poll([error(503, **{"Retry-After": "0"}), ok(body("reserved"))], first_ms=None,
                      on_no_answer="last-delay", min_delay=0.0001)  # fmt: skip
    assert d.sleeps == [1.0, 0.0001]
    d, got = run_poll([error(503, **{"Retry-After": "1"}), ok(body("reserved"))], first_ms=1500)
    assert d.sleeps == [1.5, 1.5]
    d, exc = run_poll([error(429, **{"Retry-After": "999999"})], deadline=600.0)
    assert isinstance(exc, PollingTimedOut) and len(d.calls) == 1
    deco = Backoff(Jitter.DECORRELATED, 0.5, 8.0)
    d, got = run_poll([TimedOut(), TimedOut(), TimedOut(), ok(body("reserved"))], backoff=deco)
    r = random.Random(3)
    want = [0.1]
    for n in range(3):  # decorrelated jitter grows from the previous wait
        want.append(max(0.1, deco.delay(n, want[-1], r)))
    assert d.sleeps == want


def test_polling_never_starts_a_wait_past_its_deadline() -> None:
    # From the fake clock's start (T0): waits of 0.5 s, each poll answered in 0.25 s.
    d = Driver(lambda req, now: ok(body("initiated", pollDelayInMs=500)), latency=0.25)
    sched = PollSchedule(deadline=2.25, default_delay=0.5)
    with pytest.raises(PollingTimedOut):
        d.run(poll_until_settled("p-1", ctx(), "o-1", 500, sched))
    assert len(d.calls) == 3  # 0.75, 1.5, 2.25: a fourth wait would end at 2.75
    # A wait that would leave no time for its poll is not made: no poll outlives the deadline.
    d = Driver(lambda req, now: ok(body("initiated", pollDelayInMs=500)), latency=0.25)
    with pytest.raises(PollingTimedOut):
        d.run(poll_until_settled("p-1", ctx(), "o-1", 500, PollSchedule(deadline=2.0)))
    assert len(d.calls) == 2  # the third wait would end at 2.0, with no time left to poll
    t0 = d.calls[0][0] - 0.5  # polling started one wait before the first poll
    assert all(at + timeout <= t0 + 2.0 for at, _, timeout in d.calls)


def test_keys_are_stable_across_releases() -> None:
    """A per-order or refund key that changed between versions would let a repeat
    after an upgrade pay or refund twice: the derivation is pinned."""
    assert derived_key("pay", "o-1") == GOLDEN_PAY
    assert refund_key("p-1", "rf-1") == GOLDEN_REFUND
    assert new_key(random.Random(5)) == GOLDEN_NEW


def test_a_resend_is_one_attempt_paced_by_the_operation() -> None:
    two = RetryPolicy(max_attempts=2, deadline=60.0, backoff=Backoff(Jitter.CONSTANT, 0.1, 0.1))
    d = Driver(lambda req, now: TimedOut())
    with pytest.raises(OutcomeUnknown):
        d.run(pay("o-1", 1000, "DKK", ctx(retry=two), key=KEY))
    assert d.sent == [CREATE] * 6 and d.sleeps == [0.1, 1.0, 1.0, 1.0]


def test_each_call_gets_the_timeout_of_its_kind() -> None:
    from payflow.core._policy import Timeouts

    t = dataclasses.replace(FAST, timeouts=Timeouts(write=2.0, read=0.4, poll=0.3))
    d = Driver([ok(body("initiated"), 201), ok(body("reserved")), error(409), ok(body("captured"))])
    d.run(pay("o-1", 1000, "DKK", ctx(retry=t), key=KEY))
    assert [c[2] for c in d.calls] == [2.0, 0.3, 2.0, 0.4]
    d = Driver([TimedOut(), ok({"payments": [body("captured")]})])
    d.run(pay("o-1", 1000, "DKK", ctx(retry=t, key_scope=KeyScope.NONE)))
    assert [c[2] for c in d.calls] == [2.0, 0.4]
    d = Driver([ok(refunded(500, "rf-1"), 201), ok(body("cancelled"))])
    d.run(refund("p-1", 500, "rf-1", ctx(retry=t)))
    d.run(cancel("p-1", ctx(retry=t)))
    assert [c[2] for c in d.calls] == [2.0, 2.0]
