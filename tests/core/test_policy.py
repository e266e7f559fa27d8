"""Table-driven tests of every retry decision (MobilePay PoS V10 rules)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payflow.core import (
    Backoff,
    Jitter,
    NotSent,
    Request,
    Response,
    RetryBudget,
    RetryPolicy,
    TimedOut,
    Timeouts,
)
from payflow.core._policy import (
    Done,
    GiveUp,
    PollSchedule,
    RetryAfter,
    Verdict,
    classify,
    retry_after_seconds,
)
from payflow.core.messages import CallKind

KEYED_POST = Request("POST", "/v10/payments", {"amount": 1}, "k-1")
BARE_POST = Request("POST", "/v10/payments", {"amount": 1})
CANCEL = Request("POST", "/v10/payments/p/cancel", naturally_idempotent=True)
GET = Request("GET", "/v10/payments/p", kind=CallKind.READ)
POLL = Request("GET", "/v10/payments/p", kind=CallKind.POLL)


@pytest.mark.parametrize(
    ("request_", "outcome", "verdict"),
    [
        (GET, Response(200), Verdict.SUCCESS),
        (KEYED_POST, Response(201), Verdict.SUCCESS),
        (GET, TimedOut(), Verdict.RETRYABLE),
        (KEYED_POST, TimedOut(), Verdict.RETRYABLE),
        (CANCEL, TimedOut(), Verdict.RETRYABLE),
        (BARE_POST, TimedOut(), Verdict.UNKNOWN),  # never retried blindly
        (BARE_POST, NotSent(), Verdict.RETRYABLE),  # certainly not sent
        (KEYED_POST, Response(500), Verdict.RETRYABLE),
        (KEYED_POST, Response(503), Verdict.RETRYABLE),
        (BARE_POST, Response(502), Verdict.UNKNOWN),
        (BARE_POST, Response(429), Verdict.RETRYABLE),  # throttled: not processed
        (GET, Response(429), Verdict.RETRYABLE),
        (KEYED_POST, Response(409), Verdict.OUT_OF_SYNC),
        (GET, Response(400), Verdict.REJECTED),
        (GET, Response(401), Verdict.REJECTED),
        (KEYED_POST, Response(403), Verdict.REJECTED),
        (GET, Response(404), Verdict.REJECTED),
        (KEYED_POST, Response(422), Verdict.REJECTED),
    ],
)
def test_classification(request_: Request, outcome: object, verdict: Verdict) -> None:
    assert classify(request_, outcome) is verdict  # type: ignore[arg-type]


def test_naive_knob_retries_unsafe_posts() -> None:
    assert classify(BARE_POST, TimedOut(), retry_unsafe=True) is Verdict.RETRYABLE


def test_default_timeouts_are_mobilepays() -> None:
    t = Timeouts()
    assert (t.for_request(KEYED_POST), t.for_request(GET), t.for_request(POLL)) == (2.0, 0.5, 0.5)


def test_default_is_three_attempts_and_more_than_six_is_refused() -> None:
    assert RetryPolicy().max_attempts == 3
    RetryPolicy(max_attempts=6)
    for bad in (0, 7, 100):
        with pytest.raises(ValueError, match="max_attempts"):
            RetryPolicy(max_attempts=bad)


def decide(policy: RetryPolicy, request: Request, outcome: object, **kw: object) -> object:
    args = {"attempt": 1, "elapsed": 0.1, "previous_delay": None, "rng": random.Random(1)}
    args.update(kw)
    return policy.decide(request, outcome, **args)  # type: ignore[arg-type]


NO_DEADLINE = RetryPolicy(deadline=None, backoff=Backoff(Jitter.CONSTANT, 0.2, 1.0))


@pytest.mark.parametrize(
    ("request_", "outcome", "attempt", "expected"),
    [
        (KEYED_POST, TimedOut(), 1, RetryAfter),
        (KEYED_POST, TimedOut(), 2, RetryAfter),
        (KEYED_POST, TimedOut(), 3, GiveUp),  # 3 attempts = 2 retries
        (BARE_POST, TimedOut(), 1, GiveUp),
        (GET, Response(200), 1, Done),
        (KEYED_POST, Response(409), 1, Done),
        (KEYED_POST, Response(400), 1, Done),
        (GET, Response(503), 1, RetryAfter),
    ],
)
def test_decisions(request_: Request, outcome: object, attempt: int, expected: type) -> None:
    assert isinstance(decide(NO_DEADLINE, request_, outcome, attempt=attempt), expected)


def test_unknown_give_up_says_maybe_sent() -> None:
    d = decide(NO_DEADLINE, BARE_POST, TimedOut())
    assert isinstance(d, GiveUp) and d.reason == "unknown" and d.maybe_sent


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0"}, 0.0),
        (
            {
                "Retry-After": "Wed, 21 Oct 2015 07:28:07 GMT",
                "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            7.0,
        ),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:07 GMT"}, None),  # no Date: cannot tell
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(Response(429, {}, headers)) == expected


def test_retry_after_is_honoured_never_shortened() -> None:
    policy = RetryPolicy(deadline=None, max_server_delay=5.0, backoff=Backoff(Jitter.NONE, 0, 0))
    d = decide(policy, GET, Response(429, {}, {"Retry-After": "3"}))
    assert isinstance(d, RetryAfter) and d.delay == 3.0 and d.server_asked
    # Asked to wait longer than it will: give up rather than retry early.
    d = decide(policy, GET, Response(429, {}, {"Retry-After": "60"}))
    assert isinstance(d, GiveUp) and d.reason == "server-delay"


def test_server_delay_past_the_deadline_fails_fast() -> None:
    policy = RetryPolicy(deadline=10.0)
    d = decide(policy, GET, Response(503, {}, {"Retry-After": "30"}), elapsed=1.0)
    assert isinstance(d, GiveUp) and d.reason == "server-delay"


def test_no_sleep_that_cannot_finish_before_the_deadline() -> None:
    policy = RetryPolicy(deadline=2.0, backoff=Backoff(Jitter.CONSTANT, 1.0, 1.0))
    assert isinstance(decide(policy, GET, TimedOut(), elapsed=0.5), RetryAfter)
    d = decide(policy, GET, TimedOut(), elapsed=0.99)
    assert isinstance(d, GiveUp) and d.reason == "deadline"


def test_last_attempt_timeout_is_sized_from_time_left() -> None:
    policy = RetryPolicy(deadline=3.0)
    assert policy.attempt_timeout(KEYED_POST, 0.0) == 2.0
    assert policy.attempt_timeout(KEYED_POST, 2.5) == pytest.approx(0.5)
    assert policy.attempt_timeout(KEYED_POST, 2.99) is None


def test_budget_refusal_gives_up() -> None:
    budget = RetryBudget.grpc(max_tokens=2, token_ratio=0.1)
    d = decide(NO_DEADLINE, GET, TimedOut(), budget=budget)
    assert isinstance(d, GiveUp) and d.reason == "budget"


@given(st.integers(min_value=0, max_value=5000), st.integers(0, 5), st.integers(0, 2**32))
def test_poll_delay_is_at_least_the_servers(ms: int, failures: int, seed: int) -> None:
    d = PollSchedule().next_delay(ms, failures, None, random.Random(seed))
    assert d >= ms / 1000


def test_poll_without_answer_uses_last_delay_or_backoff() -> None:
    last = PollSchedule(on_no_answer="last-delay")
    assert last.next_delay(700, 3, None, random.Random(0)) == 0.7
    back = PollSchedule(on_no_answer="backoff", backoff=Backoff(Jitter.EXPONENTIAL, 0.5, 8.0))
    assert back.next_delay(700, 3, None, random.Random(0)) == 2.0
    assert back.next_delay(None, 0, None, random.Random(0)) == back.default_delay


def test_poll_schedule_validates() -> None:
    with pytest.raises(ValueError, match="on_no_answer"):
        PollSchedule(on_no_answer="sometimes")


def test_polls_are_never_faster_than_the_floor() -> None:
    assert PollSchedule().next_delay(0, 0, None, random.Random(0)) == 0.1
    with pytest.raises(ValueError, match="min_delay"):
        PollSchedule(min_delay=0)
