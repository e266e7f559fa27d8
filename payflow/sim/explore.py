"""Explore live: sliders for a strategy's main knobs, a small seeded run per change.

::

    from payflow.sim.explore import Explorer
    explorer = Explorer(scenario, "recommended", orders=150, seed=0)
    explorer.panel()            # ipywidgets: sliders + the re-drawn chart (in a notebook)
    explorer.update(timeout_s=4, retries=1)   # what a slider change calls

Each change runs :func:`payflow.sim.run` once (same seed: only the knobs differ)
and re-draws the day's time to outcome and the summary line. Needs the
``notebooks`` extra (ipywidgets) for :meth:`Explorer.panel` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from payflow.sim._runner import Result, resolve_scenario, run
from payflow.sim._scenarios import Scenario
from payflow.sim._strategies import Strategy, get_strategy

__all__ = ["DEFAULT_SLIDERS", "Explorer"]

#: knob -> the values its slider offers.
DEFAULT_SLIDERS: Final[Mapping[str, Sequence[Any]]] = {
    "timeout_s": (0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
    "retries": (0, 1, 2, 3, 4, 5),
    "poll_deadline_s": (30.0, 60.0, 120.0, 300.0, 600.0),
}


class Explorer:
    """A strategy's knobs, re-run on a small seeded day on every change."""

    def __init__(
        self,
        scenario: str | Scenario,
        strategy: str | Strategy,
        *,
        orders: int = 150,
        seed: int = 0,
        sliders: Mapping[str, Sequence[Any]] = DEFAULT_SLIDERS,
    ) -> None:
        self.scenario = resolve_scenario(scenario)
        self.base = get_strategy(strategy)
        self.orders = orders
        self.seed = seed
        self.sliders = dict(sliders)
        current = self.base.knobs()
        self.knobs: dict[str, Any] = {k: current.get(k, v[0]) for k, v in self.sliders.items()}
        self.result: Result | None = None
        self.ax: Any = None
        self._out: Any = None

    def update(self, **knobs: Any) -> dict[str, Any]:
        """Set some knobs, run, re-draw; returns the run's summary (the callback)."""
        self.knobs.update(knobs)
        strategy = self.base.but(**self.knobs)
        self.result = run(self.scenario, strategy, seed=self.seed, orders=self.orders, trace=False)
        self.draw()
        return self.result.summary

    def summary_line(self) -> str:
        """The run in one line: shipped, harmed, time to outcome, calls, cost."""
        if self.result is None:
            return "not run yet"
        s = self.result.summary
        harmed = (
            s["duplicate_charges"]
            + s["silent_charges"]
            + s["orphan_charges"]
            + s["told_failed_but_charged"]
        )
        knobs = ", ".join(f"{k}={v}" for k, v in self.knobs.items())
        return (
            f"{knobs}: shipped {s['shipped']}/{s['orders']}, harmed {harmed}, "
            f"outcome p95 {s['outcome_p95_s']:.0f} s, {s['provider_calls_per_order']:.1f} "
            f"calls/order, cost {s['cost_per_order']} {s.get('currency', '')}/order"
        )

    def draw(self) -> Any:
        """Draw the last run's time to outcome over the day on ``self.ax`` (a new Axes
        the first time); returns the Axes."""
        import matplotlib.pyplot as plt

        if self.result is None:
            raise ValueError("nothing to draw: call update() first")
        if self.ax is None:
            _, self.ax = plt.subplots(figsize=(7.5, 3.5), layout="constrained")
        ax = self.ax
        ax.clear()
        orders = self.result.orders
        hour = (orders["arrival_s"] % 86_400.0) / 3600.0
        outcome = orders["outcome_s"].astype(float)
        told = outcome.notna() & (outcome != float("inf"))
        ax.scatter(hour[told], outcome[told], s=6, alpha=0.6, label="told the outcome")
        if (~told).any():
            top = float(outcome[told].max()) if told.any() else 1.0
            ax.scatter(
                hour[~told],
                [top * 1.5] * int((~told).sum()),
                s=10,
                marker="x",
                color="tab:red",
                label="never told (drawn at the top)",
            )
        ax.set_yscale("symlog")
        ax.legend(frameon=False, fontsize=7, loc="upper left")
        ax.set_xlabel("first click (hour of day)")
        ax.set_ylabel("time to outcome (s)")
        ax.set_title(self.summary_line(), fontsize=8)
        return ax

    def panel(self) -> Any:
        """The ipywidgets panel: one selection slider per knob and the chart."""
        import ipywidgets as widgets  # type: ignore[import-untyped,unused-ignore]
        import matplotlib.pyplot as plt
        from IPython.display import display as _display

        display: Any = _display  # IPython's display is untyped

        controls = []
        out = widgets.Output()
        self._out = out

        def on_change(change: Mapping[str, Any]) -> None:
            owner = change["owner"]
            with out:
                out.clear_output(wait=True)
                self.update(**{owner.description: change["new"]})
                if self.ax is not None:
                    display(self.ax.figure)

        for name, values in self.sliders.items():
            options = list(values)
            if self.knobs[name] not in options:  # the preset's own value is one of the stops
                options = sorted([*options, self.knobs[name]])
            slider = widgets.SelectionSlider(
                options=options,
                value=self.knobs[name],
                description=name,
                continuous_update=False,
            )
            slider.observe(on_change, names="value")
            controls.append(slider)
        with out:
            self.update()
            if self.ax is not None:
                display(self.ax.figure)
                plt.close(self.ax.figure)  # shown once, by display, not again at the cell's end
        return widgets.VBox([widgets.HBox(controls), out])
