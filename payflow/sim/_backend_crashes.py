"""Backend crashes: at the scenario's times the shop's processes die; the journal survives.

Rule: a crash interrupts every handler, worker and recheck the backend lists (their
flows are closed, their journal records stay, unowned), refuses submits while down,
and after ``restart_s`` comes back up, rechecking the whole journal first when the
strategy recovers on restart (``recover_on_restart``). :mod:`payflow.sim.crashes`
reads what the crashes did from a run's traces.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

from payflow.sim._backend import Backend

__all__ = ["crash_and_restart"]


def crash_and_restart(
    env: simpy.Environment,
    at: float,
    backend: Backend,
    restart_s: float,
    recover: Callable[[], Generator[simpy.Event, Any, None]] | None,
) -> Generator[simpy.Event, Any, None]:
    """The SimPy process of one crash at ``at``; ``recover()`` runs on restart, if given."""
    if at > env.now:
        yield env.timeout(at - env.now)
    backend.up = False
    for process in list(backend.workers):
        if process.is_alive:
            process.interrupt("crash")
    backend.workers.clear()
    yield env.timeout(restart_s)
    backend.up = True
    if recover is not None:
        process = env.process(recover())
        # Listed as a worker: a second crash during recovery interrupts it too.
        backend.workers[process] = None
        yield process
        backend.workers.pop(process, None)
