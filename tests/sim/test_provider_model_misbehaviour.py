"""The SimPy provider model misbehaves like the server, as the httpx client would see it.

A garbled, truncated, ``[]`` or empty body reaches the flow as ``Response(status,
{})`` (what ``Engine.outcome`` makes of it); wrong-shape, foreign and unknown-state
bodies as the JSON objects themselves; a 409 after commit as a 409; a trickled
answer ``trickle_s`` later; an odd ``Retry-After`` verbatim. The change is made.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import simpy

from payflow.core import _api as api
from payflow.core.messages import Call, Response, TimedOut
from payflow.drivers._simpy import FlowIO, SimJournal
from payflow.provider.faults import (
    BODY_MANGLES,
    ODD_POLL_DELAY_VALUES,
    ODD_POLL_DELAYS,
    ODD_RETRY_AFTER,
    FaultDraw,
    FaultProfile,
    Faults,
    Mangle,
)
from payflow.provider.ledger import PAYMENT_STATES, Ledger, PayerModel
from payflow.sim._provider import ProviderModel

INSTANT = PayerModel(approve_probability=1.0, decide_after_s=(0.0, 0.0))
REQUEST = api.create_payment("order-1", 1000, "DKK", "key-1")


def _model(env: simpy.Environment, draw: FaultDraw) -> ProviderModel:
    ledger = Ledger(random.Random(1), INSTANT)
    profile = FaultProfile.constant(Faults(capacity=4))
    return ProviderModel(env, ledger, profile, random.Random(2), service=lambda f, r: draw)


def _call(draw: FaultDraw, timeout: float = 30.0) -> tuple[Any, float, ProviderModel, Any]:
    """One create through the model: (outcome, when it arrived, model, submit's estimate)."""
    env = simpy.Environment()
    model = _model(env, draw)
    io = FlowIO(env, model.submit, SimJournal())
    got: list[Any] = []

    def client() -> Any:
        got.append((yield io.call(Call(REQUEST, timeout))))
        got.append(env.now)

    env.process(client())
    env.run()
    reply = simpy.Event(simpy.Environment())
    estimate = _model(simpy.Environment(), draw).submit(REQUEST, reply)
    return got[0], got[1], model, estimate


def _truth(model: ProviderModel) -> dict[str, Any]:
    (payment,) = model.ledger.snapshot()["payments"]  # type: ignore[union-attr]
    assert (payment["orderId"], payment["amount"]) == ("order-1", 1000)
    return payment


def _plain() -> Response:
    out, *_ = _call(FaultDraw(0.1, 0.1, "ok"))
    assert isinstance(out, Response) and out.status == 201
    return out


def _ok(mangle: Mangle) -> tuple[Response, dict[str, Any]]:
    out, at, model, _ = _call(FaultDraw(0.1, 0.1, "ok", mangle))
    assert isinstance(out, Response)
    assert at == pytest.approx(0.2)
    assert model.stats.misbehaved == 1 and model.stats.commits == 1
    return out, _truth(model)  # the change was made


@pytest.mark.parametrize("form", BODY_MANGLES["garbled"])
def test_garbled_bodies_reach_the_flow_as_empty_bodies(form: str) -> None:
    out, _ = _ok(Mangle("garbled", form, 0.5))
    assert (out.status, dict(out.body)) == (201, {})


@pytest.mark.parametrize("cut", [0.0, 0.5, 0.999])
def test_truncated_bodies_reach_the_flow_as_empty_bodies(cut: float) -> None:
    out, _ = _ok(Mangle("truncated", "cut", cut))
    assert (out.status, dict(out.body)) == (201, {})


@pytest.mark.parametrize("form", BODY_MANGLES["wrong_shape"])
def test_wrong_shapes(form: str) -> None:
    out, truth = _ok(Mangle("wrong_shape", form))
    body = dict(out.body)
    expected_status = {"empty_202": 202, "empty_204": 204}.get(form, 201)
    assert out.status == expected_status
    if form in ("[]", "{}", "empty_202", "empty_204"):
        assert body == {}
    elif form == "no_state":
        assert "state" not in body and body["paymentId"] == truth["paymentId"]
    elif form == "no_id":
        assert "paymentId" not in body and body["state"] == truth["state"]
    else:
        assert body["paymentId"] is None


@pytest.mark.parametrize("form", BODY_MANGLES["foreign"])
def test_foreign_replies(form: str) -> None:
    plain = dict(_plain().body)
    out, truth = _ok(Mangle("foreign", form, 0.25))
    body = dict(out.body)
    changed = {k for k in body if body[k] != plain[k] and k != "correlationId"}
    expected = {
        "other_order": {"orderId", "paymentId"},
        "other_payment": {"paymentId"},
        "amount_x10": {"amount"},
        "currency": {"currency"},
    }[form]
    assert changed == expected
    assert body["paymentId"] == truth["paymentId"] or "paymentId" in expected
    if form == "amount_x10":
        assert body["amount"] == 10_000


@pytest.mark.parametrize("state", BODY_MANGLES["unknown_state"])
def test_unknown_states(state: str) -> None:
    out, truth = _ok(Mangle("unknown_state", state))
    assert out.body["state"] == state not in PAYMENT_STATES
    assert out.body["paymentId"] == truth["paymentId"]


@pytest.mark.parametrize("code", BODY_MANGLES["conflict"])
def test_a_409_after_commit(code: str) -> None:
    out, _ = _ok(Mangle("conflict", code))
    assert out.status == 409
    assert out.body.get("code", "") == code
    assert out.header("location") is None


@pytest.mark.parametrize("form", ODD_POLL_DELAYS)
def test_odd_poll_delays(form: str) -> None:
    out, _ = _ok(Mangle(poll_delay=form))
    assert out.status == 201 and out.body["state"] == "reserved"
    if form == "missing":
        assert "pollDelayInMs" not in out.body
    else:
        value = out.body["pollDelayInMs"]
        assert value == ODD_POLL_DELAY_VALUES[form]
        assert type(value) is type(ODD_POLL_DELAY_VALUES[form])


def test_a_trickled_answer_arrives_trickle_s_later() -> None:
    out, at, model, estimate = _call(FaultDraw(0.1, 0.1, "ok", Mangle(trickle_s=5.0)))
    assert isinstance(out, Response) and out.status == 201
    assert out.body == _plain().body  # the body is the ledger's
    assert at == pytest.approx(5.2) and estimate == pytest.approx(5.2)
    assert model.capacity.busy == 0  # the slot was freed before the trickle


def test_a_trickle_can_outlast_the_clients_timeout_after_the_charge() -> None:
    out, at, model, _ = _call(FaultDraw(0.1, 0.1, "ok", Mangle(trickle_s=5.0)), timeout=2.0)
    assert isinstance(out, TimedOut) and at == 2.0
    assert _truth(model)["state"] == "reserved"  # charged behind the timeout


@pytest.mark.parametrize("value", ODD_RETRY_AFTER)
def test_odd_retry_after_on_a_throttle(value: str) -> None:
    out, at, model, _ = _call(FaultDraw(0.1, 0.1, "throttle", Mangle(retry_after=value)))
    assert isinstance(out, Response) and out.status == 429 and at == 0
    assert out.header("retry-after") == value
    assert model.stats.misbehaved == 1
    assert model.ledger.snapshot()["payments"] == []  # type: ignore[union-attr]


def test_the_profile_draws_the_mangles() -> None:
    env = simpy.Environment()
    ledger = Ledger(random.Random(1), INSTANT)
    faults = Faults(latency_before_s=0.1, latency_after_s=0.1, p_unknown_state=1.0)
    model = ProviderModel(env, ledger, FaultProfile.constant(faults), random.Random(2))
    replies = []
    for i in range(20):
        reply = simpy.Event(env)
        model.submit(api.create_payment(f"order-{i}", 1000, "DKK", f"key-{i}"), reply)
        replies.append(reply)
    env.run()
    states = {r.value.body["state"] for r in replies}
    assert states <= set(BODY_MANGLES["unknown_state"]) and len(states) > 3
    assert model.stats.misbehaved == 20 and len(ledger.snapshot()["payments"]) == 20


def test_without_misbehaviour_the_model_draws_the_old_stream() -> None:
    """The model takes exactly the old 7 uniforms per request (the draws are
    checked number by number in tests/provider/test_provider_misbehaviour.py)."""
    env = simpy.Environment()
    faults = Faults(p_throttle=0.2, p_server_error=0.1, p_lost_after_commit=0.1)
    rng, reference = random.Random(4), random.Random(4)
    model = ProviderModel(env, None, FaultProfile.constant(faults), rng)
    for _ in range(50):
        model.submit(api.get_payment("p"), simpy.Event(env))
        for _ in range(7):
            reference.random()
    env.run()
    assert rng.getstate() == reference.getstate()
    assert model.stats.misbehaved == 0
