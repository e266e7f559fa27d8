"""The client's view of a payment, as a transitions table.

The table is data: tests check that exactly these transitions are accepted,
and ``docs`` can draw it. A poll that reports the same state is not a
transition; :func:`advance` accepts it and returns the state unchanged.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "FINAL_STATES",
    "MONEY_TAKEN",
    "TRANSITIONS",
    "IllegalTransition",
    "PaymentState",
    "advance",
    "from_provider",
]


class PaymentState(Enum):
    INITIATED = "initiated"  # create sent, no answer yet
    PENDING = "pending"  # the provider waits for the payer
    RESERVED = "reserved"  # approved: money reserved
    CAPTURED = "captured"  # money taken
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    UNKNOWN = "unknown"  # an answer was lost; recheck will tell


S = PaymentState

#: Allowed transitions: state -> states it may move to.
TRANSITIONS: dict[PaymentState, frozenset[PaymentState]] = {
    S.INITIATED: frozenset(
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

FINAL_STATES = frozenset(state for state, nexts in TRANSITIONS.items() if not nexts)
MONEY_TAKEN = frozenset({S.RESERVED, S.CAPTURED})

_PROVIDER_NAMES = {
    "initiated": S.PENDING,  # the provider's "initiated" means waiting for the payer
    "pending": S.PENDING,
    "reserved": S.RESERVED,
    "captured": S.CAPTURED,
    "declined": S.DECLINED,
    "cancelled": S.CANCELLED,
    "expired": S.EXPIRED,
}


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
    """Map a provider ``state`` string to a :class:`PaymentState` (unknown if unrecognised)."""
    return _PROVIDER_NAMES.get(name, S.UNKNOWN)
