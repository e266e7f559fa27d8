"""The SimPy performer: runs the shipped :mod:`payflow.core` flows on a virtual clock.

Rule: a flow in the simulation is the flow you deploy; only the performer
differs. :func:`run_flow` hands a :class:`SimPerformer` to the one effect loop
(:func:`payflow.drivers.run_in_simpy`):

=================  =================================================================
effect             what the performer does
=================  =================================================================
``Call``           submits the request to the provider model and races the reply
                   against the call's timeout; the loser is ignored, and the
                   provider keeps working on a request the client gave up on
``Sleep``          ``env.timeout(seconds)``
``Save/Forget``    an in-memory journal (:class:`SimJournal`, a dict by key)
an event           hands it to the sink (metrics and traces)
``Authenticate``   ``False``: the modelled provider never refuses credentials
``AskOperator``    ``FlowIO.operator(question)``: the modelled operator's answer
                   (``True``, keep waiting, when there is none)
=================  =================================================================

The flows read the clock themselves (``Context.clock``: ``env.now``). The
race is the same as ``yield reply | env.timeout(t)`` but built from one event
and a callback on the timer, which is cheaper than a SimPy condition on the
hot path (every provider call goes through it).

Use it from any SimPy process with ``result = yield from run_flow(flow, io, sink)``;
exceptions raised by the flow propagate to that process unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Protocol, TypeVar

import simpy

from payflow.core._calls import Flow
from payflow.core.messages import (
    AskOperator,
    Authenticate,
    Call,
    Forget,
    PendingRecord,
    Save,
    Sleep,
    TimedOut,
)
from payflow.drivers._loop import run_in_simpy

__all__ = ["FlowIO", "SimJournal", "SimPerformer", "Sink", "run_flow"]

T = TypeVar("T")

_TIMED_OUT = TimedOut()


class Sink(Protocol):
    """Where a flow's calls and events are counted."""

    def on_call(self, call: Call, now: float) -> None: ...

    def on_event(self, event: Any) -> None: ...


class SimJournal:
    """The in-memory twin of the SQLite journal: pending records by key.

    ``owners`` counts the live flows that saved each key, so a reconciler
    can tell an abandoned record (its flow ended or crashed) from one still
    in use.
    """

    __slots__ = ("owners", "records")

    def __init__(self) -> None:
        self.records: dict[str, PendingRecord] = {}
        self.owners: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.records)

    def abandoned(self) -> list[PendingRecord]:
        """Records no live flow owns, oldest first."""
        owners = self.owners
        return [r for k, r in self.records.items() if not owners.get(k)]

    def any_abandoned(self) -> bool:
        """Whether :meth:`abandoned` would return anything (without building the list)."""
        owners = self.owners
        return any(not owners.get(k) for k in self.records)

    def claim(self, key: str) -> None:
        self.owners[key] = self.owners.get(key, 0) + 1

    def release(self, key: str) -> None:
        count = self.owners.get(key, 0) - 1
        if count > 0:
            self.owners[key] = count
        else:
            self.owners.pop(key, None)


class FlowIO:
    """What a flow's effects act on: the clock, the provider, the journal."""

    __slots__ = ("env", "journal", "operator", "submit")

    def __init__(
        self,
        env: simpy.Environment,
        submit: Callable[[Any, simpy.Event], float | None],
        journal: SimJournal,
        operator: Callable[[AskOperator], bool] | None = None,
    ) -> None:
        self.env = env
        self.submit = submit
        self.journal = journal
        self.operator = operator

    def call(self, call: Call) -> simpy.Event:
        """Send ``call.request``; the returned event fires with the outcome or a timeout."""
        env = self.env
        reply = simpy.Event(env)
        answer_at = self.submit(call.request, reply)
        deadline = env.now + call.timeout
        if not reply.triggered and (answer_at is None or answer_at >= deadline):
            # Only when the timer can win the race (the answer's time is unknown or later).
            env.timeout(call.timeout).callbacks.append(_expire(reply))
        return reply


def _expire(reply: simpy.Event) -> Callable[[simpy.Event], None]:
    def expire(_: simpy.Event) -> None:
        if not reply.triggered:
            reply.succeed(_TIMED_OUT)

    return expire


class SimPerformer:
    """Performs one flow run's effects in the simulation; remembers the keys it saved."""

    __slots__ = ("emit", "env", "io", "on_call", "owned")

    def __init__(self, io: FlowIO, sink: Sink) -> None:
        self.io, self.env = io, io.env
        self.owned: list[str] = []
        self.on_call = sink.on_call
        self.emit = sink.on_event  # events go straight to the sink: no extra frame

    def call(self, call: Call) -> simpy.Event:
        self.on_call(call, self.env.now)
        return self.io.call(call)

    def sleep(self, sleep: Sleep) -> simpy.Event:
        return self.env.timeout(sleep.seconds)

    def save(self, save: Save) -> None:
        record = save.record
        key = record.idempotency_key
        journal = self.io.journal
        if key not in self.owned:
            journal.claim(key)
            self.owned.append(key)
        journal.records[key] = record

    def forget(self, forget: Forget) -> None:
        self.io.journal.records.pop(forget.idempotency_key, None)

    def authenticate(self, authenticate: Authenticate) -> bool:
        return False

    def ask_operator(self, question: AskOperator) -> bool:
        operator = self.io.operator
        return True if operator is None else operator(question)


def run_flow(flow: Flow[T], io: FlowIO, sink: Sink) -> Generator[simpy.Event, Any, T]:
    """Drive ``flow`` to its end inside a SimPy process; return its result.

    If the process is interrupted (a backend crash), the flow is closed and
    the interrupt propagates; journal records it saved stay, unowned.
    """
    performer = SimPerformer(io, sink)
    try:
        return (yield from run_in_simpy(flow, performer))
    finally:
        flow.close()
        for key in performer.owned:
            io.journal.release(key)
