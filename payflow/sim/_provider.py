"""The provider on a virtual clock: the one provider pipeline, waited on with SimPy.

Rule: this module only waits and renders. Every decision -- the fault draw, the
throttle, load shedding, the capacity queue, ``ledger.begin`` / ``commit`` /
``abandon`` -- is :class:`payflow.provider._pipeline.Pipeline`'s, the same object
the HTTP server (:mod:`payflow.provider.app`) drives; here ``env.now`` is the clock,
a latency is an ``env.timeout`` and a verdict becomes an
:data:`~payflow.core.messages.Outcome`. The steps:

1. the fault profile of the moment (time of day = ``day_offset + env.now``)
   draws the request's fate (:meth:`payflow.provider.faults.Faults.draw_parts`, the same
   uniforms as ``Faults.draw``);
   ``throttle`` is answered 429 with ``Retry-After`` at once;
2. the request queues for one of ``capacity`` slots -- the pipeline's
   :class:`~payflow.provider._pipeline.Capacity`, whose size follows the profile,
   with no SimPy event for a free slot -- so retries add load and can keep the
   provider overloaded after the trigger is gone;
3. ``ledger.begin``, the latency before commit, then ``ledger.commit`` (or
   ``abandon`` for ``reset`` / ``error_before``), the latency after commit;
4. the answer: the ledger's response, a 503 (``error_*``), a broken connection
   (``reset``) or nothing at all (``lost``: the client times out although the
   change was made). A draw with a :class:`~payflow.provider.faults.Mangle`
   turns a 2xx answer into what the httpx client would make of the server's
   misbehaving one (:func:`~payflow.provider.misbehaviour.seen_reply`: garbled,
   truncated, ``[]`` and empty bodies become ``Response(status, {})``), a
   trickled answer arrives ``trickle_s`` later (the slot is already free), and
   a throttle carries the odd ``Retry-After`` verbatim.

The provider keeps working on a request after its client gave up: that is how
charges happen behind a timeout.

The service time is pluggable (``service``), so the same queue can be checked
against queueing theory: with exponential service times and a constant
capacity it *is* an M/M/c queue (see ``ProviderStats`` for its measurements).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import cast

import simpy

from payflow.core.messages import NotSent, Outcome, Request, Response, TimedOut
from payflow.provider._pipeline import (
    FAULT_STEP_S,
    SERVE,
    SHED,
    Capacity,
    Job,
    Pipeline,
    ProviderStats,
    ServiceSampler,
    default_service,
)
from payflow.provider.faults import FaultProfile, Faults
from payflow.provider.ledger import Ledger, error_body
from payflow.provider.misbehaviour import seen_reply

__all__ = ["Capacity", "ProviderModel", "ProviderStats", "ServiceSampler", "default_service"]


_UNAVAILABLE = Response(
    503, error_body("service_unavailable", "server: temporarily unavailable", "sim")
)
_TIMED_OUT_RESET = TimedOut("connection reset")
_SHED = Response(503, error_body("overloaded", "server: queue full, retry later", "sim"))


def _deliver(reply: simpy.Event) -> Callable[[simpy.Event], None]:
    def deliver(event: simpy.Event) -> None:
        if not reply.triggered:
            reply.succeed(event.value)

    return deliver


class ProviderModel:
    """The provider as a SimPy model: the provider pipeline with ``env.now`` as its clock.

    ``submit(request, reply)`` starts one request and later succeeds ``reply``
    with its :data:`~payflow.core.messages.Outcome` (unless the reply event was
    already triggered, e.g. by the client's timeout). ``ledger=None`` gives a
    bare queue that answers 200 -- handy for queueing checks. ``read_latency``
    scales the latencies of GETs (a status read is cheaper than creating a
    payment; the profile's latencies describe writes) -- unless the profile
    gives ``read`` calls latencies of their own (per-kind faults: each request
    draws from the faults of its :func:`~payflow.provider.faults.endpoint_kind`).
    ``queue_limit`` sheds load: with that many requests waiting, a new one is refused at once with
    a 503 and nothing happens (``None``: the queue is unbounded). ``on_commit`` is
    called as ``on_commit(request, response, now)`` whenever the ledger applied
    a request (the simulation traces payment creations with it). ``queue_slot_s``
    is the slot of :attr:`ProviderStats.queue_by_slot` (seconds).
    """

    def __init__(
        self,
        env: simpy.Environment,
        ledger: Ledger | None,
        profile: FaultProfile,
        rng: random.Random,
        *,
        day_offset: float = 0.0,
        client_id: str = "shop",
        service: ServiceSampler | None = None,
        read_latency: float = 1.0,
        queue_limit: int | None = None,
        on_commit: Callable[[Request, Response, float], None] | None = None,
        queue_slot_s: float = 900.0,
    ) -> None:
        self.env = env
        self.client_id = client_id
        self.pipeline: Pipeline[Job] = Pipeline(
            ledger,
            profile,
            rng,
            self._wake,
            fault_step_s=FAULT_STEP_S,
            day_offset=day_offset,
            service=service,
            read_latency=read_latency,
            queue_limit=queue_limit,
            on_commit=on_commit,
            queue_slot_s=queue_slot_s,
            start=env.now,
        )
        self.capacity: Capacity[Job] = self.pipeline.capacity
        self._throttle_cache: dict[str, Response] = {}
        # the steps' callbacks, bound once (a timeout carries its job as its value)
        self._commit_due = self._commit
        self._finish_due = self._finish
        self.up = True

    @property
    def ledger(self) -> Ledger | None:
        return self.pipeline.ledger

    @property
    def profile(self) -> FaultProfile:
        profile = self.pipeline.profile
        assert profile is not None
        return profile

    @property
    def rng(self) -> random.Random:
        return self.pipeline.rng

    @property
    def day_offset(self) -> float:
        """Seconds since midnight at ``env.now == 0``."""
        return self.pipeline.day_offset

    @day_offset.setter
    def day_offset(self, value: float) -> None:
        self.pipeline.day_offset = value

    @property
    def stats(self) -> ProviderStats:
        """What the provider measured so far (the queue's record up to ``env.now``)."""
        return self.pipeline.snapshot(self.env.now)

    def faults_at(self, now: float) -> Faults:
        """The faults at simulation time ``now`` (resolved to the minute, cached)."""
        faults = self.pipeline.faults_at(now)
        assert faults is not None
        return faults

    def queue_length(self) -> int:
        """Requests waiting for a slot right now."""
        return self.capacity.queued

    def _throttled(self, retry_after: str) -> Response:
        response = self._throttle_cache.get(retry_after)
        if response is None:
            response = Response(
                429,
                error_body("too_many_requests", "client: too many requests", "sim"),
                {"retry-after": retry_after},
            )
            self._throttle_cache[retry_after] = response
        return response

    def submit(self, request: Request, reply: simpy.Event) -> float | None:
        """Start serving ``request``; its outcome will succeed ``reply``.

        Returns the simulation time the answer will arrive when that is already
        known (a free slot and an answer that is not lost), else ``None`` --
        drivers use it to skip a timer that could never fire first.
        """
        env = self.env
        now = env.now
        pipeline = self.pipeline
        if not self.up:
            pipeline.stats.requests += 1
            reply.succeed(NotSent())
            return now
        job = pipeline.arrive(self.client_id, request, now, reply)
        plan = job.plan
        if plan is SERVE:
            capacity = self.capacity
            if capacity.try_enter():
                self._start(job, now)
                return pipeline.answer_at(job, now)
            capacity.wait(job, now)
            return None
        if plan is SHED:
            reply.succeed(_SHED)
        elif job.answer is not None:  # ANSWER: no profile
            reply.succeed(job.answer)
        else:  # THROTTLE
            reply.succeed(self._throttled(job.retry_after))
        return now

    def _wake(self, job: Job) -> bool:
        self._start(job, self.env.now)
        return True

    def _start(self, job: Job, now: float) -> None:
        before = self.pipeline.start(job, now)
        self.env.timeout(before, job).callbacks.append(self._commit_due)

    def _commit(self, event: simpy.Event) -> None:
        job: Job = event._value  # the timeout's value (``.value`` checks what it need not)
        after = self.pipeline.commit(job, self.env.now)
        if after is None:
            self._finish(event)
        else:
            self.env.timeout(after, job).callbacks.append(self._finish_due)

    def _finish(self, event: simpy.Event) -> None:
        job: Job = event._value
        env = self.env
        action = self.pipeline.finish(job, env.now)
        reply = cast(simpy.Event, job.waiter)
        outcome: Outcome
        if action == "ok":
            answer = job.answer
            assert answer is not None  # the pipeline's finish sees to it
            outcome = answer
            mangle = job.mangle
            if mangle is not None:
                outcome = seen_reply(answer, mangle)
                if mangle.trickle_s > 0:  # the last byte arrives trickle_s later
                    env.timeout(mangle.trickle_s, outcome).callbacks.append(_deliver(reply))
                    return
        elif action == "lost":
            return  # the client waits until its own timeout
        elif action == "reset":
            outcome = _TIMED_OUT_RESET
        else:  # error_before / error_after
            outcome = _UNAVAILABLE
        if not reply.triggered:
            reply.succeed(outcome)
