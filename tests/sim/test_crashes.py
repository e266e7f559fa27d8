"""payflow.sim.crashes: payments a backend crash interrupted, and how they ended."""

from __future__ import annotations

import math

import pytest

from payflow.sim import crashes, get_strategy, run


def test_every_and_with_crashes() -> None:
    assert crashes.every(9, 10, 1800) == (32400.0, 34200.0, 36000.0)
    day = crashes.with_crashes("calm-day", (7200.0, 3600.0), restart_s=30)
    assert day.backend.crashes == (3600.0, 7200.0) and day.backend.restart_s == 30.0
    assert day.name == "calm-day+crashes"
    with pytest.raises(ValueError, match="interval_s"):
        crashes.every(9, 10, 0)


@pytest.mark.parametrize("recover", [True, False])
def test_interrupted_payments_are_found_and_recovered(recover: bool) -> None:
    day = crashes.with_crashes("calm-day", crashes.every(9, 21, 600))
    base = get_strategy("recommended")
    strategy = base if recover else base.but(recover_on_restart=False, reconcile=False)
    result = run(day, strategy, seed=0, orders=600)
    killed = crashes.interrupted(result)
    assert len(killed) > 0
    assert set(killed["end"]) <= set(crashes.ENDS)
    assert killed["crash_at_s"].isin(day.backend.crashes).all()
    if recover:
        assert not killed["orphan_charge"].any() and not killed["unresolved"].any()
        assert (killed["settled_by"] == "restart recovery").any()
        assert killed["settled_after_s"].min() >= day.backend.restart_s
    else:
        assert (killed["settled_by"] == "nothing").all()
        assert killed["settled_after_s"].map(math.isnan).all()
        assert killed["unresolved"].all()
    table = crashes.end_table(killed, "step")
    assert table.to_numpy().sum() == len(killed)
