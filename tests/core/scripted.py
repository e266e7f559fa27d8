"""The tests' scripted driver: the public :class:`~payflow.drivers.ScriptedPerformer`,
plus reply builders and a clock for the tests' ``ctx()`` helpers."""

from __future__ import annotations

from typing import Any

from payflow.core import Response
from payflow.drivers import ScriptedPerformer

__all__ = ["ScriptedDriver", "clock", "error", "ok"]

_latest: list[ScriptedPerformer] = []


def ok(body: dict[str, Any] | None = None, status: int = 200, **headers: str) -> Response:
    return Response(status, body or {}, headers)


def error(status: int, code: str = "error", **headers: str) -> Response:
    return Response(status, {"code": code, "message": code, "correlationId": "c-1"}, headers)


class ScriptedDriver(ScriptedPerformer):
    """A :class:`ScriptedPerformer` that the tests' ``ctx()`` helpers find by :func:`clock`."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _latest[:] = [self]


def clock() -> float:
    """The fake clock of the scripted driver made last (tests make one per flow run;
    a test running two at once passes ``clock=driver.now`` itself)."""
    return _latest[0].clock
