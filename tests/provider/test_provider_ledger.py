"""The pure ledger: every endpoint, idempotency rule and 409 race, time passed in."""

from __future__ import annotations

import random
from typing import Any

import pytest

from payflow.core import _api as api
from payflow.core.messages import Request, Response
from payflow.provider.ledger import MAX_AMOUNT, Ledger, PayerModel, Ticket

APPROVE = PayerModel(approve_probability=1.0, decide_after_s=(10.0, 10.0), expire_after_s=300.0)
DECLINE = PayerModel(approve_probability=0.0, decide_after_s=(10.0, 10.0), expire_after_s=300.0)
ABANDON = PayerModel(abandon_probability=1.0, expire_after_s=300.0)


def ledger(payer: PayerModel = APPROVE, **kwargs: Any) -> Ledger:
    return Ledger(random.Random(7), payer, **kwargs)


def create(
    led: Ledger,
    now: float = 0.0,
    key: str | None = "k1",
    order: str = "order-1",
    amount: int = 1000,
    pos: str | None = None,
    client: str = "c1",
) -> Response:
    return led.handle(client, api.create_payment(order, amount, "DKK", key, pos), now)


def assert_error(response: Response, status: int, code: str, field: str | None = None) -> None:
    assert response.status == status, response
    assert set(response.body) == {"code", "message", "correlationId"}
    assert response.body["code"] == code
    assert response.header("x-correlation-id") == response.body["correlationId"]
    if field is not None:
        assert field in response.body["message"]


# --------------------------------------------------------------- endpoints


def test_create_returns_initiated_payment_with_correlation_id() -> None:
    led = ledger()
    r = create(led)
    assert r.status == 201
    body = r.body
    assert body["state"] == "initiated"
    assert body["orderId"] == "order-1"
    assert body["amount"] == 1000
    assert body["currency"] == "DKK"
    assert body["pollDelayInMs"] == 1000
    assert body["refundedAmount"] == 0
    assert body["posId"] is None
    assert r.header("x-correlation-id") == body["correlationId"]
    assert r.header("location") == f"/v10/payments/{body['paymentId']}"


def test_get_payment_follows_the_payer_decision_lazily() -> None:
    led = ledger(APPROVE)
    pid = create(led).body["paymentId"]
    assert led.handle("c1", api.get_payment(pid), 9.99).body["state"] == "initiated"
    polled = led.handle("c1", api.get_payment(pid), 10.0)
    assert polled.status == 200
    assert polled.body["state"] == "reserved"
    assert polled.body["pollDelayInMs"] == 1000


@pytest.mark.parametrize(
    ("payer", "at", "state"),
    [
        (APPROVE, 10.0, "reserved"),
        (DECLINE, 10.0, "declined"),
        (ABANDON, 299.0, "initiated"),
        (ABANDON, 300.0, "expired"),
        (PayerModel(decide_after_s=(400.0, 500.0), expire_after_s=300.0), 300.0, "expired"),
    ],
)
def test_payer_outcomes(payer: PayerModel, at: float, state: str) -> None:
    led = ledger(payer)
    pid = create(led).body["paymentId"]
    assert led.handle("c1", api.get_payment(pid), at).body["state"] == state


def test_payer_probabilities_are_drawn_from_the_rng() -> None:
    led = Ledger(random.Random(1), PayerModel(approve_probability=0.5, decide_after_s=(1, 2)))
    ids = [create(led, key=f"k{i}", order=f"o{i}").body["paymentId"] for i in range(400)]
    states = [led.handle("c1", api.get_payment(p), 10.0).body["state"] for p in ids]
    assert 120 < states.count("reserved") < 280
    assert states.count("reserved") + states.count("declined") == 400


