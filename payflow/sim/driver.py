"""The SimPy driver: runs the shipped :mod:`payflow.core` flows on a virtual clock.

=================  =================================================================
effect             what this driver does
=================  =================================================================
``Call``           submits the request to the :class:`~payflow.sim.provider.ProviderModel`
                   and races the reply against ``env.timeout(timeout)``; the loser
                   is ignored, and the provider keeps working on a request the
                   client gave up on
``Sleep``          ``yield env.timeout(seconds)``
``Now``            ``env.now``
``Save/Forget``    an in-memory journal (a dict keyed by idempotency key)
``Emit``           hands the event to the flow's sink (metrics and traces)
``Authenticate``   ``False``: the modelled provider never refuses credentials
``AskOperator``    ``FlowIO.operator(question)``: the modelled operator's answer
                   (``True``, keep waiting, when there is none)
=================  =================================================================

The race is the same as ``yield reply | env.timeout(t)`` but built from one
event and a callback on the timer, which is cheaper than a SimPy condition
on the hot path (every provider call goes through it).

Use it from any SimPy process with ``result = yield from run_flow(flow, io, sink)``;
exceptions raised by the flow propagate to that process unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Protocol, TypeVar

import simpy

from payflow.core.calls import Flow
from payflow.core.messages import (
    AskOperator,
    Authenticate,
    Call,
    Emit,
    Forget,
    Now,
    PendingRecord,
    Save,
    Sleep,
    TimedOut,
)

__all__ = ["FlowIO", "Journal", "Sink", "run_flow"]

T = TypeVar("T")

_TIMED_OUT = TimedOut()


class Sink(Protocol):
    """Where a flow's calls and events are counted."""

    def on_call(self, call: Call, now: float) -> None: ...

    def on_event(self, event: Any) -> None: ...


class Journal:
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
        journal: Journal,
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


def run_flow(flow: Flow[T], io: FlowIO, sink: Sink) -> Generator[simpy.Event, Any, T]:
    """Drive ``flow`` to its end inside a SimPy process; return its result.

    If the process is interrupted (a backend crash), the flow is closed and
    the interrupt propagates; journal records it saved stay, unowned.
    """
    env = io.env
    journal = io.journal
    records = journal.records
    owned: list[str] = []
    send = flow.send
    on_event, on_call, call, timeout = sink.on_event, sink.on_call, io.call, env.timeout
    value: Any = None
    try:
        while True:
            try:
                effect = send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            cls = effect.__class__
            if cls is Now:
                value = env.now
            elif cls is Emit:
                on_event(effect.event)  # type: ignore[union-attr]
                value = None
            elif cls is Call:
                on_call(effect, env.now)  # type: ignore[arg-type]
                value = yield call(effect)  # type: ignore[arg-type]
            elif cls is Sleep:
                yield timeout(effect.seconds)  # type: ignore[union-attr]
                value = None
            elif cls is Save:
                record = effect.record  # type: ignore[union-attr]
                key = record.idempotency_key
                if key not in owned:
                    journal.claim(key)
                    owned.append(key)
                records[key] = record
                value = None
            elif cls is Forget:
                records.pop(effect.idempotency_key, None)  # type: ignore[union-attr]
                value = None
            elif cls is AskOperator:
                operator = io.operator
                value = True if operator is None else operator(effect)  # type: ignore[arg-type]
            elif cls is Authenticate:
                value = False
            else:  # pragma: no cover - the core yields nothing else
                raise TypeError(f"unknown effect {effect!r}")
    finally:
        flow.close()
        for key in owned:
            journal.release(key)
