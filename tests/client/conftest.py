"""Fixtures for the client tests: a real provider with scripted faults, and one
adapter that runs either client (sync or async) behind the same sync calls."""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from payflow import set_testing
from payflow.client import AsyncPaymentClient, PaymentClient
from payflow.core import Policy, PollSchedule, RetryPolicy, Timeouts
from payflow.core._backoff import Backoff, Jitter
from payflow.provider.app import INSPECT_PATH
from payflow.provider.faults import FaultDraw, FaultProfile, Faults
from payflow.provider.ledger import PayerModel
from payflow.provider.testing import RunningProvider, running_provider

INSTANT = PayerModel(approve_probability=1.0, decide_after_s=(0.0, 0.0))


class _ScriptedFaults(Faults):
    """Faults whose draw pops the fate of the next request from a script.

    ``draw_parts`` is the one draw (the provider pipeline calls it; ``draw`` is
    built on it), so overriding it scripts both.
    """

    def draw_parts(self, rng: Any, kind: str | None = None) -> Any:
        script: deque[FaultDraw] = self.__dict__["script"]
        try:
            fate = script.popleft()
        except IndexError:
            fate = FaultDraw(0.0, 0.0, "ok")
        return fate.latency_before_s, fate.latency_after_s, fate.action, fate.mangle


class ScriptedProfile(FaultProfile):
    """A fault profile driven by a script: the next requests' fates, in order.

    ``push("lost", "error_after", ...)`` or ``push(FaultDraw(...))``; once the
    script is empty every request is answered at once.
    """

    def __init__(self, poll_delay_ms: int = 5, retry_after_s: float = 1.0) -> None:
        self.faults = _ScriptedFaults(
            latency_before_s=0.0,
            latency_after_s=0.0,
            poll_delay_ms=poll_delay_ms,
            retry_after_s=retry_after_s,
        )
        self.script: deque[FaultDraw] = deque()
        self.faults.__dict__["script"] = self.script
        super().__init__("scripted", [(0.0, self.faults)])

    def at(self, t: float) -> Faults:
        return self.faults

    def push(self, *fates: str | FaultDraw) -> None:
        for fate in fates:
            self.script.append(fate if isinstance(fate, FaultDraw) else FaultDraw(0.0, 0.0, fate))  # type: ignore[arg-type]

    def clear(self) -> None:
        self.script.clear()


class Provider:
    """The running provider plus its fault script and payer model."""

    def __init__(self, running: RunningProvider, profile: ScriptedProfile) -> None:
        self.running = running
        self.profile = profile
        self.base_url = running.base_url
        self.client_id = running.client_id
        self.token = running.token
        # One HTTP client for the inspection endpoint (a new one per call costs ~80 ms).
        self._inspect = httpx.Client(
            base_url=running.base_url,
            headers={"Authorization": f"Bearer {running.inspect_token}"},
            timeout=10.0,
        )

    def close(self) -> None:
        self._inspect.close()

    def set_payer(self, payer: PayerModel) -> None:
        self.running.state.ledger.payer = payer

    def ledger(self) -> dict[str, Any]:
        """The ground truth: ``GET /_payflow/ledger``."""
        response = self._inspect.get(INSPECT_PATH)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def payments(self, order_id: str) -> list[dict[str, Any]]:
        return [p for p in self.ledger()["payments"] if p["orderId"] == order_id]

    def refunds(self, payment_id: str) -> list[dict[str, Any]]:
        return [r for r in self.ledger()["refunds"] if r["paymentId"] == payment_id]


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    profile = ScriptedProfile()
    with running_provider(faults=profile, payer=INSTANT, lost_hold_s=5.0) as running:
        prov = Provider(running, profile)
        yield prov
        prov.close()


@pytest.fixture(autouse=True)
def _reset_provider(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "provider" in request.fixturenames:
        prov: Provider = request.getfixturevalue("provider")
        prov.profile.clear()
        prov.set_payer(INSTANT)


def fast_policy(**changes: Any) -> Policy:
    """Small timeouts and delays, so faults cost milliseconds."""
    retry = RetryPolicy(
        max_attempts=changes.pop("max_attempts", 3),
        deadline=changes.pop("deadline", 5.0),
        backoff=Backoff(Jitter.FULL, 0.001, 0.01),
        timeouts=Timeouts(write=0.25, read=0.2, poll=0.2),
    )
    polling = PollSchedule(
        deadline=changes.pop("poll_deadline", 3.0),
        default_delay=0.005,
        backoff=Backoff(Jitter.FULL, 0.001, 0.01),
    )
    return Policy(retry=retry, polling=polling, **changes)


def order_id(prefix: str = "order") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class _LoopThread:
    """An event loop on a background thread; ``run(coro)`` waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class ClientAdapter:
    """Either client behind the same synchronous calls (async ones run on a loop thread)."""

    def __init__(self, client: PaymentClient | AsyncPaymentClient, loop: _LoopThread | None):
        self.client = client
        self._loop = loop
        self.kind = "async" if loop is not None else "sync"

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if self._loop is not None and inspect.iscoroutinefunction(attr):
            loop = self._loop

            def call(*args: Any, **kwargs: Any) -> Any:
                return loop.run(attr(*args, **kwargs))

            return call
        return attr

    def close(self) -> None:
        if self._loop is not None:
            assert isinstance(self.client, AsyncPaymentClient)
            self._loop.run(self.client.aclose())
        else:
            assert isinstance(self.client, PaymentClient)
            self.client.close()


MakeClient = Callable[..., ClientAdapter]


@pytest.fixture(autouse=True)
def _test_mode() -> Iterator[None]:
    """Every client test runs in test mode (no real sleeps) unless it asks for them
    (``make_client(sleeps=True)``); the previous setting is restored after it."""
    with set_testing(True):
        yield


@pytest.fixture(params=["sync", "async"])
def make_client(request: pytest.FixtureRequest, provider: Provider) -> Iterator[MakeClient]:
    """``make_client(**kwargs)``: a client of the parametrised kind against ``provider``.

    ``capture=list`` records every ``httpx.Request`` sent.
    """
    kind: str = request.param
    loop = _LoopThread() if kind == "async" else None
    made: list[ClientAdapter] = []

    def make(**kwargs: Any) -> ClientAdapter:
        capture: list[httpx.Request] | None = kwargs.pop("capture", None)
        kwargs.setdefault("policy", fast_policy())
        if kwargs.pop("sleeps", False):
            set_testing(False)  # this test measures real waiting (restored after it)
        kwargs.setdefault("budget", None)
        args = (
            kwargs.pop("base_url", provider.base_url),
            kwargs.pop("client_id", provider.client_id),
            kwargs.pop("token", provider.token),
        )
        if loop is None:
            if capture is not None:
                kwargs["http"] = httpx.Client(event_hooks={"request": [capture.append]})
            client: PaymentClient | AsyncPaymentClient = PaymentClient(*args, **kwargs)
        else:
            if capture is not None:

                async def hook(req: httpx.Request) -> None:
                    capture.append(req)

                kwargs["http"] = httpx.AsyncClient(event_hooks={"request": [hook]})
            client = AsyncPaymentClient(*args, **kwargs)
        adapter = ClientAdapter(client, loop)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()
    if loop is not None:
        loop.stop()
