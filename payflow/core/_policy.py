"""Retry, timeout and polling decisions, as pure functions of what happened.

The rules come from the MobilePay PoS V10 API principles:

* network errors, timeouts and 5xx are retried; 4xx are not -- except 429
  (throttled), retried after its ``Retry-After``;
* 409 means "client and backend are out of sync": *query the resource*;
* retry 2 times by default (3 requests), at most 5 times (6 requests);
* only repeat what is safe to repeat: GETs, naturally idempotent POSTs, and
  POSTs whose idempotency key was fixed before the first attempt. A keyless
  POST that timed out is never retried: its outcome is unknown;
* timeouts: POST/PUT/DELETE 2 s, non-polling GET 0.5 s, polling GET 0.5 s;
* wait at least ``pollDelayInMs`` between polls; when a poll gets no answer,
  use the last delay or exponential backoff with jitter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from payflow.core._backoff import Backoff, Jitter, Rng
from payflow.core._budget import RetryBudget
from payflow.core._keys import KeyScope
from payflow.core.messages import CallKind, NotSent, Outcome, Request, Response, TimedOut

__all__ = [
    "MAX_ATTEMPTS_ALLOWED",
    "Decision",
    "Done",
    "GiveUp",
    "Policy",
    "PollSchedule",
    "RetryAfter",
    "RetryPolicy",
    "Timeouts",
    "Verdict",
    "classify",
    "retry_after_seconds",
]

#: What a Retry-After too long to read (more than 12 digits) is taken as: ~31 700 years.
_VERY_LONG_S = 1e12

#: MobilePay: "You may at max retry 5 times (which results in 6 requests)."
MAX_ATTEMPTS_ALLOWED = 6


class Verdict(Enum):
    """What an outcome means for the operation that produced it."""

    SUCCESS = "success"  # 2xx
    RETRYABLE = "retryable"  # timeout, refused, 5xx, 429 -- on a request safe to repeat
    OUT_OF_SYNC = "out-of-sync"  # 409: query the resource
    REJECTED = "rejected"  # other 4xx: fix the request, do not retry
    UNKNOWN = "unknown"  # an unsafe request may have had its effect: never retry blindly


def classify(request: Request, outcome: Outcome, *, retry_unsafe: bool = False) -> Verdict:
    """Classify one outcome of ``request``.

    ``retry_unsafe`` exists only to model the anti-pattern of blind retries
    (the ``naive`` strategy); production code never sets it.
    """
    if isinstance(outcome, NotSent):
        return Verdict.RETRYABLE  # certainly not sent: repeating cannot double anything
    if isinstance(outcome, TimedOut):
        safe = request.safe_to_repeat or retry_unsafe
        return Verdict.RETRYABLE if safe else Verdict.UNKNOWN
    status = outcome.status
    if 200 <= status < 300:
        return Verdict.SUCCESS
    if status == 409:
        return Verdict.OUT_OF_SYNC
    if status == 429 or status >= 500:
        # A 5xx may come after the provider acted; only idempotent requests repeat.
        safe = request.safe_to_repeat or retry_unsafe or status == 429
        return Verdict.RETRYABLE if safe else Verdict.UNKNOWN
    return Verdict.REJECTED


def retry_after_seconds(response: Response) -> float | None:
    """The server's requested delay: ``Retry-After`` in seconds or as an HTTP date.

    An HTTP date is measured against the response's own ``Date`` header, so no
    clock is read; without one, a date cannot be turned into a delay.
    """
    value = response.header("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        # RFC 9110 delay-seconds: ASCII digits only ("²".isdigit() is True too). An
        # absurdly long number is read as "very long", which makes the caller give up.
        return float(value) if len(value) <= 12 else _VERY_LONG_S
    when, date = _http_date(value), _http_date(response.header("date") or "")
    if when is None or date is None:
        return None
    return max(0.0, when - date)


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _http_date(text: str) -> float | None:
    """Seconds since the epoch of an IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``).

    Hand-written because ``email.utils`` and ``datetime`` import ``time``,
    which the pure core must not.
    """
    parts = text.replace(",", " ").split()
    if len(parts) != 6 or parts[5].upper() not in ("GMT", "UTC"):
        return None
    _, day_s, month_s, year_s, clock, _ = parts
    try:
        day, year = int(day_s), int(year_s)
        month = _MONTHS.index(month_s.lower()) + 1
        hour, minute, second = (int(x) for x in clock.split(":"))
    except ValueError:
        return None
    if not (1 <= day <= 31 and 0 <= hour < 24 and 0 <= minute < 60 and 0 <= second <= 60):
        return None
    # Days from civil (Howard Hinnant's algorithm).
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return float(days * 86400 + hour * 3600 + minute * 60 + second)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-attempt timeouts in seconds, by kind of call (MobilePay defaults)."""

    write: float = 2.0
    read: float = 0.5
    poll: float = 0.5

    def __post_init__(self) -> None:
        for name in ("write", "read", "poll"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"timeouts.{name} must be > 0 seconds, got {value!r}")

    def for_request(self, request: Request) -> float:
        if request.kind is CallKind.POLL:
            return self.poll
        if request.kind is CallKind.READ:
            return self.read
        return self.write


