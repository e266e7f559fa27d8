"""A misbehaving proxy in front of the reference provider, for the money-safety tests.

Every request really reaches the reference provider (so its ledger is the
ground truth: a create that the proxy garbles *was* committed); a rule may then
replace what goes back to the client. It is served by uvicorn on 127.0.0.1,
so the clients meet it over real sockets, as they would a broken proxy or a
provider with bugs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

Reply = tuple[int, dict[str, str], bytes]
Mangle = Callable[[Reply, dict[str, str]], Reply]


@dataclass
class Rule:
    """Replace the reply to matching requests (``times`` of them; ``None``: all)."""

    method: str
    path: Callable[[str], bool]
    mangle: Mangle
    times: int | None = 1
    contains: bytes = b""  # only requests whose body contains these bytes
    seen: int = field(default=0)


def body(value: Any) -> Callable[[Reply, dict[str, str]], Reply]:
    """Keep the status; replace the body with ``value`` (bytes as they are, else JSON)."""

    def mangle(reply: Reply, request_headers: dict[str, str]) -> Reply:
        status, _headers, _ = reply
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        return status, {"content-type": "application/json"}, raw

    return mangle


def edit(**changes: Any) -> Mangle:
    """Keep the reply, change (or with ``None`` as ``...``, drop) fields of its JSON body."""

    def mangle(reply: Reply, request_headers: dict[str, str]) -> Reply:
        status, _headers, raw = reply
        data = json.loads(raw)
        for key, value in changes.items():
            if value is ...:
                data.pop(key, None)
            else:
                data[key] = value(data.get(key)) if callable(value) else value
        return status, {"content-type": "application/json"}, json.dumps(data).encode()

    return mangle


def status(code: int, payload: Any = None, **headers: str) -> Mangle:
    """Answer ``code`` with ``payload`` (JSON) whatever the provider said."""

    def mangle(reply: Reply, request_headers: dict[str, str]) -> Reply:
        raw = b"" if payload is None else json.dumps(payload).encode()
        hdrs = {"content-type": "application/json", **headers}
        return code, hdrs, raw

    return mangle


class MangleProxy:
    """ASGI app: forward to ``upstream``, then apply the first matching rule."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.lock = threading.Lock()
        self._http: httpx.AsyncClient | None = None

    def on(
        self,
        method: str,
        path: str | Callable[[str], bool],
        mangle: Mangle,
        times: int | None = 1,
        contains: str = "",
    ) -> Rule:
        """Add a rule; ``path`` is an exact path, or a predicate on it; ``contains``
        limits it to requests whose body contains that text."""
        match = path if callable(path) else (lambda p, want=path: p == want)
        rule = Rule(method, match, mangle, times, contains.encode())
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def _rule(self, method: str, path: str, content: bytes) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.method == method and rule.path(path) and rule.contains in content:
                    if rule.times is not None and rule.seen >= rule.times:
                        continue
                    rule.seen += 1
                    return rule
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.upstream, timeout=30.0)
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.lower() != b"host"}
        path = scope["path"]
        query = scope.get("query_string", b"").decode()
        upstream = await self._http.request(
            scope["method"],
            path + (f"?{query}" if query else ""),
            headers=headers,
            content=b"".join(chunks),
        )
        reply: Reply = (upstream.status_code, dict(upstream.headers), upstream.content)
        rule = self._rule(scope["method"], path, b"".join(chunks))
        if rule is not None:
            reply = rule.mangle(reply, headers)
        code, out_headers, raw = reply
        wanted = ("content-type", "retry-after")
        keep = {k: v for k, v in out_headers.items() if k.lower() in wanted}
        keep["content-length"] = str(len(raw))
        await send(
            {
                "type": "http.response.start",
                "status": code,
                "headers": [(k.encode(), v.encode()) for k, v in keep.items()],
            }
        )
        await send({"type": "http.response.body", "body": raw})


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn on 127.0.0.1 (an ephemeral port); yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", loop="asyncio", http="h11"
    )
    server = uvicorn.Server(config)

    def run() -> None:
        asyncio.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=run, daemon=True, name=f"mangle-proxy-{port}")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the misbehaving proxy did not start")
        time.sleep(0.002)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
