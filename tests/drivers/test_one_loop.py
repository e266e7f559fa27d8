"""One place dispatches effects: only payflow/drivers/_loop.py looks at an effect's type.

As the purity test keeps I/O out of the core, this test keeps effect dispatch in
one module: no other module of the package may ask
``isinstance(x, Call)``, compare ``type(x) is Sleep``, or key a table by an
effect class.
"""

from __future__ import annotations

import ast
import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
import simpy

import payflow
from payflow.core import Policy, Response, pay
from payflow.core.messages import AskOperator, Authenticate, Call, Forget, Save, Sleep
from payflow.drivers import ScriptedPerformer, arun, run, run_in_simpy

EFFECTS = {cls.__name__ for cls in (Call, Sleep, Save, Forget, Authenticate, AskOperator)}
PACKAGE = Path(payflow.__file__).parent
LOOP = PACKAGE / "drivers" / "_loop.py"


def _type_tests(tree: ast.AST) -> list[tuple[int, str]]:
    """Where ``tree`` asks whether something is one of the effect classes."""
    found = []
    for node in ast.walk(tree):
        names: list[ast.expr] = []
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "type"):
            names = list(node.args[1:]) if getattr(node.func, "id", None) == "isinstance" else []
        elif isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Is | ast.IsNot | ast.Eq | ast.NotEq | ast.In) for op in node.ops
        ):
            names = [node.left, *node.comparators]
        elif isinstance(node, ast.Dict):
            names = [k for k in node.keys if k is not None]
        for expr in names:
            for leaf in ast.walk(expr):
                if isinstance(leaf, ast.Name) and leaf.id in EFFECTS:
                    found.append((node.lineno, leaf.id))
    return found


def test_only_the_loop_looks_at_an_effects_type() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == LOOP:
            continue
        for line, name in _type_tests(ast.parse(path.read_text())):
            offenders.append(f"{path.relative_to(PACKAGE)}:{line} tests for {name}")
    assert offenders == []


def test_the_check_would_see_a_dispatch() -> None:
    # The scan finds each way of testing a type it forbids (so it cannot pass vacuously).
    code = (
        "if isinstance(e, Call): pass\n"
        "if type(e) is Sleep: pass\n"
        "if e.__class__ is Save: pass\n"
        "table = {Forget: 1}\n"
    )
    assert [name for _, name in _type_tests(ast.parse(code))] == ["Call", "Sleep", "Save", "Forget"]
    assert _type_tests(ast.parse(LOOP.read_text()))  # the loop itself does dispatch


def _script() -> list[Response]:
    def body(state: str) -> dict[str, Any]:
        return {"paymentId": "p-1", "orderId": "o-1", "amount": 1000, "currency": "DKK",
                "state": state, "pollDelayInMs": 200}  # fmt: skip

    return [Response(201, body("initiated")), Response(200, body("reserved")),
            Response(200, body("captured"))]  # fmt: skip


class _Async:
    """The scripted performer behind the async protocol."""

    def __init__(self, inner: ScriptedPerformer) -> None:
        self.inner = inner
        self.emit = inner.emit

    async def call(self, c: Call) -> Any:
        await asyncio.sleep(0)
        return self.inner.call(c)

    async def sleep(self, s: Sleep) -> None:
        self.inner.sleep(s)

    async def save(self, s: Save) -> None:
        self.inner.save(s)

    async def forget(self, f: Forget) -> None:
        self.inner.forget(f)

    async def authenticate(self, a: Authenticate) -> bool:
        return self.inner.authenticate(a)

    async def ask_operator(self, q: AskOperator) -> bool:
        return self.inner.ask_operator(q)


class _InSimPy:
    """The scripted performer inside SimPy: calls and sleeps take virtual time."""

    def __init__(self, env: simpy.Environment, inner: ScriptedPerformer) -> None:
        self.env, self.inner = env, inner
        self.save, self.forget, self.emit = inner.save, inner.forget, inner.emit
        self.authenticate, self.ask_operator = inner.authenticate, inner.ask_operator

    def call(self, c: Call) -> simpy.Event:
        return self.env.timeout(self.inner.latency, self.inner.call(c))

    def sleep(self, s: Sleep) -> simpy.Event:
        self.inner.sleep(s)
        return self.env.timeout(s.seconds)


def test_the_three_runners_run_one_flow_the_same_way() -> None:
    """sync, async and SimPy: the same effects in the same order, the same result."""
    logs, results = [], []
    sync = ScriptedPerformer(_script())
    results.append(run(pay("o-1", 1000, "DKK", sync.context(Policy(), random.Random(1))), sync))
    logs.append(sync.log)

    inner = ScriptedPerformer(_script())
    flow = pay("o-1", 1000, "DKK", inner.context(Policy(), random.Random(1)))
    results.append(asyncio.run(arun(flow, _Async(inner))))
    logs.append(inner.log)

    env = simpy.Environment()
    inner = ScriptedPerformer(_script())
    flow = pay("o-1", 1000, "DKK", inner.context(Policy(), random.Random(1)))
    out: list[Any] = []

    def process() -> Any:
        out.append((yield from run_in_simpy(flow, _InSimPy(env, inner))))

    env.process(process())
    env.run()
    results.append(out[0])
    logs.append(inner.log)
    assert logs[0] == logs[1] == logs[2] and "Call" in logs[0] and "Save" in logs[0]
    assert results[0] == results[1] == results[2] and results[0].state == "captured"


def test_a_flow_yielding_something_unknown_is_refused() -> None:
    def flow() -> Any:
        yield "not an effect"

    with pytest.raises(TypeError, match="neither an effect nor an event"):
        run(flow(), ScriptedPerformer([]))


def test_a_performer_failure_ends_the_flow_at_once() -> None:
    class Failing(ScriptedPerformer):
        def save(self, s: Save) -> None:
            raise RuntimeError("disk full")

    performer = Failing(_script())
    flow = pay("o-1", 1000, "DKK", performer.context(Policy(), random.Random(1)))
    with pytest.raises(RuntimeError, match="disk full"):
        run(flow, performer)
    assert flow.gi_frame is None  # closed by the loop, not left for the collector
    assert performer.calls == []  # and nothing was sent: the save comes first