def test_same_seed_same_ids_and_decisions() -> None:
    def run(seed: int) -> list[Any]:
        led = Ledger(random.Random(seed), PayerModel(approve_probability=0.5))
        out = []
        for i in range(20):
            out.append(dict(create(led, now=i, key=f"k{i}", order=f"o{i}").body))
        return [*out, led.snapshot(1000.0)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_get_unknown_payment_is_404() -> None:
    assert_error(ledger().handle("c1", api.get_payment("nope"), 0), 404, "payment_not_found")


def test_lookup_by_order_id_lists_every_payment_of_the_order() -> None:
    led = ledger()
    a = create(led, key="a").body["paymentId"]
    b = create(led, key="b", now=1).body["paymentId"]
    create(led, key="c", order="other")
    found = led.handle("c1", api.find_payments("order-1"), 20.0)
    assert found.status == 200
    assert [p["paymentId"] for p in found.body["payments"]] == [a, b]
    assert {p["state"] for p in found.body["payments"]} == {"reserved"}
    empty = led.handle("c1", api.find_payments("missing"), 20.0)
    assert empty.status == 200 and empty.body["payments"] == []


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v10/payments", "missing_field"),
        ("/v10/payments?orderId=a&orderId=b", "invalid_query"),
        ("/v10/payments?order=a", "invalid_query"),
        ("/v10/payments?orderId=", "invalid_field"),
        ("/v10/payments?orderId=a%20b", "invalid_field"),
        ("/v10/payments?=&&", "invalid_query"),
        ("/v10/payments/x?foo=1", "invalid_query"),
    ],
)
def test_bad_queries_are_400(path: str, code: str) -> None:
    assert_error(ledger().handle("c1", Request("GET", path), 0), 400, code)


def test_cancel_initiated_payment_and_again() -> None:
    led = ledger()
    pid = create(led).body["paymentId"]
    first = led.handle("c1", api.cancel_payment(pid), 5.0)
    assert first.status == 200 and first.body["state"] == "cancelled"
    again = led.handle("c1", api.cancel_payment(pid), 6.0)
    assert again.status == 200 and again.body["state"] == "cancelled"
    # the payer's later approval no longer matters
    assert led.handle("c1", api.get_payment(pid), 50.0).body["state"] == "cancelled"


@pytest.mark.parametrize(
    ("payer", "capture_first", "state"),
    [
        (APPROVE, False, "reserved"),
        (APPROVE, True, "captured"),
        (DECLINE, False, "declined"),
        (ABANDON, False, "expired"),
    ],
)
def test_cancel_after_a_decision_is_409(payer: PayerModel, capture_first: bool, state: str) -> None:
    led = ledger(payer)
    pid = create(led).body["paymentId"]
    if capture_first:
        assert led.handle("c1", api.capture_payment(pid, 1000), 20.0).status == 200
    r = led.handle("c1", api.cancel_payment(pid), 400.0)
    assert_error(r, 409, "payment_not_cancellable", "paymentId")
    assert state in r.body["message"]


def test_cancel_races_the_payer_at_the_decision_instant() -> None:
    # polled "initiated" a moment ago, but the payer approved before the cancel landed
    led = ledger()
    pid = create(led).body["paymentId"]
    assert led.handle("c1", api.get_payment(pid), 9.9).body["state"] == "initiated"
    assert_error(led.handle("c1", api.cancel_payment(pid), 10.1), 409, "payment_not_cancellable")


def test_capture_reserved_full_and_partial_and_again() -> None:
    led = ledger()
    pid = create(led).body["paymentId"]
    r = led.handle("c1", api.capture_payment(pid, 600), 20.0)
    assert r.status == 200 and r.body["state"] == "captured"
    again = led.handle("c1", api.capture_payment(pid, 600), 21.0)
    assert again.status == 200 and again.body["state"] == "captured"
    snap = led.snapshot()["payments"][0]
    assert snap["capturedAmount"] == 600 and snap["state"] == "captured"


def test_capture_without_amount_takes_everything() -> None:
    led = ledger()
    pid = create(led).body["paymentId"]
    r = led.handle("c1", Request("POST", f"/v10/payments/{pid}/capture", None), 20.0)
    assert r.status == 200
    assert led.snapshot()["payments"][0]["capturedAmount"] == 1000


def test_capture_more_than_reserved_is_400() -> None:
    led = ledger()
    pid = create(led).body["paymentId"]
    assert_error(led.handle("c1", api.capture_payment(pid, 1001), 20.0), 400, "invalid_field")


@pytest.mark.parametrize(
    ("payer", "at", "cancel"),
    [(APPROVE, 5.0, False), (DECLINE, 20.0, False), (ABANDON, 400.0, False), (APPROVE, 1, True)],
)
def test_capture_before_reserved_is_409(payer: PayerModel, at: float, cancel: bool) -> None:
    led = ledger(payer)
    pid = create(led).body["paymentId"]
    if cancel:
        led.handle("c1", api.cancel_payment(pid), 0.5)
    assert_error(led.handle("c1", api.capture_payment(pid, 1000), at), 409, "payment_not_reserved")


