"""The rule of money against a provider that misbehaves, for both clients.

A payment record leaves the journal only when the provider confirmed -- in a
reply the client understood and that matches the request -- that no money is
held, or when the money is accounted for. Each test garbles, reshapes or
contradicts real replies through :class:`MangleProxy` (the reference provider
behind it really commits), then checks the provider's ledger: every payment
holding money was reported to the caller, is still in the journal, or was
refunded by ``recover()``; no exception escapes outside ``payflow.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from payflow.client import AsyncPaymentClient, PaymentClient
from payflow.errors import (
    ConflictError,
    InvalidRequest,
    OutcomeUnknown,
    PayflowError,
    PaymentInProgress,
    ProviderMismatch,
    ProviderUnavailable,
    RequestRejected,
)
from payflow.provider.faults import FaultDraw
from payflow.provider.ledger import PayerModel

from .conftest import ClientAdapter, MakeClient, Provider, fast_policy, order_id
from .misbehaving import MangleProxy, body, edit, serve, status

MONEY = ("reserved", "captured")
CREATE = "/v10/payments"
#: A payer who approves a little later, so the client has to poll.
LATER = PayerModel(approve_probability=1.0, decide_after_s=(0.05, 0.05))


def _payment_path(path: str) -> bool:
    return path.startswith("/v10/payments/") and path.count("/") == 3


@pytest.fixture(scope="module")
def proxy(provider: Provider) -> Iterator[tuple[MangleProxy, str]]:
    app = MangleProxy(provider.base_url)
    with serve(app) as url:
        yield app, url


@pytest.fixture(autouse=True)
def _clear_rules(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "proxy" in request.fixturenames:
        request.getfixturevalue("proxy")[0].clear()


@pytest.fixture
def via_proxy(
    make_client: MakeClient, proxy: tuple[MangleProxy, str]
) -> Iterator[tuple[MangleProxy, Any]]:
    """``(proxy, make)``: ``make(**kwargs)`` builds a client that talks through the proxy."""
    app, url = proxy

    def make(**kwargs: Any) -> ClientAdapter:
        return make_client(base_url=url, **kwargs)

    yield app, make


def holds_money(p: dict[str, Any]) -> bool:
    return p["state"] in MONEY and p["refundedAmount"] < p["amount"]


def settle(client: ClientAdapter, proxy: MangleProxy, provider: Provider) -> None:
    """The provider behaves again: recover() until nothing is kept."""
    proxy.clear()
    for _ in range(3):
        if all(o.action != "kept" for o in client.recover()):
            return


def assert_money_accounted(
    provider: Provider, client: ClientAdapter, order: str, reported: set[str]
) -> None:
    """Every payment of ``order`` holding money is reported, in the journal, or refunded."""
    payments = provider.payments(order)
    in_journal = any(r.reference == order for r in client.journal.pending())
    held = [p for p in payments if holds_money(p)]
    assert len(held) <= 1, f"order charged twice: {payments}"
    for p in held:
        assert p["paymentId"] in reported or in_journal, f"money lost track of: {p}"


# -- replies the client cannot read --------------------------------------------------------

UNREADABLE = {
    "not-json": body(b"<html><body>502 Bad Gateway</body></html>"),
    "truncated": body(b'{"paymentId": "p-1", "orderId": "o'),
    "list": body([]),
    "empty-object": body({}),
    "no-state": edit(state=...),
    "no-payment-id": edit(paymentId=...),
    "null-payment-id": edit(paymentId=None),
    "dot-payment-id": edit(paymentId=".."),
    "unknown-state": edit(state="AUTHORIZED"),
    "lower-case-other-state": edit(state="pending"),
    "string-amount": edit(amount="1000"),
    "empty-202": status(202),
    "empty-204": status(204),
    "deeply-nested": body(b"[" * 200_000 + b"]" * 200_000),
    "huge-integer": body(b'{"paymentId": "p-1", "amount": ' + b"9" * 5000 + b"}"),
}


@pytest.mark.parametrize("mangle", sorted(UNREADABLE))
def test_an_unreadable_create_reply_is_asked_again_with_the_same_key(
    via_proxy: Any, provider: Provider, mangle: str
) -> None:
    proxy, make = via_proxy
    client = make()
    proxy.on("POST", CREATE, UNREADABLE[mangle])
    order = order_id("garbled")
    result = client.pay(order, 1000)  # the re-send gets the provider's replay
    [p] = provider.payments(order)
    assert (p["paymentId"], p["state"]) == (result.payment_id, "captured")
    assert client.journal.pending() == []


@pytest.mark.parametrize("mangle", ["not-json", "no-state", "unknown-state", "empty-204"])
def test_a_create_reply_never_understood_keeps_the_record(
    via_proxy: Any, provider: Provider, mangle: str
) -> None:
    proxy, make = via_proxy
    client = make()
    proxy.on("POST", CREATE, UNREADABLE[mangle], times=None)
    order = order_id("garbled")
    with pytest.raises(OutcomeUnknown):
        client.pay(order, 1000)
    [record] = [r for r in client.journal.pending() if r.reference == order]
    assert record.state == "recheck"
    assert provider.payments(order), "the provider did create a payment"
    assert_money_accounted(provider, client, order, set())
    settle(client, proxy, provider)
    assert client.journal.pending() == []
    assert not any(holds_money(p) for p in provider.payments(order))


@pytest.mark.parametrize("mangle", ["not-json", "unknown-state", "lower-case-other-state"])
def test_unreadable_polls_are_polled_again(via_proxy: Any, provider: Provider, mangle: str) -> None:
    proxy, make = via_proxy
    client = make()
    provider.set_payer(LATER)
    rule = proxy.on("GET", _payment_path, UNREADABLE[mangle], times=2)
    order = order_id("poll")
    result = client.pay(order, 1000)
    assert rule.seen == 2  # two polls were garbled, and polled again
    [p] = provider.payments(order)
    assert (p["paymentId"], p["state"], result.state) == (result.payment_id, "captured", "captured")


def test_polls_never_understood_end_in_unknown_then_recover_refunds(
    via_proxy: Any, provider: Provider
) -> None:
    proxy, make = via_proxy
    provider.set_payer(LATER)
    client = make(policy=fast_policy(poll_deadline=0.3))
    proxy.on("GET", _payment_path, UNREADABLE["unknown-state"], times=None)
    order = order_id("poll")
    with pytest.raises(OutcomeUnknown):
        client.pay(order, 1000)
    assert_money_accounted(provider, client, order, set())
    settle(client, proxy, provider)
    assert client.journal.pending() == []
    assert not any(holds_money(p) for p in provider.payments(order))


@pytest.mark.parametrize("mangle", ["not-json", "empty-object", "unknown-state"])
def test_an_unreadable_capture_reply_is_checked_by_reading_the_payment(
    via_proxy: Any, provider: Provider, mangle: str
) -> None:
    proxy, make = via_proxy
    client = make()
    proxy.on("POST", lambda p: p.endswith("/capture"), UNREADABLE[mangle])
    order = order_id("capture")
    result = client.pay(order, 1000)
    [p] = provider.payments(order)
    assert (p["state"], result.state) == ("captured", "captured")


# -- 409s that may come after the provider acted -------------------------------------------


@pytest.mark.parametrize(
    "code", ["conflict", "duplicate_request", "payment_in_progress", "active_payment_on_pos", None]
)
def test_a_409_to_a_committed_create_is_never_believed(
    via_proxy: Any, provider: Provider, code: str | None
) -> None:
    proxy, make = via_proxy
    client = make()
    payload = {"message": "conflict"} | ({"code": code} if code else {})
    proxy.on("POST", CREATE, status(409, payload))
    order = order_id("conflict")
    with pytest.raises(OutcomeUnknown) as info:
        client.pay(order, 1000)
    assert not isinstance(info.value, ConflictError)
    assert [r.reference for r in client.journal.pending()] == [order]
    settle(client, proxy, provider)
    assert client.journal.pending() == []
    assert not any(holds_money(p) for p in provider.payments(order))


def test_a_409_explained_by_the_order_is_a_conflict_and_nothing_is_kept(
    via_proxy: Any, provider: Provider
) -> None:
    """The refusal stands when the order's own payments show nothing was created."""
    proxy, make = via_proxy
    client = make()
    # Answered 409 *before* reaching the provider: the proxy swallows the create.
    proxy.on("POST", CREATE, status(409, {"code": "active_payment_on_pos"}))
    provider.profile.push("error_before")  # the provider itself refuses: nothing committed
    order = order_id("refused")
    with pytest.raises(ConflictError):
        client.pay(order, 1000)
    assert provider.payments(order) == [] and client.journal.pending() == []


