"""One behavioural suite for both clients, against the real provider over HTTP.

Every test runs twice (sync and async, via ``make_client``) and checks the
provider's ledger -- the ground truth -- not just what the client said.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import pytest

from payflow.core.events import Attempt, GaveUp, Poll, Retry, StateChanged
from payflow.errors import (
    ConflictError,
    InvalidRequest,
    OutcomeUnknown,
    PaymentCancelled,
    PaymentDeclined,
    ProviderUnavailable,
)
from payflow.hooks import EventLog
from payflow.provider.faults import FaultDraw
from payflow.provider.ledger import PayerModel

from .conftest import MakeClient, Provider, fast_policy, order_id

MONEY = ("reserved", "captured")


def charged(payments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in payments if p["state"] in MONEY and p["refundedAmount"] < p["amount"]]


def test_happy_path_captures_once_and_forgets(provider: Provider, make_client: MakeClient) -> None:
    events = EventLog()
    client = make_client(hooks=[events])
    oid = order_id()
    result = client.pay(oid, 1995)
    assert (result.order_id, result.state, result.amount, result.currency) == (
        oid, "captured", 1995, "DKK",
    )  # fmt: skip
    [payment] = provider.payments(oid)
    assert payment["paymentId"] == result.payment_id
    assert payment["state"] == "captured" and payment["capturedAmount"] == 1995
    assert client.journal.pending() == []
    assert [e.new for e in events.of(StateChanged)][-1] == "captured"
    assert client.status(result.payment_id).state == "captured"


def test_headers_and_one_key_for_every_retry(provider: Provider, make_client: MakeClient) -> None:
    sent: list[httpx.Request] = []
    client = make_client(capture=sent, client_version="2.1.1")
    provider.profile.push("lost", "error_after")
    oid = order_id()
    client.pay(oid, 500)
    creates = [r for r in sent if r.method == "POST" and r.url.path == "/v10/payments"]
    assert len(creates) == 3
    keys = {r.headers["x-mobilepay-idempotency-key"] for r in creates}
    assert len(keys) == 1
    for request in sent:
        assert request.headers["authorization"] == f"Bearer {provider.token}"
        assert request.headers["x-ibm-client-id"] == provider.client_id
        assert request.headers["x-mobilepay-client-system-version"] == "2.1.1"
        if request.method == "GET":
            assert "x-mobilepay-idempotency-key" not in request.headers
    assert len(provider.payments(oid)) == 1


def test_declined(provider: Provider, make_client: MakeClient) -> None:
    provider.set_payer(PayerModel(approve_probability=0.0, decide_after_s=(0.0, 0.02)))
    client = make_client()
    oid = order_id()
    with pytest.raises(PaymentDeclined) as info:
        client.pay(oid, 100)
    assert info.value.reference == oid and info.value.payment_id
    assert [p["state"] for p in provider.payments(oid)] == ["declined"]
    assert client.journal.pending() == []


def test_polls_with_the_providers_delay(provider: Provider, make_client: MakeClient) -> None:
    provider.set_payer(PayerModel(approve_probability=1.0, decide_after_s=(0.05, 0.05)))
    events = EventLog()
    client = make_client(hooks=[events], sleeps=True)
    oid = order_id()
    result = client.pay(oid, 100)
    assert result.state == "captured"
    polls = events.of(Poll)
    assert polls and all(p.poll_delay_ms == 5 for p in polls if p.state)
    assert [p["state"] for p in provider.payments(oid)] == ["captured"]


@pytest.mark.parametrize("fate", ["lost", "error_after", "error_before", "reset"])
def test_create_fault_never_charges_twice(
    provider: Provider, make_client: MakeClient, fate: str
) -> None:
    events = EventLog()
    client = make_client(hooks=[events])
    provider.profile.push(fate)
    oid = order_id()
    result = client.pay(oid, 700)
    payments = provider.payments(oid)
    assert len(payments) == 1 and payments[0]["paymentId"] == result.payment_id
    assert payments[0]["state"] == "captured"
    assert len(events.of(Retry)) == 1
    assert client.journal.pending() == []


def test_lost_on_every_attempt_then_lookup_finds_it(
    provider: Provider, make_client: MakeClient
) -> None:
    client = make_client()
    provider.profile.push("lost", "lost", "lost")  # create committed, never answered
    oid = order_id()
    result = client.pay(oid, 300)  # found by looking the order up
    assert [p["paymentId"] for p in provider.payments(oid)] == [result.payment_id]


def test_outcome_unknown_is_recovered(provider: Provider, make_client: MakeClient) -> None:
    client = make_client()
    # create lost 3 times, then the order lookup fails 3 times: nothing is known.
    provider.profile.push(*(["lost"] * 3 + ["error_before"] * 3))
    oid = order_id()
    with pytest.raises(OutcomeUnknown) as info:
        client.pay(oid, 300)
    assert info.value.reference == oid and info.value.idempotency_key
    [record] = client.journal.pending()
    assert (record.reference, record.state) == (oid, "recheck")
    [payment] = provider.payments(oid)
    assert payment["state"] == "reserved"  # money taken, caller told "not paid"
    [outcome] = client.recover()
    assert outcome.action == "refunded" and outcome.refunded_amount == 300
    assert charged(provider.payments(oid)) == []
    assert client.journal.pending() == []


def test_throttled_with_retry_after(provider: Provider, make_client: MakeClient) -> None:
    events = EventLog()
    client = make_client(hooks=[events])
    provider.profile.push("throttle", "throttle")
    oid = order_id()
    started = time.monotonic()
    client.pay(oid, 100)
    assert time.monotonic() - started < 1.0  # test mode: the wait is skipped...
    retries = events.of(Retry)
    assert [r.reason for r in retries] == ["http-429", "http-429"]
    assert all(r.delay >= 1.0 for r in retries)  # ...but Retry-After was honoured
    assert len(provider.payments(oid)) == 1


def test_throttled_to_the_end_gives_up_and_recovers(
    provider: Provider, make_client: MakeClient
) -> None:
    events = EventLog()
    client = make_client(hooks=[events])
    provider.profile.push(*["throttle"] * 6)  # the create, then the same-key probe
    oid = order_id()
    # The core counts an answered attempt as "maybe sent", so 429s to the end are
    # an unknown outcome kept for recheck (never a charge).
    with pytest.raises((OutcomeUnknown, ProviderUnavailable)):
        client.pay(oid, 100)
    assert provider.payments(oid) == []
    assert events.of(GaveUp)[0].reason == "attempts"
    client.recover()
    assert charged(provider.payments(oid)) == []
    assert client.journal.pending() == []


def test_connection_refused_is_not_sent(make_client: MakeClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens
    events = EventLog()
    client = make_client(base_url=f"http://127.0.0.1:{port}", hooks=[events])
    with pytest.raises(ProviderUnavailable):
        client.pay(order_id(), 100)
    assert {e.outcome for e in events if type(e).__name__ == "AttemptResult"} == {"not-sent"}
    assert client.journal.pending() == []


def test_manual_cancel_while_polling(provider: Provider, make_client: MakeClient) -> None:
    provider.set_payer(PayerModel(approve_probability=1.0, decide_after_s=(30.0, 30.0)))
    started = threading.Event()
    payment_ids: list[str] = []

    def hook(event: object) -> None:
        if isinstance(event, Poll) and not started.is_set():
            payment_ids.append(event.payment_id)
            started.set()

    client = make_client(hooks=[hook])
    oid = order_id()
    errors: list[BaseException] = []

    def pay() -> None:
        try:
            client.pay(oid, 100)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=pay)
    thread.start()
    assert started.wait(10)
    status = client.cancel(payment_ids[0])
    thread.join(10)
    assert status.state == "cancelled"
    assert len(errors) == 1 and isinstance(errors[0], PaymentCancelled)
    assert [p["state"] for p in provider.payments(oid)] == ["cancelled"]
    assert client.journal.pending() == []


def test_cancel_that_loses_the_race_reports_the_real_state(
    provider: Provider, make_client: MakeClient
) -> None:
    client = make_client()
    oid = order_id()
    result = client.pay(oid, 100)
    status = client.cancel(result.payment_id)  # 409: already captured -> polled again
    assert status.state == "captured" and status.money_taken
    assert [p["state"] for p in provider.payments(oid)] == ["captured"]


def test_cancel_without_answer_polls_the_real_state(
    provider: Provider, make_client: MakeClient
) -> None:
    provider.set_payer(PayerModel(approve_probability=1.0, decide_after_s=(30.0, 30.0)))
    client = make_client(policy=fast_policy(poll_deadline=0.05, cancel_on_give_up=False))
    oid = order_id()
    with pytest.raises(OutcomeUnknown):
        client.pay(oid, 100)  # polling deadline: treated as declined, kept for recheck
    [payment] = provider.payments(oid)
    provider.profile.push("lost", "lost", "lost")  # the cancel commits, but no answer
    status = client.cancel(payment["paymentId"])
    assert status.state == "cancelled"  # read back from the provider, not assumed
    [outcome] = client.recover()
    assert outcome.action == "forgotten"
    assert client.journal.pending() == []


def test_polling_deadline_cancels_then_recheck(provider: Provider, make_client: MakeClient) -> None:
    provider.set_payer(PayerModel(approve_probability=1.0, decide_after_s=(30.0, 30.0)))
    client = make_client(policy=fast_policy(poll_deadline=0.05))
    oid = order_id()
    with pytest.raises(PaymentCancelled):
        client.pay(oid, 100)  # gave up polling, cancelled, confirmed
    assert [p["state"] for p in provider.payments(oid)] == ["cancelled"]
    assert client.journal.pending() == []


def test_recover_cancels_a_pending_payment(provider: Provider, make_client: MakeClient) -> None:
    provider.set_payer(PayerModel(approve_probability=1.0, decide_after_s=(30.0, 30.0)))
    client = make_client(policy=fast_policy(poll_deadline=0.05, cancel_on_give_up=False))
    oid = order_id()
    with pytest.raises(OutcomeUnknown):
        client.pay(oid, 100)
    [outcome] = client.recover()
    assert (outcome.action, outcome.state) == ("cancelled", "cancelled")
    assert [p["state"] for p in provider.payments(oid)] == ["cancelled"]


def test_refunds(provider: Provider, make_client: MakeClient) -> None:
    client = make_client()
    result = client.pay(order_id(), 1000)
    provider.profile.push("lost")  # the first refund commits but its answer is lost
    first = client.refund(result.payment_id, 400, reference="ret-1")
    assert (first.amount, first.reference, first.state) == (400, "ret-1", "completed")
    second = client.refund(result.payment_id, 600)
    assert second.reference and second.amount == 600
    refunds = provider.refunds(result.payment_id)
    assert sorted(r["amount"] for r in refunds) == [400, 600]
    with pytest.raises(ConflictError) as info:
        client.refund(result.payment_id, 1)
    assert info.value.status == 409
    assert client.status(result.payment_id).refunded_amount == 1000
    assert client.journal.pending() == []


def test_refund_without_answer_is_retried_by_recover(
    provider: Provider, make_client: MakeClient
) -> None:
    client = make_client()
    result = client.pay(order_id(), 1000)
    provider.profile.push("lost", "lost", "lost")
    with pytest.raises(OutcomeUnknown):
        client.refund(result.payment_id, 250, reference="ret-2")
    [record] = client.journal.pending()
    assert record.operation == "refund"
    [outcome] = client.recover()
    assert outcome.action == "refunded"
    assert [r["amount"] for r in provider.refunds(result.payment_id)] == [250]  # same key
    assert client.journal.pending() == []


def test_keep_record_and_acknowledge(provider: Provider, make_client: MakeClient) -> None:
    client = make_client()
    oid = order_id()
    result = client.pay(oid, 100, keep_record=True)
    assert [r.reference for r in client.journal.pending()] == [oid]
    assert client.recover() == []  # a live payment of ours is not recovered
    assert client.acknowledge(result) == 1
    assert client.journal.pending() == []


def test_unacknowledged_payment_is_refunded_or_reported(
    provider: Provider, make_client: MakeClient
) -> None:
    first = make_client(lease=0.01)
    oid = order_id()
    first.pay(oid, 100, keep_record=True)  # ...and the process "dies" before storing it
    time.sleep(0.05)
    reporter = make_client(journal=first.journal, policy=fast_policy(refund_unclaimed=False))
    [outcome] = reporter.recover()
    assert outcome.action == "reported" and outcome.state == "captured"
    assert reporter.acknowledge(outcome) == 1
    oid2 = order_id()
    first.pay(oid2, 100, keep_record=True)
    time.sleep(0.05)
    [outcome] = make_client(journal=first.journal).recover()
    assert outcome.action == "refunded"
    assert charged(provider.payments(oid2)) == []


def test_invalid_arguments_send_and_journal_nothing(
    provider: Provider, make_client: MakeClient
) -> None:
    client = make_client()
    before = len(provider.ledger()["payments"])
    bad: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
        (("o-1", 0), {}, "amount"),
        (("o-1", 1.5), {}, "amount"),
        (("o-1", True), {}, "amount"),
        (("o-1", 100, "dkk"), {}, "currency"),
        (("o 1", 100), {}, "order_id"),
        (("", 100), {}, "order_id"),
        (("o-1", 100), {"pos_id": "a b"}, "pos_id"),
    ]
    for args, kwargs, field in bad:
        with pytest.raises(InvalidRequest) as info:
            client.pay(*args, **kwargs)
        assert isinstance(info.value, ValueError) and info.value.field == field
    with pytest.raises(InvalidRequest, match="amount"):
        client.refund("p-1", -5)
    with pytest.raises(InvalidRequest, match="payment_id"):
        client.status("not a payment id")
    assert client.journal.pending() == []
    assert len(provider.ledger()["payments"]) == before


def test_a_failing_hook_never_breaks_a_payment(
    provider: Provider, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("hook bug")

    seen = EventLog()
    client = make_client(hooks=[broken, seen])
    result = client.pay(order_id(), 100)
    assert result.state == "captured" and seen.of(Attempt)
    assert "hook" in caplog.text and "RuntimeError" in caplog.text


def test_slow_answers_after_commit(provider: Provider, make_client: MakeClient) -> None:
    client = make_client()
    # The create commits, then answers after the 0.25 s timeout; the retry replays it.
    provider.profile.push(FaultDraw(0.0, 0.4, "ok"))
    oid = order_id()
    result = client.pay(oid, 100)
    assert [p["paymentId"] for p in provider.payments(oid)] == [result.payment_id]
