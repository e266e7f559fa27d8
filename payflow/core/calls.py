"""The two loops every flow is built from: a retried call and a polling loop.

Both are generators of effects (see :mod:`payflow.core.messages`); flows use
them with ``yield from``. All decisions come from :mod:`payflow.core.policy`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias, TypeVar

from payflow.core import api
from payflow.core.backoff import Rng
from payflow.core.budget import RetryBudget
from payflow.core.errors import (
    OutcomeUnknown,
    ProviderUnavailable,
    ReplyNotUnderstood,
    RequestRejected,
)
from payflow.core.events import Attempt, AttemptResult, GaveUp, Poll, Retry
from payflow.core.keys import KeyScope, new_key
from payflow.core.messages import (
    Call,
    Effect,
    Emit,
    NotSent,
    Now,
    Request,
    Response,
    Sleep,
    TimedOut,
)
from payflow.core.policy import Done, GiveUp, PollSchedule, RetryAfter, RetryPolicy, Verdict
from payflow.core.policy import retry_after_seconds as _retry_after
from payflow.core.replies import ANYTHING, Expected, PaymentStatus, read_payment

__all__ = ["Context", "Flow", "Policy", "PollingTimedOut", "call", "poll_until_settled"]

T = TypeVar("T")

#: A flow: yields effects, is sent their results, returns ``T``.
Flow: TypeAlias = Generator[Effect, Any, T]


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything a flow needs to know about how to behave.

    ``recover_pending`` says what a recheck does with a payment still waiting
    for the payer: "cancel" it (Laybuy's recheck rule) or "poll" until it ends.
    ``refund_unclaimed`` says what a recheck does with a payment that took
    money but that the caller never saw: refund it, or report it (kept in the
    journal until the caller applies it).
    """

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    polling: PollSchedule = field(default_factory=PollSchedule)
    key_scope: KeyScope = KeyScope.PER_OPERATION
    capture: bool = True
    cancel_on_give_up: bool = True
    recover_pending: str = "cancel"
    refund_unclaimed: bool = True

    def __post_init__(self) -> None:
        if self.recover_pending not in ("cancel", "poll"):
            raise ValueError(
                f"recover_pending must be 'cancel' or 'poll', got {self.recover_pending!r}"
            )


@dataclass(slots=True)
class Context:
    """What a running flow draws on: its policy, an rng, and a shared retry budget."""

    policy: Policy
    rng: Rng
    budget: RetryBudget | None = None


class PollingTimedOut(Exception):
    """Internal: the polling deadline passed with the payment still pending."""

    def __init__(self) -> None:
        super().__init__("polling deadline reached")


#: Longest wait a ``Retry-After`` is read as while polling (it only has to end the polling).
_MAX_WAIT_S = 86_400.0


#: The one ``Now`` effect every loop yields (it has no fields: one object serves all).
_NOW = Now()

_OUTCOME_NAMES: dict[type, str] = {Response: "response", NotSent: "not-sent", TimedOut: "timeout"}


def _outcome_name(outcome: object) -> str:
    name = _OUTCOME_NAMES.get(outcome.__class__)
    if name is not None:
        return name
    if isinstance(outcome, Response):
        return "response"
    return "not-sent" if isinstance(outcome, NotSent) else "timeout"


def call(
    request: Request,
    ctx: Context,
    reference: str = "",
    retry: RetryPolicy | None = None,
    sent: list[int] | None = None,
    cost_paid: float = 0.0,
) -> Flow[Response]:
    """Send ``request`` under the retry policy and return the final response.

    The final response is a 2xx, a 409 (out of sync: the caller queries the
    resource) or another 4xx. Raises :class:`ProviderUnavailable` when retrying
    stopped and no attempt can have had an effect (or the request was a read),
    and :class:`OutcomeUnknown` when one may have. ``sent``, if given, is a
    one-item list whose count is increased by every attempt. ``cost_paid`` is
    retry budget the caller already took for this call (a re-send): a success
    refunds it with the call's own retries (AWS standard mode).
    """
    policy = retry or ctx.policy.retry
    per_attempt = ctx.policy.key_scope is KeyScope.PER_ATTEMPT and request.method == "POST"
    start: float = yield _NOW
    attempt, previous, maybe_sent = 0, None, False
    while True:
        attempt += 1
        now: float = yield _NOW
        timeout = policy.attempt_timeout(request, now - start)
        if timeout is None:
            yield Emit(GaveUp(request.operation, reference, attempt - 1, "deadline", now))
            raise _give_up_error(request, reference, "deadline", maybe_sent, None)
        key = request.idempotency_key
        if sent is not None:
            sent[0] += 1  # the caller counts requests per operation (MobilePay: at most 6)
        yield Emit(Attempt(request.operation, reference, attempt, key, timeout, now))
        outcome = yield Call(request, timeout)
        now = yield _NOW
        status = outcome.status if isinstance(outcome, Response) else None
        yield Emit(
            AttemptResult(
                request.operation, reference, attempt, _outcome_name(outcome), status, now
            )
        )
        decision = policy.decide(
            request,
            outcome,
            attempt=attempt,
            elapsed=now - start,
            previous_delay=previous,
            rng=ctx.rng,
            budget=ctx.budget,
            maybe_sent=maybe_sent,
        )
        if isinstance(decision, Done):
            if decision.verdict is Verdict.SUCCESS and ctx.budget is not None:
                ctx.budget.record_success(cost_paid)
            assert isinstance(outcome, Response)
            return outcome
        if isinstance(decision, GiveUp):
            yield Emit(GaveUp(request.operation, reference, attempt, decision.reason, now))
            last = outcome if isinstance(outcome, Response) else None
            raise _give_up_error(request, reference, decision.reason, decision.maybe_sent, last)
        assert isinstance(decision, RetryAfter)
        # Refused connections and 429s were certainly not acted on; anything else may be.
        maybe_sent = maybe_sent or not (
            isinstance(outcome, NotSent)
            or (isinstance(outcome, Response) and outcome.status == 429)
        )
        cost_paid += decision.cost
        yield Emit(
            Retry(request.operation, reference, attempt, decision.delay, decision.reason, now)
        )
        if decision.delay > 0:
            yield Sleep(decision.delay)
        previous = decision.delay
        if per_attempt:
            # The anti-pattern modelled by naive strategies: the provider sees a new payment.
            request = replace(request, idempotency_key=new_key(ctx.rng))


