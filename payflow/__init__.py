"""payflow: plan payment integrations for failure.

The package has four parts: an idempotent payment client (:mod:`payflow.client`),
a reference provider (:mod:`payflow.provider`), SimPy models of slow-provider
days (:mod:`payflow.sim`), and plots and a report (:mod:`payflow.plots`).
All of them share the pure decision logic in :mod:`payflow.core`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("payflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