def test_second_active_payment_on_same_pos_is_409_until_the_first_is_decided() -> None:
    led = ledger()
    assert create(led, key="a", pos="pos-1").status == 201
    assert_error(create(led, key="b", pos="pos-1", now=1.0), 409, "active_payment_on_pos", "posId")
    assert create(led, key="c", pos="pos-2", now=1.0).status == 201  # another till is fine
    assert create(led, key="d", pos="pos-1", now=10.0).status == 201  # first one decided


def test_cancelled_payment_frees_the_pos() -> None:
    led = ledger()
    pid = create(led, key="a", pos="pos-1").body["paymentId"]
    led.handle("c1", api.cancel_payment(pid), 1.0)
    assert create(led, key="b", pos="pos-1", now=2.0).status == 201


def test_refund_lifecycle() -> None:
    led = ledger()
    pid = create(led).body["paymentId"]
    led.handle("c1", api.capture_payment(pid, 1000), 20.0)
    r = led.handle("c1", api.create_refund(pid, 400, "ref-1", "rk1"), 30.0)
    assert r.status == 201
    assert r.body["state"] == "completed" and r.body["amount"] == 400
    rid = r.body["refundId"]
    got = led.handle("c1", api.get_refund(rid), 31.0)
    assert got.status == 200 and got.body["refundId"] == rid and got.body["pollDelayInMs"] == 1000
    assert led.handle("c1", api.get_payment(pid), 31.0).body["refundedAmount"] == 400
    assert led.handle("c1", api.create_refund(pid, 600, "ref-2", "rk2"), 32.0).status == 201
    assert_error(
        led.handle("c1", api.create_refund(pid, 1, "ref-3", "rk3"), 33.0),
        409,
        "refund_exceeds_payment",
        "amount",
    )
    snap = led.snapshot()
    assert [r["amount"] for r in snap["refunds"]] == [400, 600]
    assert set(snap["refunds"][0]) >= {"refundId", "paymentId", "amount", "state"}


def test_refund_of_reserved_payment_is_allowed() -> None:
    led = ledger()
    pid = create(led).body["paymentId"]
    assert led.handle("c1", api.create_refund(pid, 1000, "r", "rk"), 20.0).status == 201


def test_refund_limit_is_the_captured_amount() -> None:
    led = ledger()
    pid = create(led).body["paymentId"]
    led.handle("c1", api.capture_payment(pid, 300), 20.0)
    r = led.handle("c1", api.create_refund(pid, 301, "r", "rk"), 21.0)
    assert_error(r, 409, "refund_exceeds_payment")


@pytest.mark.parametrize(("payer", "at"), [(APPROVE, 1.0), (DECLINE, 20.0), (ABANDON, 400.0)])
def test_refund_of_a_payment_without_money_taken_is_409(payer: PayerModel, at: float) -> None:
    led = ledger(payer)
    pid = create(led).body["paymentId"]
    assert_error(
        led.handle("c1", api.create_refund(pid, 10, "r", "rk"), at), 409, "payment_not_refundable"
    )


def test_refund_of_unknown_payment_or_refund_is_404() -> None:
    led = ledger()
    assert_error(
        led.handle("c1", api.create_refund("nope", 10, "r", "rk"), 0), 404, "payment_not_found"
    )
    assert_error(led.handle("c1", api.get_refund("nope"), 0), 404, "refund_not_found")


# -------------------------------------------------------------- validation

