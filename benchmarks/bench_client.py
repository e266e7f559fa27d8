"""Payments per second of ``PaymentClient.pay`` versus bare ``httpx.Client``, in one run.

Both talk to the local reference provider (no faults, a payer who approves at
once) and make the same HTTP calls: create (with an idempotency key), polls
while the payment is initiated, capture. Reported as ratios to bare httpx:

* ``PaymentClient`` with the in-memory journal (aim: >= 0.85 of bare);
* ``PaymentClient`` with the SQLite journal, ``synchronous=NORMAL`` and ``FULL``
  (the durable default: three fsynced writes per payment).

Run: ``python benchmarks/bench_client.py [--payments N] [--rounds R]``.
Rounds alternate the contenders so drift on a shared machine hits all alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from payflow.client import PaymentClient
from payflow.journal import MemoryJournal, SqliteJournal
from payflow.provider.ledger import PayerModel
from payflow.provider.testing import RunningProvider, running_provider


def bare_pay(http: httpx.Client, order_id: str, amount: int) -> str:
    """The same calls a careful hand-written integration makes, without the client."""
    body = {"orderId": order_id, "amount": amount, "currency": "DKK"}
    key = str(uuid.uuid4())
    resp = http.post("/v10/payments", json=body, headers={"X-MobilePay-Idempotency-Key": key})
    resp.raise_for_status()
    payment = resp.json()
    while payment["state"] == "initiated":
        time.sleep(payment["pollDelayInMs"] / 1000)
        payment = http.get(f"/v10/payments/{payment['paymentId']}").json()
    if payment["state"] == "reserved":
        capture = {"amount": amount}
        payment = http.post(f"/v10/payments/{payment['paymentId']}/capture", json=capture).json()
    assert payment["state"] == "captured", payment
    return str(payment["paymentId"])


def rate(pay: Callable[[str], object], n: int) -> float:
    """Payments per second over ``n`` sequential payments."""
    prefix = uuid.uuid4().hex[:8]
    start = time.perf_counter()
    for i in range(n):
        pay(f"bench-{prefix}-{i}")
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=300, help="payments per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    payer = PayerModel(approve_probability=1.0, decide_after_s=(0.0, 0.0))
    with tempfile.TemporaryDirectory() as tmp, running_provider(payer=payer) as provider:
        run(provider, Path(tmp), args.payments, args.rounds)


def run(provider: RunningProvider, tmp: Path, n: int, rounds: int) -> None:
    url, cid, token = provider.base_url, provider.client_id, provider.token
    bare = httpx.Client(base_url=url, headers=provider.headers(), timeout=2.0)
    clients = {
        "memory": PaymentClient(url, cid, token, journal=MemoryJournal()),
        "sqlite-normal": PaymentClient(
            url, cid, token, journal=SqliteJournal(tmp / "normal.db", synchronous="NORMAL")
        ),
        "sqlite-full": PaymentClient(url, cid, token, journal=tmp / "full.db"),
    }
    contenders: dict[str, Callable[[str], object]] = {
        "bare httpx": lambda order: bare_pay(bare, order, 100),
    }
    for name, client in clients.items():
        contenders[f"PaymentClient ({name} journal)"] = (
            lambda order, c=client: c.pay(order, 100)  # type: ignore[misc]
        )
    for pay in contenders.values():  # warm up connections and code paths
        rate(pay, 20)
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, pay in contenders.items():
            results[name].append(rate(pay, n))
    base = statistics.median(results["bare httpx"])
    print(f"{n} payments x {rounds} rounds against {url} (median payments/s; ratio to bare)")
    for name, rates in results.items():
        median = statistics.median(rates)
        print(f"  {name:<42} {median:8.1f}/s   {median / base:5.2f}")
    bare.close()
    for client in clients.values():
        client.close()


if __name__ == "__main__":
    main()
