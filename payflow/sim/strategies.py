"""Strategies: what the shop does about a slow provider, as plain values.

A :class:`Strategy` is a frozen bundle of knobs in three groups:

* **UI** -- ``debounce`` (the submit button is disabled after a click; a
  reload still re-POSTs), ``feedback`` ("none" or "spinner"), ``delay_notice_s``
  (a "this is taking longer than usual" notice), ``email`` (the shop emails the
  outcome and the page says so when it cannot confirm at once);
* **backend** -- ``mode`` ("sync": the request handler calls the provider behind
  a ``gateway_timeout_s``; "async": accept with 202 and a status page, a worker
  pays), ``order_lock`` (a second submit waits for the payment in flight; with
  ``lock_until_answer`` a payment that ended without an answer from the
  provider keeps the order locked: later submits are refused),
  ``dedupe_paid`` (a submit for a paid order is answered "paid"), ``reconcile``
  (rechecks unknown outcomes every ``recheck_interval_s``; with
  ``recheck_backoff`` a record that stays unknown waits twice as long each
  time, up to an hour),
  ``recover_on_restart`` (rechecks the journal after a crash), ``budget``
  (a shared retry budget: "grpc" or "aws"), ``operator_every_s`` (an
  operator at the till is asked every that many seconds of pending whether to
  keep waiting; each order's operator gives up once a patience drawn from a
  lognormal with median ``operator_patience_s`` and shape
  ``operator_patience_sigma`` has passed -- compare it with a fixed polling
  deadline);
* **policy** -- the :class:`payflow.core.calls.Policy` the core flows run with
  (timeouts, retries, backoff, key scope, polling, cancel on give-up).

The presets map the seed texts to knobs; ``docs/simulation.md`` quotes each
text next to the knob it became.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from payflow.core.backoff import Backoff, Jitter
from payflow.core.budget import RetryBudget
from payflow.core.calls import Policy
from payflow.core.keys import KeyScope
from payflow.core.policy import PollSchedule, RetryPolicy, Timeouts

__all__ = ["PRESETS", "Strategy", "get_strategy", "strategy_names"]

_MODES = ("sync", "async")
_FEEDBACK = ("none", "spinner")
_BUDGETS = (None, "grpc", "aws")


@dataclass(frozen=True, slots=True)
class Strategy:
    """One way of taking payments: UI + backend knobs + the core policy."""

    name: str
    description: str = ""
    policy: Policy = field(default_factory=Policy)
    # UI
    debounce: bool = False
    feedback: str = "none"
    delay_notice_s: float | None = None
    email: bool = False
    # backend
    mode: str = "sync"
    gateway_timeout_s: float | None = 60.0
    order_lock: bool = False
    lock_until_answer: bool = False
    dedupe_paid: bool = False
    reconcile: bool = False
    recheck_interval_s: float = 300.0
    recheck_backoff: bool = False
    recover_on_restart: bool = False
    budget: str | None = None
    operator_every_s: float | None = None
    operator_patience_s: float = 180.0
    operator_patience_sigma: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.policy, Policy):
            raise ValueError(f"strategy.policy: must be a payflow.core.Policy, got {self.policy!r}")
        if self.mode not in _MODES:
            raise ValueError(
                f"strategy.mode: must be one of {', '.join(_MODES)}, got {self.mode!r}"
            )
        if self.feedback not in _FEEDBACK:
            raise ValueError(
                f"strategy.feedback: must be one of {', '.join(_FEEDBACK)}, got {self.feedback!r}"
            )
        if self.budget not in _BUDGETS:
            raise ValueError(f"strategy.budget: must be None, 'grpc' or 'aws', got {self.budget!r}")
        if not self.operator_patience_s > 0 or not self.operator_patience_sigma >= 0:
            raise ValueError(
                "strategy.operator_patience_s: must be > 0 seconds (and "
                f"operator_patience_sigma >= 0), got {self.operator_patience_s!r}"
            )
        for name in ("delay_notice_s", "gateway_timeout_s", "operator_every_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"strategy.{name}: must be > 0 seconds or None, got {value!r}")
        if not self.recheck_interval_s > 0:
            raise ValueError(
                f"strategy.recheck_interval_s: must be > 0 seconds, got {self.recheck_interval_s!r}"
            )

    @property
    def provider_requires_key(self) -> bool:
        """Whether the provider in this world insists on idempotency keys.

        A strategy that sends no key at all is modelled against a provider
        that accepts keyless creates (each one a new payment), as a naive
        integration with a card API would be.
        """
        return self.policy.key_scope is not KeyScope.NONE

    def new_budget(self) -> RetryBudget | None:
        """A fresh retry budget for one backend (budgets are mutable state)."""
        if self.budget == "grpc":
            return RetryBudget.grpc()
        if self.budget == "aws":
            return RetryBudget.aws_standard()
        return None

    def but(self, **changes: Any) -> Strategy:
        """A copy with some knobs changed (``name`` too, if you like)."""
        return replace(self, **changes)


# --------------------------------------------------------------- policies
_NO_BACKOFF = Backoff(Jitter.NONE, 0.0, 0.0)

#: A typical hand-rolled client: 10 s timeouts, 3 attempts at once, retries a
#: keyless POST after a timeout, no cleanup after giving up on polling.
NAIVE_POLICY = Policy(
    retry=RetryPolicy(
        max_attempts=3,
        deadline=None,
        backoff=_NO_BACKOFF,
        timeouts=Timeouts(write=10.0, read=10.0, poll=10.0),
        retry_unsafe=True,
    ),
    key_scope=KeyScope.NONE,
    cancel_on_give_up=False,
)

#: The MobilePay rules: 2 s / 0.5 s / 0.5 s timeouts, 2 retries (3 requests),
#: exponential backoff with full jitter, one idempotency key per order.
MOBILEPAY_POLICY = Policy(
    retry=RetryPolicy(max_attempts=3, deadline=10.0, backoff=Backoff(Jitter.FULL, 0.1, 2.0)),
    polling=PollSchedule(deadline=300.0, on_no_answer="backoff"),
    key_scope=KeyScope.PER_ORDER,
    cancel_on_give_up=True,
    recover_pending="cancel",
    refund_unclaimed=True,
)

NAIVE = Strategy(
    "naive",
    "what the exercise's shop did: synchronous call, 10 s timeouts, blind retries "
    "without a key, no feedback, no lock, no reconciliation",
    NAIVE_POLICY,
)

# Answer A: a "taking longer" message; time out instead of retrying and ask the
# provider what happened; disable the button; a backend check per order.
ANSWER_A = NAIVE.but(
    name="answer-a",
    description="seed answer A: spinner + 'taking longer' notice, no retries (time out, then "
    "ask the provider), debounced button, per-order backend check",
    policy=replace(
        NAIVE_POLICY,
        retry=replace(
            NAIVE_POLICY.retry,
            max_attempts=1,
            retry_unsafe=False,
            timeouts=Timeouts(write=10.0, read=10.0, poll=10.0),
        ),
    ),
    feedback="spinner",
    delay_notice_s=10.0,
    debounce=True,
    order_lock=True,
    # "the same user cannot make the same order before getting a response from the
    # payment API": a flow that ended without one keeps the order locked.
    lock_until_answer=True,
)

# Answer B: fix the frontend's expectations (not a knob); refuse to pay an order
# that exists; hold a second submit until the provider answered the first.
ANSWER_B = NAIVE.but(
    name="answer-b",
    description="seed answer B: the backend refuses to pay an order twice (paid-order check) "
    "and holds a second submit until the first payment answered; nothing else changes",
    dedupe_paid=True,
    order_lock=True,
)

# The exercise's own list of solutions (all twelve numbered points).
EXERCISE = Strategy(
    "exercise",
    "the exercise's solutions: 10 s timeouts, queue + 'being processed' page, per-order key, "
    "email, rollback of stalled payments, lock, debounce, retries at fixed intervals",
    Policy(
        retry=RetryPolicy(
            max_attempts=3,
            deadline=None,
            backoff=Backoff(Jitter.CONSTANT, 5.0, 5.0),
            timeouts=Timeouts(write=10.0, read=10.0, poll=10.0),
        ),
        key_scope=KeyScope.PER_ORDER,
        cancel_on_give_up=True,
    ),
    debounce=True,
    feedback="spinner",
    email=True,
    mode="async",
    order_lock=True,
    reconcile=True,
)

#: Recommended: the MobilePay rules, and a recheck that settles each unknown payment
#: (same key, then polled to its final state) so a late approval ships the order.
RECOMMENDED_POLICY = replace(MOBILEPAY_POLICY, recover_pending="poll", refund_unclaimed=False)

RECOMMENDED = Strategy(
    "recommended",
    "every seed rule: per-order key, journal first, MobilePay timeouts and retries with "
    "jitter and a retry budget, pollDelayInMs, polling deadline then cancel, recheck that "
    "ships late approvals and crash recovery, debounce + status page + email",
    RECOMMENDED_POLICY,
    debounce=True,
    feedback="spinner",
    email=True,
    mode="async",
    order_lock=True,
    dedupe_paid=True,
    reconcile=True,
    recheck_interval_s=300.0,
    recheck_backoff=True,
    recover_on_restart=True,
    budget="grpc",
)

# Single-safeguard ablations: naive plus exactly one thing.
_ABLATIONS = (
    NAIVE.but(
        name="retry-no-key",
        description="naive with MobilePay timeouts and jittered retries, but a fresh "
        "idempotency key on every attempt (looks idempotent, is not)",
        policy=replace(MOBILEPAY_POLICY, key_scope=KeyScope.PER_ATTEMPT, cancel_on_give_up=False),
    ),
    NAIVE.but(
        name="timeout-only",
        description="naive with MobilePay's 2 s / 0.5 s timeouts and no blind retry of a "
        "keyless create",
        policy=replace(
            NAIVE_POLICY,
            retry=replace(MOBILEPAY_POLICY.retry, retry_unsafe=False),
        ),
    ),
    NAIVE.but(
        name="key-only",
        description="naive plus one idempotency key per order (retries and double submits "
        "reuse it)",
        policy=replace(NAIVE_POLICY, key_scope=KeyScope.PER_ORDER),
    ),
    NAIVE.but(
        name="debounce-only", description="naive plus a disabled submit button", debounce=True
    ),
    NAIVE.but(
        name="spinner-only",
        description="naive plus a spinner and a 'taking longer' notice",
        feedback="spinner",
        delay_notice_s=10.0,
    ),
    NAIVE.but(
        name="lock-only", description="naive plus an order lock in the backend", order_lock=True
    ),
    NAIVE.but(
        name="recheck-only",
        description="naive plus periodic recheck of unknown outcomes (cancel / refund)",
        reconcile=True,
    ),
    NAIVE.but(
        name="status-page-only",
        description="naive plus accept-then-process: 202 and a status page, no email",
        mode="async",
    ),
    NAIVE.but(
        name="budget-only", description="naive plus a gRPC-style retry budget", budget="grpc"
    ),
)

# Readings of ambiguous sentences, so settle rules are compared on equal terms.
_VARIANTS = (
    # Exercise 2.2 "the order is rolled back" read as: settle the payment and ship it if
    # it went through (the reading `recommended` uses), instead of cancel / refund.
    EXERCISE.but(
        name="exercise-settle",
        description="the exercise's solutions with 'roll back' read as settle-and-ship: a "
        "stalled payment is rechecked to its end and an approved one ships",
        policy=replace(EXERCISE.policy, recover_pending="poll", refund_unclaimed=False),
    ),
    # The recommended strategy with the exercise's reading of "roll back".
    RECOMMENDED.but(
        name="recommended-rollback",
        description="recommended, but a stalled payment is rolled back (cancel pending, refund "
        "taken) instead of settled and shipped",
        policy=replace(RECOMMENDED_POLICY, recover_pending="cancel", refund_unclaimed=True),
    ),
    # Answer A's "cannot make the same order before getting a response" read as the
    # lock of an ordinary backend, released when the request handler ends.
    ANSWER_A.but(
        name="answer-a-release",
        description="answer A with the order lock released when the payment flow ends, "
        "answered or not",
        lock_until_answer=False,
    ),
)

#: Every preset by name, in the order ``--list`` shows them.
PRESETS: dict[str, Strategy] = {
    s.name: s for s in (NAIVE, ANSWER_A, ANSWER_B, EXERCISE, *_ABLATIONS, RECOMMENDED, *_VARIANTS)
}


def strategy_names() -> list[str]:
    """The preset names, naive first and recommended last."""
    return list(PRESETS)


def get_strategy(name: str | Strategy) -> Strategy:
    """A preset by name (or ``name`` itself if it is already a strategy).

    Raises :class:`LookupError` listing the valid names.
    """
    if isinstance(name, Strategy):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise LookupError(f"unknown strategy {name!r} (valid: {', '.join(PRESETS)})") from None
