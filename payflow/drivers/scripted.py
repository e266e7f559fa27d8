"""A scripted performer: test a :class:`~payflow.core.Policy` without a server.

Like httpx's ``MockTransport``: the provider's answers come from a script, the
clock is fake and moves only when a call or a sleep spends time, and every
effect is recorded for assertions.

>>> from payflow.core import Policy, Response, TimedOut, pay
>>> from payflow.drivers import ScriptedPerformer
>>> script = ScriptedPerformer([TimedOut(), Response(201, {...}), ...])  # doctest: +SKIP
>>> result = script.run(pay("o-1", 1000, "DKK", script.context(Policy())))  # doctest: +SKIP
>>> script.sleeps, [r.path for _, r, _ in script.calls]                     # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from payflow.core._backoff import Rng
from payflow.core._budget import RetryBudget
from payflow.core._calls import Context, Flow
from payflow.core._policy import Policy
from payflow.core.messages import (
    AskOperator,
    Authenticate,
    Call,
    Forget,
    NotSent,
    Outcome,
    PendingRecord,
    Request,
    Save,
    Sleep,
    TimedOut,
)
from payflow.drivers._loop import run

__all__ = ["Responder", "ScriptedPerformer"]

T = TypeVar("T")
#: Answers a request at a (fake) time.
Responder = Callable[[Request, float], Outcome]


@dataclass
class ScriptedPerformer:
    """Answers each ``Call`` from ``script``: a list consumed in order, or a function.

    A timed-out call costs its whole timeout on the fake clock, a refused one
    1 ms, an answered one ``latency`` seconds (at most its timeout).
    ``fresh_credentials`` is what an ``Authenticate`` is answered (``True``: as
    a token provider would); ``operator`` answers ``AskOperator`` (default:
    keep waiting). Everything the flow asked for is recorded in order.
    """

    script: Iterable[Outcome] | Responder
    latency: float = 0.01
    clock: float = 0.0
    journal: dict[str, PendingRecord] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)
    calls: list[tuple[float, Request, float]] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    saves: list[PendingRecord] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # every effect's and event's class name
    fresh_credentials: bool = False
    authentications: int = 0
    operator: Callable[[AskOperator], bool] = lambda question: True
    questions: list[AskOperator] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not callable(self.script):
            self._queue = list(self.script)

    def now(self) -> float:
        """The fake clock (pass as ``Context.clock``)."""
        return self.clock

    def context(
        self,
        policy: Policy | None = None,
        rng: Rng | None = None,
        budget: RetryBudget | None = None,
        operator_every: float | None = None,
    ) -> Context:
        """A :class:`~payflow.core.Context` on this performer's clock (rng: seeded 0)."""
        return Context(
            policy if policy is not None else Policy(),
            rng if rng is not None else random.Random(0),
            budget,
            operator_every,
            clock=self.now,
        )

    def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` against the script; return its result."""
        return run(flow, self)

    # The performer protocol (payflow.drivers.Performer).
    def call(self, call: Call) -> Outcome:
        self.log.append("Call")
        self.calls.append((self.clock, call.request, call.timeout))
        outcome = self._answer(call.request)
        if isinstance(outcome, TimedOut):
            self.clock += call.timeout
        elif isinstance(outcome, NotSent):
            self.clock += 0.001
        else:
            self.clock += min(self.latency, call.timeout)
        return outcome

    def sleep(self, sleep: Sleep) -> None:
        self.log.append("Sleep")
        if sleep.seconds < 0:
            raise AssertionError(f"negative sleep {sleep.seconds}")
        self.sleeps.append(sleep.seconds)
        self.clock += sleep.seconds

    def save(self, save: Save) -> None:
        self.log.append("Save")
        self.saves.append(save.record)  # durable before anything is sent: the order matters
        self.journal[save.record.idempotency_key] = save.record

    def forget(self, forget: Forget) -> None:
        self.log.append("Forget")
        self.journal.pop(forget.idempotency_key, None)

    def authenticate(self, authenticate: Authenticate) -> bool:
        self.log.append("Authenticate")
        self.authentications += 1
        return self.fresh_credentials

    def ask_operator(self, question: AskOperator) -> bool:
        self.log.append("AskOperator")
        self.questions.append(question)
        return self.operator(question)

    def emit(self, event: Any) -> None:
        self.log.append(type(event).__name__)
        self.events.append(event)

    def _answer(self, request: Request) -> Outcome:
        if callable(self.script):
            return self.script(request, self.clock)
        if not self._queue:
            raise AssertionError(f"script exhausted at {request.method} {request.path}")
        return self._queue.pop(0)
