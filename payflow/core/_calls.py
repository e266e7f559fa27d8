"""The two loops every flow is built from: a retried call and a polling loop.

Both are generators of effects (see :mod:`payflow.core.messages`); flows use
them with ``yield from``. All decisions come from :mod:`payflow.core._policy`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any, TypeAlias, TypeVar

from payflow.core import _api as api
from payflow.core._backoff import Rng
from payflow.core._budget import RetryBudget
from payflow.core._keys import KeyScope, new_key
from payflow.core._policy import (
    Done,
    GiveUp,
    Policy,
    PollSchedule,
    RetryAfter,
    RetryPolicy,
    Verdict,
)
from payflow.core._policy import retry_after_seconds as _retry_after
from payflow.core._replies import ANYTHING, Expected, PaymentStatus, read_payment
from payflow.core.errors import (
    AuthenticationFailed,
    OutcomeUnknown,
    ProviderUnavailable,
    ReplyNotUnderstood,
    RequestRejected,
)
from payflow.core.events import (
    Attempt,
    AttemptResult,
    Event,
    GaveUp,
    OperatorAsked,
    Poll,
    Reauthenticated,
    Retry,
)
from payflow.core.messages import (
    AskOperator,
    Authenticate,
    Call,
    Effect,
    NotSent,
    Outcome,
    Request,
    Response,
    Sleep,
    TimedOut,
)
from payflow.core.states import PaymentState as S

__all__ = ["Context", "Flow", "PollingTimedOut", "call", "poll_until_settled"]

T = TypeVar("T")

#: A flow: yields effects, is sent their results, returns ``T``.
Flow: TypeAlias = Generator[Effect | Event, Any, T]


def _no_clock() -> float:
    raise TypeError(
        "Context.clock is not set: build the Context with the driver's clock, "
        "e.g. Context(policy, rng, clock=time.monotonic) (or env.now, ScriptedPerformer.now)"
    )


@dataclass(slots=True)
class Context:
    """What a running flow draws on: its policy, an rng, a shared retry budget, a clock.

    ``clock`` is the driver's clock (seconds: ``time.monotonic``, a SimPy
    ``env.now``, a scripted fake). Flows read it directly rather than asking
    for the time with an effect: a time stamp is not a side effect, and the
    round trip cost more than every other effect together (39 effects for a
    four-call payment, 17 of them clock reads). The core still never *chooses*
    a clock: it only calls the one it was given.

    ``operator_every`` says an operator is at hand (Laybuy: the polling timeout
    "should prompt the operator to ask if it should give up"): a payment's
    polling asks them (:class:`~payflow.core.messages.AskOperator`) each time
    this many more seconds of pending have passed. ``None``: nobody to ask; the
    polling deadline alone decides.
    """

    policy: Policy
    rng: Rng
    budget: RetryBudget | None = None
    operator_every: float | None = None
    clock: Callable[[], float] = _no_clock

    def __post_init__(self) -> None:
        every = self.operator_every
        if every is not None and not every > 0:
            raise ValueError(f"operator_every: must be > 0 seconds or None, got {every!r}")


class PollingTimedOut(Exception):
    """Internal: polling stopped with the payment still pending.

    ``by`` says who stopped it: "deadline" (the polling deadline) or "operator".
    """

    def __init__(self, by: str = "deadline") -> None:
        super().__init__("the operator gave up" if by == "operator" else "polling deadline reached")
        self.by = by


#: Longest wait a ``Retry-After`` is read as while polling (it only has to end the polling).
_MAX_WAIT_S = 86_400.0


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
    *,
    ask_again: Callable[[Response], bool] | None = None,
    cost_paid: float = 0.0,
) -> Flow[tuple[Response, int]]:
    """Send ``request`` under the retry policy; return the final response and how
    many requests were sent.

    This is the one retry loop: attempts, deadline, pacing, ``Retry-After`` and
    the retry budget are decided here and in :meth:`RetryPolicy.decide` only.
    The final response is a 2xx, a 409 (out of sync: the caller queries the
    resource) or another 4xx. Raises :class:`ProviderUnavailable` when retrying
    stopped and no attempt can have had an effect (or the request was a read),
    and :class:`OutcomeUnknown` when one may have.

    The count is returned because MobilePay bounds *requests per operation*
    (6) and a refusal after a repeat is no confirmed refusal: the caller needs
    it (a 401's same-attempt re-send is not counted: the provider refused it
    unprocessed). ``ask_again`` says which *answers* mean "ask again" for this
    call (a create still in progress, a reply that cannot be read): they are
    retried like failures, under the same policy. ``cost_paid`` is retry budget
    the caller already took for this call's first attempt (a re-send is a
    retry of the operation): a success refunds it with the call's own retries
    (AWS standard mode).
    """
    policy = retry or ctx.policy.retry
    per_attempt = ctx.policy.key_scope is KeyScope.PER_ATTEMPT and request.method == "POST"
    start: float = ctx.clock()
    attempt, previous, maybe_sent = 0, None, False
    while True:
        attempt += 1
        now: float = ctx.clock()
        timeout = policy.attempt_timeout(request, now - start)
        if timeout is None:
            yield GaveUp(request.operation, reference, attempt - 1, "deadline", now)
            raise _give_up_error(request, reference, "deadline", maybe_sent, None)
        key = request.idempotency_key
        yield Attempt(request.operation, reference, attempt, key, timeout, now)
        outcome = yield Call(request, timeout)
        if outcome.__class__ is Response and outcome.status == 401:
            outcome = yield from _after_401(
                ctx, request, outcome, reference, attempt,
                _attempt_timeout(policy, request, start),
            )  # fmt: skip
        now = ctx.clock()
        status = outcome.status if isinstance(outcome, Response) else None
        yield AttemptResult(
            request.operation, reference, attempt, _outcome_name(outcome), status, now
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
            ask_again=ask_again is not None
            and isinstance(outcome, Response)
            and ask_again(outcome),
        )
        if isinstance(decision, Done):
            if decision.verdict is Verdict.SUCCESS and ctx.budget is not None:
                ctx.budget.record_success(cost_paid)
            assert isinstance(outcome, Response)
            return outcome, attempt
        if isinstance(decision, GiveUp):
            yield GaveUp(request.operation, reference, attempt, decision.reason, now)
            last = outcome if isinstance(outcome, Response) else None
            raise _give_up_error(request, reference, decision.reason, decision.maybe_sent, last)
        assert isinstance(decision, RetryAfter)
        # Refused connections and 429s were certainly not acted on; anything else may be.
        maybe_sent = maybe_sent or not (
            isinstance(outcome, NotSent)
            or (isinstance(outcome, Response) and outcome.status == 429)
        )
        cost_paid += decision.cost
        yield Retry(request.operation, reference, attempt, decision.delay, decision.reason, now)
        if decision.delay > 0:
            yield Sleep(decision.delay)
        previous = decision.delay
        if per_attempt:
            # The anti-pattern modelled by naive strategies: the provider sees a new payment.
            request = replace(request, idempotency_key=new_key(ctx.rng))


def _attempt_timeout(
    policy: RetryPolicy, request: Request, start: float
) -> Callable[[float], float | None]:
    """The timeout an attempt of ``request`` starting at a given time gets (or ``None``)."""
    return lambda at: policy.attempt_timeout(request, at - start)


def _after_401(
    ctx: Context,
    request: Request,
    refused: Response,
    reference: str,
    attempt: int,
    timeout_at: Callable[[float], float | None],
) -> Flow[Outcome]:
    """A request refused with 401: send it again once with fresh credentials.

    The provider did not process a 401'd request, so the re-send -- the same
    request, idempotency key and all -- is part of the same attempt: not a
    retry, no retry budget spent, no new :class:`Attempt` (a
    :class:`Reauthenticated` event marks it). Returns the re-send's outcome,
    or ``refused`` itself when the driver has no other credentials to try or
    no time is left (``timeout_at(now)`` is ``None``). A second 401 in a row
    raises :class:`AuthenticationFailed`; callers keep their journal record.
    """
    fresh: bool = yield Authenticate()
    now: float = ctx.clock()
    timeout = timeout_at(now) if fresh else None
    if timeout is None:
        return refused
    yield Reauthenticated(request.operation, reference, attempt, now)
    outcome: Outcome = yield Call(request, timeout)
    if isinstance(outcome, Response) and outcome.status == 401:
        raise AuthenticationFailed(
            f"{request.operation}: refused with HTTP 401 again with fresh credentials "
            "(check the client id and the token provider)",
            reference=reference or None,
            idempotency_key=request.idempotency_key,
            correlation_id=outcome.correlation_id,
            status=401,
            code=outcome.code,
        )
    return outcome


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
    ask_operator: bool = False,
) -> Flow[PaymentStatus]:
    """Poll a payment until it leaves ``initiated``; return what the provider said.

    Waits at least the last ``pollDelayInMs`` between polls; a poll that gets
    no answer -- or an answer that is not understood -- is not retried on its
    own: the loop polls again after the schedule's delay. Every answer is
    checked against the payment asked for (and ``expect``): a mismatch raises
    :class:`~payflow.core.errors.ProviderMismatch` at once. Raises
    :class:`PollingTimedOut` at the polling deadline (it never starts a wait
    that would end past it, and cuts the last poll to the time left).

    With ``ask_operator`` and an operator at hand (``ctx.operator_every``), each
    time that many more seconds of pending have passed the operator is asked
    (:class:`AskOperator`); "give up" raises :class:`PollingTimedOut` with
    ``by="operator"``, and the caller gives up as at the deadline.
    """
    schedule = schedule or ctx.policy.polling
    timeout = ctx.policy.retry.timeouts.poll
    shortest = min(timeout, ctx.policy.retry.min_attempt_timeout)
    request = api.get_payment(payment_id)
    start: float = ctx.clock()
    every = ctx.operator_every if ask_operator else None
    ask_at = None if every is None else start + every
    last_ms, failures, previous = first_delay_ms, 0, None
    while True:
        delay = schedule.next_delay(last_ms, failures, previous, ctx.rng)
        now: float = ctx.clock()
        if ask_at is not None and every is not None and now >= ask_at:
            keep_waiting: bool = yield AskOperator(reference, payment_id, now - start)
            asked = now
            now = ctx.clock()
            yield OperatorAsked(reference, payment_id, asked - start, not keep_waiting, now)
            if not keep_waiting:
                raise PollingTimedOut("operator")
            ask_at = now + every  # the next question: another interval of pending from now
        if now + delay + shortest - start > schedule.deadline:
            raise PollingTimedOut()
        yield Sleep(delay)
        previous = delay
        now = ctx.clock()
        # No poll outlives the polling deadline: the last one gets the time left.
        cut = _poll_cut(timeout, shortest, schedule.deadline - (now - start))
        if cut is None:
            raise PollingTimedOut()
        yield Attempt("poll", reference, failures + 1, None, cut, now)
        outcome = yield Call(request, cut)
        if outcome.__class__ is Response and outcome.status == 401:
            outcome = yield from _after_401(
                ctx, request, outcome, reference, failures + 1,
                lambda at: _poll_cut(timeout, shortest, schedule.deadline - (at - start)),
            )  # fmt: skip
        now = ctx.clock()
        status = outcome.status if isinstance(outcome, Response) else None
        yield AttemptResult("poll", reference, failures + 1, _outcome_name(outcome), status, now)
        if isinstance(outcome, Response) and outcome.ok:
            try:
                view = read_payment(outcome.body, payment_id=payment_id, expect=expect, what="poll")
            except ReplyNotUnderstood:
                pass  # as good as no answer: poll again after the schedule's delay
            else:
                last_ms = view.poll_delay_ms if view.poll_delay_ms is not None else last_ms
                failures = 0
                yield Poll(payment_id, reference, view.state, last_ms, now)
                if view.stage is not S.PENDING:
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
                code=outcome.code,
            )
        failures += 1
        yield Poll(payment_id, reference, None, last_ms, now)
        if isinstance(outcome, Response):
            server = _retry_after(outcome)
            if server is not None:
                last_ms = max(last_ms or 0, int(min(server, _MAX_WAIT_S) * 1000))


def _poll_cut(timeout: float, shortest: float, left: float) -> float | None:
    """A poll's timeout with ``left`` seconds of polling left (``None``: no time for one)."""
    cut = min(timeout, left)
    return None if cut < shortest else cut
