"""Requests per second of the reference provider vs a bare Starlette JSON endpoint.

Both apps run on the same uvicorn configuration (h11, asyncio loop), each in
its own child process on 127.0.0.1, one after the other, in one run of this
script. The load is a create-and-poll mix (one ``POST /v10/payments`` with a
fresh idempotency key, then three ``GET /v10/payments/{id}``) from a few
concurrent httpx async clients, after a warm-up. The bare app answers the same
paths with a small JSON body (parsing the POST body, as the provider does).

    .venv/bin/python benchmarks/bench_provider.py [--requests 8000] [--clients 8]

Prints requests/s for both and the ratio provider/bare (aim: >= 0.7).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time
from typing import Any

import httpx

TOKEN = "bench-token"
CLIENT = "bench"
HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "x-ibm-client-id": CLIENT,
    "x-mobilepay-client-system-version": "1.0.0",
}
POLLS_PER_CREATE = 3


def _bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def create(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse(
            {"paymentId": "p-1", "orderId": body.get("orderId"), "state": "initiated"}, 201
        )

    async def get(request: Request) -> JSONResponse:
        return JSONResponse({"paymentId": request.path_params["pid"], "state": "initiated"})

    return Starlette(
        routes=[
            Route("/v10/payments", create, methods=["POST"]),
            Route("/v10/payments/{pid}", get, methods=["GET"]),
        ]
    )


def _serve(kind: str, port: int) -> None:
    import uvicorn

    if kind == "provider":
        from payflow.provider.app import create_app

        app = create_app({CLIENT: TOKEN})
    else:
        app = _bare_app()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="asyncio",
        http="h11",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _drive(base_url: str, total: int, clients: int) -> float:
    """Send ``total`` requests from ``clients`` workers; return requests per second."""
    counter = iter(range(10**9))
    remaining = total
    lock = asyncio.Lock()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while True:
            async with lock:
                if remaining <= 0:
                    return
                take = min(remaining, 1 + POLLS_PER_CREATE)
                remaining -= take
            n = next(counter)
            r = await client.post(
                "/v10/payments",
                json={"orderId": f"order-{n}", "amount": 1000, "currency": "DKK"},
                headers={**HEADERS, "X-MobilePay-Idempotency-Key": f"key-{n}-{id(client)}"},
            )
            assert r.status_code == 201, r.text
            pid = r.json()["paymentId"]
            for _ in range(take - 1):
                g = await client.get(f"/v10/payments/{pid}", headers=HEADERS)
                assert g.status_code == 200, g.text

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        return total / (time.perf_counter() - started)


def _measure(kind: str, total: int, clients: int, warmup: int) -> float:
    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    process = ctx.Process(target=_serve, args=(kind, port), daemon=True)
    process.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base_url + "/", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} server did not start") from None
                time.sleep(0.05)
        asyncio.run(_drive(base_url, warmup, clients))
        return asyncio.run(_drive(base_url, total, clients))
    finally:
        process.terminate()
        process.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; best kept")
    args = parser.parse_args()
    best = {"bare": 0.0, "provider": 0.0}
    for _ in range(args.rounds):
        for kind in ("bare", "provider"):
            rate = _measure(kind, args.requests, args.clients, args.warmup)
            best[kind] = max(best[kind], rate)
            print(f"  {kind:8s} {rate:8.0f} req/s", flush=True)
    ratio = best["provider"] / best["bare"]
    print(
        f"create-and-poll mix (1 create + {POLLS_PER_CREATE} polls), {args.clients} clients, "
        f"{args.requests} requests, best of {args.rounds}:"
    )
    print(f"bare Starlette JSON : {best['bare']:8.0f} req/s")
    print(f"payflow provider    : {best['provider']:8.0f} req/s")
    print(f"ratio provider/bare : {ratio:8.2f}  (aim >= 0.70)")


if __name__ == "__main__":
    main()
