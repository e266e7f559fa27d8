"""Run the reference provider on a real socket for tests and notebooks.

>>> with running_provider() as provider:          # doctest: +SKIP
...     client = PaymentClient(provider.base_url, provider.client_id, provider.token)
...     ...
...     provider.ledger()["payments"]

The server is uvicorn in a background thread on ``127.0.0.1`` and an ephemeral
port; it starts in well under half a second and stops cleanly on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from payflow.provider.app import INSPECT_PATH, ProviderState, create_app

__all__ = ["RunningProvider", "running_provider"]


class RunningProvider:
    """A provider being served: where it is and how to call it.

    ``client_id``/``token`` are the first configured client; ``clients`` all of
    them. ``state`` is the live :class:`ProviderState` (its ledger is touched
    only from the server thread: prefer :meth:`ledger` from tests).
    """

    __slots__ = ("_loop", "base_url", "client_id", "clients", "inspect_token", "state", "token")

    def __init__(
        self,
        base_url: str,
        client_id: str,
        token: str,
        inspect_token: str,
        clients: Mapping[str, str],
        state: ProviderState,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.base_url = base_url
        self.client_id = client_id
        self.token = token
        self.inspect_token = inspect_token
        self.clients = clients
        self.state = state
        self._loop = loop

    def __repr__(self) -> str:
        return f"RunningProvider(base_url={self.base_url!r}, client_id={self.client_id!r})"

    def headers(self, client_id: str | None = None, version: str = "1.0.0") -> dict[str, str]:
        """Valid auth and version headers for ``client_id`` (default: the first client)."""
        cid = client_id or self.client_id
        return {
            "Authorization": f"Bearer {self.clients[cid]}",
            "x-ibm-client-id": cid,
            "x-mobilepay-client-system-version": version,
        }

    def ledger(self) -> dict[str, Any]:
        """The ground truth, fetched over HTTP from ``GET /_payflow/ledger``."""
        response = httpx.get(
            self.base_url + INSPECT_PATH,
            headers={"Authorization": f"Bearer {self.inspect_token}"},
            timeout=10.0,
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def now(self) -> float:
        """The server's simulated clock (seconds since midnight of day 0)."""
        return self.state.now()

    def expire_tokens(self) -> int:
        """Make every access token issued so far expired now (on the server's loop)."""

        async def expire() -> int:
            return self.state.expire_tokens()

        return asyncio.run_coroutine_threadsafe(expire(), self._loop).result(timeout=10.0)

    def release_held(self) -> None:
        """Let go of every connection held for a lost response (and hold none after)."""
        self._loop.call_soon_threadsafe(self.state.release_held)


@contextmanager
def running_provider(
    clients: Mapping[str, str] | None = None,
    *,
    inspect_token: str | None = None,
    startup_timeout_s: float = 10.0,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    **create_app_kwargs: Any,
) -> Iterator[RunningProvider]:
    """Serve :func:`~payflow.provider.app.create_app` on ``127.0.0.1:0`` for a ``with`` block.

    ``clients`` defaults to one client ``"test-client"`` with a random token;
    ``inspect_token`` defaults to a random token (inspection is always on
    here). With ``ssl_certfile``/``ssl_keyfile`` (PEM files) it serves HTTPS
    and ``base_url`` is ``https://127.0.0.1:PORT`` (the certificate must name
    that address). Other keyword arguments go
    to ``create_app``.
    """
    clients = dict(clients) if clients else {"test-client": secrets.token_urlsafe(16)}
    inspect = inspect_token or secrets.token_urlsafe(16)
    app = create_app(clients, inspect_token=inspect, **create_app_kwargs)
    state: ProviderState = app.state.provider

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="asyncio",
        http="h11",
        timeout_graceful_shutdown=2,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    server = uvicorn.Server(config)
    loops: list[asyncio.AbstractEventLoop] = []
    errors: list[BaseException] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        loops.append(loop)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        except BaseException as exc:  # pragma: no cover - reported to the caller
            errors.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=f"payflow-provider-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if errors or not thread.is_alive():
            sock.close()
            raise RuntimeError("the provider failed to start") from (errors[0] if errors else None)
        if time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the provider did not start within {startup_timeout_s} s")
        time.sleep(0.002)
    first = next(iter(clients))
    provider = RunningProvider(
        base_url=f"{'https' if ssl_certfile else 'http'}://127.0.0.1:{port}",
        client_id=first,
        token=clients[first],
        inspect_token=inspect,
        clients=clients,
        state=state,
        loop=loops[0],
    )
    try:
        yield provider
    finally:
        loop = loops[0]
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(state.shut_down)
        server.should_exit = True
        thread.join(timeout=10.0)
        sock.close()
