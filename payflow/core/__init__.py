"""The pure core of payflow: payment flows, and the policies they follow.

Rule: nothing here does I/O, reads a clock of its own choosing or draws from a
global random generator (``tests/core/test_purity.py`` enforces it). A flow
is a generator: it yields effects (:mod:`payflow.core.messages`) and events
(:mod:`payflow.core.events`), and is sent their results; one loop
(:mod:`payflow.drivers`) runs it against a performer -- the httpx clients, the
SimPy model, or :class:`payflow.drivers.ScriptedPerformer` in your tests.

This namespace holds what a driver or a ``Policy`` author needs; the rest is in
the submodules named in ``docs/api.md`` (errors: :mod:`payflow.errors`).
"""

from payflow.core._backoff import Backoff, Jitter
from payflow.core._budget import RetryBudget
from payflow.core._calls import Context, Flow
from payflow.core._flows import PaymentResult, cancel, pay, refund, status
from payflow.core._keys import KeyScope
from payflow.core._policy import Policy, PollSchedule, RetryPolicy, Timeouts
from payflow.core._recheck import RecheckResult, recheck
from payflow.core._replies import Expected, PaymentStatus, Refund
from payflow.core.messages import NotSent, PendingRecord, Request, Response, TimedOut

__all__ = [
    "Backoff",
    "Context",
    "Expected",
    "Flow",
    "Jitter",
    "KeyScope",
    "NotSent",
    "PaymentResult",
    "PaymentStatus",
    "PendingRecord",
    "Policy",
    "PollSchedule",
    "RecheckResult",
    "Refund",
    "Request",
    "Response",
    "RetryBudget",
    "RetryPolicy",
    "TimedOut",
    "Timeouts",
    "cancel",
    "pay",
    "recheck",
    "refund",
    "status",
]
