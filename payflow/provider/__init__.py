"""The reference payment provider: a pure ledger, faults, and an ASGI app."""