def test_a_409_to_a_committed_partial_refund_keeps_it_until_recover_confirms(
    via_proxy: Any, provider: Provider
) -> None:
    proxy, make = via_proxy
    client = make()
    order = order_id("refund")
    paid = client.pay(order, 1000)
    proxy.on("POST", "/v10/refunds", status(409, {"code": "payment_not_refundable"}))
    with pytest.raises(OutcomeUnknown):
        client.refund(paid.payment_id, 400, "rf-partial")
    assert [r.operation for r in client.journal.pending()] == ["refund"]
    settle(client, proxy, provider)
    assert client.journal.pending() == []
    assert [r["amount"] for r in provider.refunds(paid.payment_id)] == [400]


def test_a_409_to_a_committed_full_refund_is_explained_by_the_payment(
    via_proxy: Any, provider: Provider
) -> None:
    proxy, make = via_proxy
    client = make()
    paid = client.pay(order_id("refund"), 1000)
    proxy.on("POST", "/v10/refunds", status(409, {"code": "payment_not_refundable"}))
    with pytest.raises(ConflictError):
        client.refund(paid.payment_id, 1000, "rf-full")
    assert client.journal.pending() == []
    assert [r["amount"] for r in provider.refunds(paid.payment_id)] == [1000]


# -- replies about something else ----------------------------------------------------------

