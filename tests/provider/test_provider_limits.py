"""Client and provider agree on limits: the ledger accepts what payflow.core._validate accepts."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from payflow.core import _validate as validate
from payflow.core.errors import InvalidRequest
from payflow.core.messages import Request, Response
from payflow.provider import ledger as ledger_module
from payflow.provider.ledger import Ledger, PayerModel

GOOD = {"orderId": "order-1", "amount": 100, "currency": "DKK"}
# characters on both sides of every pattern's edges, plus anything at all
EDGE_CHARS = "azAZ09._:-/ +%@é\n\t\x00"
texts = st.text(alphabet=st.sampled_from(EDGE_CHARS), max_size=70) | st.text(max_size=70)
others: st.SearchStrategy[Any] = (
    st.none() | st.booleans() | st.floats() | st.integers() | st.lists(st.text(), max_size=2)
)
amounts: st.SearchStrategy[Any] = (
    st.integers()
    | st.integers(-3, 3)
    | st.integers(validate.MAX_AMOUNT - 3, validate.MAX_AMOUNT + 3)
    | st.booleans()
    | st.floats()
    | st.text(max_size=12)
)


def fresh() -> Ledger:
    return Ledger(random.Random(1), PayerModel())


def accepts(check: Any, value: Any, *args: Any) -> bool:
    try:
        check(value, *args)
    except InvalidRequest:
        return False
    return True


def assert_same_verdict(r: Response, accepted: bool, field: str) -> None:
    if accepted:
        assert r.status == 201, r
    else:
        assert r.status == 400 and r.body["code"] == "invalid_field", r
        assert r.body["message"].startswith(f"{field}:"), r


def test_the_ledger_uses_the_shared_constants() -> None:
    assert ledger_module.MAX_AMOUNT is validate.MAX_AMOUNT
    source = Path(ledger_module.__file__).read_text(encoding="utf-8")
    assert "1_000_000_000" not in source and "1000000000" not in source
    assert "[A-Za-z0-9" not in source and "[A-Z]{3}" not in source


@settings(max_examples=300, deadline=None)
@given(value=texts | others, field=st.sampled_from(["orderId", "posId"]))
def test_create_references_agree(value: Any, field: str) -> None:
    r = fresh().handle("c1", Request("POST", "/v10/payments", {**GOOD, field: value}, "k"), 0)
    if field == "posId" and value is None:
        assert r.status == 201  # null means "no point of sale"
        return
    assert_same_verdict(r, accepts(validate.reference, value, field), field)


@settings(max_examples=200, deadline=None)
@given(value=texts | others)
def test_refund_reference_agrees(value: Any) -> None:
    led = fresh()
    led.payer = PayerModel(approve_probability=1.0, decide_after_s=(0.0, 0.0))
    pid = led.handle("c1", Request("POST", "/v10/payments", GOOD, "k"), 0).body["paymentId"]
    body = {"paymentId": pid, "amount": 1, "reference": value}
    r = led.handle("c1", Request("POST", "/v10/refunds", body, "rk"), 1)
    assert_same_verdict(r, accepts(validate.reference, value, "reference"), "reference")


@settings(max_examples=300, deadline=None)
@given(value=amounts)
def test_amounts_agree(value: Any) -> None:
    r = fresh().handle("c1", Request("POST", "/v10/payments", {**GOOD, "amount": value}, "k"), 0)
    assert_same_verdict(r, accepts(validate.amount, value), "amount")


@settings(max_examples=200, deadline=None)
@given(value=st.text(alphabet=st.sampled_from("ADKZadkz@[ 1é"), max_size=5) | texts | others)
def test_currencies_agree(value: Any) -> None:
    body = {**GOOD, "currency": value}
    r = fresh().handle("c1", Request("POST", "/v10/payments", body, "k"), 0)
    assert_same_verdict(r, accepts(validate.currency, value), "currency")


@settings(max_examples=300, deadline=None)
@given(value=texts)
def test_idempotency_keys_agree(value: str) -> None:
    r = fresh().handle("c1", Request("POST", "/v10/payments", GOOD, value), 0)
    if accepts(validate.idempotency_key, value):
        assert r.status == 201, r
    else:
        assert r.status == 400 and r.body["code"] == "invalid_idempotency_key", r
