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
* **policy** -- the :class:`payflow.core._calls.Policy` the core flows run with
  (timeouts, retries, backoff, key scope, polling, cancel on give-up).

The presets map the seed texts to knobs; ``docs/simulation.md`` quotes each
text next to the knob it became.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from payflow.core._backoff import Backoff, Jitter
from payflow.core._budget import RetryBudget
from payflow.core._keys import KeyScope
from payflow.core._policy import Policy, PollSchedule, RetryPolicy, Timeouts

__all__ = ["KNOBS", "PRESETS", "Strategy", "get_strategy", "strategy_names"]

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
        """A copy with some knobs changed (``name`` too, if you like).

        Takes every field of the strategy (``policy=``, ``debounce=``, ...) and the
        flat policy knobs of :data:`KNOBS` (``timeout_s=8, retries=2,
        poll_deadline_s=120, key_scope="order"``), applied on top of ``policy``.
        An unknown knob, a bad value, or a knob the resulting strategy cannot use
        (``recheck_interval_s`` without ``reconcile``, ...) is a ValueError naming it.
        """
        own = _FIELD_NAMES
        flat = {k: changes.pop(k) for k in list(changes) if k in KNOBS and k not in own}
        unknown = sorted(k for k in changes if k not in own)
        if unknown:
            valid = ", ".join(sorted({*own, *KNOBS}))
            raise ValueError(f"strategy.but: {unknown[0]}: unknown knob (valid: {valid})")
        result = replace(self, **changes)
        if flat:
            result = replace(result, policy=_apply_knobs(result.policy, flat))
        _check_usable(result, {*flat, *changes})
        return result

    def knobs(self) -> dict[str, Any]:
        """The flat knobs of :data:`KNOBS` and the strategy's own, as plain values."""
        policy = self.policy
        retry = policy.retry
        out: dict[str, Any] = {
            "timeout_s": retry.timeouts.write,
            "read_timeout_s": retry.timeouts.read,
            "poll_timeout_s": retry.timeouts.poll,
            "retries": retry.max_attempts - 1,
            "retry_deadline_s": retry.deadline,
            "backoff": retry.backoff.kind.value,
            "backoff_base_s": retry.backoff.base,
            "backoff_cap_s": retry.backoff.cap,
            "poll_deadline_s": policy.polling.deadline,
            "key_scope": _SCOPE_NAMES[policy.key_scope],
            "cancel_on_give_up": policy.cancel_on_give_up,
            "recover_pending": policy.recover_pending,
            "refund_unclaimed": policy.refund_unclaimed,
        }
        for name in sorted(_FIELD_NAMES - {"name", "description", "policy"}):
            out[name] = getattr(self, name)
        return out


#: The flat policy knobs of :meth:`Strategy.but`, with what each sets.
KNOBS: dict[str, str] = {
    "timeout_s": "per-attempt timeout of writes (create, capture, cancel, refund), seconds",
    "read_timeout_s": "per-attempt timeout of reads and polls, seconds",
    "poll_timeout_s": "per-attempt timeout of polls alone, seconds (after read_timeout_s)",
    "retries": "retries after the first attempt (0..5; MobilePay allows at most 5)",
    "retry_deadline_s": "time bound of one operation's attempts and sleeps (None: none)",
    "backoff": "retry delay jitter: none, constant, exponential, full, equal, decorrelated",
    "backoff_base_s": "first retry delay, seconds",
    "backoff_cap_s": "longest retry delay, seconds",
    "poll_deadline_s": "how long a pending payment is polled before giving up, seconds",
    "key_scope": "idempotency key per: none, attempt, operation, order",
    "cancel_on_give_up": "cancel a payment whose polling gave up",
    "recover_pending": "a recheck of a pending payment: cancel or poll",
    "refund_unclaimed": "a recheck refunds money the customer was never told of",
}

_SCOPES = {
    "none": KeyScope.NONE,
    "attempt": KeyScope.PER_ATTEMPT,
    "per-attempt": KeyScope.PER_ATTEMPT,
    "operation": KeyScope.PER_OPERATION,
    "per-operation": KeyScope.PER_OPERATION,
    "order": KeyScope.PER_ORDER,
    "per-order": KeyScope.PER_ORDER,
}
_SCOPE_NAMES = {
    KeyScope.NONE: "none",
    KeyScope.PER_ATTEMPT: "attempt",
    KeyScope.PER_OPERATION: "operation",
    KeyScope.PER_ORDER: "order",
}


def _seconds(name: str, value: Any, *, none: bool = False) -> Any:
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        extra = " or None" if none else ""
        raise ValueError(
            f"strategy.but: {name}: must be a number > 0 seconds{extra}, got {value!r}"
        )
    if value == float("inf"):
        raise ValueError(f"strategy.but: {name}: must be finite, got {value!r}")
    return float(value)


