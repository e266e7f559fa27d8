"""The real server: uvicorn on 127.0.0.1 and an ephemeral port, talked to with httpx."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from payflow.core._api import IDEMPOTENCY_HEADER
from payflow.provider._pipeline import Capacity
from payflow.provider.app import ProviderState, _acquire, _close, _wake, create_app
from payflow.provider.faults import FaultProfile, Faults
from payflow.provider.ledger import PayerModel
from payflow.provider.testing import RunningProvider, running_provider

CLIENTS = {"shop": "s3cret-shop-token", "other": "other-token-xyz", "auditor": "aud-token"}
PAYMENT = {"orderId": "order-1", "amount": 1000, "currency": "DKK"}


@pytest.fixture(scope="module")
def provider() -> Iterator[RunningProvider]:
    with running_provider(CLIENTS, read_only_clients=["auditor"]) as running:
        yield running


def post_payment(
    p: RunningProvider, key: str, body: dict[str, Any] | None = None, **kw: Any
) -> httpx.Response:
    return httpx.post(
        p.base_url + "/v10/payments",
        json=body or PAYMENT,
        headers={**p.headers(), IDEMPOTENCY_HEADER: key},
        **kw,
    )


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "message", "correlationId"}
    assert body["code"] == code
    assert r.headers["x-correlation-id"] == body["correlationId"]
    for token in CLIENTS.values():
        assert token not in r.text


def faulty(**kwargs: Any) -> FaultProfile:
    base = {"latency_before_s": 0.0, "latency_after_s": 0.0, "latency_sigma": 0.0}
    return FaultProfile.constant(Faults(**{**base, **kwargs}))


# --------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"x-ibm-client-id": "shop"}, 401, "unauthorized"),
        ({"x-ibm-client-id": "shop", "Authorization": "Bearer wrong"}, 401, "unauthorized"),
        ({"x-ibm-client-id": "shop", "Authorization": "Bearer"}, 401, "unauthorized"),
        ({"x-ibm-client-id": "shop", "Authorization": "s3cret-shop-token"}, 401, "unauthorized"),
        (
            {"x-ibm-client-id": "shop", "Authorization": "Basic s3cret-shop-token"},
            401,
            "unauthorized",
        ),
        (
            {"x-ibm-client-id": "other", "Authorization": "Bearer s3cret-shop-token"},
            401,
            "unauthorized",
        ),
        (
            {"x-ibm-client-id": "nobody", "Authorization": "Bearer s3cret-shop-token"},
            401,
            "unauthorized",
        ),
        (
            {"x-ibm-client-id": "shop", "Authorization": "Bearer s3cret-shop-token"},
            400,
            "invalid_client_version",
        ),
    ],
)
def test_auth_failures(
    provider: RunningProvider, headers: dict[str, str], status: int, code: str
) -> None:
    r = httpx.get(provider.base_url + "/v10/payments?orderId=x", headers=headers)
    assert_error(r, status, code)


@pytest.mark.parametrize(
    "version", ["", "1", "1.0", "1.0.0.0", "a.b.c", "1.-1.0", "1. 0.0", "١.٢.٣"]
)
def test_bad_client_version_is_400(provider: RunningProvider, version: str) -> None:
    headers: dict[str, Any] = dict(provider.headers())
    headers["x-mobilepay-client-system-version"] = version.encode("utf-8")
    r = httpx.get(provider.base_url + "/v10/payments?orderId=x", headers=headers)
    assert_error(r, 400, "invalid_client_version")


def test_read_only_client_gets_403_on_writes(provider: RunningProvider) -> None:
    headers = {**provider.headers("auditor"), IDEMPOTENCY_HEADER: "k"}
    r = httpx.post(provider.base_url + "/v10/payments", json=PAYMENT, headers=headers)
    assert_error(r, 403, "forbidden")
    ok = httpx.get(
        provider.base_url + "/v10/payments?orderId=x", headers=provider.headers("auditor")
    )
    assert ok.status_code == 200


def test_tokens_never_in_reprs(provider: RunningProvider) -> None:
    for text in (repr(provider), repr(provider.state), repr(provider.state.ledger)):
        for token in CLIENTS.values():
            assert token not in text
        assert provider.inspect_token not in text


# ---------------------------------------------------------------- endpoints


def test_full_flow_and_replay_over_http(provider: RunningProvider) -> None:
    first = post_payment(provider, "flow-1", {**PAYMENT, "orderId": "flow-1"})
    assert first.status_code == 201
    again = post_payment(provider, "flow-1", {**PAYMENT, "orderId": "flow-1"})
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    reused = post_payment(provider, "flow-1", {**PAYMENT, "orderId": "flow-1", "amount": 5})
    assert_error(reused, 422, "idempotency_key_reused")
    missing = httpx.post(
        provider.base_url + "/v10/payments", json=PAYMENT, headers=provider.headers()
    )
    assert_error(missing, 400, "idempotency_key_missing")
    pid = first.json()["paymentId"]
    polled = httpx.get(f"{provider.base_url}/v10/payments/{pid}", headers=provider.headers())
    assert polled.status_code == 200 and polled.json()["pollDelayInMs"] == 1000
    found = httpx.get(
        provider.base_url + "/v10/payments?orderId=flow-1", headers=provider.headers()
    )
    assert [p["paymentId"] for p in found.json()["payments"]] == [pid]
    # another client can neither see the payment nor replay the key
    other = httpx.get(f"{provider.base_url}/v10/payments/{pid}", headers=provider.headers("other"))
    assert_error(other, 404, "payment_not_found")
    ledger = provider.ledger()
    assert [p["paymentId"] for p in ledger["payments"] if p["orderId"] == "flow-1"] == [pid]


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "code"),
    [
        ("GET", "/nowhere", None, 404, "not_found"),
        ("GET", "/", None, 404, "not_found"),
        ("DELETE", "/v10/payments", None, 405, "method_not_allowed"),
        ("PATCH", "/v10/payments/x", None, 405, "method_not_allowed"),
        ("POST", "/v10/payments", b"{not json", 400, "invalid_json"),
        ("POST", "/v10/payments", b"\xff\xfe", 400, "invalid_json"),
        ("POST", "/v10/payments", b"NaN", 400, "invalid_json"),
        ("POST", "/v10/payments", b"[" * 50_000, 400, "invalid_json"),
        ("POST", "/v10/payments", b"[1,2]", 400, "invalid_body"),
        (
            "POST",
            "/v10/payments",
            b'{"orderId":"o","amount":1.0,"currency":"DKK"}',
            400,
            "invalid_field",
        ),
        ("POST", "/v10/payments", b"x" * 70_000, 413, "payload_too_large"),
        ("GET", "/v10/payments?orderId=%ZZ", None, 400, "invalid_field"),
        ("GET", "/v10/payments/a%3Fb", None, 404, "not_found"),
        (
            "POST",
            "/v10/payments",
            b'{"orderId":' + b"[" * 966 + b"]" * 966 + b"}",
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v10/payments",
            b'{"orderId":' + b'{"a":' * 33 + b"1" + b"}" * 33 + b"}",
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v10/payments",
            b'{"orderId":' + b"[" * 31 + b"]" * 31 + b',"amount":1,"currency":"DKK"}',
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/v10/payments",
            b'{"orderId":"o","currency":"DKK","amount":' + b"9" * 5000 + b"}",
            400,
            "invalid_field",
        ),
    ],
)
def test_malformed_requests_get_4xx_error_bodies(
    provider: RunningProvider,
    method: str,
    path: str,
    content: bytes | None,
    status: int,
    code: str,
) -> None:
    headers = {**provider.headers(), IDEMPOTENCY_HEADER: "malformed"}
    r = httpx.request(method, provider.base_url + path, content=content, headers=headers)
    assert_error(r, status, code)


def test_odd_methods_never_500(provider: RunningProvider) -> None:
    for method in ("HEAD", "OPTIONS", "TRACE", "FOO"):
        r = httpx.request(method, provider.base_url + "/v10/payments", headers=provider.headers())
        assert 400 <= r.status_code < 500, (method, r.status_code)


def test_inspection_needs_its_own_token(provider: RunningProvider) -> None:
    url = provider.base_url + "/_payflow/ledger"
    assert_error(httpx.get(url), 401, "unauthorized")
    shop = httpx.get(url, headers={"Authorization": f"Bearer {CLIENTS['shop']}"})
    assert_error(shop, 401, "unauthorized")
    ok = httpx.get(url, headers={"Authorization": f"Bearer {provider.inspect_token}"})
    assert ok.status_code == 200 and set(ok.json()) >= {"payments", "refunds"}


def test_inspection_body_is_exactly_payments_and_refunds(provider: RunningProvider) -> None:
    url = provider.base_url + "/_payflow/ledger"
    ok = httpx.get(url, headers={"Authorization": f"Bearer {provider.inspect_token}"})
    assert ok.status_code == 200
    assert set(ok.json()) == {"payments", "refunds"}
    assert ok.headers["x-correlation-id"]


def _deep_create(provider: RunningProvider, depth: int, key: str) -> httpx.Response:
    content = (
        b'{"orderId":' + b"[" * depth + b'"x"' + b"]" * depth + b',"amount":1,"currency":"DKK"}'
    )
    headers = {**provider.headers(), IDEMPOTENCY_HEADER: key}
    return httpx.post(provider.base_url + "/v10/payments", content=content, headers=headers)


@pytest.mark.parametrize("depth", [33, 500, 966, 990, 5000])
def test_deeply_nested_json_is_400_naming_the_nesting(
    provider: RunningProvider, depth: int
) -> None:
    r = _deep_create(provider, depth, f"deep-{depth}")
    assert_error(r, 400, "invalid_json")
    assert "nested" in r.json()["message"] and "32" in r.json()["message"]


def test_nesting_up_to_the_limit_reaches_field_validation(provider: RunningProvider) -> None:
    r = _deep_create(provider, 31, "deep-ok")  # the object is level 1, so 32 levels in all
    assert_error(r, 400, "invalid_field")
    assert r.json()["message"].startswith("orderId:")


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"orderId":"o","amount":' + b"9" * 5000 + b',"currency":"DKK"}', "amount"),
        (b'{"orderId":"o","amount":-' + b"9" * 5000 + b',"currency":"DKK"}', "amount"),
        (b'{"orderId":"o","amount":' + b"1" * 40 + b',"currency":"DKK"}', "amount"),
        (b'{"orderId":' + b"7" * 4500 + b',"amount":1,"currency":"DKK"}', "orderId"),
    ],
)
def test_huge_integers_name_the_field(
    provider: RunningProvider, content: bytes, field: str
) -> None:
    headers = {**provider.headers(), IDEMPOTENCY_HEADER: "huge-int"}
    r = httpx.post(provider.base_url + "/v10/payments", content=content, headers=headers)
    assert_error(r, 400, "invalid_field")
    message = r.json()["message"]
    assert message.startswith(f"{field}:"), message
    assert "UTF-8" not in message


def test_encoded_slash_does_not_make_a_path_segment(provider: RunningProvider) -> None:
    created = post_payment(provider, "slash-1", {**PAYMENT, "orderId": "slash-1"})
    pid = created.json()["paymentId"]
    headers = provider.headers()
    for method, suffix in [("POST", "%2Fcancel"), ("POST", "%2fcapture"), ("GET", "%2Fcancel")]:
        r = httpx.request(
            method, f"{provider.base_url}/v10/payments/{pid}{suffix}", headers=headers
        )
        assert_error(r, 404, "not_found")
    r = httpx.get(f"{provider.base_url}/v10/payments{'%2F'}{pid}", headers=headers)
    assert_error(r, 404, "not_found")
    polled = httpx.get(f"{provider.base_url}/v10/payments/{pid}", headers=headers)
    assert polled.json()["state"] == "initiated"


def test_inspection_disabled_is_404() -> None:
    app = create_app({"a": "tok"}, inspect_token=None)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/_payflow/ledger", headers={"Authorization": "Bearer x"})

    assert_error(asyncio.run(go()), 404, "not_found")


def test_create_app_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="time_scale"):
        create_app({"a": "t"}, time_scale=0)
    with pytest.raises(ValueError, match="clients"):
        create_app({})
    with pytest.raises(ValueError, match="clients"):
        create_app({"a": ""})
    with pytest.raises(ValueError, match="read_only_clients"):
        create_app({"a": "t"}, read_only_clients=["b"])


# ------------------------------------------------------------------- faults


def test_lost_after_commit_is_charged_but_never_answered() -> None:
    with running_provider(faults=faulty(p_lost_after_commit=1.0)) as p:
        with pytest.raises(httpx.TimeoutException):
            post_payment(p, "lost-1", timeout=0.5)
        payments = p.ledger()["payments"]
        assert [x["orderId"] for x in payments] == ["order-1"]
        assert p.state.lost == 1


def test_reset_before_commit_charges_nothing() -> None:
    with running_provider(faults=faulty(p_reset_before_commit=1.0)) as p:
        with pytest.raises(httpx.TransportError):
            post_payment(p, "reset-1", timeout=5.0)
        assert p.ledger()["payments"] == []
        assert p.state.resets == 1


@pytest.mark.parametrize(("after", "charged"), [(1.0, 1), (0.0, 0)])
def test_server_errors_before_and_after_commit(after: float, charged: int) -> None:
    with running_provider(faults=faulty(p_server_error=1.0, server_error_after_commit=after)) as p:
        r = post_payment(p, "err-1")
        assert_error(r, 503, "service_unavailable")
        assert len(p.ledger()["payments"]) == charged


def test_throttle_carries_retry_after_and_does_nothing() -> None:
    with running_provider(faults=faulty(p_throttle=1.0, retry_after_s=7.0)) as p:
        r = post_payment(p, "thr-1")
        assert_error(r, 429, "too_many_requests")
        assert r.headers["retry-after"] == "7"
        assert p.ledger()["payments"] == []


def test_retry_while_first_is_in_flight_is_409() -> None:
    with running_provider(faults=faulty(latency_before_s=0.6)) as p:

        async def go() -> list[int]:
            async with httpx.AsyncClient(base_url=p.base_url, timeout=10) as client:
                headers = {**p.headers(), IDEMPOTENCY_HEADER: "inflight-1"}
                first = asyncio.create_task(
                    client.post("/v10/payments", json=PAYMENT, headers=headers)
                )
                await asyncio.sleep(0.2)
                second = await client.post("/v10/payments", json=PAYMENT, headers=headers)
                return [(await first).status_code, second.status_code]

        assert asyncio.run(go()) == [201, 409]
        assert len(p.ledger()["payments"]) == 1


def test_time_scaling_compresses_the_payer_wait() -> None:
    payer = PayerModel(approve_probability=1.0, decide_after_s=(60.0, 60.0))
    with running_provider(time_scale=100.0, payer=payer) as p:
        pid = post_payment(p, "scaled-1").json()["paymentId"]
        deadline = time.monotonic() + 5.0  # generous: the decision is due after ~0.6 s
        state = "initiated"
        while state == "initiated" and time.monotonic() < deadline:
            time.sleep(0.05)
            state = httpx.get(f"{p.base_url}/v10/payments/{pid}", headers=p.headers()).json()[
                "state"
            ]
        assert state == "reserved"
        assert p.now() >= 60.0


def test_faults_follow_the_time_of_day_offset() -> None:
    profile = FaultProfile(
        "half-day",
        [
            (0.0, Faults(latency_before_s=0, latency_after_s=0)),
            (12 * 3600.0, Faults(latency_before_s=0, latency_after_s=0, p_throttle=1.0)),
            (12 * 3600.0 + 60, Faults(latency_before_s=0, latency_after_s=0, p_throttle=1.0)),
            (12 * 3600.0 + 120, Faults(latency_before_s=0, latency_after_s=0)),
        ],
    )
    with running_provider(faults=profile, day_offset_s=12 * 3600.0 + 10) as p:
        assert post_payment(p, "tod-1").status_code == 429


def test_poll_delay_comes_from_the_fault_profile() -> None:
    with running_provider(faults=faulty(poll_delay_ms=4321)) as p:
        pid = post_payment(p, "poll-1").json()["paymentId"]
        r = httpx.get(f"{p.base_url}/v10/payments/{pid}", headers=p.headers())
        assert r.json()["pollDelayInMs"] == 4321


@pytest.mark.parametrize(
    ("scale", "base", "expected"),
    [(10.0, 1000, 100), (3.0, 1000, 334), (1e6, 1000, 1), (0.5, 1000, 2000), (10.0, 0, 0)],
)
def test_time_scale_scales_poll_delay(scale: float, base: int, expected: int) -> None:
    with running_provider(time_scale=scale, poll_delay_ms=base) as p:
        created = post_payment(p, "scaled-poll")
        assert created.json()["pollDelayInMs"] == expected
        pid = created.json()["paymentId"]
        r = httpx.get(f"{p.base_url}/v10/payments/{pid}", headers=p.headers())
        assert r.json()["pollDelayInMs"] == expected


@pytest.mark.parametrize(("scale", "expected"), [(1.0, 4321), (10.0, 433), (60.0, 73)])
def test_time_scale_scales_the_fault_profile_poll_delay(scale: float, expected: int) -> None:
    with running_provider(time_scale=scale, faults=faulty(poll_delay_ms=4321)) as p:
        pid = post_payment(p, "poll-scaled").json()["paymentId"]
        r = httpx.get(f"{p.base_url}/v10/payments/{pid}", headers=p.headers())
        assert r.json()["pollDelayInMs"] == expected


def _capacity(limit: int) -> Capacity[asyncio.Future[bool]]:
    """The pipeline's capacity as the app uses it (waiters are asyncio futures)."""
    return Capacity(limit, _wake)


