"""Serve the reference provider with uvicorn until stopped."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping

import uvicorn

from payflow.provider.app import ProviderState, create_app
from payflow.provider.faults import FaultProfile

__all__ = ["QuietServer", "serve"]

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
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5
    )
    QuietServer(config, app.state.provider).run()
    return 0


class QuietServer(uvicorn.Server):
    """A uvicorn server that winds the provider down before it waits for connections.

    On Ctrl-C / SIGTERM, :meth:`ProviderState.shut_down` first answers every request
    still waiting (503 "shutting down" before its change, the answer at once after
    it); without it, uvicorn's graceful-shutdown timeout cancels them mid-way.
    """

    def __init__(self, config: uvicorn.Config, state: ProviderState) -> None:
        super().__init__(config)
        self._state = state

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._state.shut_down()
        await super().shutdown(sockets)
