"""The simulation engine against theory: results nobody on this project wrote.

* :func:`mmc` runs the provider model's *own* queue (:class:`ProviderModel`
  with a bare ledger, exponential service, constant capacity) as an M/M/c
  system; :func:`erlang_c_wait` is the textbook mean wait to compare with.
* :func:`amplification` sends requests through the shipped retry loop
  (:func:`payflow.core.call`) to a provider failing independently with
  probability ``p``; the closed forms are ``1 + p + ... + p**N`` calls per
  request and ``1 - p**(N + 1)`` success for ``N`` retries.
* :func:`retry_storm` is a metastable failure in the spirit of Marc Brooker's
  retry simulations and Bronson et al., "Metastable Failures in Distributed
  Systems" (HotOS 2021): a short load spike against a capacity-limited
  provider, clients that time out and retry, and a provider that keeps
  working on requests nobody waits for any more.
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator
from typing import Any

import pandas as pd
import simpy

from payflow.core import Backoff, Context, Jitter, Policy, RetryBudget, RetryPolicy
from payflow.core._calls import call
from payflow.core._policy import PollSchedule, Timeouts
from payflow.core.messages import CallKind, Request, Response
from payflow.drivers._simpy import FlowIO, SimJournal, run_flow
from payflow.provider.faults import FaultDraw, FaultProfile, Faults
from payflow.sim._provider import ProviderModel

__all__ = ["amplification", "erlang_c_wait", "mmc", "retry_storm"]


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def erlang_c_wait(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Mean time in queue (before service) of an M/M/c queue, by the Erlang C formula."""
    a = arrival_rate / service_rate
    rho = a / servers
    if rho >= 1:
        return math.inf
    term, total = 1.0, 1.0  # a**k / k! for k = 0
    for k in range(1, servers):
        term *= a / k
        total += term
    last = term * a / servers / (1 - rho)  # a**c / c! / (1 - rho)
    p_wait = last / (total + last)
    return p_wait / (servers * service_rate - arrival_rate)


def _bare_profile(servers: int) -> FaultProfile:
    return FaultProfile.constant(Faults(capacity=servers), name="validation")


class _Counter:
    """A sink that counts provider calls and retries."""

    def __init__(self) -> None:
        self.calls = 0
        self.events: list[Any] = []

    def on_call(self, call: Any, now: float) -> None:
        self.calls += 1

    def on_event(self, event: Any) -> None:
        pass


def mmc(
    arrival_rate: float,
    service_rate: float,
    servers: int,
    customers: int,
    seed: int = 0,
    warmup: float = 0.1,
) -> dict[str, float]:
    """Run the provider model's queue as M/M/c; return ``mean_wait`` and ``utilization``.

    The first ``warmup`` fraction of customers is discarded. The result also
    holds ``erlang_c`` (the theory) and ``measured`` (customers averaged).
    """
    _positive("arrival_rate", arrival_rate)
    _positive("service_rate", service_rate)
    if isinstance(servers, bool) or not isinstance(servers, int) or servers < 1:
        raise ValueError(f"servers must be a positive integer, got {servers!r}")
    if isinstance(customers, bool) or not isinstance(customers, int) or customers < 10:
        raise ValueError(f"customers must be an integer >= 10, got {customers!r}")
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup must be in [0, 1), got {warmup!r}")
    arrivals = random.Random(f"{seed}:arrivals")
    services = random.Random(f"{seed}:services")
    env = simpy.Environment()
    drawn: list[float] = []

    def exponential_service(faults: Faults, rng: random.Random) -> FaultDraw:
        service = services.expovariate(service_rate)
        drawn.append(service)
        return FaultDraw(service, 0.0, "ok")

    model = ProviderModel(
        env, None, _bare_profile(servers), random.Random(seed), service=exponential_service
    )
    skip = int(customers * warmup)
    waits: list[float] = []
    request = Request("GET", "/mmc", kind=CallKind.READ)
    start_measure = [0.0]
    busy_at_start = [0.0]

    def customer(index: int) -> Generator[simpy.Event, Any, None]:
        arrived = env.now
        reply = simpy.Event(env)
        model.submit(request, reply)
        service = drawn[-1]
        yield reply
        if index >= skip:
            waits.append(env.now - arrived - service)

    def source() -> Generator[simpy.Event, Any, None]:
        for index in range(customers):
            if index == skip:
                start_measure[0] = env.now
                busy_at_start[0] = model.stats.busy_s
            env.process(customer(index))
            yield env.timeout(arrivals.expovariate(arrival_rate))

    env.process(source())
    env.run()
    span = env.now - start_measure[0]
    busy = model.stats.busy_s - busy_at_start[0]
    return {
        "mean_wait": sum(waits) / len(waits),
        "utilization": busy / (servers * span) if span > 0 else 0.0,
        "erlang_c": erlang_c_wait(arrival_rate, service_rate, servers),
        "measured": float(len(waits)),
    }


def _failing_service(p: float, latency: float) -> Any:
    def draw(faults: Faults, rng: random.Random) -> FaultDraw:
        return FaultDraw(latency, 0.0, "error_before" if rng.random() < p else "ok")

    return draw