def _give_up_error(
    request: Request, reference: str, reason: str, maybe_sent: bool, last: Response | None
) -> OutcomeUnknown | ProviderUnavailable:
    details: dict[str, Any] = {
        "reference": reference or None,
        "idempotency_key": request.idempotency_key,
        "correlation_id": last.correlation_id if last is not None else None,
        "status": last.status if last is not None else None,
    }
    if reason == "unknown" or (maybe_sent and request.method != "GET"):
        # A write that may have reached the provider: it may have taken effect.
        return OutcomeUnknown(
            f"{request.operation}: no answer ({reason}); outcome unknown", **details
        )
    return ProviderUnavailable(f"{request.operation}: provider unavailable ({reason})", **details)


def poll_until_settled(
    payment_id: str,
    ctx: Context,
    reference: str,
    first_delay_ms: int | None,
    schedule: PollSchedule | None = None,
    *,
    expect: Expected = ANYTHING,
) -> Flow[PaymentStatus]:
    """Poll a payment until it leaves ``initiated``; return what the provider said.

    Waits at least the last ``pollDelayInMs`` between polls; a poll that gets
    no answer -- or an answer that is not understood -- is not retried on its
    own: the loop polls again after the schedule's delay. Every answer is
    checked against the payment asked for (and ``expect``): a mismatch raises
    :class:`~payflow.core.errors.ProviderMismatch` at once. Raises
    :class:`PollingTimedOut` at the polling deadline (it never starts a wait
    that would end past it, and cuts the last poll to the time left).
    """
    schedule = schedule or ctx.policy.polling
    timeout = ctx.policy.retry.timeouts.poll
    shortest = min(timeout, ctx.policy.retry.min_attempt_timeout)
    request = api.get_payment(payment_id)
    start: float = yield _NOW
    last_ms, failures, previous = first_delay_ms, 0, None
    while True:
        delay = schedule.next_delay(last_ms, failures, previous, ctx.rng)
        now: float = yield _NOW
        if now + delay + shortest - start > schedule.deadline:
            raise PollingTimedOut()
        yield Sleep(delay)
        previous = delay
        now = yield _NOW
        # No poll outlives the polling deadline: the last one gets the time left.
        cut = min(timeout, schedule.deadline - (now - start))
        if cut < shortest:
            raise PollingTimedOut()
        yield Emit(Attempt("poll", reference, failures + 1, None, cut, now))
        outcome = yield Call(request, cut)
        now = yield _NOW
        status = outcome.status if isinstance(outcome, Response) else None
        yield Emit(
            AttemptResult("poll", reference, failures + 1, _outcome_name(outcome), status, now)
        )
        if isinstance(outcome, Response) and outcome.ok:
            try:
                view = read_payment(outcome.body, payment_id=payment_id, expect=expect, what="poll")
            except ReplyNotUnderstood:
                pass  # as good as no answer: poll again after the schedule's delay
            else:
                last_ms = view.poll_delay_ms if view.poll_delay_ms is not None else last_ms
                failures = 0
                yield Emit(Poll(payment_id, reference, view.state, last_ms, now))
                if view.state != "initiated":
                    return view
                continue
        elif (
            isinstance(outcome, Response)
            and 400 <= outcome.status < 500
            and (outcome.status not in (408, 409, 429))
        ):
            raise RequestRejected(
                f"poll refused with HTTP {outcome.status}",
                reference=reference,
                payment_id=payment_id,
                correlation_id=outcome.correlation_id,
                status=outcome.status,
                code=_code(outcome),
            )
        failures += 1
        yield Emit(Poll(payment_id, reference, None, last_ms, now))
        if isinstance(outcome, Response):
            server = _retry_after(outcome)
            if server is not None:
                last_ms = max(last_ms or 0, int(min(server, _MAX_WAIT_S) * 1000))


def _code(resp: Response) -> str | None:
    """The provider's error ``code``, if it gave a usable one."""
    code = resp.body.get("code")
    return code if isinstance(code, str) and code else None
