"""The pure core of payflow: requests, policies and flows.

Nothing here does I/O, reads a clock or draws from a global random generator
(a test enforces it). Drivers -- the httpx clients, the SimPy model, the
tests' scripted driver -- run the flows by performing the effects they yield.
"""

from payflow.core.backoff import Backoff, Jitter, Rng
from payflow.core.budget import RetryBudget
from payflow.core.calls import Context, Flow, Policy, call, poll_until_settled
from payflow.core.errors import (
    AuthenticationFailed,
    ConflictError,
    InvalidRequest,
    OutcomeUnknown,
    PayflowError,
    PaymentCancelled,
    PaymentDeclined,
    PaymentFailed,
    ProviderUnavailable,
    RequestRejected,
)
from payflow.core.flows import PaymentResult, cancel, pay, refund, status
from payflow.core.keys import KeyScope, derived_key, new_key
from payflow.core.messages import (
    AskOperator,
    Authenticate,
    Call,
    CallKind,
    Effect,
    Forget,
    NotSent,
    Outcome,
    PendingRecord,
    Request,
    Response,
    Save,
    Sleep,
    TimedOut,
)
from payflow.core.policy import PollSchedule, RetryPolicy, Timeouts, Verdict, classify
from payflow.core.recheck import RecheckResult, recheck
from payflow.core.states import PaymentState

__all__ = [
    "AskOperator",
    "Authenticate",
    "AuthenticationFailed",
    "Backoff",
    "Call",
    "CallKind",
    "ConflictError",
    "Context",
    "Effect",
    "Flow",
    "Forget",
    "InvalidRequest",
    "Jitter",
    "KeyScope",
    "NotSent",
    "Outcome",
    "OutcomeUnknown",
    "PayflowError",
    "PaymentCancelled",
    "PaymentDeclined",
    "PaymentFailed",
    "PaymentResult",
    "PaymentState",
    "PendingRecord",
    "Policy",
    "PollSchedule",
    "ProviderUnavailable",
    "RecheckResult",
    "Request",
    "RequestRejected",
    "Response",
    "RetryBudget",
    "RetryPolicy",
    "Rng",
    "Save",
    "Sleep",
    "TimedOut",
    "Timeouts",
    "Verdict",
    "call",
    "cancel",
    "classify",
    "derived_key",
    "new_key",
    "pay",
    "poll_until_settled",
    "recheck",
    "refund",
    "status",
]
