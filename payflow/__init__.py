"""payflow: plan payment integrations for failure.

Rule: a payment flow is written once, in :mod:`payflow.core`, and one loop
(:mod:`payflow.drivers`) runs it against a performer: the httpx clients here,
the SimPy model in :mod:`payflow.sim`, or a script in your tests.

The package has four parts: an idempotent payment client (:mod:`payflow.client`),
a reference provider (:mod:`payflow.provider`), SimPy models of slow-provider
days (:mod:`payflow.sim`), and plots and a report (:mod:`payflow.plots`).
All of them share the pure decision logic in :mod:`payflow.core`.

Names are imported lazily, so ``import payflow.core`` loads no I/O library.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["AsyncPaymentClient", "PaymentClient", "__version__", "is_testing", "set_testing"]

_LAZY = {
    "PaymentClient": "payflow.client",
    "AsyncPaymentClient": "payflow.client",
    "set_testing": "payflow._testing",
    "is_testing": "payflow._testing",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("payflow")
        except PackageNotFoundError:  # pragma: no cover - a bare source tree
            return "0.0.0+unknown"
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'payflow' has no attribute {name!r}")
