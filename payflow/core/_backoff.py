"""Backoff delays with the jitter kinds compared in the AWS Architecture Blog post
"Exponential Backoff And Jitter" (Marc Brooker, 2015).

With ``attempt`` counting retries from 0 and ``temp = min(cap, base * 2**attempt)``:

==============  ==================================================  ===================
kind            delay                                               range
==============  ==================================================  ===================
none            ``0`` (retry at once: the retry-storm baseline)     0
constant        ``min(cap, base)``                                  [0, cap]
exponential     ``temp`` (no jitter)                                [0, cap]
full            ``uniform(0, temp)``                                [0, cap]
equal           ``temp / 2 + uniform(0, temp / 2)``                 [0, cap]
decorrelated    ``min(cap, uniform(base, previous * 3))``           [base, cap]
==============  ==================================================  ===================

Every function is pure: the random draw comes from the ``rng`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

__all__ = ["Backoff", "Jitter", "Rng"]


class Rng(Protocol):
    """The part of :class:`random.Random` payflow draws from."""

    def random(self) -> float: ...

    def getrandbits(self, k: int, /) -> int: ...


class Jitter(Enum):
    """How a retry delay is drawn (see the module docstring)."""

    NONE = "none"
    CONSTANT = "constant"
    EXPONENTIAL = "exponential"
    FULL = "full"
    EQUAL = "equal"
    DECORRELATED = "decorrelated"


@dataclass(frozen=True, slots=True)
class Backoff:
    """A backoff schedule: ``delay(attempt, previous, rng)`` seconds before a retry.

    ``base`` and ``cap`` are seconds. ``attempt`` is 0 for the first retry.
    ``previous`` is the delay used before the previous retry (decorrelated
    jitter grows from it); pass ``None`` before the first retry.
    """

    kind: Jitter = Jitter.FULL
    base: float = 0.1
    cap: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, Jitter):
            object.__setattr__(self, "kind", Jitter(self.kind))
        if not self.base >= 0:
            raise ValueError(f"backoff base must be >= 0 seconds, got {self.base!r}")
        if not self.cap >= self.base:
            raise ValueError(f"backoff cap must be >= base ({self.base}), got {self.cap!r}")

    def delay(self, attempt: int, previous: float | None, rng: Rng) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        return _DRAW[self.kind](self.base, self.cap, attempt, previous, rng)


def _temp(base: float, cap: float, attempt: int) -> float:
    # 2**attempt overflows floats for huge attempts; the cap is reached long before.
    return cap if attempt >= 64 else min(cap, base * 2.0**attempt)


def _none(base: float, cap: float, attempt: int, previous: float | None, rng: Rng) -> float:
    return 0.0


def _constant(base: float, cap: float, attempt: int, previous: float | None, rng: Rng) -> float:
    return min(cap, base)


def _exponential(base: float, cap: float, attempt: int, previous: float | None, rng: Rng) -> float:
    return _temp(base, cap, attempt)


def _full(base: float, cap: float, attempt: int, previous: float | None, rng: Rng) -> float:
    return _temp(base, cap, attempt) * rng.random()


def _equal(base: float, cap: float, attempt: int, previous: float | None, rng: Rng) -> float:
    half = _temp(base, cap, attempt) / 2
    return half + half * rng.random()


def _decorrelated(base: float, cap: float, attempt: int, previous: float | None, rng: Rng) -> float:
    prev = base if previous is None or previous < base else previous
    return min(cap, base + (prev * 3 - base) * rng.random())


_DRAW = {
    Jitter.NONE: _none,
    Jitter.CONSTANT: _constant,
    Jitter.EXPONENTIAL: _exponential,
    Jitter.FULL: _full,
    Jitter.EQUAL: _equal,
    Jitter.DECORRELATED: _decorrelated,
}
