"""The reference payment provider: a pure ledger, fault profiles, and an ASGI app.

Rule: what happens to a request is decided once, by the pipeline of
:mod:`payflow.provider._pipeline`, which both the server and the SimPy model
drive. The pure parts are re-exported here; the server (Starlette, uvicorn) lives in
:mod:`payflow.provider.app`, :mod:`payflow.provider._serve` and
:mod:`payflow.provider.testing` so importing this package needs neither.
"""

from payflow.provider.faults import (
    FaultDraw,
    FaultProfile,
    Faults,
    Mangle,
    load_profile,
    profile_names,
)
from payflow.provider.ledger import Ledger, PayerModel, Ticket

__all__ = [
    "FaultDraw",
    "FaultProfile",
    "Faults",
    "Ledger",
    "Mangle",
    "PayerModel",
    "Ticket",
    "load_profile",
    "profile_names",
]
