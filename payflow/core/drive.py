"""The smallest driver: run a flow by handing each effect to a function.

The synchronous httpx client and the tests' scripted driver use it; the
SimPy and asyncio drivers have the same loop with a ``yield``/``await`` in it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from payflow.core.calls import Flow
from payflow.core.messages import Effect

__all__ = ["drive"]

T = TypeVar("T")


def drive(flow: Flow[T], perform: Callable[[Effect], Any]) -> T:
    """Run ``flow`` to its end; ``perform(effect)`` returns what the flow is sent.

    Exceptions raised by the flow propagate to the caller unchanged.
    """
    try:
        effect = next(flow)
        while True:
            effect = flow.send(perform(effect))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