def _apply_knobs(policy: Policy, knobs: dict[str, Any]) -> Policy:
    retry, polling = policy.retry, policy.polling
    timeouts, backoff = retry.timeouts, retry.backoff
    try:
        if "timeout_s" in knobs:
            timeouts = replace(timeouts, write=_seconds("timeout_s", knobs["timeout_s"]))
        if "read_timeout_s" in knobs:
            read = _seconds("read_timeout_s", knobs["read_timeout_s"])
            timeouts = replace(timeouts, read=read, poll=read)
        if "poll_timeout_s" in knobs:
            timeouts = replace(timeouts, poll=_seconds("poll_timeout_s", knobs["poll_timeout_s"]))
        retry = replace(retry, timeouts=timeouts)
        if "retries" in knobs:
            n = knobs["retries"]
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 5:
                raise ValueError(f"strategy.but: retries: must be an integer 0..5, got {n!r}")
            retry = replace(retry, max_attempts=n + 1)
        if "retry_deadline_s" in knobs:
            deadline = _seconds("retry_deadline_s", knobs["retry_deadline_s"], none=True)
            retry = replace(retry, deadline=deadline)
        if "backoff" in knobs:
            kind = knobs["backoff"]
            try:
                backoff = replace(backoff, kind=kind if isinstance(kind, Jitter) else Jitter(kind))
            except ValueError:
                valid = ", ".join(j.value for j in Jitter)
                raise ValueError(
                    f"strategy.but: backoff: must be one of {valid}, got {kind!r}"
                ) from None
        if "backoff_base_s" in knobs:
            base = knobs["backoff_base_s"]
            if isinstance(base, bool) or not isinstance(base, int | float) or not base >= 0:
                raise ValueError(f"strategy.but: backoff_base_s: must be >= 0, got {base!r}")
            backoff = replace(backoff, base=float(base), cap=max(backoff.cap, float(base)))
        if "backoff_cap_s" in knobs:
            backoff = replace(backoff, cap=_seconds("backoff_cap_s", knobs["backoff_cap_s"]))
        retry = replace(retry, backoff=backoff)
        if "poll_deadline_s" in knobs:
            polling = replace(
                polling, deadline=_seconds("poll_deadline_s", knobs["poll_deadline_s"])
            )
        changes: dict[str, Any] = {"retry": retry, "polling": polling}
        if "key_scope" in knobs:
            scope = knobs["key_scope"]
            if isinstance(scope, KeyScope):
                changes["key_scope"] = scope
            elif scope in _SCOPES:
                changes["key_scope"] = _SCOPES[scope]
            else:
                raise ValueError(
                    f"strategy.but: key_scope: must be none, attempt, operation or order, "
                    f"got {scope!r}"
                )
        for flag in ("cancel_on_give_up", "refund_unclaimed"):
            if flag in knobs:
                if not isinstance(knobs[flag], bool):
                    raise ValueError(f"strategy.but: {flag}: must be True or False")
                changes[flag] = knobs[flag]
        if "recover_pending" in knobs:
            changes["recover_pending"] = knobs["recover_pending"]
        return replace(policy, **changes)
    except ValueError as exc:
        text = str(exc)
        if text.startswith("strategy.but"):
            raise
        raise ValueError(f"strategy.but: {text}") from None


#: Knobs that only mean something when another is set: knob -> (field, what it needs).
_NEEDS: dict[str, tuple[str, str]] = {
    "recheck_interval_s": ("reconcile", "reconcile=True"),
    "recheck_backoff": ("reconcile", "reconcile=True"),
    "recover_pending": ("reconcile", "reconcile=True"),
    "refund_unclaimed": ("reconcile", "reconcile=True"),
    "lock_until_answer": ("order_lock", "order_lock=True"),
    "operator_patience_s": ("operator_every_s", "operator_every_s"),
    "operator_patience_sigma": ("operator_every_s", "operator_every_s"),
    "delay_notice_s": ("feedback", 'feedback="spinner"'),
}


def _check_usable(strategy: Strategy, changed: set[str]) -> None:
    for knob in sorted(changed):
        need = _NEEDS.get(knob)
        if need is None or getattr(strategy, knob, None) in (None, False):
            continue  # turning a knob off is always allowed
        field_name, what = need
        value = getattr(strategy, field_name)
        if not value or value == "none":
            raise ValueError(
                f"strategy.but: {knob}: {strategy.name} cannot use it (it needs {what})"
            )
    retry = strategy.policy.retry
    if (
        {"retries", "timeout_s"} & changed
        and retry.max_attempts > 1
        and retry.deadline is not None
        and retry.timeouts.write >= retry.deadline
    ):
        raise ValueError(
            f"strategy.but: retries: {strategy.name}'s retry_deadline_s "
            f"({retry.deadline:g} s) leaves no time for a retry after a {retry.timeouts.write:g} s "
            "timeout; raise retry_deadline_s (or set it to None)"
        )


_FIELD_NAMES: frozenset[str] = frozenset(f.name for f in fields(Strategy))

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
