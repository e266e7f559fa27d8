"""Requests per second of the reference provider vs a bare JSON endpoint on the same stack.

What is compared
    Both servers are uvicorn (h11, asyncio loop, one process) serving a Starlette app
    whose single ``/{path:path}`` route goes to a raw ASGI endpoint -- the shape of
    :func:`payflow.provider.app.create_app`. The *provider* is ``create_app`` with the
    ``calm`` fault profile, its latencies set to zero (``latency_before_s``,
    ``latency_after_s``, ``latency_sigma`` = 0; otherwise throughput would be bounded by
    ~0.17 s of sleeping per request, not by the server), so every request still takes
    the fault path: a draw from the fault generator and a capacity slot (64). The
    *bare* endpoint does comparable JSON work and nothing else: reads the body,
    ``json.loads`` it, builds a payment-shaped dict with a fresh UUID correlation id,
    ``json.dumps`` it and sends it with content-length and ``x-correlation-id``.

Load
    A create-and-poll mix: ``POST /v10/payments`` with a fresh idempotency key, then
    three ``GET /v10/payments/{id}``, on keep-alive connections. It comes from several
    client *processes* (``--procs``), each an asyncio loop of ``--conns`` connections
    speaking HTTP/1.1 directly over asyncio streams with pre-built request bytes --
    several times cheaper per request than httpx, so the load generator is not what is
    measured (``--client httpx`` uses ``httpx.AsyncClient`` instead, for comparison).
    ``wrk`` is not used: it is not installed here, and the mix needs the id from the POST.

Placement and saturation
    Each server runs in its own process pinned to CPU 0; the clients are pinned to the
    other CPUs (``os.sched_setaffinity``; skipped with a warning on a single CPU). The
    server's CPU time over the measured window is read from ``/proc/<pid>/stat``; a
    server using >= 90 % of its core is *saturated*, i.e. the figure is its capacity.
    The clients' CPU use is printed too.

    .venv/bin/python benchmarks/bench_provider.py [--seconds 5] [--procs 2] [--conns 16]

Prints requests/s for both, the ratio provider/bare (aim: >= 0.7), whether each server was
CPU-saturated, and the server CPU time per request (the same ratio measured by cost, less
skewed than req/s by other processes on the machine; on a shared 2-CPU box expect +-15 %).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import os
import socket
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

TOKEN = "bench-token"
CLIENT = "bench"
POLLS_PER_CREATE = 3
SERVER_CPU = 0
SATURATED = 0.9
_TICK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ servers


class _BareEndpoint:
    """A raw ASGI endpoint doing the provider's JSON work and nothing else.

    A class instance (like the provider's ``_Api``) so Starlette routes to it as ASGI.
    """

    def __init__(self) -> None:
        self.counter = iter(range(10**12))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        counter = self.counter
        body: Any = None
        if scope["method"] == "POST":
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = json.loads(b"".join(chunks).decode("utf-8"))
        cid = str(uuid.uuid4())
        if body is not None:
            pid = f"p-{next(counter)}"
            status, order, amount = 201, body.get("orderId"), body.get("amount")
        else:
            pid = scope["path"].rsplit("/", 1)[-1]
            status, order, amount = 200, "order", 1000
        payload = json.dumps(
            {
                "paymentId": pid,
                "orderId": order,
                "amount": amount,
                "currency": "DKK",
                "posId": None,
                "state": "initiated",
                "pollDelayInMs": 1000,
                "refundedAmount": 0,
                "correlationId": cid,
            },
            separators=(",", ":"),
        ).encode("utf-8")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode("latin-1")),
            (b"x-correlation-id", cid.encode("latin-1")),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _calm_without_latency() -> Any:
    from payflow.provider.faults import FaultProfile, load_profile

    calm = load_profile("calm")
    frames = [
        (t, dataclasses.replace(f, latency_before_s=0.0, latency_after_s=0.0, latency_sigma=0.0))
        for t, f in calm.keyframes
    ]
    return FaultProfile("calm-no-latency", frames, calm.description)


def _serve(kind: str, sock: socket.socket, pin: bool) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    if pin:
        os.sched_setaffinity(0, {SERVER_CPU})
    if kind == "provider":
        from payflow.provider.app import create_app

        app: Any = create_app({CLIENT: TOKEN}, faults=_calm_without_latency())
    else:
        app = Starlette(routes=[Route("/{path:path}", _BareEndpoint())])
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", loop="asyncio", http="h11"
    )
    uvicorn.Server(config).run(sockets=[sock])


# ------------------------------------------------------------------ clients


def _headers(port: int) -> bytes:
    return (
        f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"x-ibm-client-id: {CLIENT}\r\nx-mobilepay-client-system-version: 1.0.0\r\n"
    ).encode("latin-1")


def _create(port: int, key: str) -> bytes:
    body = json.dumps({"orderId": f"o-{key}", "amount": 1000, "currency": "DKK"}).encode()
    return (
        b"POST /v10/payments HTTP/1.1\r\n"
        + _headers(port)
        + f"X-MobilePay-Idempotency-Key: {key}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n".encode("latin-1")
        + body
    )


class _Tally:
    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.done = 0
        self.errors = 0

    def record(self, ok: bool) -> bool:
        """Count one answer inside the window; False once the window is over."""
        now = time.monotonic()
        if self.start <= now < self.end:
            self.done += 1
            self.errors += not ok
        return now < self.end


async def _raw_connection(port: int, tag: str, tally: _Tally) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.set_write_buffer_limits(0)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    get_prefix = b"GET /v10/payments/"
    get_suffix = b" HTTP/1.1\r\n" + _headers(port) + b"\r\n"

    async def call(request: bytes) -> tuple[int, bytes]:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.index(b"content-length:") + 15
        length = int(lower[at : lower.index(b"\r\n", at)])
        return status, await reader.readexactly(length)

    n = 0
    try:
        while True:
            n += 1
            status, body = await call(_create(port, f"{tag}-{n}"))
            if not tally.record(status == 201):
                return
            pid = json.loads(body)["paymentId"].encode("latin-1")
            for _ in range(POLLS_PER_CREATE):
                status, _ = await call(get_prefix + pid + get_suffix)
                if not tally.record(status == 200):
                    return
    finally:
        writer.close()


async def _httpx_connection(client: Any, tag: str, tally: _Tally) -> None:
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "x-ibm-client-id": CLIENT,
        "x-mobilepay-client-system-version": "1.0.0",
    }
    n = 0
    while True:
        n += 1
        body = {"orderId": f"o-{tag}-{n}", "amount": 1000, "currency": "DKK"}
        key = {"X-MobilePay-Idempotency-Key": f"{tag}-{n}"}
        r = await client.post("/v10/payments", json=body, headers={**headers, **key})
        if not tally.record(r.status_code == 201):
            return
        pid = r.json()["paymentId"]
        for _ in range(POLLS_PER_CREATE):
            g = await client.get(f"/v10/payments/{pid}", headers=headers)
            if not tally.record(g.status_code == 200):
                return


async def _load(port: int, proc: int, conns: int, kind: str, tally: _Tally) -> None:
    if kind == "raw":
        await asyncio.gather(*(_raw_connection(port, f"{proc}-{c}", tally) for c in range(conns)))
        return
    import httpx

    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        await asyncio.gather(
            *(_httpx_connection(client, f"{proc}-{c}", tally) for c in range(conns))
        )


def _client(
    port: int,
    proc: int,
    conns: int,
    kind: str,
    cpus: set[int] | None,
    ready: Any,
    go: Any,
    window: Any,
    out: Any,
) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    ready.put(proc)
    go.wait()
    tally = _Tally(window[0], window[1])
    cpu0 = time.process_time()
    try:
        asyncio.run(_load(port, proc, conns, kind, tally))
    except Exception as exc:  # reported by the parent instead of a hang
        out.put(f"client {proc}: {type(exc).__name__}: {exc}")
        return
    out.put((tally.done, tally.errors, time.process_time() - cpu0))


# --------------------------------------------------------------- measuring


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


@dataclasses.dataclass
class Run:
    kind: str
    rate: float
    errors: int
    server_cpu: float  # share of one core over the window
    client_cpu: float  # cores used by all client processes together

    @property
    def cpu_us_per_request(self) -> float:
        """Server CPU time per request (less skewed than req/s by other load)."""
        return self.server_cpu / self.rate * 1e6 if self.rate else float("inf")


def _measure(kind: str, args: argparse.Namespace, pin: bool) -> Run:
    ctx = multiprocessing.get_context("spawn")
    # proto 0 (not IPPROTO_TCP), so asyncio would not set TCP_NODELAY on accepted
    # connections: set it on the listener (inherited) or every answer waits ~40 ms for
    # a delayed ACK (h11 writes headers and body separately)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = ctx.Process(target=_serve, args=(kind, sock, pin), daemon=True)
    server.start()
    sock.close()
    client_cpus = (set(os.sched_getaffinity(0)) - {SERVER_CPU}) if pin else None
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    window = ctx.Array("d", 2)
    clients = [
        ctx.Process(
            target=_client,
            args=(port, i, args.conns, args.client, client_cpus, ready, go, window, out),
            daemon=True,
        )
        for i in range(args.procs)
    ]
    try:
        _wait_listening(port)
        for c in clients:
            c.start()
        for _ in clients:
            ready.get(timeout=60)
        start = time.monotonic() + args.warmup
        window[0], window[1] = start, start + args.seconds
        go.set()
        _sleep_until(start)
        assert server.pid is not None
        cpu_start = _cpu_seconds(server.pid)
        _sleep_until(start + args.seconds)
        cpu_end = _cpu_seconds(server.pid)
        results = [out.get(timeout=60) for _ in clients]
        failures = [r for r in results if isinstance(r, str)]
        if failures:
            raise RuntimeError(f"{kind}: " + "; ".join(failures))
        for c in clients:
            c.join(10)
    finally:
        for c in clients:
            if c.is_alive():
                c.terminate()
        server.terminate()
        server.join(10)
    done = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    # each client's CPU covers warm-up + window (+ the tail of its last request)
    client_cpu = sum(r[2] for r in results) / (args.warmup + args.seconds)
    return Run(kind, done / args.seconds, errors, (cpu_end - cpu_start) / args.seconds, client_cpu)


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start") from None
            time.sleep(0.05)


def _sleep_until(t: float, sleep: Callable[[float], None] = time.sleep) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        sleep(delay)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--conns", type=int, default=16, help="connections per client process")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; best kept")
    args = parser.parse_args()
    cpus = os.sched_getaffinity(0)
    pin = len(cpus) >= 2 and SERVER_CPU in cpus
    if not pin:
        print(f"warning: {len(cpus)} CPU(s) available: server and clients are not pinned apart")
    best: dict[str, Run] = {}
    runs: dict[str, list[Run]] = {"bare": [], "provider": []}
    for _ in range(args.rounds):
        for kind in ("bare", "provider"):
            run = _measure(kind, args, pin)
            runs[kind].append(run)
            print(
                f"  {kind:8s} {run.rate:8.0f} req/s  server CPU {run.server_cpu:4.0%} of a core"
                f" ({run.cpu_us_per_request:4.0f} us/request)  clients {run.client_cpu:4.2f} cores"
                f"  errors {run.errors}",
                flush=True,
            )
            if kind not in best or run.rate > best[kind].rate:
                best[kind] = run
    bare, provider = best["bare"], best["provider"]
    where = (
        f"server on CPU {SERVER_CPU}, clients on CPUs {sorted(cpus - {SERVER_CPU})}"
        if pin
        else "unpinned"
    )
    print(
        f"create-and-poll mix (1 create + {POLLS_PER_CREATE} polls); {args.procs} {args.client} "
        f"client processes x {args.conns} connections; {where}; {args.seconds:g} s windows, "
        f"best of {args.rounds}:"
    )
    for label, run in (("bare JSON endpoint ", bare), ("payflow provider   ", provider)):
        state = "saturated" if run.server_cpu >= SATURATED else "NOT saturated"
        print(f"{label}: {run.rate:8.0f} req/s  (server CPU {run.server_cpu:.0%}: {state})")
    print(f"ratio provider/bare: {provider.rate / bare.rate:8.2f}  (aim >= 0.70)")
    median = {k: statistics.median(r.rate for r in v) for k, v in runs.items()}
    print(
        f"medians: bare {median['bare']:.0f} req/s, provider {median['provider']:.0f} req/s, "
        f"ratio {median['provider'] / median['bare']:.2f}"
    )
    cost = {k: min(r.cpu_us_per_request for r in v) for k, v in runs.items()}
    print(
        f"server CPU per request: bare {cost['bare']:.0f} us, provider {cost['provider']:.0f} us; "
        f"ratio bare/provider {cost['bare'] / cost['provider']:.2f} (the same ratio measured by "
        "cost; less skewed than req/s by other load on the machine)"
    )
    if min(bare.server_cpu, provider.server_cpu) < SATURATED:
        print("warning: a server was not CPU-bound, so the load generator limited the figure")


if __name__ == "__main__":
    main()
