"""Reading the provider's replies: fully understood and matching the request, or not at all.

The rule of money (MobilePay: "any valid HTTP response received in the client
must be handled appropriately"; "Backend has the truth") needs *one* place that
decides whether a reply was understood. This is it: every 2xx a flow acts on
goes through :func:`read_payment`, :func:`read_payments` or :func:`read_refund`,
which return a typed view or raise

* :class:`~payflow.core.errors.ReplyNotUnderstood` -- not JSON, the wrong shape,
  a state outside the wire contract (``docs/api.md``), a payment id that could
  not be put in a path. The flows treat it as *no answer*: outcome unknown,
  the journal keeps the record. Never as a final state.
* :class:`~payflow.core.errors.ProviderMismatch` -- a well-formed reply about
  something else than what was asked: another payment id, another order, another
  amount or currency. Nothing is captured or reported as paid on it.

A view is only ever built from a reply that passed every check, so code holding
a :class:`PaymentStatus` may trust its fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from payflow.core import _validate as validate
from payflow.core.errors import ProviderMismatch, ReplyNotUnderstood
from payflow.core.states import (
    FINAL_PAYMENT_STATES,
    MONEY_TAKEN_STATES,
    PAYMENT_STATES,
    PaymentState,
    from_provider,
)

__all__ = [
    "ANYTHING",
    "Expected",
    "PaymentStatus",
    "Refund",
    "read_payment",
    "read_payments",
    "read_refund",
]

#: A ``pollDelayInMs`` above a day is read as a day (it only has to end the polling).
_MAX_POLL_DELAY_MS: Final = 86_400_000


@dataclass(frozen=True, slots=True)
class PaymentStatus:
    """The provider's view of one payment, as a reply that was fully understood.

    ``state`` is the provider's: initiated, reserved, captured, declined,
    cancelled or expired. ``cancel()`` returns "cancelled" only when the
    provider confirmed it; otherwise the real state it found.
    """

    payment_id: str
    order_id: str
    state: str
    amount: int
    currency: str
    refunded_amount: int = 0
    poll_delay_ms: int | None = None
    correlation_id: str | None = None

    @property
    def stage(self) -> PaymentState:
        """What ``state`` means in the one vocabulary (:mod:`payflow.core.states`)."""
        return from_provider(self.state)

    @property
    def money_taken(self) -> bool:
        """True if the payer's money is reserved or captured."""
        return self.state in MONEY_TAKEN_STATES

    @property
    def final(self) -> bool:
        """True if the state can no longer change (refunds aside)."""
        return self.state in FINAL_PAYMENT_STATES


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund the provider accepted."""

    refund_id: str
    payment_id: str
    amount: int
    reference: str
    state: str


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _correlation(body: Mapping[str, Any]) -> str | None:
    value = body.get("correlationId")
    return value if isinstance(value, str) and value else None


def _field(body: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in body:
        raise ReplyNotUnderstood(f"the {what} reply has no {name!r}")
    return body[name]


def _check(name: str, got: object, want: object | None, what: str) -> None:
    if want is not None and got != want:
        raise ProviderMismatch(f"the {what} reply names {name} {got!r}, not {want!r}")


@dataclass(frozen=True, slots=True)
class Expected:
    """What a reply must say about the payment asked for (``None``: not checked)."""

    order_id: str | None = None
    amount: int | None = None
    currency: str | None = None


#: No expectation beyond the payment id (a caller's ``status(payment_id)``).
ANYTHING = Expected()


def read_payment(
    body: object,
    *,
    payment_id: str | None = None,
    expect: Expected = ANYTHING,
    what: str = "payment",
) -> PaymentStatus:
    """The payment a 2xx ``body`` describes, checked against what was asked.

    Every expectation given (``payment_id`` and ``expect``'s fields) must hold
    (``ProviderMismatch`` otherwise); every field of the contract must be present
    and well-typed (``ReplyNotUnderstood`` otherwise). ``pollDelayInMs`` is
    advice, not money: an odd value is ignored.
    """
    if not isinstance(body, Mapping) or not body:
        raise ReplyNotUnderstood(f"the {what} reply is empty or not a JSON object")
    pid = _field(body, "paymentId", what)
    if not validate.is_payment_id(pid):
        raise ReplyNotUnderstood(f"the {what} reply has no usable paymentId ({pid!r:.70})")
    order = _field(body, "orderId", what)
    if not isinstance(order, str) or not order:
        raise ReplyNotUnderstood(f"the {what} reply has no usable orderId")
    value = _field(body, "amount", what)
    if not _is_int(value) or value <= 0:
        raise ReplyNotUnderstood(f"the {what} reply has no usable amount ({value!r:.40})")
    money = _field(body, "currency", what)
    if not isinstance(money, str) or len(money) != 3 or not money.isascii():
        raise ReplyNotUnderstood(f"the {what} reply has no usable currency")
    state = _field(body, "state", what)
    if state not in PAYMENT_STATES:
        raise ReplyNotUnderstood(f"the {what} reply has an unknown state ({state!r:.40})")
    refunded: Any = body.get("refundedAmount", 0)
    if refunded is None:
        refunded = 0
    if not _is_int(refunded) or not 0 <= refunded <= value:
        raise ReplyNotUnderstood(f"the {what} reply has an impossible refundedAmount")
    _check("payment", pid, payment_id, what)
    _check("order", order, expect.order_id, what)
    _check("amount", value, expect.amount, what)
    _check("currency", money, expect.currency, what)
    delay: Any = body.get("pollDelayInMs")
    poll_ms = min(delay, _MAX_POLL_DELAY_MS) if _is_int(delay) and delay >= 0 else None
    return PaymentStatus(
        pid, order, str(state), value, money, refunded, poll_ms, _correlation(body)
    )


def read_payments(body: object, *, order_id: str) -> list[PaymentStatus]:
    """The payments of a lookup by order (``{"payments": [...]}``), every one checked.

    One entry that is not understood, or that names another order, makes the
    whole list untrustworthy: the caller cannot tell what is missing.
    """
    if not isinstance(body, Mapping):
        raise ReplyNotUnderstood("the lookup reply is not a JSON object")
    payments = body.get("payments")
    if not isinstance(payments, list):
        raise ReplyNotUnderstood("the lookup reply has no 'payments' list")
    expect = Expected(order_id=order_id)
    return [read_payment(p, expect=expect, what="lookup") for p in payments]


def read_refund(body: object, *, payment_id: str, amount: int, reference: str) -> Refund:
    """The refund a 2xx ``body`` describes, checked against the refund asked for."""
    what = "refund"
    if not isinstance(body, Mapping) or not body:
        raise ReplyNotUnderstood("the refund reply is empty or not a JSON object")
    refund_id = _field(body, "refundId", what)
    if not isinstance(refund_id, str) or not refund_id:
        raise ReplyNotUnderstood("the refund reply has no usable refundId")
    pid = _field(body, "paymentId", what)
    value = _field(body, "amount", what)
    if not _is_int(value):
        raise ReplyNotUnderstood("the refund reply has no usable amount")
    ref = body.get("reference", reference)
    state = _field(body, "state", what)
    if state != "completed":  # the contract's only refund state
        raise ReplyNotUnderstood(f"the refund reply has an unknown state ({state!r:.40})")
    _check("payment", pid, payment_id, what)
    _check("amount", value, amount, what)
    _check("reference", ref, reference, what)
    return Refund(refund_id, payment_id, value, reference, state)
