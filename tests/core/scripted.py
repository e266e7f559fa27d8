"""A tiny reference driver: runs core flows against scripted outcomes on a fake clock."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from payflow.core import (
    Call,
    Effect,
    Emit,
    Forget,
    NotSent,
    Now,
    Outcome,
    PendingRecord,
    Request,
    Response,
    Save,
    Sleep,
    TimedOut,
    drive,
)

Responder = Callable[[Request, float], Outcome]


def ok(body: dict[str, Any] | None = None, status: int = 200, **headers: str) -> Response:
    return Response(status, body or {}, headers)


def error(status: int, code: str = "error", **headers: str) -> Response:
    return Response(status, {"code": code, "message": code, "correlationId": "c-1"}, headers)


@dataclass
class ScriptedDriver:
    """Answers each Call from ``script`` (a list consumed in order, or a function).

    A timed-out call costs its whole timeout on the fake clock; an answered
    call costs ``latency`` seconds.
    """

    script: Iterable[Outcome] | Responder
    latency: float = 0.01
    now: float = 0.0
    journal: dict[str, PendingRecord] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)
    calls: list[tuple[float, Request, float]] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    saves: list[PendingRecord] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # every effect's kind, in order

    def __post_init__(self) -> None:
        if not callable(self.script):
            self._queue = list(self.script)

    def _answer(self, request: Request, timeout: float) -> Outcome:
        if callable(self.script):
            return self.script(request, self.now)
        if not self._queue:
            raise AssertionError(f"script exhausted at {request.method} {request.path}")
        return self._queue.pop(0)

    def perform(self, effect: Effect) -> Any:
        self.log.append(type(effect).__name__)
        if isinstance(effect, Call):
            self.calls.append((self.now, effect.request, effect.timeout))
            outcome = self._answer(effect.request, effect.timeout)
            if isinstance(outcome, TimedOut):
                self.now += effect.timeout
            elif isinstance(outcome, NotSent):
                self.now += 0.001
            else:
                self.now += min(self.latency, effect.timeout)
            return outcome
        if isinstance(effect, Sleep):
            assert effect.seconds >= 0
            self.sleeps.append(effect.seconds)
            self.now += effect.seconds
            return None
        if isinstance(effect, Now):
            return self.now
        if isinstance(effect, Save):
            # Durable before anything is sent: record the order of saves too.
            self.saves.append(effect.record)
            self.journal[effect.record.idempotency_key] = effect.record
            return None
        if isinstance(effect, Forget):
            self.journal.pop(effect.idempotency_key, None)
            return None
        if isinstance(effect, Emit):
            self.events.append(effect.event)
            return None
        raise AssertionError(f"unknown effect {effect!r}")

    def run(self, flow: Any) -> Any:
        return drive(flow, self.perform)
