"""Hypothesis properties of the retry loop and the pay flow."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payflow.core import (
    Backoff,
    Context,
    Jitter,
    KeyScope,
    NotSent,
    Policy,
    Request,
    Response,
    RetryPolicy,
    TimedOut,
    pay,
)
from payflow.core._calls import call
from payflow.core.errors import PayflowError

from .scripted import ScriptedDriver, clock, ok

outcomes = st.one_of(
    st.just(TimedOut()),
    st.just(NotSent()),
    st.sampled_from([500, 502, 503]).map(lambda s: Response(s, {"code": "x"})),
    st.integers(0, 5).map(lambda s: Response(429, {}, {"Retry-After": str(s)})),
)
jitters = st.sampled_from(list(Jitter))


def check_the_deadline_is_never_exceeded(examples: int) -> None:
    @settings(max_examples=examples, deadline=None)
    @given(
        st.lists(outcomes, min_size=6, max_size=6),
        st.floats(min_value=0.2, max_value=20.0),
        st.integers(1, 6),
        jitters,
        st.booleans(),
        st.integers(0, 2**32),
    )
    def prop(script, deadline, attempts, jitter, keyed, seed) -> None:
        policy = RetryPolicy(
            max_attempts=attempts, deadline=deadline, backoff=Backoff(jitter, 0.1, 3)
        )
        request = Request("POST", "/v10/payments", {"amount": 1}, "k" if keyed else None)
        d = ScriptedDriver(script)
        with contextlib.suppress(PayflowError):
            d.run(call(request, Context(Policy(retry=policy), random.Random(seed), clock=d.now)))
        assert d.clock <= deadline + 1e-9
        assert len(d.calls) <= attempts

    prop()


def test_the_deadline_is_never_exceeded() -> None:
    check_the_deadline_is_never_exceeded(300)


@pytest.mark.slow
def test_the_deadline_is_never_exceeded_deep() -> None:
    check_the_deadline_is_never_exceeded(5000)


def _faulty_provider(faults: list[Any]) -> Any:
    """Answers creates with the scripted faults first, then success."""
    state = {"n": 0}

    def answer(req: Request, now: float) -> Any:
        if req.path == "/v10/payments" and req.method == "POST":
            i = state["n"]
            state["n"] += 1
            if i < len(faults):
                return faults[i]
            oid = req.body["orderId"] if req.body else "?"
            return ok({"paymentId": f"p-{oid}", "orderId": oid, "state": "captured"}, 201)
        if req.path.startswith("/v10/payments?"):
            return ok({"payments": []})
        return ok({"paymentId": "p", "state": "captured"})

    return answer


def check_retries_share_a_key_and_operations_never_do(examples: int) -> None:
    @settings(max_examples=examples, deadline=None)
    @given(
        st.lists(st.lists(outcomes, max_size=4), min_size=1, max_size=5),
        st.sampled_from([KeyScope.PER_OPERATION, KeyScope.PER_ORDER]),
        st.integers(0, 2**32),
    )
    def prop(fault_lists, scope, seed) -> None:
        ctx = Context(
            Policy(key_scope=scope, retry=RetryPolicy(max_attempts=6, deadline=None)),
            random.Random(seed),
            clock=clock,
        )
        keys_by_order: dict[str, set[str | None]] = {}
        for n, faults in enumerate(fault_lists):
            d = ScriptedDriver(_faulty_provider(faults))
            with contextlib.suppress(PayflowError):
                d.run(pay(f"o-{n}", 100, "DKK", ctx))
            creates = [r for _, r, _ in d.calls if r.path == "/v10/payments"]
            keys_by_order[f"o-{n}"] = {r.idempotency_key for r in creates}
        for keys in keys_by_order.values():
            assert len(keys) == 1 and None not in keys
        all_keys = [next(iter(k)) for k in keys_by_order.values()]
        assert len(set(all_keys)) == len(all_keys)

    prop()


def test_retries_share_a_key_and_operations_never_do() -> None:
    check_retries_share_a_key_and_operations_never_do(200)


@pytest.mark.slow
def test_retries_share_a_key_and_operations_never_do_deep() -> None:
    check_retries_share_a_key_and_operations_never_do(5000)


def check_a_keyless_post_is_never_retried_after_an_unknown_outcome(examples: int) -> None:
    @settings(max_examples=examples, deadline=None)
    @given(st.lists(outcomes, max_size=6), st.integers(0, 2**32))
    def prop(faults, seed) -> None:
        ctx = Context(
            Policy(key_scope=KeyScope.NONE, retry=RetryPolicy(max_attempts=6, deadline=None)),
            random.Random(seed),
            clock=clock,
        )
        d = ScriptedDriver(_faulty_provider(faults))
        with contextlib.suppress(PayflowError):
            d.run(pay("o-1", 100, "DKK", ctx))
        creates = [i for i, (_, r, _) in enumerate(d.calls) if r.path == "/v10/payments"]
        for i in creates[:-1]:
            # Only a refused connection (certainly not sent) or a 429 may be followed by a resend.
            earlier = faults[creates.index(i)]
            assert isinstance(earlier, NotSent) or (
                isinstance(earlier, Response) and earlier.status == 429
            ), earlier

    prop()


def test_a_keyless_post_is_never_retried_after_an_unknown_outcome() -> None:
    check_a_keyless_post_is_never_retried_after_an_unknown_outcome(200)


@pytest.mark.slow
def test_a_keyless_post_is_never_retried_after_an_unknown_outcome_deep() -> None:
    check_a_keyless_post_is_never_retried_after_an_unknown_outcome(5000)
