"""Property: whatever the provider does to the requests -- and whatever it answers --
no order is charged twice, every charge is either reported to the caller or
refunded, no exception escapes outside ``payflow.errors``, and ``recover()``
leaves nothing unresolved. Over real HTTP, one server for the whole module; each
example scripts the fate of the next requests: delays before/after commit, lost
responses, 5xx before/after commit, 429 with Retry-After, resets, and the
misbehaving provider's replies (garbled, truncated, wrong shape, about another
order or amount, unknown states, 409 after commit, odd Retry-After and
pollDelayInMs, trickled answers)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payflow.client import AsyncPaymentClient, PaymentClient
from payflow.core import Policy, PollSchedule, RetryPolicy, Timeouts
from payflow.core._backoff import Backoff, Jitter
from payflow.errors import PayflowError
from payflow.provider.faults import (
    BODY_MANGLES,
    ODD_POLL_DELAYS,
    ODD_RETRY_AFTER,
    FaultDraw,
    Mangle,
)
from payflow.provider.ledger import PayerModel
from payflow.provider.testing import running_provider

from .conftest import Provider, ScriptedProfile, _LoopThread

MONEY = ("reserved", "captured")
SLOW = 0.12  # longer than every timeout below: the client gives up, the provider carries on

POLICY = Policy(
    retry=RetryPolicy(
        max_attempts=3,
        deadline=3.0,
        backoff=Backoff(Jitter.FULL, 0.001, 0.005),
        timeouts=Timeouts(write=0.1, read=0.05, poll=0.05),
    ),
    polling=PollSchedule(
        deadline=0.1, default_delay=0.002, backoff=Backoff(Jitter.FULL, 0.001, 0.005)
    ),
)
PAYERS = {
    "approves": PayerModel(approve_probability=1.0, decide_after_s=(0.0, 0.0)),
    "approves-later": PayerModel(approve_probability=1.0, decide_after_s=(0.0, 0.03)),
    "declines": PayerModel(approve_probability=0.0, decide_after_s=(0.0, 0.01)),
    "too-slow": PayerModel(approve_probability=1.0, decide_after_s=(0.3, 0.3)),
}

fates = st.one_of(
    st.sampled_from(["ok", "lost", "error_after", "error_before", "reset", "throttle"]).map(
        lambda action: FaultDraw(0.0, 0.0, action)  # type: ignore[arg-type]
    ),
    st.tuples(st.sampled_from([0.0, 0.005, SLOW]), st.sampled_from([0.0, 0.005, SLOW])).map(
        lambda lat: FaultDraw(lat[0], lat[1], "ok")
    ),
)
mangled = st.one_of(
    st.builds(
        lambda body_variant, cut, poll_delay: FaultDraw(
            0.0, 0.0, "ok", Mangle(body_variant[0], body_variant[1], cut, poll_delay)
        ),
        st.sampled_from([(b, v) for b, forms in BODY_MANGLES.items() for v in forms]),
        st.floats(0.0, 0.999),
        st.none() | st.sampled_from(ODD_POLL_DELAYS),
    ),
    st.sampled_from(ODD_POLL_DELAYS).map(
        lambda odd: FaultDraw(0.0, 0.0, "ok", Mangle(poll_delay=odd))
    ),
    st.sampled_from(ODD_RETRY_AFTER).map(
        lambda odd: FaultDraw(0.0, 0.0, "throttle", Mangle(retry_after=odd))
    ),
    st.sampled_from([0.02, SLOW]).map(lambda s: FaultDraw(0.0, 0.0, "ok", Mangle(trickle_s=s))),
)
schedules = st.lists(fates | mangled, max_size=8)


class World:
    """The module's provider, its fault script, and one client of each kind."""

    def __init__(self, running: Any, profile: ScriptedProfile) -> None:
        self.running = running
        self.profile = profile
        self.provider = Provider(running, profile)
        self.sync = PaymentClient(running.base_url, running.client_id, running.token,
                                  policy=POLICY, budget=None)  # fmt: skip
        self.loop = _LoopThread()
        self.aio = AsyncPaymentClient(running.base_url, running.client_id, running.token,
                                      policy=POLICY, budget=None)  # fmt: skip

    def close(self) -> None:
        self.sync.close()
        self.loop.run(self.aio.aclose())
        self.loop.stop()
        self.provider.close()

    def drain(self) -> None:
        """Wait until the provider has finished every request (late commits included)."""
        state = self.running.state
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            if state.capacity.busy == 0 and state.ledger.in_flight() == 0:
                return
            time.sleep(0.005)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    profile = ScriptedProfile(poll_delay_ms=2, retry_after_s=1.0)
    with running_provider(faults=profile, lost_hold_s=2.0) as running:
        w = World(running, profile)
        yield w
        w.close()


