"""Serve the reference provider with uvicorn until stopped."""

from __future__ import annotations

import logging
import os
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
    token_ttl: float | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> int:
    """Run the provider on ``host:port`` until interrupted; returns an exit code.

    ``token_ttl`` makes ``POST /token`` access tokens the only ones accepted,
    each for that many seconds. ``ssl_certfile``/``ssl_keyfile`` (PEM) serve
    HTTPS (passed to uvicorn). Raises :class:`ValueError` for bad settings
    before anything is bound.
    """
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ValueError("--ssl-certfile, --ssl-keyfile: give both or neither")
    for name, path in (("--ssl-certfile", ssl_certfile), ("--ssl-keyfile", ssl_keyfile)):
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"{name}: no such file: {path!r}")
    app = create_app(
        clients,
        faults=faults,
        time_scale=time_scale,
        inspect_token=inspect_token,
        seed=seed,
        day_offset_s=day_offset_s,
        token_ttl=token_ttl,
    )
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    _log.info(
        "serving the payflow provider on %s://%s:%d (clients: %s; faults: %s; "
        "time scale: %g; inspection: %s; token lifetime: %s)",
        "https" if ssl_certfile else "http",
        host,
        port,
        ", ".join(sorted(clients)),
        faults.name if faults else "none",
        time_scale,
        "on" if inspect_token else "off",
        f"{token_ttl:g} s" if token_ttl else "none",
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
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
