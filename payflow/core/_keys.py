"""Idempotency keys: one per logical operation, reused on every retry of it.

Keys are UUID-shaped. Random keys come from the injected ``rng`` (so a seeded
simulation mints the same keys every run); per-order keys are derived from the
merchant reference, so two submits of one order share a key.
"""

from __future__ import annotations

import hashlib
from enum import Enum

from payflow.core._backoff import Rng

__all__ = ["KeyScope", "derived_key", "new_key"]


class KeyScope(Enum):
    """Which requests share an idempotency key."""

    NONE = "none"  # no key: the provider cannot tell a retry from a new payment
    PER_ATTEMPT = "per-attempt"  # anti-pattern: a fresh key on every attempt
    PER_OPERATION = "per-operation"  # one key per logical operation (MobilePay's rule)
    PER_ORDER = "per-order"  # derived from the order: a double submit reuses it


def _uuid_shape(value: int) -> str:
    # Set the version (4) and variant bits as RFC 9562 does for random UUIDs.
    value &= ~(0xF000 << 64)
    value |= 0x4000 << 64
    value &= ~(0xC000 << 48)
    value |= 0x8000 << 48
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_key(rng: Rng) -> str:
    """A fresh random UUID-shaped key drawn from ``rng``."""
    return _uuid_shape(rng.getrandbits(128))


def derived_key(*parts: str) -> str:
    """A UUID-shaped key that is a pure function of ``parts``.

    Used for per-order keys and for the refund a recheck issues, so that
    repeating the recheck after a crash reuses the same key.
    """
    digest = hashlib.sha256("\x1f".join(("payflow", *parts)).encode()).digest()
    return _uuid_shape(int.from_bytes(digest[:16], "big"))