GOOD = {"orderId": "order-1", "amount": 100, "currency": "DKK"}


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (None, "missing_field", "orderId"),
        ([1, 2], "invalid_body", "body"),
        ("text", "invalid_body", "body"),
        ({**GOOD, "amount": 1.5}, "invalid_field", "amount"),
        ({**GOOD, "amount": 100.0}, "invalid_field", "amount"),
        ({**GOOD, "amount": "100"}, "invalid_field", "amount"),
        ({**GOOD, "amount": True}, "invalid_field", "amount"),
        ({**GOOD, "amount": None}, "invalid_field", "amount"),
        ({**GOOD, "amount": 0}, "invalid_field", "amount"),
        ({**GOOD, "amount": -5}, "invalid_field", "amount"),
        ({**GOOD, "amount": MAX_AMOUNT + 1}, "invalid_field", "amount"),
        ({**GOOD, "currency": "dkk"}, "invalid_field", "currency"),
        ({**GOOD, "currency": "DKKK"}, "invalid_field", "currency"),
        ({**GOOD, "currency": 208}, "invalid_field", "currency"),
        ({**GOOD, "orderId": ""}, "invalid_field", "orderId"),
        ({**GOOD, "orderId": "x" * 65}, "invalid_field", "orderId"),
        ({**GOOD, "orderId": "a b"}, "invalid_field", "orderId"),
        ({**GOOD, "orderId": 12}, "invalid_field", "orderId"),
        ({**GOOD, "posId": ""}, "invalid_field", "posId"),
        ({**GOOD, "posId": 3}, "invalid_field", "posId"),
        ({"amount": 100, "currency": "DKK"}, "missing_field", "orderId"),
        ({"orderId": "o", "currency": "DKK"}, "missing_field", "amount"),
        ({"orderId": "o", "amount": 100}, "missing_field", "currency"),
        ({**GOOD, "amonut": 5}, "unknown_field", "amonut"),
    ],
)
def test_create_validation_names_the_field(body: Any, code: str, field: str) -> None:
    led = ledger()
    r = led.handle("c1", Request("POST", "/v10/payments", body, "k1"), 0)
    assert_error(r, 400, code, field)
    assert led.snapshot() == {"payments": [], "refunds": []}


def test_a_max_amount_payment_is_fine() -> None:
    assert create(ledger(), amount=MAX_AMOUNT).status == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"paymentId": "p", "amount": 1}, "reference"),
        ({"paymentId": "p", "amount": 1.0, "reference": "r"}, "amount"),
        ({"paymentId": "", "amount": 1, "reference": "r"}, "paymentId"),
        ({"paymentId": "p", "amount": 1, "reference": "r" * 65}, "reference"),
        ({"paymentId": "p", "amount": 1, "reference": "r", "x": 1}, "'x'"),
    ],
)
def test_refund_validation_names_the_field(body: Any, field: str) -> None:
    r = ledger().handle("c1", Request("POST", "/v10/refunds", body, "rk"), 0)
    assert r.status == 400 and field in r.body["message"]


@pytest.mark.parametrize(
    ("body", "field"), [({"amount": "5"}, "amount"), ({"x": 1}, "'x'"), ([], "body")]
)
def test_capture_and_cancel_validation(body: Any, field: str) -> None:
    led = ledger()
    pid = create(led).body["paymentId"]
    for op in ("capture", "cancel"):
        if op == "cancel" and "amount" in body:
            continue
        r = led.handle("c1", Request("POST", f"/v10/payments/{pid}/{op}", body), 20.0)
        assert r.status == 400 and field in r.body["message"], r


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/", 404, "not_found"),
        ("GET", "/v10", 404, "not_found"),
        ("GET", "/v10/payments/x/y/z", 404, "not_found"),
        ("POST", "/v10/payments/x/refund", 404, "not_found"),
        ("DELETE", "/v10/payments", 405, "method_not_allowed"),
        ("PUT", "/v10/payments/x", 405, "method_not_allowed"),
        ("GET", "/v10/payments/x/cancel", 405, "method_not_allowed"),
        ("GET", "/v10/refunds", 405, "method_not_allowed"),
        ("POST", "/v10/refunds/x", 405, "method_not_allowed"),
    ],
)
def test_routing_errors(method: str, path: str, status: int, code: str) -> None:
    r = ledger().handle("c1", Request(method, path), 0)
    assert_error(r, status, code)
    if status == 405:
        assert r.header("allow")


# ------------------------------------------------------------- idempotency


def test_same_key_same_body_replays_the_first_response() -> None:
    led = ledger()
    first = create(led, now=0.0)
    again = create(led, now=50.0)
    assert again.status == 201
    assert again.body == first.body  # the original body, state "initiated" included
    assert again.header("idempotent-replayed") == "true"
    assert len(led.snapshot()["payments"]) == 1


def test_replay_includes_errors() -> None:
    led = ledger()
    create(led, key="a", pos="pos-1")
    refused = create(led, key="b", pos="pos-1", now=1.0)
    assert refused.status == 409
    # the till is free by now, but the stored answer for key b is replayed
    replay = create(led, key="b", pos="pos-1", now=20.0)
    assert replay.status == 409 and replay.body == refused.body
    assert len(led.snapshot()["payments"]) == 1


