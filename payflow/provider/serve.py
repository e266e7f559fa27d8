"""Serve the reference provider with uvicorn until stopped."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import uvicorn

from payflow.provider.app import create_app
from payflow.provider.faults import FaultProfile

__all__ = ["serve"]

_log = logging.getLogger("payflow.provider")


def serve(
    clients: Mapping[str, str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    faults: FaultProfile | None = None,
    time_scale: float = 1.0,
    inspect_token: str | None = None,
    seed: int = 0,
    day_offset_s: float = 0.0,
    log_level: str = "info",
) -> int:
    """Run the provider on ``host:port`` until interrupted; returns an exit code.

    Raises :class:`ValueError` for bad settings before anything is bound.
    """
    app = create_app(
        clients,
        faults=faults,
        time_scale=time_scale,
        inspect_token=inspect_token,
        seed=seed,
        day_offset_s=day_offset_s,
    )
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    _log.info(
        "serving the payflow provider on http://%s:%d (clients: %s; faults: %s; "
        "time scale: %g; inspection: %s)",
        host,
        port,
        ", ".join(sorted(clients)),
        faults.name if faults else "none",
        time_scale,
        "on" if inspect_token else "off",
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
    return 0