MISMATCHED = {
    "another-order": edit(orderId="someone-elses-order"),
    "ten-times-the-amount": edit(amount=lambda a: a * 10),
    "another-currency": edit(currency="EUR"),
}


@pytest.mark.parametrize("mangle", sorted(MISMATCHED))
def test_a_create_reply_for_something_else_is_never_captured(
    via_proxy: Any, provider: Provider, mangle: str
) -> None:
    proxy, make = via_proxy
    sent: list[httpx.Request] = []
    client = make(capture=sent)
    proxy.on("POST", CREATE, MISMATCHED[mangle], times=None)
    order = order_id("mismatch")
    with pytest.raises(ProviderMismatch):
        client.pay(order, 1000)
    assert not any(r.url.path.endswith("/capture") for r in sent)
    assert [p["state"] for p in provider.payments(order)] != ["captured"]
    [record] = [r for r in client.journal.pending() if r.reference == order]
    assert record.state == "recheck"
    # A recheck that still gets the mismatched reply keeps the record for a person.
    [outcome] = [o for o in client.recover() if o.reference == order]
    assert (outcome.action, outcome.state) == ("kept", "mismatch")
    settle(client, proxy, provider)
    assert client.journal.pending() == []
    assert not any(holds_money(p) for p in provider.payments(order))


def test_a_poll_about_another_payment_is_a_mismatch(via_proxy: Any, provider: Provider) -> None:
    proxy, make = via_proxy
    provider.set_payer(LATER)
    client = make()
    proxy.on("GET", _payment_path, edit(amount=lambda a: a * 10), times=None)
    order = order_id("mismatch")
    with pytest.raises(ProviderMismatch):
        client.pay(order, 1000)
    assert [p["state"] for p in provider.payments(order)] != ["captured"]
    settle(client, proxy, provider)
    assert not any(holds_money(p) for p in provider.payments(order))


# -- nothing foreign escapes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["²", "1" * 400, "-1", "1.5", "soon", "Fri, 31 Dec 9999 23:59:59"]
)
def test_odd_retry_after_values_are_payflow_errors(via_proxy: Any, value: str) -> None:
    proxy, make = via_proxy
    client = make()
    proxy.on(
        "POST", CREATE, status(429, {"code": "too_many_requests"}, **{"Retry-After": value}),
        times=None,
    )  # fmt: skip
    with pytest.raises(ProviderUnavailable):
        client.pay(order_id("throttled"), 1000)
    assert client.journal.pending() == []  # throttled requests were never processed


def test_recover_settles_each_record_on_its_own(via_proxy: Any, provider: Provider) -> None:
    proxy, make = via_proxy
    client = make()
    orders = [order_id("recover") for _ in range(3)]
    for order in orders:  # three payments whose create reply never arrives readable
        proxy.on("POST", CREATE, UNREADABLE["not-json"], times=None)
        with pytest.raises(OutcomeUnknown):
            client.pay(order, 1000)
        proxy.clear()
    # The middle one's replay is garbled beyond use, deeply nested: kept, the others settled.
    bad = orders[1]
    proxy.on("POST", CREATE, UNREADABLE["deeply-nested"], times=None, contains=bad)
    outcomes = {o.reference: o for o in client.recover()}
    proxy.clear()
    assert outcomes[bad].action == "kept"
    assert {outcomes[o].action for o in (orders[0], orders[2])} <= {"refunded", "cancelled"}
    assert [r.reference for r in client.journal.pending()] == [bad]
    settle(client, proxy, provider)
    for order in orders:
        assert not any(holds_money(p) for p in provider.payments(order))