def test_refund_error_is_replayed_too() -> None:
    led = ledger()
    pid = create(led).body["paymentId"]
    early = led.handle("c1", api.create_refund(pid, 10, "r", "rk"), 1.0)
    assert early.status == 409
    later = led.handle("c1", api.create_refund(pid, 10, "r", "rk"), 20.0)
    assert later.status == 409 and later.body == early.body
    assert led.snapshot()["refunds"] == []


def test_validation_errors_are_not_stored() -> None:
    led = ledger()
    bad = led.handle("c1", Request("POST", "/v10/payments", {**GOOD, "amount": 1.5}, "k1"), 0)
    assert bad.status == 400
    assert create(led, key="k1", now=1.0).status == 201  # fixed body, same key


def test_same_key_different_body_is_422() -> None:
    led = ledger()
    create(led)
    assert_error(create(led, amount=999, now=1.0), 422, "idempotency_key_reused")
    # the same key on another endpoint is a different request too
    r = led.handle("c1", api.create_refund("p", 1, "r", "k1"), 2.0)
    assert_error(r, 422, "idempotency_key_reused")


def test_same_key_while_in_flight_is_409_and_abandon_releases_it() -> None:
    led = ledger()
    request = api.create_payment("order-1", 1000, "DKK", "k1")
    ticket = led.begin("c1", request, 0.0)
    assert isinstance(ticket, Ticket)
    assert led.in_flight() == 1
    assert_error(led.handle("c1", request, 0.5), 409, "request_in_progress")
    led.abandon(ticket)
    assert led.in_flight() == 0
    assert led.snapshot()["payments"] == []
    assert create(led, now=1.0).status == 201


def test_commit_stores_and_clears_in_flight() -> None:
    led = ledger()
    request = api.create_payment("order-1", 1000, "DKK", "k1")
    ticket = led.begin("c1", request, 0.0)
    assert isinstance(ticket, Ticket)
    committed = led.commit(ticket, 2.0)
    assert committed.status == 201
    assert led.in_flight() == 0
    assert led.handle("c1", request, 3.0).body == committed.body
    with pytest.raises(ValueError, match="not open"):
        led.commit(ticket, 4.0)
    led.abandon(ticket)  # a no-op once committed


def test_commit_time_is_when_the_payment_happens() -> None:
    led = ledger()
    pid = create(led).body["paymentId"]
    ticket = led.begin("c1", api.cancel_payment(pid), 5.0)
    assert isinstance(ticket, Ticket)
    # the payer approved at t=10 while the cancel was in the provider's queue
    assert_error(led.commit(ticket, 11.0), 409, "payment_not_cancellable")


@pytest.mark.parametrize(
    ("key", "code"),
    [
        (None, "idempotency_key_missing"),
        ("", "invalid_idempotency_key"),
        ("k" * 65, "invalid_idempotency_key"),
        ("a b", "invalid_idempotency_key"),
        ("ключ", "invalid_idempotency_key"),
    ],
)
def test_bad_or_missing_key_is_400(key: str | None, code: str) -> None:
    led = ledger()
    assert_error(create(led, key=key), 400, code, "Idempotency-Key")
    r = led.handle("c1", api.create_refund("p", 1, "r", key), 0)
    assert_error(r, 400, code)


def test_missing_key_allowed_when_not_required_creates_duplicates() -> None:
    led = ledger(require_idempotency_key=False)
    assert create(led, key=None).status == 201
    assert create(led, key=None, now=1.0).status == 201
    assert len(led.snapshot()["payments"]) == 2


def test_key_is_kept_24_hours_then_forgotten() -> None:
    led = ledger()
    first = create(led, now=0.0)
    day = 86_400.0
    assert create(led, now=day - 1).body == first.body
    fresh = create(led, now=day + 1)
    assert fresh.status == 201 and fresh.body["paymentId"] != first.body["paymentId"]


def test_ttl_is_configurable() -> None:
    led = ledger(idempotency_ttl_s=100.0)
    first = create(led, now=0.0)
    assert create(led, now=99.0).body == first.body
    assert create(led, now=101.0).body != first.body


def test_keys_and_payments_are_scoped_per_client() -> None:
    led = ledger()
    mine = create(led, client="c1")
    theirs = create(led, client="c2")
    assert theirs.status == 201 and theirs.body["paymentId"] != mine.body["paymentId"]
    pid = mine.body["paymentId"]
    assert led.handle("c2", api.get_payment(pid), 1).status == 404
    assert led.handle("c2", api.cancel_payment(pid), 1).status == 404
    found = led.handle("c2", api.find_payments("order-1"), 1).body["payments"]
    assert [p["paymentId"] for p in found] == [theirs.body["paymentId"]]


