"""The provider on a virtual clock: the pure ledger behind a SimPy queue.

Each request goes through the same steps as in the HTTP server
(:mod:`payflow.provider.app`), with ``env.now`` as the clock:

1. the fault profile of the moment (time of day = ``day_offset + env.now``)
   draws the request's fate (:meth:`payflow.provider.faults.Faults.draw`);
   ``throttle`` is answered 429 with ``Retry-After`` at once;
2. the request queues for one of ``capacity`` slots -- a :class:`simpy.Resource`
   whose size follows the profile -- so retries add load and can keep the
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

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import simpy

from payflow.core.messages import NotSent, Outcome, Request, Response, TimedOut
from payflow.provider.faults import (
    DAY_S,
    FaultDraw,
    FaultProfile,
    Faults,
    Mangle,
    endpoint_kind,
)
from payflow.provider.ledger import Ledger, Ticket, error_body
from payflow.provider.misbehaviour import seen_reply

__all__ = ["Capacity", "ProviderModel", "ProviderStats", "ServiceSampler", "default_service"]

#: Draws what happens to one request under the faults of the moment.
ServiceSampler = Callable[[Faults, random.Random], FaultDraw]

#: Faults are looked up once per this many seconds of the day (the profile is
#: piecewise-linear over hours; a minute's resolution is plenty).
_FAULT_STEP_S = 60.0


def default_service(faults: Faults, rng: random.Random) -> FaultDraw:
    """The fault profile's own draw (latency before/after commit and the action)."""
    return faults.draw(rng)


class _FifoQueue(deque[Any]):
    """A deque that SimPy's resource can use as its put queue (O(1) pops at the head)."""

    def pop(self, index: int = -1) -> Any:
        if index == 0:
            return self.popleft()
        if index == -1:
            return super().pop()
        item = self[index]
        del self[index]
        return item


class Capacity(simpy.Resource):
    """A :class:`simpy.Resource` whose capacity can change while requests queue.

    :meth:`acquire` has a fast path: when a slot is free and nobody queues,
    the holder takes it at once, without a SimPy event (most provider calls on
    a healthy day); otherwise it queues as an ordinary resource request.
    Lowering the capacity never evicts a holder; new ones wait until enough
    have finished.
    """

    PutQueue = _FifoQueue

    def resize(self, capacity: int) -> None:
        """Set the number of slots; grants waiting requests if it grew."""
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        grew = capacity > self._capacity
        self._capacity = capacity
        while grew and self.put_queue and len(self.users) < self._capacity:
            self._trigger_put(None)

    def acquire(self, holder: Any, granted: Callable[[Any], None]) -> Any:
        """Take a slot for ``holder``; ``granted(event_or_None)`` runs once it has one.

        Returns the token to hand to :meth:`free`.
        """
        if not self.put_queue and len(self.users) < self._capacity:
            self.users.append(holder)
            granted(None)
            return holder
        request = self.request()
        request.callbacks.append(granted)
        return request

    def free(self, token: Any) -> None:
        """Give back the slot taken with :meth:`acquire`."""
        if isinstance(token, simpy.resources.resource.Request):
            self.release(token)
            return
        self.users.remove(token)
        if self.put_queue:
            self._trigger_put(None)


@dataclass(slots=True)
class ProviderStats:
    """What the provider's queue measured: enough for M/M/c checks and load charts.

    ``wait_s`` sums the time requests queued for a slot, ``busy_s`` the time
    slots were held; ``served`` counts requests that got a slot, ``throttled``
    those answered 429 before queueing, ``shed`` those refused with 503
    because ``queue_limit`` requests were already waiting; ``misbehaved``
    counts answers mangled, trickled or given an odd ``Retry-After``.
    """

    requests: int = 0
    served: int = 0
    throttled: int = 0
    shed: int = 0
    lost: int = 0
    resets: int = 0
    errors: int = 0
    commits: int = 0
    wait_s: float = 0.0
    busy_s: float = 0.0
    max_queue: int = 0
    misbehaved: int = 0

    @property
    def mean_wait(self) -> float:
        """Mean time a served request waited for a slot (seconds)."""
        return self.wait_s / self.served if self.served else 0.0


