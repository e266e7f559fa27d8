"""Drivers: one loop runs every flow; performers only perform effects.

Rule: :mod:`payflow.drivers._loop` is the only code that looks at an effect's
type. A runtime -- httpx (sync and async, :mod:`payflow.drivers._httpx`),
SimPy (:mod:`payflow.drivers._simpy`), a script (:mod:`payflow.drivers.scripted`)
-- implements the :class:`Performer` protocol, one method per kind of effect,
and hands itself to :func:`run`, :func:`arun` or :func:`run_in_simpy`.

To test a :class:`~payflow.core.Policy` without a server, use
:class:`ScriptedPerformer` (as httpx ships ``MockTransport``).
"""

from payflow.drivers._loop import (
    AsyncPerformer,
    EventPerformer,
    Performer,
    arun,
    run,
    run_in_simpy,
)
from payflow.drivers.scripted import ScriptedPerformer

__all__ = [
    "AsyncPerformer",
    "EventPerformer",
    "Performer",
    "ScriptedPerformer",
    "arun",
    "run",
    "run_in_simpy",
]
