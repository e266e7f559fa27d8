"""The simulation drives the very flow objects the httpx client drives.

Both drivers look the flow up as ``payflow.core._flows.pay`` at call time, so a
wrapper patched in there sees the simulated backend's payments and the real
client's payment alike, and every generator they run is made from the one
code object of :func:`payflow.core._flows.pay`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from payflow.core import _flows as flows
from payflow.sim import load_scenario, run

ORIGINAL_PAY = flows.pay


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.codes: set[Any] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        flow = ORIGINAL_PAY(*args, **kwargs)
        self.codes.add(flow.gi_code)
        return flow


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    counter = Counter()
    monkeypatch.setattr(flows, "pay", counter)
    yield counter


def test_the_simulation_runs_payflow_core_flows_pay(counted: Counter) -> None:
    # A day of 25 orders, all tracked: every flow the day ran is one of theirs.
    day = load_scenario("calm-day").with_load(25)
    result = run(day, "recommended", seed=0, orders=25)
    assert counted.calls == int(result.orders["pay_flows"].sum()) > 0
    assert counted.codes == {ORIGINAL_PAY.__code__}


def test_the_httpx_client_runs_the_same_function_object(counted: Counter) -> None:
    client_module = pytest.importorskip("payflow.client")
    testing = pytest.importorskip("payflow.provider.testing")
    from payflow.provider.ledger import PayerModel

    instant = PayerModel(approve_probability=1.0, decide_after_s=(0.0, 0.0))
    with testing.running_provider(payer=instant) as provider:
        client = client_module.PaymentClient(
            provider.base_url, provider.client_id, provider.token, journal=None
        )
        with client:
            result = client.pay("same-flow-order", 1995)
    assert result.state in ("captured", "reserved")
    assert counted.calls == 1
    run("calm-day", "naive", seed=0, orders=5)
    assert counted.calls > 1
    assert counted.codes == {ORIGINAL_PAY.__code__}