_UNAVAILABLE_BODY = error_body("service_unavailable", "server: temporarily unavailable", "sim")
_TIMED_OUT_RESET = TimedOut("connection reset")
_SHED = Response(503, error_body("overloaded", "server: queue full, retry later", "sim"))


def _deliver(reply: simpy.Event, outcome: Outcome) -> Callable[[simpy.Event], None]:
    def deliver(_: simpy.Event) -> None:
        if not reply.triggered:
            reply.succeed(outcome)

    return deliver


class _Job:
    """One request inside the provider: callbacks instead of a process (cheaper)."""

    __slots__ = (
        "action",
        "after",
        "before",
        "begun",
        "mangle",
        "model",
        "poll_delay_ms",
        "reply",
        "request",
        "slot",
        "start",
        "submit",
    )

    slot: Any

    def __init__(
        self,
        model: ProviderModel,
        request: Request,
        reply: simpy.Event,
        before: float,
        after: float,
        action: str,
        poll_delay_ms: int,
        now: float,
        mangle: Mangle | None = None,
    ) -> None:
        self.model = model
        self.request = request
        self.reply = reply
        self.before = before
        self.after = after
        self.action = action
        self.poll_delay_ms = poll_delay_ms
        self.submit = now
        self.start = 0.0
        self.begun: Ticket | Response | None = None
        self.slot = None
        self.mangle = mangle

    def granted(self, _: simpy.Event | None) -> None:
        model = self.model
        env = model.env
        now = env.now
        self.start = now
        stats = model.stats
        stats.served += 1
        stats.wait_s += now - self.submit
        if model.ledger is not None:
            self.begun = model.ledger.begin(model.client_id, self.request, now)
        env.timeout(self.before).callbacks.append(self.commit)

    def commit(self, _: simpy.Event) -> None:
        model = self.model
        begun = self.begun
        ledger = model.ledger
        action = self.action
        if not (action == "ok" or action == "error_after" or action == "lost"):
            if ledger is not None and begun.__class__ is Ticket:
                ledger.abandon(begun)
            self.finish(None)
            return
        if ledger is not None and begun.__class__ is Ticket:
            now = model.env.now
            self.begun = response = ledger.commit(
                begun,
                now,
                poll_delay_ms=self.poll_delay_ms,
            )
            model.stats.commits += 1
            if model.on_commit is not None:
                model.on_commit(self.request, response, now)
        model.env.timeout(self.after).callbacks.append(self.finish)

    def finish(self, _: simpy.Event | None) -> None:
        model = self.model
        now = model.env.now
        model.stats.busy_s += now - self.start
        model.capacity.free(self.slot)
        action = self.action
        outcome: Outcome
        if action == "ok":
            begun = self.begun
            outcome = begun if begun.__class__ is Response else Response(200, {})
            mangle = self.mangle
            if mangle is not None:
                model.stats.misbehaved += 1
                outcome = seen_reply(outcome, mangle)
                if mangle.trickle_s > 0:  # the last byte arrives trickle_s later
                    deliver = _deliver(self.reply, outcome)
                    model.env.timeout(mangle.trickle_s).callbacks.append(deliver)
                    return
        elif action == "lost":
            model.stats.lost += 1
            return  # the client waits until its own timeout
        elif action == "reset":
            model.stats.resets += 1
            outcome = _TIMED_OUT_RESET
        else:  # error_before / error_after
            model.stats.errors += 1
            outcome = Response(503, _UNAVAILABLE_BODY)
        reply = self.reply
        if not reply.triggered:
            reply.succeed(outcome)


