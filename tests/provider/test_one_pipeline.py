"""One provider pipeline: the ASGI app and the SimPy model both go through it.

The structural check reads the two drivers' source: each builds a
:class:`payflow.provider._pipeline.Pipeline` and neither touches the ledger's
steps, draws faults or keeps a queue of its own. The behavioural check sends the
same requests, under the same fault draws, through the real server (uvicorn, over
a socket) and through the SimPy model, and compares every answer and the ledger.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path
from typing import Any

import httpx
import simpy

from payflow.core import _api as api
from payflow.core.messages import Request, Response
from payflow.provider.faults import FaultProfile, Faults
from payflow.provider.ledger import Ledger, PayerModel
from payflow.provider.testing import running_provider
from payflow.sim._provider import ProviderModel

ROOT = Path(__file__).resolve().parents[2] / "payflow"
DRIVERS = (ROOT / "provider" / "app.py", ROOT / "sim" / "_provider.py")
#: The ledger's steps: only the pipeline calls them.
LEDGER_STEPS = frozenset({"begin", "commit", "abandon", "handle"})
#: Fault draws and lookups: only the pipeline makes them.
FAULT_STEPS = frozenset({"draw", "draw_parts", "for_kind", "at"})
#: Fields of a ledger snapshot that do not depend on the clock.
TIMELESS = (
    "paymentId",
    "refundId",
    "orderId",
    "amount",
    "state",
    "capturedAmount",
    "refundedAmount",
)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def test_both_drivers_build_the_pipeline_and_do_none_of_its_steps() -> None:
    for path in DRIVERS:
        tree = _tree(path)
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module is not None
        }
        assert "payflow.provider._pipeline" in imported, path
        assert "collections" not in imported, f"{path}: a queue of its own?"
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = node.func.value
            name = receiver.attr if isinstance(receiver, ast.Attribute) else ""
            name = receiver.id if isinstance(receiver, ast.Name) else name
            step = node.func.attr
            where = f"{path}:{node.lineno}: {name}.{step}"
            assert not (step in LEDGER_STEPS and name == "ledger"), where
            assert not (step in FAULT_STEPS and name != "pipeline"), where
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert "Pipeline" in names, f"{path} does not build the pipeline"
        text = path.read_text(encoding="utf-8")
        assert "simpy.Resource" not in text and "deque" not in text, path
        # "does this fault commit" is FaultDraw's alone
        assert '"error_after", "lost"' not in text and "'error_after', 'lost'" not in text, path


def test_no_module_outside_faults_spells_the_committing_actions() -> None:
    spelled = [
        path
        for path in ROOT.rglob("*.py")
        if path.name != "faults.py"
        and any(
            isinstance(node, ast.Set | ast.Tuple | ast.List)
            and {"ok", "error_after", "lost"}
            <= {e.value for e in node.elts if isinstance(e, ast.Constant)}
            for node in ast.walk(_tree(path))
        )
    ]
    assert spelled == []


# ----------------------------------------------------------------- behaviour

CLIENT = "shop"
SEED = 7
INSTANT = PayerModel(approve_probability=0.8, decide_after_s=(0.0, 0.0))
#: Every fate a request can meet, without latency (the draws, not the clock, decide).
FAULTS = Faults(
    latency_before_s=0.0,
    latency_after_s=0.0,
    p_throttle=0.1,
    p_reset_before_commit=0.1,
    p_server_error=0.2,
    server_error_after_commit=0.5,
    p_lost_after_commit=0.1,
    capacity=4,
)


def _script(send: Any) -> list[tuple[int | None, str]]:
    """A fixed run of requests, each chosen from the answers so far; ``send(request)``
    returns ``(status or None for no answer, body)``. Returns what each one got."""
    seen: list[tuple[int | None, str]] = []
    payments: list[str] = []
    rng = random.Random(3)
    for i in range(60):
        pick = rng.random()
        request: Request
        if pick < 0.45 or not payments:
            n = rng.randrange(max(1, i))  # sometimes a key used before: a replay or a 422
            request = api.create_payment(f"order-{n}", 1000 + n, "DKK", f"key-{n}")
        elif pick < 0.65:
            request = api.get_payment(rng.choice(payments))
        elif pick < 0.8:
            request = api.capture_payment(rng.choice(payments), 500)
        elif pick < 0.9:
            request = api.cancel_payment(rng.choice(payments))
        else:
            request = api.create_refund(rng.choice(payments), 100, f"r-{i}", f"refund-{i}")
        status, body = send(request)
        made = status is not None and status < 300 and body.get("paymentId")
        if made and made not in payments:
            payments.append(made)
        seen.append((status, str(body.get("state", body.get("code", "")))))
    return seen


def _through_the_model() -> tuple[list[tuple[int | None, str]], dict[str, Any]]:
    env = simpy.Environment()
    ledger = Ledger(random.Random(f"{SEED}:ledger"), INSTANT)
    model = ProviderModel(
        env,
        ledger,
        FaultProfile.constant(FAULTS),
        random.Random(f"{SEED}:faults"),
        client_id=CLIENT,
    )

    def send(request: Request) -> tuple[int | None, dict[str, Any]]:
        reply = simpy.Event(env)
        model.submit(request, reply)
        env.run()
        if not reply.triggered or not isinstance(reply.value, Response):
            return None, {}  # lost, or the connection was reset
        return reply.value.status, dict(reply.value.body)

    return _script(send), ledger.snapshot(env.now)


def _through_the_server() -> tuple[list[tuple[int | None, str]], dict[str, Any]]:
    with running_provider(
        {CLIENT: "tok"},
        faults=FaultProfile.constant(FAULTS),
        seed=SEED,
        payer=INSTANT,
        lost_hold_s=5.0,
    ) as p:
        headers = p.headers(CLIENT)
        with httpx.Client(base_url=p.base_url, timeout=0.5) as http:

            def send(request: Request) -> tuple[int | None, dict[str, Any]]:
                extra = dict(headers)
                if request.idempotency_key is not None:
                    extra["X-MobilePay-Idempotency-Key"] = request.idempotency_key
                try:
                    r = http.request(request.method, request.path, json=request.body, headers=extra)
                except httpx.TransportError:
                    return None, {}  # lost (held until we gave up) or reset
                return r.status_code, r.json()

            seen = _script(send)
        return seen, p.ledger()


def test_the_server_and_the_model_make_the_same_ledger_from_the_same_draws() -> None:
    model_seen, model_ledger = _through_the_model()
    server_seen, server_ledger = _through_the_server()
    statuses = {status for status, _ in model_seen}
    assert {None, 200, 201, 429, 503} <= statuses  # every fate was met
    assert server_seen == model_seen
    for table in ("payments", "refunds"):
        server = [{k: v for k, v in row.items() if k in TIMELESS} for row in server_ledger[table]]
        model = [{k: v for k, v in row.items() if k in TIMELESS} for row in model_ledger[table]]
        assert server == model, table
    assert model_ledger["payments"] and model_ledger["refunds"]  # something was made
