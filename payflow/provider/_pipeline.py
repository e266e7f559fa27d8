"""The one request pipeline of the reference provider: request in, plan out, time passed in.

Rule: what happens to a request -- its fault draw, a throttle, load shedding, a
capacity slot, ``ledger.begin`` / ``commit`` / ``abandon``, and which answer it gets --
is decided here and only here. The ASGI app (:mod:`payflow.provider.app`) and the
SimPy model (:mod:`payflow.sim._provider`) are drivers: they *wait* (``asyncio`` or
SimPy events) for the latencies and slots this module names, and *render* its
verdict (bytes on a socket, or an :data:`~payflow.core.messages.Outcome`). Nothing
here sleeps, reads a clock or opens a socket; every random draw comes from the
generator passed in.

The steps of one request, each a method of :class:`Pipeline` fed the time ``now``:

1. :meth:`Pipeline.arrive` -- the faults of the moment draw the request's fate
   (:meth:`~payflow.provider.faults.Faults.draw_parts`); the :class:`Job` says what
   to do next (:attr:`Job.plan`): ``ANSWER`` at once (no fault profile: the ledger
   answers in one step), ``THROTTLE`` (429 with :attr:`Job.retry_after`), ``SHED``
   (503: the queue is full) or ``SERVE``: take a slot of :attr:`Pipeline.capacity`;
2. :meth:`Pipeline.start` -- a slot is held: ``ledger.begin`` (the idempotency key
   is in flight; the request is validated); returns the latency before commit;
3. :meth:`Pipeline.commit` -- ``ledger.commit`` if the draw commits
   (:attr:`FaultDraw.COMMITTING <payflow.provider.faults.FaultDraw.COMMITTING>`),
   else ``abandon``; returns the latency after commit (None: nothing was made and
   the answer is due now);
4. :meth:`Pipeline.finish` -- the slot is freed; the job's :attr:`Job.action` is the
   verdict: ``ok`` (the ledger's answer in :attr:`Job.answer`, misbehaving if
   :attr:`Job.mangle`), ``error_before`` / ``error_after`` (503), ``reset`` (the
   connection closes) or ``lost`` (no answer). :meth:`Pipeline.drop` is the
   way out for a request cut short (server shutdown, a cancelled task).

:class:`Capacity` is the one queue of both drivers: it counts slots and keeps the
FIFO of waiters; a driver supplies how a waiter is woken (an ``asyncio`` future's
result, or a SimPy job's next step). It also records the queue over the run
(:meth:`Capacity.queue_by_slot`) from enqueues and dequeues alone.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from payflow.core.messages import Request, Response
from payflow.provider.faults import (
    DAY_S,
    FaultDraw,
    FaultProfile,
    Faults,
    Mangle,
    endpoint_kind,
)
from payflow.provider.ledger import Ledger, Ticket

__all__ = [
    "ANSWER",
    "SERVE",
    "SHED",
    "THROTTLE",
    "Capacity",
    "Job",
    "Pipeline",
    "ProviderStats",
    "ServiceSampler",
    "default_service",
]

#: Draws what happens to one request under the faults of the moment (the faults of
#: its endpoint kind); the default is the profile's own draw.
ServiceSampler = Callable[[Faults, random.Random], FaultDraw]

def default_service(faults: Faults, rng: random.Random) -> FaultDraw:
    """The fault profile's own draw (latency before/after commit and the action);
    :class:`Pipeline` makes the same draws without building a :class:`FaultDraw`."""
    return faults.draw(rng)


#: :attr:`Job.plan` values. Plain strings compared by identity: the hot path of a
#: simulated day asks once per request.
ANSWER: Final = "answer"
THROTTLE: Final = "throttle"
SHED: Final = "shed"
SERVE: Final = "serve"

#: The actions after which the ledger has applied the request -- one definition, FaultDraw's.
_COMMITTING: Final = FaultDraw.COMMITTING

W = TypeVar("W")


@dataclass(slots=True)
class ProviderStats:
    """What the provider measured: enough for M/M/c checks and load charts.

    ``wait_s`` sums the time requests queued for a slot, ``busy_s`` the time
    slots were held; ``served`` counts requests that got a slot, ``throttled``
    those answered 429 before queueing, ``shed`` those refused with 503
    because ``queue_limit`` requests were already waiting; ``misbehaved``
    counts answers mangled, trickled or given an odd ``Retry-After``.
    ``max_queue`` is the longest the queue for a slot got; ``queue_by_slot``
    the time-weighted mean number of requests *waiting* for a slot (not in
    service) in each consecutive slot of ``queue_slot_s`` seconds from t = 0
    to the end of the run (the last slot, if cut short, is the mean over the
    part the run covered).
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
    queue_slot_s: float = 900.0
    queue_by_slot: list[float] = field(default_factory=list)

    @property
    def mean_wait(self) -> float:
        """Mean time a served request waited for a slot (seconds)."""
        return self.wait_s / self.served if self.served else 0.0