def check_example(
    world: World,
    run: Any,
    client: PaymentClient | AsyncPaymentClient,
    schedule: list[FaultDraw],
    payer: str,
    amount: int,
    caller_retries: bool,
) -> None:
    order = f"prop-{uuid.uuid4().hex[:16]}"
    world.profile.clear()
    world.running.state.ledger.payer = PAYERS[payer]
    world.profile.push(*schedule)
    reported: dict[str, Any] = {}
    for _ in range(2 if caller_retries else 1):
        try:
            result = run(client.pay(order, amount))
        except PayflowError:
            continue
        reported[result.payment_id] = result
        break
    # The network is back: no more faults; let late commits land, then recover.
    world.profile.clear()
    world.drain()
    for _ in range(3):
        outcomes = run(client.recover())
        if all(o.action != "kept" for o in outcomes):
            break
        world.drain()
    assert client.journal.pending() == [], f"recover() left records unresolved: {outcomes}"
    payments = [p for p in world.provider.ledger()["payments"] if p["orderId"] == order]
    charged = [p for p in payments if p["state"] in MONEY and p["refundedAmount"] < p["amount"]]
    assert len(charged) <= 1, f"order charged twice: {payments}"
    for p in charged:
        assert p["paymentId"] in reported, f"charged but neither reported nor refunded: {p}"
    for payment_id in reported:
        [p] = [p for p in payments if p["paymentId"] == payment_id]
        assert p["state"] in MONEY and p["refundedAmount"] == 0, "a reported charge was undone"
    # Nothing is left waiting for the payer, so no state can change after this check.
    assert all(p["state"] != "initiated" for p in payments), f"left pending: {payments}"


common = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)


examples = given(
    schedule=schedules,
    payer=st.sampled_from(sorted(PAYERS)),
    amount=st.integers(1, 10_000),
    caller_retries=st.booleans(),
)


@settings(common, max_examples=200)
@examples
def test_sync_client_never_double_charges(
    world: World, schedule: list[FaultDraw], payer: str, amount: int, caller_retries: bool
) -> None:
    check_example(world, lambda x: x, world.sync, schedule, payer, amount, caller_retries)


@settings(common, max_examples=100)
@examples
def test_async_client_never_double_charges(
    world: World, schedule: list[FaultDraw], payer: str, amount: int, caller_retries: bool
) -> None:
    check_example(world, world.loop.run, world.aio, schedule, payer, amount, caller_retries)


@pytest.mark.slow
@settings(common, max_examples=1500)
@examples
def test_sync_client_never_double_charges_at_length(
    world: World, schedule: list[FaultDraw], payer: str, amount: int, caller_retries: bool
) -> None:
    check_example(world, lambda x: x, world.sync, schedule, payer, amount, caller_retries)


@pytest.mark.slow
@settings(common, max_examples=600)
@examples
def test_async_client_never_double_charges_at_length(
    world: World, schedule: list[FaultDraw], payer: str, amount: int, caller_retries: bool
) -> None:
    check_example(world, world.loop.run, world.aio, schedule, payer, amount, caller_retries)
