"""The live panel of notebook 06: its update callback re-runs a small seeded day."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

from payflow.sim import load_scenario
from payflow.sim.explore import Explorer

DAY = load_scenario("slow-provider-day").with_load(120)


def test_update_reruns_with_the_knobs_and_redraws() -> None:
    explorer = Explorer(DAY, "recommended", orders=30, seed=0)
    first = explorer.update()
    again = Explorer(DAY, "recommended", orders=30, seed=0).update()
    assert first == again  # seeded: the same knobs, the same day
    changed = explorer.update(timeout_s=0.5, retries=0)
    assert explorer.result is not None
    assert explorer.result.strategy.policy.retry.max_attempts == 1
    assert changed["orders"] == 30
    assert "timeout_s=0.5" in explorer.ax.get_title()
    with pytest.raises(ValueError, match=r"retries: must be an integer 0\.\.5"):
        explorer.update(retries=9)


def test_a_slider_change_calls_the_callback() -> None:
    widgets = pytest.importorskip("ipywidgets")
    explorer = Explorer(DAY, "recommended", orders=30, seed=0)
    panel = explorer.panel()
    sliders = {w.description: w for w in panel.children[0].children}
    assert isinstance(sliders["timeout_s"], widgets.SelectionSlider)
    sliders["timeout_s"].value = 8.0
    assert explorer.knobs["timeout_s"] == 8.0
    assert explorer.result is not None
    assert explorer.result.strategy.policy.retry.timeouts.write == 8.0
