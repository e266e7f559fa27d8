"""Real processes: SIGKILL at random points of a payment, then a fresh process
recovers; and two processes sharing one journal never settle a record twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from payflow.core.messages import PendingRecord
from payflow.journal import SqliteJournal
from payflow.provider.faults import FaultProfile, Faults
from payflow.provider.ledger import PayerModel
from payflow.provider.testing import RunningProvider, running_provider

from .conftest import Provider

CHILD = str(Path(__file__).with_name("_child.py"))
MONEY = ("reserved", "captured")
KILLS = 22  # SIGKILL points in the default run

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and pids are POSIX")


def spawn(
    running: RunningProvider, mode: str, journal: Path, *orders: str
) -> subprocess.Popen[str]:
    env = {**os.environ, "PAYFLOW_TOKEN": running.token}
    args = [sys.executable, CHILD, mode, running.base_url, running.client_id, str(journal)]
    return subprocess.Popen(
        [*args, *orders], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )


def drain(running: RunningProvider) -> None:
    """Wait until the provider has finished every request (late commits included)."""
    state = running.state
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if state.capacity.busy == 0 and state.ledger.in_flight() == 0:
            return
        time.sleep(0.01)


@pytest.fixture
def faulty() -> Iterator[Provider]:
    faults = Faults(
        latency_before_s=0.01,
        latency_after_s=0.01,
        latency_sigma=1.0,
        p_server_error=0.1,
        p_lost_after_commit=0.1,
        p_reset_before_commit=0.05,
        p_throttle=0.05,
        retry_after_s=0.0,
        poll_delay_ms=5,
    )
    payer = PayerModel(approve_probability=0.8, decide_after_s=(0.0, 0.05))
    with running_provider(
        faults=FaultProfile.constant(faults), payer=payer, lost_hold_s=2.0, seed=7
    ) as running:
        prov = Provider(running, None)  # type: ignore[arg-type]
        yield prov
        prov.close()


def test_sigkill_at_random_points_then_recover(faulty: Provider, tmp_path: Path) -> None:
    running = faulty.running
    journal = tmp_path / "journal.db"
    rng = random.Random(2024)
    reported: dict[str, str] = {}  # payment id -> order
    orders: list[str] = []
    killed = recovered = 0
    run = 0
    while killed < KILLS and run < 2 * KILLS:
        run += 1
        mine = [f"crash-{run}-{j}-{uuid.uuid4().hex[:6]}" for j in range(2)]
        orders += mine
        child = spawn(running, "pay", journal, *mine)
        assert child.stdout is not None
        kill_at = rng.randint(1, 30)  # markers: events, RECOVER, PAID, ACK
        for seen, line in enumerate(child.stdout, start=1):
            if line.startswith("PAID "):
                _, order, payment_id = line.split()
                reported[payment_id] = order
            elif line.startswith("RECOVER "):
                recovered += len(json.loads(line[8:]))
            if seen >= kill_at:
                child.send_signal(signal.SIGKILL)
                killed += 1
                break
        child.wait(timeout=30)  # reaped: its pid is gone, so its records are claimable
        # The child ran on between our reading line `kill_at` and the signal landing:
        # whatever it printed meanwhile was reported to its caller too.
        for line in child.stdout.read().splitlines():
            if line.startswith("PAID "):
                _, order, payment_id = line.split()
                reported[payment_id] = order
        child.stdout.close()
        assert child.stdin is not None
        child.stdin.close()
    assert killed >= KILLS
    assert recovered > 0, "no start-up recover() found anything: the kills missed every payment"
    # The network is back: a fresh process recovers everything left behind.
    running.state.faults = None
    drain(running)
    final = spawn(running, "pay", journal)
    out, _ = final.communicate(timeout=60)
    outcomes = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RECOVER "))[8:])
    assert all(action != "kept" for _, action, _ in outcomes), outcomes
    store = SqliteJournal(journal)
    assert store.pending() == []
    store.close()
    payments = [p for p in faulty.ledger()["payments"] if p["orderId"] in set(orders)]
    assert payments, "the children never reached the provider"
    for order in orders:
        mine = [p for p in payments if p["orderId"] == order]
        charged = [p for p in mine if p["state"] in MONEY and p["refundedAmount"] < p["amount"]]
        assert len(charged) <= 1, f"{order} charged twice: {mine}"
        for p in charged:
            assert p["paymentId"] in reported, f"charged, never reported nor refunded: {p}"
        assert all(p["state"] != "initiated" for p in mine), f"left pending: {mine}"


def test_two_processes_share_one_journal(provider: Provider, tmp_path: Path) -> None:
    running = provider.running
    provider.set_payer(PayerModel(approve_probability=1.0, decide_after_s=(60.0, 60.0)))
    path = tmp_path / "shared.db"
    journal = SqliteJournal(path)
    references = []
    with httpx.Client(base_url=running.base_url, headers=running.headers()) as http:
        for i in range(12):
            order, key = f"shared-{i}-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
            body = {"orderId": order, "amount": 100, "currency": "DKK"}
            resp = http.post("/v10/payments", json=body,
                             headers={"X-MobilePay-Idempotency-Key": key})  # fmt: skip
            assert resp.status_code == 201
            # A crashed process's records: created, never answered (no payment id).
            journal.save(PendingRecord(order, key, "pay", 100, "DKK", 0.0), None, 0.0)
            references.append(order)
    journal.close()
    children = [spawn(running, "recover", path) for _ in range(2)]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "READY"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    settled: list[list[Any]] = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        line = next(ln for ln in out.splitlines() if ln.startswith("RECOVER "))
        settled.append(json.loads(line[8:]))
    got = [ref for outcomes in settled for ref, _, _ in outcomes]
    assert sorted(got) == sorted(references), "each record settled exactly once"
    assert all(action == "cancelled" for outcomes in settled for _, action, _ in outcomes)
    states = [p["state"] for p in provider.ledger()["payments"] if p["orderId"] in references]
    assert states == ["cancelled"] * 12
    assert SqliteJournal(path).pending() == []
