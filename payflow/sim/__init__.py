"""SimPy models of slow-provider days.

Rule: the simulation runs the flows you deploy -- the :mod:`payflow.core` flow
objects, through the one effect loop (:mod:`payflow.drivers`) -- against the
provider's own pipeline and ledger; only customers, time and faults are modelled.

The shipped :mod:`payflow.core` flows run on a virtual clock against a provider
model (the pure ledger + a fault profile + a finite queue), with customers who
wait, click twice and give up. Start with :func:`run`::

    from payflow.sim import run
    result = run("slow-provider-day", "naive", seed=1, orders=500)
    result.summary          # the contract keys
    result.orders           # one row per order
    result.trace(42)        # one order's timeline
"""

from payflow.sim._model import Day, Order
from payflow.sim._provider import Capacity, ProviderModel, ProviderStats
from payflow.sim._runner import Result, run
from payflow.sim._scenarios import Scenario, load_scenario, parse_scenario, scenario_names
from payflow.sim._sensitivity import ASSUMPTIONS, ranking_holds, sensitivity
from payflow.sim._strategies import PRESETS, Strategy, get_strategy, strategy_names
from payflow.sim.fit import fit_profile

# The contract's `payflow.sim.sweep(...)` is the function; the module stays importable
# as `payflow.sim.sweep` through sys.modules (e.g. `from payflow.sim.sweep import pool_seeds`).
from payflow.sim.sweep import pool_seeds, sweep
from payflow.sim.tune import tune

__all__ = [
    "ASSUMPTIONS",
    "PRESETS",
    "Capacity",
    "Day",
    "Order",
    "ProviderModel",
    "ProviderStats",
    "Result",
    "Scenario",
    "Strategy",
    "fit_profile",
    "get_strategy",
    "load_scenario",
    "parse_scenario",
    "pool_seeds",
    "ranking_holds",
    "run",
    "scenario_names",
    "sensitivity",
    "strategy_names",
    "sweep",
    "tune",
]