def test_pos_is_scoped_per_client() -> None:
    led = ledger()
    assert create(led, pos="till", client="c1").status == 201
    assert create(led, pos="till", client="c2").status == 201


def test_gets_and_naturally_idempotent_posts_are_ticketed_without_a_key() -> None:
    led = ledger()
    pid = create(led).body["paymentId"]
    for request in (api.get_payment(pid), api.cancel_payment(pid), api.find_payments("o")):
        ticket = led.begin("c1", request, 1.0)
        assert isinstance(ticket, Ticket) and ticket.scope is None
        led.abandon(ticket)


def test_poll_delay_can_be_set_per_call() -> None:
    led = ledger(poll_delay_ms=250)
    pid = create(led).body["paymentId"]
    assert led.handle("c1", api.get_payment(pid), 1).body["pollDelayInMs"] == 250
    r = led.handle("c1", api.get_payment(pid), 1, poll_delay_ms=5000)
    assert r.body["pollDelayInMs"] == 5000


def test_snapshot_has_the_contract_keys() -> None:
    led = ledger()
    create(led)
    snap = led.snapshot(20.0)
    assert set(snap) == {"payments", "refunds"}
    assert set(snap["payments"][0]) >= {"paymentId", "orderId", "amount", "state"}
    assert snap["payments"][0]["state"] == "reserved"


def test_payer_model_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="approve_probability"):
        PayerModel(approve_probability=1.5)
    with pytest.raises(ValueError, match="decide_after_s"):
        PayerModel(decide_after_s=(5.0, 1.0))
    with pytest.raises(ValueError, match="expire_after_s"):
        PayerModel(expire_after_s=0)


def test_repr_has_no_secrets_and_counts() -> None:
    led = ledger()
    create(led)
    assert "payments=1" in repr(led)


# ------------------------------------------------------- pathological bodies


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [966, 5000, 100_000])
def test_deeply_nested_keyed_body_is_a_400_not_a_crash(depth: int) -> None:
    led = ledger()
    body = {**GOOD, "orderId": nested(depth)}
    r = led.handle("c1", Request("POST", "/v10/payments", body, "deep-key"), 0)
    assert_error(r, 400, "invalid_field", "orderId")
    # the key is still free for a good body
    assert led.handle("c1", Request("POST", "/v10/payments", GOOD, "deep-key"), 0).status == 201


def test_fingerprint_is_exact_for_deep_circular_and_odd_bodies() -> None:
    from payflow.provider.ledger import _fingerprint

    deep_a, deep_b = nested(5000), nested(5000)
    assert _fingerprint("POST", "/p", {"x": deep_a}) == _fingerprint("POST", "/p", {"x": deep_b})
    deep_b_changed: Any = nested(4999)
    assert _fingerprint("POST", "/p", {"x": deep_a}) != _fingerprint(
        "POST", "/p", {"x": deep_b_changed}
    )
    circular: dict[str, Any] = {"a": []}
    circular["a"].append(circular)
    assert _fingerprint("POST", "/p", circular) == _fingerprint("POST", "/p", circular)
    huge = 10**5000  # str() of it raises ValueError (int_max_str_digits)
    assert _fingerprint("POST", "/p", {"amount": huge}) != _fingerprint(
        "POST", "/p", {"amount": huge + 1}
    )
    # key order never matters, and a fallback never equals the plain JSON text
    assert _fingerprint("POST", "/p", {"b": deep_a, "a": 1}) == _fingerprint(
        "POST", "/p", {"a": 1, "b": deep_b}
    )
    assert _fingerprint("POST", "/p", GOOD) == _fingerprint(
        "POST", "/p", dict(reversed(GOOD.items()))
    )


def test_huge_integer_amount_names_the_field() -> None:
    from payflow.provider.ledger import HugeNumber

    body = {**GOOD, "amount": HugeNumber.of("9" * 5000)}
    r = ledger().handle("c1", Request("POST", "/v10/payments", body, "k1"), 0)
    assert_error(r, 400, "invalid_field", "amount")
    assert "5000 digits" in r.body["message"]
    body = {**GOOD, "orderId": HugeNumber.of("-" + "1" * 200)}
    r = ledger().handle("c1", Request("POST", "/v10/payments", body, "k1"), 0)
    assert_error(r, 400, "invalid_field", "orderId")
