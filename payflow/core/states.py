"""The one vocabulary of payment state: a transitions table, and every set derived from it.

Rule: decisions about a payment ask this module -- "is money taken?", "is it
final?", "may it move from here to there?" -- never a string compared by hand.
The table is data: tests check that exactly these transitions are accepted,
and ``docs`` can draw it. A poll that reports the same state is not a
transition; :func:`advance` accepts it and returns the state unchanged.

Two names, one meaning each: the provider's wire states (``"initiated"``,
``"reserved"``, ...: :data:`PROVIDER_STATES`) map onto the client's view
(:class:`PaymentState`), where the provider's ``initiated`` -- waiting for the
payer -- is :attr:`PaymentState.PENDING`, and :attr:`PaymentState.SENT` means
the create was sent and nothing has been heard yet.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

__all__ = [
    "FINAL",
    "FINAL_PAYMENT_STATES",
    "FINAL_STATES",
    "MONEY_CHARGED",
    "MONEY_HELD",
    "MONEY_TAKEN",
    "MONEY_TAKEN_STATES",
    "NOTHING_TAKEN",
    "PAYMENT_STATES",
    "PROVIDER_STATES",
    "TRANSITIONS",
    "IllegalTransition",
    "PaymentState",
    "advance",
    "charged",
    "from_provider",
    "held",
]


class PaymentState(Enum):
    SENT = "sent"  # create sent, no answer yet
    PENDING = "pending"  # the provider waits for the payer (its "initiated")
    RESERVED = "reserved"  # approved: the payer's money is held
    CAPTURED = "captured"  # the payer is charged
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    UNKNOWN = "unknown"  # an answer was lost; recheck will tell


S = PaymentState

#: Allowed transitions: state -> states it may move to.
TRANSITIONS: Final[dict[PaymentState, frozenset[PaymentState]]] = {
    S.SENT: frozenset(
        {S.PENDING, S.RESERVED, S.CAPTURED, S.DECLINED, S.CANCELLED, S.EXPIRED, S.UNKNOWN}
    ),
    S.PENDING: frozenset({S.RESERVED, S.CAPTURED, S.DECLINED, S.CANCELLED, S.EXPIRED, S.UNKNOWN}),
    S.RESERVED: frozenset({S.CAPTURED, S.REFUNDED, S.UNKNOWN}),
    S.CAPTURED: frozenset({S.REFUNDED}),
    S.UNKNOWN: frozenset(
        {S.PENDING, S.RESERVED, S.CAPTURED, S.DECLINED, S.CANCELLED, S.EXPIRED, S.REFUNDED}
    ),
    S.DECLINED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
    S.REFUNDED: frozenset(),
}

#: No way out at all.
FINAL_STATES: Final = frozenset(state for state, nexts in TRANSITIONS.items() if not nexts)
#: Final bar refunds: only a refund can change it.
FINAL: Final = frozenset(s for s, nexts in TRANSITIONS.items() if nexts <= {S.REFUNDED})
#: The payer's money is held (a reservation, not yet charged).
MONEY_HELD: Final = frozenset({S.RESERVED})
#: The payer is charged.
MONEY_CHARGED: Final = frozenset({S.CAPTURED})
#: Money taken: held or charged -- what the shop must account for (ship, report or refund).
MONEY_TAKEN: Final = MONEY_HELD | MONEY_CHARGED
#: Ended without taking anything.
NOTHING_TAKEN: Final = FINAL - MONEY_TAKEN - {S.REFUNDED}

#: The provider's payment states (the wire contract, ``docs/api.md``) and what each means.
PROVIDER_STATES: Final[dict[str, PaymentState]] = {
    "initiated": S.PENDING,  # the provider's "initiated" means waiting for the payer
    "reserved": S.RESERVED,
    "captured": S.CAPTURED,
    "declined": S.DECLINED,
    "cancelled": S.CANCELLED,
    "expired": S.EXPIRED,
}
#: The same sets, spelled as the provider's strings (for replies, ledgers and logs).
PAYMENT_STATES: Final = frozenset(PROVIDER_STATES)
MONEY_TAKEN_STATES: Final = frozenset(n for n, s in PROVIDER_STATES.items() if s in MONEY_TAKEN)
FINAL_PAYMENT_STATES: Final = frozenset(n for n, s in PROVIDER_STATES.items() if s in FINAL)


class IllegalTransition(ValueError):
    """A payment was asked to move along an edge that is not in :data:`TRANSITIONS`."""


def advance(current: PaymentState, new: PaymentState) -> PaymentState:
    """Return ``new`` if ``current -> new`` is allowed; raise otherwise."""
    if new is current:
        return current
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"payment cannot move from {current.value} to {new.value}")
    return new


def from_provider(name: str) -> PaymentState:
    """The :class:`PaymentState` a provider ``state`` string means (unknown if unrecognised)."""
    return PROVIDER_STATES.get(name, S.UNKNOWN)


def charged(state: str, refunded: int, amount: int) -> bool:
    """Whether a payment the provider reports in ``state`` (its wire name) has charged
    the payer and kept the money: captured, and less than ``amount`` refunded."""
    return PROVIDER_STATES.get(state) in MONEY_CHARGED and refunded < amount


def held(state: str, refunded: int, amount: int) -> bool:
    """Whether it holds the payer's money: reserved (not captured), not refunded in full
    (a hold is released when the reservation expires)."""
    return PROVIDER_STATES.get(state) in MONEY_HELD and refunded < amount