def amplification(
    p: float, retries: int, requests: int = 10_000, seed: int = 0
) -> dict[str, float]:
    """Calls per request and success rate of the shipped retry loop when each
    attempt fails (HTTP 503) independently with probability ``p``."""
    if not 0 <= p < 1:
        raise ValueError(f"p must be in [0, 1), got {p!r}")
    policy = RetryPolicy(
        max_attempts=retries + 1, deadline=None, backoff=Backoff(Jitter.CONSTANT, 0.01, 0.01)
    )
    ctx = Context(Policy(retry=policy), random.Random(f"{seed}:client"), clock=lambda: env.now)
    env = simpy.Environment()
    model = ProviderModel(
        env,
        None,
        _bare_profile(requests),
        random.Random(f"{seed}:provider"),
        service=_failing_service(p, 0.001),
    )
    io = FlowIO(env, model.submit, SimJournal())
    sink = _Counter()
    successes = [0]
    request = Request("GET", "/v10/payments/p", kind=CallKind.READ)

    def one() -> Generator[simpy.Event, Any, None]:
        try:
            response, _ = yield from run_flow(call(request, ctx), io, sink)
        except Exception:  # ProviderUnavailable: retries exhausted
            return
        if isinstance(response, Response) and response.ok:
            successes[0] += 1

    for _ in range(requests):
        env.process(one())
    env.run()
    return {
        "calls_per_request": sink.calls / requests,
        "success_rate": successes[0] / requests,
        "expected_calls": sum(p**k for k in range(retries + 1)),
        "expected_success": 1 - p ** (retries + 1),
    }


def retry_storm(
    *,
    strategy: str = "immediate",
    seed: int = 0,
    servers: int = 5,
    service_s: float = 0.1,
    base_rate: float = 35.0,
    spike_rate: float = 120.0,
    spike: tuple[float, float] = (60.0, 80.0),
    duration_s: float = 300.0,
    timeout_s: float = 1.0,
    window_s: float = 10.0,
) -> pd.DataFrame:
    """A load spike against a capacity-limited provider; one row per time window.

    ``strategy`` is "immediate" (up to 6 attempts, no backoff, no budget -- the
    retry storm), "backoff" (full jitter) or "backoff+budget" (full jitter and
    a gRPC retry budget). Columns: ``t`` (window start, s), ``offered`` (calls
    per second sent to the provider), ``goodput`` (requests per second that
    succeeded), ``queue`` (requests waiting at the window's end) and
    ``timeouts`` (per second).
    """
    if strategy not in ("immediate", "backoff", "backoff+budget"):
        raise ValueError(
            f"strategy must be 'immediate', 'backoff' or 'backoff+budget', got {strategy!r}"
        )
    backoff = (
        Backoff(Jitter.NONE, 0.0, 0.0)
        if strategy == "immediate"
        else Backoff(Jitter.FULL, 0.5, 30.0)
    )
    policy = Policy(
        retry=RetryPolicy(
            max_attempts=6,
            deadline=None,
            backoff=backoff,
            timeouts=Timeouts(write=timeout_s, read=timeout_s, poll=timeout_s),
        ),
        polling=PollSchedule(),
    )
    budget = RetryBudget.grpc() if strategy == "backoff+budget" else None
    ctx = Context(policy, random.Random(f"{seed}:client"), budget, clock=lambda: env.now)
    env = simpy.Environment()
    services = random.Random(f"{seed}:services")

    def service(faults: Faults, rng: random.Random) -> FaultDraw:
        return FaultDraw(services.expovariate(1 / service_s), 0.0, "ok")

    model = ProviderModel(env, None, _bare_profile(servers), random.Random(seed), service=service)
    io = FlowIO(env, model.submit, SimJournal())
    windows = int(duration_s // window_s)
    offered = [0] * windows
    good = [0] * windows
    timeouts = [0] * windows
    queue = [0] * windows

    class Sink:
        def on_call(self, call: Any, now: float) -> None:
            w = int(now // window_s)
            if w < windows:
                offered[w] += 1

        def on_event(self, event: Any) -> None:
            if getattr(event, "outcome", None) == "timeout":
                w = int(event.at // window_s)
                if w < windows:
                    timeouts[w] += 1

    sink = Sink()
    request = Request("GET", "/v10/payments/p", kind=CallKind.READ)
    arrivals = random.Random(f"{seed}:arrivals")

    def one() -> Generator[simpy.Event, Any, None]:
        try:
            yield from run_flow(call(request, ctx), io, sink)
        except Exception:  # gave up: attempts or budget
            return
        w = int(env.now // window_s)
        if w < windows:
            good[w] += 1

    def source() -> Generator[simpy.Event, Any, None]:
        while env.now < duration_s:
            rate = spike_rate if spike[0] <= env.now < spike[1] else base_rate
            yield env.timeout(arrivals.expovariate(rate))
            env.process(one())

    def monitor() -> Generator[simpy.Event, Any, None]:
        for w in range(windows):
            yield env.timeout(window_s)
            queue[w] = model.queue_length()

    env.process(source())
    env.process(monitor())
    env.run(until=duration_s + window_s / 2)  # let the last window be sampled
    return pd.DataFrame(
        {
            "t": [w * window_s for w in range(windows)],
            "offered": [n / window_s for n in offered],
            "goodput": [n / window_s for n in good],
            "timeouts": [n / window_s for n in timeouts],
            "queue": queue,
            "strategy": strategy,
        }
    )