@dataclass(frozen=True, slots=True)
class Done:
    """Stop retrying and hand ``outcome`` to the flow."""

    outcome: Outcome
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Retry after ``delay`` seconds; ``server_asked`` if the provider set it."""

    delay: float
    reason: str
    server_asked: bool = False
    cost: float = 0.0  # what the retry budget charged for it


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop: ``reason`` is attempts, deadline, budget, server-delay or unknown."""

    reason: str
    outcome: Outcome
    maybe_sent: bool  # an attempt may have reached the provider


Decision = Done | RetryAfter | GiveUp


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one logical operation is retried.

    ``deadline`` bounds the whole operation (attempts and sleeps) in seconds;
    no sleep or attempt starts that could not finish before it, and the last
    attempt's timeout is cut to the time left. ``max_server_delay`` caps a
    ``Retry-After`` the policy is willing to honour. ``min_delay`` is the
    shortest wait between two attempts whatever the backoff draws: the
    re-sends of a create left without a usable answer are paced no faster than
    polling (``PollSchedule.default_delay``), since asking a provider that is
    still working on the first request again at once only adds load.
    """

    max_attempts: int = 3
    deadline: float | None = 10.0
    backoff: Backoff = field(default_factory=lambda: Backoff(Jitter.FULL, 0.1, 2.0))
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_server_delay: float = 5.0
    min_attempt_timeout: float = 0.05
    retry_unsafe: bool = False  # the naive anti-pattern; see classify()
    min_delay: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS_ALLOWED:
            raise ValueError(
                f"max_attempts must be 1..{MAX_ATTEMPTS_ALLOWED} (MobilePay allows at most "
                f"5 retries), got {self.max_attempts}"
            )
        if self.deadline is not None and not self.deadline > 0:
            raise ValueError(f"deadline must be > 0 seconds or None, got {self.deadline!r}")
        if not self.max_server_delay >= 0:
            raise ValueError(f"max_server_delay must be >= 0, got {self.max_server_delay!r}")
        if not self.min_delay >= 0:
            raise ValueError(f"min_delay must be >= 0 seconds, got {self.min_delay!r}")

    def attempt_timeout(self, request: Request, elapsed: float) -> float | None:
        """Timeout for an attempt starting ``elapsed`` seconds into the operation,
        or ``None`` if there is not enough time left to start one."""
        timeout = self.timeouts.for_request(request)
        if self.deadline is None:
            return timeout
        left = self.deadline - elapsed
        if left < min(timeout, self.min_attempt_timeout):
            return None
        return min(timeout, left)

    def decide(
        self,
        request: Request,
        outcome: Outcome,
        *,
        attempt: int,
        elapsed: float,
        previous_delay: float | None,
        rng: Rng,
        budget: RetryBudget | None = None,
        maybe_sent: bool = False,
        ask_again: bool = False,
    ) -> Decision:
        """Decide what follows attempt number ``attempt`` (1-based).

        ``elapsed`` is the time since the operation started, measured after the
        attempt; ``maybe_sent`` says whether an earlier attempt may have had an
        effect (it is carried into :class:`GiveUp`). ``ask_again`` says the
        caller reads this *answer* as "ask again" (a create still in progress, a
        reply it could not read): it is retried like a failure -- same attempt
        count, deadline, pacing, ``Retry-After`` and budget price -- but the
        budget records no failure, since the provider did answer.
        """
        if ask_again:
            verdict = Verdict.RETRYABLE
            maybe_sent = True  # it answered: the request reached the provider
        else:
            if outcome.__class__ is Response and 200 <= outcome.status < 300:
                return Done(outcome, Verdict.SUCCESS)  # the common case, as classify() has it
            verdict = classify(request, outcome, retry_unsafe=self.retry_unsafe)
            if isinstance(outcome, TimedOut) or (
                isinstance(outcome, Response) and outcome.status >= 500
            ):
                maybe_sent = True
            if verdict is not Verdict.RETRYABLE:
                if verdict is Verdict.UNKNOWN:
                    return GiveUp("unknown", outcome, True)
                return Done(outcome, verdict)
            if budget is not None:
                budget.record_failure()
        if attempt >= self.max_attempts:
            return GiveUp("attempts", outcome, maybe_sent)
        server_delay = retry_after_seconds(outcome) if isinstance(outcome, Response) else None
        delay = self.backoff.delay(attempt - 1, previous_delay, rng)
        if delay < self.min_delay:
            delay = self.min_delay
        if server_delay is not None:
            too_long = server_delay > self.max_server_delay or (
                self.deadline is not None and elapsed + server_delay >= self.deadline
            )
            if too_long:
                # Retrying before the server said so only adds load: fail fast instead.
                return GiveUp("server-delay", outcome, maybe_sent)
            delay = max(delay, server_delay)
        if self.deadline is not None:
            next_timeout = self.timeouts.for_request(request)
            if elapsed + delay + min(next_timeout, self.min_attempt_timeout) > self.deadline:
                return GiveUp("deadline", outcome, maybe_sent)
        cost = 0.0
        if budget is not None:
            taken = budget.acquire_retry(isinstance(outcome, TimedOut))
            if taken is None:
                return GiveUp("budget", outcome, maybe_sent)
            cost = taken
        return RetryAfter(delay, _reason(outcome), server_delay is not None, cost)


def _reason(outcome: Outcome) -> str:
    if isinstance(outcome, TimedOut):
        return "timeout"
    if isinstance(outcome, NotSent):
        return "not-sent"
    return f"http-{outcome.status}"


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """When to poll a pending payment, and when to stop.

    ``deadline`` is generous by default: Laybuy warns that new customers can
    take several minutes. ``on_no_answer`` is "last-delay" (reuse the last
    ``pollDelayInMs``) or "backoff" (exponential backoff with jitter, never
    shorter than the last ``pollDelayInMs``).
    """

    deadline: float = 300.0
    default_delay: float = 1.0
    min_delay: float = 0.1  # never poll faster, even if the server says 0 ms
    on_no_answer: str = "backoff"
    backoff: Backoff = field(default_factory=lambda: Backoff(Jitter.FULL, 0.5, 8.0))

    def __post_init__(self) -> None:
        if self.on_no_answer not in ("last-delay", "backoff"):
            raise ValueError(
                f"on_no_answer must be 'last-delay' or 'backoff', got {self.on_no_answer!r}"
            )
        if not self.deadline > 0:
            raise ValueError(f"polling deadline must be > 0 seconds, got {self.deadline!r}")
        if not self.min_delay > 0:
            raise ValueError(f"polling min_delay must be > 0 seconds, got {self.min_delay!r}")

    def next_delay(
        self,
        last_poll_delay_ms: int | None,
        failures_in_a_row: int,
        previous_delay: float | None,
        rng: Rng,
    ) -> float:
        """Seconds until the next poll.

        After an answer (``failures_in_a_row == 0``) this is the answer's
        ``pollDelayInMs`` (MobilePay: the client *must* wait at least that long).
        """
        floor = (
            last_poll_delay_ms / 1000.0 if last_poll_delay_ms is not None else self.default_delay
        )
        floor = max(floor, self.min_delay)
        if failures_in_a_row == 0 or self.on_no_answer == "last-delay":
            return floor
        return max(floor, self.backoff.delay(failures_in_a_row - 1, previous_delay, rng))


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