def test_payment_ids_never_reach_a_path_unchecked(via_proxy: Any) -> None:
    _proxy, make = via_proxy
    sent: list[httpx.Request] = []
    client = make(capture=sent)
    for bad in ("..", ".", "a/b", "p-1?x=1", "p%2F1"):
        with pytest.raises(InvalidRequest) as info:
            client.status(bad)
        assert info.value.field == "payment_id"
        with pytest.raises(InvalidRequest):
            client.cancel(bad)
        with pytest.raises(InvalidRequest):
            client.refund(bad, 100)
    assert sent == []


def test_a_token_echoed_by_the_provider_is_redacted(
    via_proxy: Any, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    proxy, make = via_proxy
    client = make()

    def echo(reply: Any, headers: dict[str, str]) -> Any:
        auth = headers.get("authorization", "")
        text = f"invalid credentials: {auth} (token {auth.removeprefix('Bearer ')})"
        return status(400, {"code": "bad_request", "message": text})(reply, headers)

    proxy.on("POST", CREATE, echo)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RequestRejected) as info:
        client.pay(order_id("token"), 1000)
    for shown in (str(info.value), repr(info.value), info.value.message, caplog.text):
        assert provider.token not in shown
    assert "[redacted]" in str(info.value)


# -- one payment in flight per order -------------------------------------------------------


def test_two_threads_paying_one_order_send_one_create(
    make_client: MakeClient, provider: Provider
) -> None:
    client = make_client()
    order = order_id("twice")
    provider.profile.push(FaultDraw(0.15, 0.0, "ok"))  # the first create takes a while
    outcomes: list[Any] = []

    def pay() -> None:
        try:
            outcomes.append(client.pay(order, 1000))
        except PayflowError as exc:
            outcomes.append(exc)

    if client.kind == "async":
        assert isinstance(client.client, AsyncPaymentClient)
        aio = client.client

        async def both() -> list[Any]:
            return list(
                await asyncio.gather(aio.pay(order, 1000), aio.pay(order, 1000),
                                     return_exceptions=True)
            )  # fmt: skip

        outcomes = client._loop.run(both())  # type: ignore[union-attr]
    else:
        threads = [threading.Thread(target=pay) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    refused = [o for o in outcomes if isinstance(o, PaymentInProgress)]
    paid = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(refused) == 1 and len(paid) == 1, outcomes
    assert [p["state"] for p in provider.payments(order)] == ["captured"]


def test_two_clients_sharing_a_journal_pay_one_order_once(
    provider: Provider, tmp_path: Path
) -> None:
    """Two clients on one SQLite journal (as two processes would be): one create."""
    path = tmp_path / "shared.db"
    args = (provider.base_url, provider.client_id, provider.token)
    a = PaymentClient(*args, journal=path, policy=fast_policy(), budget=None)
    b = PaymentClient(*args, journal=path, policy=fast_policy(), budget=None)
    order = order_id("shared")
    try:
        with pytest.raises(OutcomeUnknown):  # a's payment: unknown, kept for recover()
            provider.profile.push("lost", "lost", "lost", "lost", "lost", "lost")
            a.pay(order, 1000)
        provider.profile.clear()
        with pytest.raises(PaymentInProgress) as info:
            b.pay(order, 1000)
        assert "recover()" in str(info.value)
        b.recover()
        b.pay(order, 1000)  # settled: the order may be paid again
    finally:
        provider.running.release_held()
        a.close()
        b.close()
    held = [p for p in provider.payments(order) if holds_money(p)]
    assert len(held) == 1


# -- a connection that breaks after the request went out ----------------------------------


@pytest.fixture(params=["reset", "close"])
def breaking_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A server that reads each request whole, then resets (RST) or closes the connection
    without answering: the request reached it; whether it acted is unknown."""
    how: str = request.param
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")), 0,
                )  # fmt: skip
                while len(rest) < length:
                    rest += conn.recv(65536)
                if how == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    listener.close()


def test_a_connection_broken_after_sending_a_create_is_outcome_unknown(
    make_client: MakeClient, breaking_server: str
) -> None:
    """A reset or a close mid-answer is not "not sent": the create may have landed."""
    client = make_client(base_url=breaking_server)
    order = order_id("reset")
    with pytest.raises(OutcomeUnknown):
        client.pay(order, 1000)
    [record] = client.journal.pending()
    assert (record.reference, record.state) == (order, "recheck")