class Capacity(Generic[W]):
    """``limit`` slots, whose number may change with the time of day; waiters are FIFO.

    :meth:`try_enter` takes a free slot when nobody queues (never waits);
    :meth:`wait` queues a waiter, and :meth:`leave` / :meth:`resize` hand freed
    slots to waiters in order by calling ``wake(waiter)``, which returns False
    for a waiter that no longer wants one (a cancelled task): it is skipped.
    Lowering the limit never evicts a holder; new ones wait until enough have left.
    :meth:`close` (at shutdown) refuses every waiter and later arrival.

    The queue is recorded as the area under its length, added up on each enqueue
    and dequeue (never per tick), per slot of ``slot_s`` seconds from t = 0.
    """

    __slots__ = (
        "_areas",
        "_queue",
        "_since",
        "_wake",
        "busy",
        "closed",
        "limit",
        "max_queue",
        "slot_s",
    )

    def __init__(self, limit: int, wake: Callable[[W], bool], *, slot_s: float = 900.0) -> None:
        if limit < 1:
            raise ValueError(f"capacity must be >= 1, got {limit}")
        if not (math.isfinite(slot_s) and slot_s > 0):
            raise ValueError(f"slot_s: must be a positive number of seconds, got {slot_s!r}")
        self.limit = limit
        self.busy = 0
        self.closed = False
        self.max_queue = 0
        self.slot_s = float(slot_s)
        self._wake = wake
        self._queue: deque[W] = deque()
        self._areas: list[float] = []  # request-seconds waited, per slot of slot_s
        self._since = 0.0  # when the queue last changed length

    def __repr__(self) -> str:
        return f"Capacity(limit={self.limit}, busy={self.busy}, queued={len(self._queue)})"

    @property
    def queued(self) -> int:
        """Waiters right now."""
        return len(self._queue)

    def try_enter(self) -> bool:
        """Take a slot if one is free and nobody queues; never waits."""
        if self.busy < self.limit and not self._queue:
            self.busy += 1
            return True
        return False

    def wait(self, waiter: W, now: float) -> None:
        """Queue ``waiter`` for a slot (after :meth:`try_enter` said no)."""
        queue = self._queue
        self._mark(now, len(queue))
        queue.append(waiter)
        if len(queue) > self.max_queue:
            self.max_queue = len(queue)

    def leave(self, now: float) -> None:
        """Give a slot back; the first waiters get the freed slots."""
        self.busy -= 1
        if self._queue:
            self._grant(now)

    def withdraw(self, waiter: W, now: float) -> None:
        """Take ``waiter`` out of the queue (it gave up); nothing if it is not there."""
        queue = self._queue
        if waiter in queue:
            self._mark(now, len(queue))
            queue.remove(waiter)

    def resize(self, limit: int, now: float) -> None:
        """Set the number of slots; grants waiting requests if it grew."""
        if limit < 1:
            raise ValueError(f"capacity must be >= 1, got {limit}")
        grew = limit > self.limit
        self.limit = limit
        if grew and self._queue:
            self._grant(now)

    def close(self, now: float) -> list[W]:
        """Refuse every later arrival that would have to wait; returns the waiters
        refused now (the driver tells them)."""
        self.closed = True
        self._mark(now, len(self._queue))
        refused = list(self._queue)
        self._queue.clear()
        return refused

    def _grant(self, now: float) -> None:
        queue = self._queue
        wake = self._wake
        self._mark(now, len(queue))
        while queue and self.busy < self.limit:
            if wake(queue.popleft()):
                self.busy += 1

    def _mark(self, now: float, length: int) -> None:
        """The queue had ``length`` waiters since the last change; add its area up to ``now``."""
        since = self._since
        if length and now > since:
            slot_s = self.slot_s
            areas = self._areas
            i = int(since // slot_s)
            while True:
                while len(areas) <= i:
                    areas.append(0.0)
                end = (i + 1) * slot_s
                if now <= end:
                    areas[i] += length * (now - since)
                    break
                areas[i] += length * (end - since)
                since = end
                i += 1
        if now > self._since:
            self._since = now

    def queue_by_slot(self, now: float) -> list[float]:
        """The time-weighted mean queue length in each slot of ``slot_s`` seconds
        from 0 to ``now`` (the last, if partial, over its covered part)."""
        self._mark(now, len(self._queue))
        slot_s = self.slot_s
        count = math.ceil(now / slot_s) if now > 0 else 0
        areas = self._areas
        out: list[float] = []
        for i in range(count):
            width = min(slot_s, now - i * slot_s)
            out.append((areas[i] if i < len(areas) else 0.0) / width)
        return out


class Job:
    """One request on its way through the pipeline (one object per request, slotted).

    ``plan`` is the next step (:data:`ANSWER`, :data:`THROTTLE`, :data:`SHED`,
    :data:`SERVE`); ``action`` the fault draw's verdict (see
    :class:`~payflow.provider.faults.FaultDraw`); ``before`` / ``after`` the
    latencies around the commit in simulated seconds; ``answer`` the ledger's
    response once known. ``waiter`` belongs to the driver (the SimPy model keeps
    the reply event there).
    """

    __slots__ = (
        "action",
        "after",
        "answer",
        "arrived",
        "before",
        "client_id",
        "mangle",
        "plan",
        "poll_delay_ms",
        "request",
        "retry_after",
        "started",
        "ticket",
        "waiter",
    )

    def __init__(self, client_id: str, request: Request, now: float, waiter: object) -> None:
        self.client_id = client_id
        self.request = request
        self.arrived = now
        self.waiter = waiter
        self.plan = SERVE
        self.action = "ok"
        self.before = 0.0
        self.after = 0.0
        self.mangle: Mangle | None = None
        self.poll_delay_ms = 0
        self.retry_after = ""
        self.started = 0.0
        self.ticket: Ticket | None = None
        self.answer: Response | None = None

    def __repr__(self) -> str:
        return f"<Job {self.request.method} {self.request.path} {self.plan}/{self.action}>"


#: Faults are looked up once per this many seconds of the day by default in the
#: SimPy model (the profiles are piecewise-linear over hours; a minute is plenty).
FAULT_STEP_S: Final = 60.0


class Pipeline(Generic[W]):
    """The provider's steps over a :class:`Ledger`, a :class:`FaultProfile` and a :class:`Capacity`.

    ``ledger=None`` gives a bare queue that answers 200 (queueing checks).
    ``profile=None`` is a perfect provider: the ledger answers in one step, with
    no queue. ``rng`` draws the faults. ``wake`` wakes a waiter of the capacity
    (see :class:`Capacity`). ``time_scale`` divides ``Retry-After`` and
    ``pollDelayInMs`` (the real server runs its simulated clock faster; 1 in
    the SimPy model). ``fault_step_s`` resolves the profile to that many
    seconds of the day (cached; 0: looked up at each ``now``). ``day_offset``
    is added to ``now`` for the profile. ``service`` replaces the profile's
    draw; ``read_latency`` scales the latencies of GETs unless the profile
    gives reads latencies of their own; ``queue_limit`` sheds a request when
    that many wait. ``on_commit(request, response, now)`` is told each change
    the ledger makes. ``queue_slot_s`` is the slot of the queue's record.
    """

    __slots__ = (
        "_faults_cache",
        "capacity",
        "client_id",
        "day_offset",
        "fault_step_s",
        "ledger",
        "on_commit",
        "profile",
        "queue_limit",
        "read_latency",
        "rng",
        "service",
        "stats",
        "time_scale",
    )

    def __init__(
        self,
        ledger: Ledger | None,
        profile: FaultProfile | None,
        rng: random.Random,
        wake: Callable[[W], bool],
        *,
        time_scale: float = 1.0,
        fault_step_s: float = 0.0,
        day_offset: float = 0.0,
        service: ServiceSampler | None = None,
        read_latency: float = 1.0,
        queue_limit: int | None = None,
        on_commit: Callable[[Request, Response, float], None] | None = None,
        queue_slot_s: float = 900.0,
        start: float = 0.0,
    ) -> None:
        if not (math.isfinite(time_scale) and time_scale > 0):
            raise ValueError(f"time_scale: must be a positive number, got {time_scale!r}")
        if not read_latency > 0:
            raise ValueError(f"read_latency: must be > 0, got {read_latency!r}")
        if queue_limit is not None and queue_limit < 0:
            raise ValueError(f"queue_limit: must be >= 0 or None, got {queue_limit!r}")
        self.ledger = ledger
        self.profile = profile
        self.rng = rng
        self.time_scale = float(time_scale)
        self.fault_step_s = fault_step_s
        self.day_offset = day_offset
        # the profile's own draw is the default, made without building a FaultDraw
        self.service = None if service is default_service else service
        self.read_latency = read_latency
        self.queue_limit = queue_limit
        self.on_commit = on_commit
        self.stats = ProviderStats(queue_slot_s=float(queue_slot_s))
        self._faults_cache: dict[int, Faults] = {}
        first = self.faults_at(start)
        self.capacity: Capacity[W] = Capacity(
            64 if first is None else first.capacity, wake, slot_s=queue_slot_s
        )

    def faults_at(self, now: float) -> Faults | None:
        """The faults at time ``now`` (None without a profile)."""
        profile = self.profile
        if profile is None:
            return None
        step_s = self.fault_step_s
        if not step_s:
            return profile.at(now + self.day_offset)
        step = int(((now + self.day_offset) % DAY_S) // step_s)
        faults = self._faults_cache.get(step)
        if faults is None:
            faults = self._faults_cache[step] = profile.at(step * step_s)
        return faults

    def scaled_poll_delay(self, base_ms: int) -> int:
        """``pollDelayInMs`` in real time: ``base_ms`` / time scale, rounded up, at least 1.

        A base of 0 stays 0; at time scale 1 nothing changes.
        """
        if self.time_scale == 1.0 or base_ms <= 0:
            return base_ms
        return max(1, math.ceil(round(base_ms / self.time_scale, 6)))

    def arrive(self, client_id: str, request: Request, now: float, waiter: object = None) -> Job:
        """Step 1: the request's fate. See :attr:`Job.plan` for what to do next;
        with ``SERVE``, the driver takes a slot (:meth:`Capacity.try_enter`, else
        :meth:`Capacity.wait`) and then calls :meth:`start`."""
        stats = self.stats
        stats.requests += 1
        job = Job(client_id, request, now, waiter)
        faults = self.faults_at(now)
        if faults is None:  # a perfect provider: no draw, no queue
            job.plan = ANSWER
            ledger = self.ledger
            if ledger is None:
                job.answer = Response(200, {})
            else:
                delay = self.scaled_poll_delay(ledger.poll_delay_ms)
                job.answer = ledger.handle(client_id, request, now, poll_delay_ms=delay)
            return job
        kind = endpoint_kind(request.method, request.path) if faults.kinds else None
        own = faults.for_kind(kind) if kind is not None else faults
        if self.service is None:
            before, after, action, mangle = faults.draw_parts(self.rng, kind)
        else:
            draw = self.service(own, self.rng)
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
        job.action = action
        job.mangle = mangle
        if action == "throttle":
            job.plan = THROTTLE
            stats.throttled += 1
            odd = None if mangle is None else mangle.retry_after
            if odd is None:
                job.retry_after = str(max(0, math.ceil(own.retry_after_s / self.time_scale)))
            else:
                stats.misbehaved += 1
                job.retry_after = odd  # verbatim: odd values are not time-scaled
            return job
        capacity = self.capacity
        if faults.capacity != capacity.limit:  # the provider's one queue: the base capacity
            capacity.resize(faults.capacity, now)
        limit = self.queue_limit
        if (
            limit is not None
            and capacity.queued >= limit
            and (limit or capacity.busy >= capacity.limit)
        ):
            job.plan = SHED  # load shedding: refused before any work, nothing happens
            stats.shed += 1
            return job
        job.before = before
        job.after = after
        job.poll_delay_ms = self.scaled_poll_delay(own.poll_delay_ms)
        return job

    def answer_at(self, job: Job, now: float) -> float | None:
        """When a job that got its slot at ``now`` answers (None: never, ``lost``)."""
        action = job.action
        if action == "lost":
            return None
        if action not in _COMMITTING:
            return now + job.before
        mangle = job.mangle
        return now + job.before + job.after + (0.0 if mangle is None else mangle.trickle_s)

    def start(self, job: Job, now: float) -> float:
        """Step 2: ``job`` holds a slot: ``ledger.begin``; returns the latency before commit."""
        job.started = now
        stats = self.stats
        stats.served += 1
        stats.wait_s += now - job.arrived
        ledger = self.ledger
        if ledger is not None:
            begun = ledger.begin(job.client_id, job.request, now)
            if isinstance(begun, Ticket):
                job.ticket = begun
            else:
                job.answer = begun  # known already: an error, a replay, a key in flight
        return job.before

    def commit(self, job: Job, now: float) -> float | None:
        """Step 3: the change is made if the draw commits; returns the latency after
        commit, or None when nothing was made (the answer is due now)."""
        ticket = job.ticket
        ledger = self.ledger
        if job.action not in _COMMITTING:
            if ticket is not None and ledger is not None:
                job.ticket = None
                ledger.abandon(ticket)
            return None
        if ticket is not None and ledger is not None:
            job.ticket = None
            job.answer = response = ledger.commit(ticket, now, poll_delay_ms=job.poll_delay_ms)
            self.stats.commits += 1
            on_commit = self.on_commit
            if on_commit is not None:
                on_commit(job.request, response, now)
        return job.after

    def finish(self, job: Job, now: float) -> str:
        """Step 4: free the slot; returns the verdict (:attr:`Job.action`), counted."""
        stats = self.stats
        stats.busy_s += now - job.started
        self.capacity.leave(now)
        action = job.action
        if action == "ok":
            if job.answer is None:  # a bare queue (no ledger)
                job.answer = Response(200, {})
            if job.mangle is not None:
                stats.misbehaved += 1
        elif action == "lost":
            stats.lost += 1
        elif action == "reset":
            stats.resets += 1
        else:  # error_before / error_after
            stats.errors += 1
        return action

    def drop(self, job: Job, now: float) -> None:
        """A request cut short while it held a slot: nothing more is made (an open
        ticket is abandoned) and the slot is freed."""
        ticket = job.ticket
        ledger = self.ledger
        if ticket is not None and ledger is not None:
            job.ticket = None
            ledger.abandon(ticket)
        self.stats.busy_s += now - job.started
        self.capacity.leave(now)

    def snapshot(self, now: float) -> ProviderStats:
        """:attr:`stats` with the queue's record brought up to ``now``."""
        stats = self.stats
        capacity = self.capacity
        stats.max_queue = capacity.max_queue
        stats.queue_by_slot = capacity.queue_by_slot(now)
        return stats
