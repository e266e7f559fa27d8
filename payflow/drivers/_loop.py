"""The one effect loop: run a flow against a performer -- sync, async, or in SimPy.

Rule: this module is the only code in payflow that looks at an effect's type
(``tests/drivers/test_one_loop.py`` enforces it). A performer never sees a
flow; it is handed one effect at a time through one of its methods, and what
it returns is sent back into the flow:

==================  =========================  =======================================
the flow yields     the loop calls             the flow is sent
==================  =========================  =======================================
``Call``            ``performer.call(c)``      an :data:`~payflow.core.messages.Outcome`
``Sleep``           ``performer.sleep(s)``     ``None``
``Save``            ``performer.save(s)``      ``None``
``Forget``          ``performer.forget(f)``    ``None``
``Authenticate``    ``performer.authenticate`` ``True`` if fresh credentials are ready
``AskOperator``     ``performer.ask_operator`` ``True``: keep waiting
an event            ``performer.emit(e)``      ``None``
==================  =========================  =======================================

Events (:mod:`payflow.core.events`) travel bare -- no wrapper -- and are
stamped by the flow with the performer's own clock (``Context.clock``), so
there is no clock round trip through the loop.

The three runners differ only in how they wait: :func:`run` calls, :func:`arun`
awaits every method but ``emit``, :func:`run_in_simpy` yields the SimPy event
that ``call`` and ``sleep`` return and calls the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Protocol, TypeVar

from payflow.core._calls import Flow
from payflow.core.events import (
    Attempt,
    AttemptResult,
    GaveUp,
    OperatorAsked,
    Poll,
    Reauthenticated,
    Retry,
    StateChanged,
)
from payflow.core.messages import (
    AskOperator,
    Authenticate,
    Call,
    Forget,
    Outcome,
    Save,
    Sleep,
)

__all__ = ["AsyncPerformer", "EventPerformer", "Performer", "arun", "run", "run_in_simpy"]

T = TypeVar("T")


class Performer(Protocol):
    """What a runtime implements to run flows (each method: one kind of effect)."""

    def call(self, call: Call) -> Outcome: ...
    def sleep(self, sleep: Sleep) -> None: ...
    def save(self, save: Save) -> None: ...
    def forget(self, forget: Forget) -> None: ...
    def authenticate(self, authenticate: Authenticate) -> bool: ...
    def ask_operator(self, question: AskOperator) -> bool: ...
    def emit(self, event: Any) -> None: ...


class AsyncPerformer(Protocol):
    """:class:`Performer` for asyncio: every method is awaited but ``emit``."""

    async def call(self, call: Call) -> Outcome: ...
    async def sleep(self, sleep: Sleep) -> None: ...
    async def save(self, save: Save) -> None: ...
    async def forget(self, forget: Forget) -> None: ...
    async def authenticate(self, authenticate: Authenticate) -> bool: ...
    async def ask_operator(self, question: AskOperator) -> bool: ...
    def emit(self, event: Any) -> None: ...


class EventPerformer(Protocol):
    """:class:`Performer` for a discrete-event runtime (SimPy): ``call`` and ``sleep``
    return an event the process waits for; the flow is sent the event's value."""

    def call(self, call: Call) -> Any: ...
    def sleep(self, sleep: Sleep) -> Any: ...
    def save(self, save: Save) -> None: ...
    def forget(self, forget: Forget) -> None: ...
    def authenticate(self, authenticate: Authenticate) -> bool: ...
    def ask_operator(self, question: AskOperator) -> bool: ...
    def emit(self, event: Any) -> None: ...


#: The one dispatch table: effect class -> the performer method that performs it.
_METHODS: dict[type, str] = {
    Call: "call",
    Sleep: "sleep",
    Save: "save",
    Forget: "forget",
    Authenticate: "authenticate",
    AskOperator: "ask_operator",
}
_EVENTS = frozenset(
    {Attempt, AttemptResult, Retry, GaveUp, Poll, StateChanged, Reauthenticated, OperatorAsked}
)
#: The effects a SimPy performer answers with an event to wait for.
_WAITS = frozenset({Call, Sleep})


def _bind(
    performer: Performer | AsyncPerformer | EventPerformer,
) -> dict[type, Callable[[Any], Any]]:
    """The performer's methods by effect class, events included (bound once per run)."""
    table = {cls: getattr(performer, name) for cls, name in _METHODS.items()}
    emit = performer.emit
    table.update(dict.fromkeys(_EVENTS, emit))
    return table


def _unknown(effect: object) -> TypeError:
    return TypeError(f"a flow yielded {effect!r}, which is neither an effect nor an event")


def run(flow: Flow[T], performer: Performer) -> T:
    """Run ``flow`` to its end; return its value (its exceptions propagate unchanged)."""
    table = _bind(performer)
    send, value = flow.send, None
    while True:
        try:
            effect = send(value)
        except StopIteration as stop:
            result: T = stop.value  # what the flow returned
            return result
        act = table.get(effect.__class__)
        if act is None:
            flow.close()
            raise _unknown(effect)
        try:
            value = act(effect)
        except BaseException:
            flow.close()  # the flow cannot go on: end it now, not when it is collected
            raise


async def arun(flow: Flow[T], performer: AsyncPerformer) -> T:
    """:func:`run` on an event loop: awaits what the performer returns (events excepted)."""
    table = _bind(performer)
    send, value = flow.send, None
    while True:
        try:
            effect = send(value)
        except StopIteration as stop:
            result: T = stop.value  # what the flow returned
            return result
        cls = effect.__class__
        act = table.get(cls)
        if act is None:
            flow.close()
            raise _unknown(effect)
        try:
            value = act(effect)
            if cls not in _EVENTS:
                value = await value
        except BaseException:
            flow.close()  # cancelled, or the performer failed: end the flow now
            raise


def run_in_simpy(flow: Flow[T], performer: EventPerformer) -> Generator[Any, Any, T]:
    """:func:`run` inside a SimPy process: ``result = yield from run_in_simpy(...)``.

    ``call`` and ``sleep`` return a SimPy event; the process waits for it and the
    flow is sent its value (``None`` for a timeout).
    """
    table = _bind(performer)
    send, value = flow.send, None
    while True:
        try:
            effect = send(value)
        except StopIteration as stop:
            result: T = stop.value  # what the flow returned
            return result
        cls = effect.__class__
        act = table.get(cls)
        if act is None:
            flow.close()
            raise _unknown(effect)
        try:
            value = act(effect)
            if cls in _WAITS:
                value = yield value
        except BaseException:
            flow.close()  # interrupted (a crash), or the performer failed: end the flow
            raise