class ProviderModel:
    """The provider as a SimPy model: ledger + fault profile + a finite queue.

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
    a request (the simulation traces payment creations with it).
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
    ) -> None:
        self.env = env
        self.ledger = ledger
        self.profile = profile
        self.rng = rng
        self.day_offset = day_offset
        self.client_id = client_id
        self.service: ServiceSampler = service or default_service
        if not read_latency > 0:
            raise ValueError(f"read_latency: must be > 0, got {read_latency!r}")
        self.read_latency = read_latency
        if queue_limit is not None and queue_limit < 0:
            raise ValueError(f"queue_limit: must be >= 0 or None, got {queue_limit!r}")
        self.queue_limit = queue_limit
        self.on_commit = on_commit
        self.stats = ProviderStats()
        self._faults_cache: dict[int, Faults] = {}
        self.capacity = Capacity(env, self.faults_at(env.now).capacity)
        self._throttle_cache: dict[float | str, Response] = {}
        self.up = True

    def faults_at(self, now: float) -> Faults:
        """The faults at simulation time ``now`` (resolved to the minute, cached)."""
        step = int(((now + self.day_offset) % DAY_S) // _FAULT_STEP_S)
        faults = self._faults_cache.get(step)
        if faults is None:
            faults = self._faults_cache[step] = self.profile.at(step * _FAULT_STEP_S)
        return faults

    def queue_length(self) -> int:
        """Requests waiting for a slot right now."""
        return len(self.capacity.put_queue)

    def _throttled(self, retry_after_s: float, odd: str | None = None) -> Response:
        key = retry_after_s if odd is None else odd
        response = self._throttle_cache.get(key)
        if response is None:
            response = Response(
                429,
                error_body("too_many_requests", "client: too many requests", "sim"),
                {"retry-after": str(max(0, math.ceil(retry_after_s))) if odd is None else odd},
            )
            self._throttle_cache[key] = response
        return response

    def submit(self, request: Request, reply: simpy.Event) -> float | None:
        """Start serving ``request``; its outcome will succeed ``reply``.

        Returns the simulation time the answer will arrive when that is already
        known (a free slot and an answer that is not lost), else ``None`` --
        drivers use it to skip a timer that could never fire first.
        """
        stats = self.stats
        stats.requests += 1
        if not self.up:
            reply.succeed(NotSent())
            return self.env.now
        env = self.env
        now = env.now
        faults = self.faults_at(now)
        kind = endpoint_kind(request.method, request.path) if faults.kinds else None
        if self.service is default_service:
            before, after, action, mangle = faults.draw_parts(self.rng, kind)  # the same draws
        else:
            draw = self.service(faults.for_kind(kind), self.rng)
            before, after, action = draw.latency_before_s, draw.latency_after_s, draw.action
            mangle = draw.mangle
        if (
            self.read_latency != 1.0
            and request.method == "GET"
            and (kind is None or faults.for_kind("read") is faults)
        ):
            # a profile with read latencies of its own is not scaled
            f = self.read_latency
            before, after = before * f, after * f
        if action == "throttle":
            stats.throttled += 1
            odd = None if mangle is None else mangle.retry_after
            if odd is not None:
                stats.misbehaved += 1
            reply.succeed(self._throttled(faults.retry_after_s, odd))
            return now
        capacity = self.capacity
        if faults.capacity != capacity._capacity:
            capacity.resize(faults.capacity)
        limit = self.queue_limit
        if (
            limit is not None
            and len(capacity.put_queue) >= limit
            and (limit or len(capacity.users) >= capacity._capacity)
        ):
            stats.shed += 1  # load shedding: refused before any work, nothing happens
            reply.succeed(_SHED)
            return now
        job = _Job(self, request, reply, before, after, action, faults.poll_delay_ms, now, mangle)
        job.slot = capacity.acquire(job, job.granted)
        waiting = len(capacity.put_queue)
        if waiting:
            if waiting > stats.max_queue:
                stats.max_queue = waiting
            return None
        if action == "lost":
            return None
        if action == "ok":
            return now + before + after + (0.0 if mangle is None else mangle.trickle_s)
        if action == "error_after":
            return now + before + after
        return now + before
