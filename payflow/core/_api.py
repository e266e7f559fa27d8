"""Builders for the provider's requests (the wire contract is in ``docs/api.md``).

Flows call these instead of spelling paths and JSON names themselves, so the
client, the simulation and the reference provider agree on one contract.
"""

from __future__ import annotations

from typing import Any

from payflow.core._validate import payment_id as _checked
from payflow.core.messages import CallKind, Request

__all__ = [
    "CLIENT_ID_HEADER",
    "CLIENT_VERSION_HEADER",
    "CORRELATION_HEADER",
    "IDEMPOTENCY_HEADER",
    "cancel_payment",
    "capture_payment",
    "create_payment",
    "create_refund",
    "find_payments",
    "get_payment",
    "get_refund",
]

IDEMPOTENCY_HEADER = "X-MobilePay-Idempotency-Key"
CLIENT_ID_HEADER = "x-ibm-client-id"
CLIENT_VERSION_HEADER = "x-mobilepay-client-system-version"
CORRELATION_HEADER = "x-correlation-id"


def create_payment(
    order_id: str,
    amount: int,
    currency: str,
    key: str | None,
    pos_id: str | None = None,
) -> Request:
    body: dict[str, Any] = {"orderId": order_id, "amount": amount, "currency": currency}
    if pos_id is not None:
        body["posId"] = pos_id
    return Request("POST", "/v10/payments", body, key, CallKind.WRITE, operation="create")


def get_payment(payment_id: str, *, polling: bool = True) -> Request:
    kind = CallKind.POLL if polling else CallKind.READ
    operation = "poll" if polling else "status"
    return Request(
        "GET", f"/v10/payments/{_checked(payment_id)}", None, None, kind, operation=operation
    )


def find_payments(order_id: str) -> Request:
    # The order id goes in the query string; Request keeps it in the path.
    return Request(
        "GET", f"/v10/payments?orderId={order_id}", None, None, CallKind.READ, operation="lookup"
    )


def cancel_payment(payment_id: str) -> Request:
    return Request(
        "POST",
        f"/v10/payments/{_checked(payment_id)}/cancel",
        None,
        None,
        CallKind.WRITE,
        naturally_idempotent=True,
        operation="cancel",
    )


def capture_payment(payment_id: str, amount: int) -> Request:
    return Request(
        "POST",
        f"/v10/payments/{_checked(payment_id)}/capture",
        {"amount": amount},
        None,
        CallKind.WRITE,
        naturally_idempotent=True,
        operation="capture",
    )


def create_refund(payment_id: str, amount: int, reference: str, key: str | None) -> Request:
    body = {"paymentId": _checked(payment_id), "amount": amount, "reference": reference}
    return Request("POST", "/v10/refunds", body, key, CallKind.WRITE, operation="refund")


def get_refund(refund_id: str) -> Request:
    return Request(
        "GET",
        f"/v10/refunds/{_checked(refund_id, 'refund_id')}",
        None,
        None,
        CallKind.POLL,
        operation="refund-poll",
    )