def _now() -> float:
    return time.monotonic()


def test_capacity_queues_requests_fifo() -> None:
    async def go() -> list[int]:
        cap = _capacity(2)
        order: list[int] = []

        async def user(i: int) -> None:
            await _acquire(cap, _now)
            order.append(i)
            await asyncio.sleep(0.01)
            cap.leave(_now())

        await _acquire(cap, _now)
        await _acquire(cap, _now)
        tasks = [asyncio.create_task(user(i)) for i in range(4)]
        await asyncio.sleep(0)
        assert cap.queued == 4 and order == []
        cap.leave(_now())
        cap.leave(_now())
        await asyncio.gather(*tasks)
        assert cap.busy == 0
        return order

    assert asyncio.run(go()) == [0, 1, 2, 3]


def test_capacity_cancelled_waiter_frees_its_place() -> None:
    async def go() -> None:
        cap = _capacity(1)
        await _acquire(cap, _now)
        waiter = asyncio.create_task(_acquire(cap, _now))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert cap.queued == 0
        cap.leave(_now())
        assert cap.busy == 0

    asyncio.run(go())


def test_capacity_waiter_cancelled_just_before_a_release_pops_it() -> None:
    """A release between a waiter's cancellation and its clean-up skips it; the clean-up
    must not fail (it did, with ValueError, at server shutdown under load)."""

    async def go() -> None:
        cap = _capacity(1)
        await _acquire(cap, _now)
        first = asyncio.create_task(_acquire(cap, _now))
        second = asyncio.create_task(_acquire(cap, _now))
        await asyncio.sleep(0)
        first.cancel()  # its future is cancelled now; its except-clause runs later
        cap.leave(_now())  # pops the cancelled future, grants the second waiter
        with pytest.raises(asyncio.CancelledError):
            await first
        await second
        assert cap.busy == 1 and cap.queued == 0
        cap.leave(_now())
        assert cap.busy == 0

    asyncio.run(go())


