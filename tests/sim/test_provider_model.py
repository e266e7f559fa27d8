"""The provider model and the SimPy driver, one request at a time."""

from __future__ import annotations

import random
from typing import Any

import simpy

from payflow.core import Context, Policy, RetryPolicy, Timeouts
from payflow.core import _api as api
from payflow.core import _flows as flows
from payflow.core.events import AttemptResult
from payflow.core.messages import Call, NotSent, TimedOut
from payflow.drivers._simpy import FlowIO, SimJournal, run_flow
from payflow.provider.faults import FaultDraw, FaultProfile, Faults
from payflow.provider.ledger import Ledger, PayerModel
from payflow.sim._provider import ProviderModel

INSTANT = PayerModel(approve_probability=1.0, decide_after_s=(0.0, 0.0))


class Sink:
    def __init__(self) -> None:
        self.calls = 0
        self.events: list[Any] = []

    def on_call(self, call: Call, now: float) -> None:
        self.calls += 1

    def on_event(self, event: Any) -> None:
        self.events.append(event)


def _model(env: simpy.Environment, draw: FaultDraw, capacity: int = 4) -> ProviderModel:
    ledger = Ledger(random.Random(1), INSTANT)
    profile = FaultProfile.constant(Faults(capacity=capacity))
    return ProviderModel(env, ledger, profile, random.Random(2), service=lambda f, r: draw)


def test_the_provider_charges_behind_a_client_timeout() -> None:
    env = simpy.Environment()
    model = _model(env, FaultDraw(1.0, 5.0, "ok"))  # commits at 1 s, answers at 6 s
    io = FlowIO(env, model.submit, SimJournal())
    request = api.create_payment("order-1", 1000, "DKK", "key-1")
    outcome: list[Any] = []

    def client() -> Any:
        outcome.append((yield io.call(Call(request, 2.0))))
        outcome.append(env.now)

    env.process(client())
    env.run()
    assert outcome == [TimedOut(), 2.0]
    payments = model.ledger.snapshot()["payments"]  # type: ignore[union-attr]
    assert [p["state"] for p in payments] == ["reserved"]  # money taken anyway
    assert env.now == 6.0  # the provider finished its work after the client left


def test_capacity_queues_requests_and_measures_the_wait() -> None:
    env = simpy.Environment()
    model = _model(env, FaultDraw(1.0, 0.0, "ok"), capacity=2)
    done: list[float] = []

    def one() -> Any:
        reply = simpy.Event(env)
        model.submit(api.get_payment("nope"), reply)
        yield reply
        done.append(env.now)

    for _ in range(5):
        env.process(one())
    env.run()
    assert done == [1.0, 1.0, 2.0, 2.0, 3.0]
    assert model.stats.served == 5
    assert model.stats.wait_s == 0 + 0 + 1 + 1 + 2
    assert model.stats.busy_s == 5.0
    assert model.stats.max_queue == 3


def test_lost_errors_and_throttles() -> None:
    outcomes: dict[str, Any] = {}
    for action in ("lost", "error_after", "error_before", "reset", "throttle"):
        env = simpy.Environment()
        model = _model(env, FaultDraw(0.1, 0.1, action))  # type: ignore[arg-type]
        io = FlowIO(env, model.submit, SimJournal())
        request = api.create_payment("order-1", 1000, "DKK", "key-1")

        def client(action: str = action, io: FlowIO = io, request: Any = request) -> Any:
            outcomes[action] = yield io.call(Call(request, 1.0))

        env.process(client())
        env.run()
        outcomes[action + "-charged"] = len(model.ledger.snapshot()["payments"])  # type: ignore[union-attr]
    assert isinstance(outcomes["lost"], TimedOut) and outcomes["lost-charged"] == 1
    assert outcomes["error_after"].status == 503 and outcomes["error_after-charged"] == 1
    assert outcomes["error_before"].status == 503 and outcomes["error_before-charged"] == 0
    assert isinstance(outcomes["reset"], TimedOut) and outcomes["reset-charged"] == 0
    assert outcomes["throttle"].status == 429 and outcomes["throttle"].header("retry-after")


def test_a_provider_that_is_down_refuses_connections() -> None:
    env = simpy.Environment()
    model = _model(env, FaultDraw(0.1, 0.1, "ok"))
    model.up = False
    reply = simpy.Event(env)
    model.submit(api.get_payment("p"), reply)
    assert isinstance(reply.value, NotSent)


def test_run_flow_drives_core_pay_to_a_payment() -> None:
    env = simpy.Environment()
    model = _model(env, FaultDraw(0.2, 0.1, "ok"))
    journal = SimJournal()
    io = FlowIO(env, model.submit, journal)
    sink = Sink()
    policy = Policy(retry=RetryPolicy(timeouts=Timeouts(write=2.0, read=1.0, poll=1.0)))
    ctx = Context(policy, random.Random(3), clock=lambda: env.now)
    result: list[Any] = []

    def backend() -> Any:
        result.append((yield from run_flow(flows.pay("order-7", 500, "DKK", ctx), io, sink)))

    env.process(backend())
    env.run()
    assert result[0].state == "captured"
    assert sink.calls == 2  # create (answered reserved at once) + capture
    assert any(isinstance(e, AttemptResult) for e in sink.events)
    assert len(journal) == 0 and not journal.owners  # saved before the send, forgotten after
    assert env.now > 0.5


def test_faults_follow_the_time_of_day() -> None:
    env = simpy.Environment()
    from payflow.provider.faults import load_profile

    model = ProviderModel(env, None, load_profile("slow-provider-day"), random.Random(0))
    assert (
        model.faults_at(8 * 3600.0).latency_before_s < model.faults_at(13 * 3600.0).latency_before_s
    )
    model.day_offset = 5 * 3600.0  # the simulation starts at 05:00
    assert model.faults_at(8 * 3600.0) == model.profile.at(13 * 3600.0)
