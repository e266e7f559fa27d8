"""Argument checks done before anything is journalled or sent.

Each raises :class:`~payflow.core.errors.InvalidRequest` naming the field.
The provider applies the same rules to what arrives on the wire.
"""

from __future__ import annotations

import re

from payflow.core.errors import InvalidRequest

__all__ = [
    "CURRENCY_PATTERN",
    "KEY_PATTERN",
    "MAX_AMOUNT",
    "PAYMENT_ID_PATTERN",
    "REFERENCE_PATTERN",
    "amount",
    "currency",
    "idempotency_key",
    "is_payment_id",
    "payment_id",
    "reference",
]

#: Largest amount accepted, in minor units (ten million kroner in øre); the
#: reference provider uses the same limit, so client and provider agree.
MAX_AMOUNT = 1_000_000_000
#: Merchant references (order ids, refund references, point-of-sale ids).
REFERENCE_PATTERN = r"[A-Za-z0-9._:-]{1,64}"
#: Idempotency keys (UUIDs fit).
KEY_PATTERN = r"[A-Za-z0-9_-]{1,64}"
#: Payment ids go into URL paths: a reference that is not a dot-segment
#: (``.`` or ``..`` would let ``status("..")`` reach ``GET /v10/payments``).
PAYMENT_ID_PATTERN = r"(?!\.{1,2}$)[A-Za-z0-9._:-]{1,64}"
CURRENCY_PATTERN = r"[A-Z]{3}"
_REFERENCE = re.compile(REFERENCE_PATTERN)
_KEY = re.compile(KEY_PATTERN)
_CURRENCY = re.compile(CURRENCY_PATTERN)
_PAYMENT_ID = re.compile(PAYMENT_ID_PATTERN)


def amount(value: object, field: str = "amount") -> int:
    """A positive integer number of minor units (never a float: money is exact)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(
            field, f"must be an integer number of minor units, got {type(value).__name__}"
        )
    if value <= 0:
        raise InvalidRequest(field, f"must be positive, got {value}")
    if value > MAX_AMOUNT:
        raise InvalidRequest(field, f"must be at most {MAX_AMOUNT}, got {value}")
    return value


def currency(value: object, field: str = "currency") -> str:
    """An ISO 4217 code: three upper-case letters."""
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise InvalidRequest(field, f"must be three upper-case letters (ISO 4217), got {value!r}")
    return value


def reference(value: object, field: str) -> str:
    """A merchant reference: 1-64 characters of letters, digits and ``. _ : -``."""
    if not isinstance(value, str):
        raise InvalidRequest(field, f"must be a string, got {type(value).__name__}")
    if not _REFERENCE.fullmatch(value):
        shown = value if len(value) <= 70 else value[:67] + "..."
        raise InvalidRequest(
            field, f"must be 1-64 characters of letters, digits and . _ : -, got {shown!r}"
        )
    return value


def idempotency_key(value: object, field: str = "key") -> str:
    """An idempotency key: 1-64 characters of letters, digits, ``-`` and ``_``."""
    if not isinstance(value, str) or not _KEY.fullmatch(value):
        raise InvalidRequest(
            field, "must be 1-64 characters of letters, digits, - and _ (a UUID fits)"
        )
    return value


def payment_id(value: object, field: str = "payment_id") -> str:
    """A payment id safe to put in a URL path: a reference other than ``.`` or ``..``."""
    reference(value, field)
    assert isinstance(value, str)
    if not _PAYMENT_ID.fullmatch(value):
        raise InvalidRequest(field, f"must not be a dot-segment, got {value!r}")
    return value


def is_payment_id(value: object) -> bool:
    """True if ``value`` may be used as a payment id (checks provider-supplied ids)."""
    return isinstance(value, str) and _PAYMENT_ID.fullmatch(value) is not None