def test_shutdown_ends_work_in_progress_and_refuses_the_queue_quietly() -> None:
    """Requests in their latency finish, queued ones get a 503; nothing is cancelled
    mid-request (which logged a traceback per request at the end of real runs)."""
    slow = Faults(latency_before_s=600.0, latency_after_s=0.0, latency_sigma=0.0, capacity=1)
    errors: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record)

    collect = Collect(level=logging.ERROR)
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "payflow", "payflow.provider")]
    for logger in loggers:
        logger.addHandler(collect)
    answers: list[int] = []
    try:
        with running_provider(faults=FaultProfile.constant(slow)) as p:

            def pay(i: int) -> None:
                answers.append(post_payment(p, f"shutdown-{i}", timeout=30).status_code)

            threads = [threading.Thread(target=pay, args=(i,)) for i in range(4)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 20
            while p.state.capacity.queued < 3:  # one in its latency, three queued
                assert time.monotonic() < deadline, "the requests never queued"
                time.sleep(0.01)
            ledger = p.state.ledger
        for thread in threads:
            thread.join(30)
    finally:
        for logger in loggers:
            logger.removeHandler(collect)
    # Each got an answer, none was cut off: the one at work before its change and the
    # queued ones are refused, and nothing was made.
    assert answers == [503, 503, 503, 503]
    assert ledger.snapshot()["payments"] == [] and ledger.in_flight() == 0
    assert errors == []


def test_capacity_close_refuses_waiters_and_later_arrivals() -> None:
    async def go() -> None:
        cap = _capacity(1)
        assert await _acquire(cap, _now)
        waiter = asyncio.create_task(_acquire(cap, _now))
        await asyncio.sleep(0)
        _close(cap, _now())
        assert await waiter is False and cap.queued == 0
        assert await _acquire(cap, _now) is False  # full: refused, not queued
        cap.leave(_now())
        assert cap.busy == 0 and await _acquire(cap, _now)  # a free slot is still taken

    asyncio.run(go())


def test_capacity_waiter_granted_then_cancelled_gives_the_slot_back() -> None:
    async def go() -> None:
        cap = _capacity(1)
        await _acquire(cap, _now)
        waiter = asyncio.create_task(_acquire(cap, _now))
        await asyncio.sleep(0)
        cap.leave(_now())  # hands the slot to the waiter...
        waiter.cancel()  # ...which is cancelled before it resumes
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert cap.busy == 0 and cap.queued == 0

    asyncio.run(go())


def test_state_is_reachable_from_the_app() -> None:
    app = create_app({"a": "tok"})
    assert isinstance(app.state.provider, ProviderState)


def test_running_provider_starts_fast() -> None:
    started = time.monotonic()
    with running_provider() as p:
        elapsed = time.monotonic() - started
        assert httpx.get(p.base_url + "/v10/payments").status_code == 401
    assert elapsed < 5.0  # generous upper bound; typically ~20 ms


_SLOW_PROFILE = """
name = "one-slow-slot"
description = "one slot, ten minutes per request"

[defaults]
latency_before_s = 600.0
latency_after_s = 0.0
latency_sigma = 0.0
capacity = 1

[[keyframes]]
at = "00:00"
"""


def test_serve_on_ctrl_c_answers_every_request_and_exits_quietly(tmp_path: Path) -> None:
    """`payflow provider serve` in a real process: SIGINT with one request at work and
    three queued -- each gets a 503, the process exits without a traceback."""
    profile = tmp_path / "slow.toml"
    profile.write_text(_SLOW_PROFILE)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "payflow.cli", "provider", "serve", "--port", str(port),
         "--faults", str(profile), "--client", "shop:secret-token", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    headers = {
        "Authorization": "Bearer secret-token",
        "x-ibm-client-id": "shop",
        "x-mobilepay-client-system-version": "1.0.0",
    }
    answers: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                httpx.get(base + "/v10/payments", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server never came up"
                time.sleep(0.05)

        def pay(i: int) -> None:
            answers.append(
                httpx.post(
                    base + "/v10/payments",
                    json=PAYMENT,
                    headers={**headers, IDEMPOTENCY_HEADER: f"ctrl-c-{i}"},
                    timeout=60,
                ).status_code
            )

        threads = [threading.Thread(target=pay, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # one at work (ten simulated minutes), three queued behind it
        server.send_signal(signal.SIGINT)
        for thread in threads:
            thread.join(30)
        _, stderr = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode in (0, 130)  # 130: the conventional exit after Ctrl-C
    assert answers == [503, 503, 503, 503]
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr
