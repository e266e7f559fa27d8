"""Fuzz the running server with malformed requests: always a 4xx with a well-formed body.

Every generated request carries at least one defect (auth, version, path,
method, query, idempotency key, body bytes, a field's type or value, size), so
every answer must be a 4xx, no answer may be a 5xx, and the ledger must not move.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payflow.core._api import IDEMPOTENCY_HEADER
from payflow.provider.ledger import MAX_AMOUNT, PayerModel
from payflow.provider.testing import RunningProvider, running_provider

ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
VERSION_RE = re.compile(r"[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}")
PAYMENT = {"orderId": "fuzz-order", "amount": 1000, "currency": "DKK"}


@dataclass
class Probe:
    method: str
    path: str
    headers: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None
    defect: str = ""


@dataclass
class Fuzzed:
    provider: RunningProvider
    client: httpx.Client
    before: dict[str, Any]
    pid: str
    rid: str
    seen: int = 0


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Fuzzed]:
    # a payer who never answers within the test, so only requests could move the ledger
    payer = PayerModel(decide_after_s=(1e9, 1e9), expire_after_s=2e9)
    with (
        running_provider(payer=payer) as p,
        httpx.Client(base_url=p.base_url, timeout=10.0) as client,
    ):
        headers = {**p.headers(), IDEMPOTENCY_HEADER: "fuzz-seed"}
        created = client.post("/v10/payments", json=PAYMENT, headers=headers).json()
        before = p.ledger()
        assert set(before) == {"payments", "refunds"}
        state = Fuzzed(p, client, before, created["paymentId"], "no-such-refund")
        yield state
        after = p.ledger()
        assert after == before, "a rejected request changed the ledger"
        assert state.seen >= 1000


header_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=80
)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
bad_amount = json_values.filter(
    lambda v: isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_AMOUNT
)
bad_currency = json_values.filter(
    lambda v: not (isinstance(v, str) and re.fullmatch(r"[A-Z]{3}", v))
)
bad_ident = json_values.filter(lambda v: not (isinstance(v, str) and ID_RE.fullmatch(v)))


def path_for(kind: str, fz: Fuzzed) -> str:
    return {
        "create": "/v10/payments",
        "get": f"/v10/payments/{fz.pid}",
        "cancel": f"/v10/payments/{fz.pid}/cancel",
        "capture": f"/v10/payments/{fz.pid}/capture",
        "refund": "/v10/refunds",
        "get_refund": f"/v10/refunds/{fz.rid}",
        "lookup": "/v10/payments?orderId=fuzz-order",
    }[kind]


@st.composite
def probes(draw: st.DrawFn) -> Probe:
    defect = draw(
        st.sampled_from(
            [
                "auth",
                "version",
                "path",
                "method",
                "query",
                "key",
                "bytes",
                "json_type",
                "field",
                "unknown_field",
                "huge",
                "missing_field",
                "deep",
                "huge_int",
            ]
        )
    )
    kind = draw(st.sampled_from(["create", "get", "cancel", "capture", "refund", "lookup"]))
    method = "GET" if kind in ("get", "lookup", "get_refund") else "POST"
    headers: dict[str, Any] = {"__auth__": True, IDEMPOTENCY_HEADER: "fuzz-key"}
    body: Any = PAYMENT if kind == "create" else None
    if kind == "refund":
        body = {"paymentId": "no-such-payment", "amount": 5, "reference": "r"}
    if kind == "capture":
        body = {"amount": 1000}
    probe = Probe(method, kind, headers, None, defect)
    if defect == "auth":
        choice = draw(st.sampled_from(["no-id", "no-auth", "wrong-token", "wrong-id", "scheme"]))
        headers["__auth__"] = choice
        headers["__junk__"] = draw(header_text)
    elif defect == "version":
        headers["__version__"] = draw(header_text.filter(lambda v: not VERSION_RE.fullmatch(v)))
    elif defect == "path":
        tail = draw(st.text(alphabet=string.ascii_letters + string.digits + "/-_.%~", max_size=40))
        probe.path = "/" + draw(st.sampled_from(["x", "v11", "v10x", "_payflowx"])) + "/" + tail
        probe.method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
    elif defect == "method":
        probe.method = draw(
            st.sampled_from(["PUT", "DELETE", "PATCH"])
            | (st.just("GET") if method == "POST" else st.just("POST"))
        )
        if kind in ("get", "lookup") and probe.method == "POST":
            probe.method = "PUT"
    elif defect == "query":
        q = draw(st.text(alphabet=string.ascii_letters + "=&%+", min_size=1, max_size=30))
        if kind == "lookup":
            probe.path = (
                "/v10/payments?"
                + draw(
                    st.sampled_from(
                        ["", "orderId=&", "orderId=a&orderId=b", "order=1&", "orderId=%20"]
                    )
                )
                + q
            )
        else:
            probe.path = "?" + q  # appended below
    elif defect == "key":
        kind = probe.method = "POST"
        probe_kind = draw(st.sampled_from(["create", "refund"]))
        probe.path = probe_kind
        if probe_kind == "refund":
            body = {"paymentId": "no-such-payment", "amount": 5, "reference": "r"}
        else:
            body = PAYMENT
        value = draw(st.none() | header_text.filter(lambda v: not KEY_RE.fullmatch(v)))
        headers[IDEMPOTENCY_HEADER] = value
    elif defect == "bytes":
        probe.method = "POST"
        probe.path = draw(st.sampled_from(["create", "refund", "capture", "cancel"]))
        raw = draw(st.binary(max_size=200))
        try:
            ok = not raw.strip() or isinstance(json.loads(raw), dict)
        except ValueError:
            ok = False
        probe.content = b"{" + raw if ok else raw
        body = None
    elif defect == "json_type":
        probe.method = "POST"
        probe.path = draw(st.sampled_from(["create", "refund", "capture", "cancel"]))
        body = draw(json_values.filter(lambda v: not isinstance(v, dict) and v is not None))
    elif defect == "field":
        probe.method = "POST"
        probe.path = draw(st.sampled_from(["create", "refund", "capture"]))
        if probe.path == "create":
            name = draw(st.sampled_from(["orderId", "amount", "currency", "posId"]))
            strategy = {"amount": bad_amount, "currency": bad_currency}.get(name, bad_ident)
            if name == "posId":  # null means "no point of sale", as the provider answers it
                strategy = strategy.filter(lambda v: v is not None)
            body = {**PAYMENT, name: draw(strategy)}
        elif probe.path == "refund":
            name = draw(st.sampled_from(["paymentId", "amount", "reference"]))
            body = {"paymentId": "p", "amount": 1, "reference": "r"}
            body[name] = draw(bad_amount if name == "amount" else bad_ident)
        else:
            body = {"amount": draw(bad_amount)}
    elif defect == "unknown_field":
        probe.method = "POST"
        probe.path = draw(st.sampled_from(["create", "refund", "capture", "cancel"]))
        base = {
            "create": PAYMENT,
            "refund": {"paymentId": "p", "amount": 1, "reference": "r"},
            "capture": {},
            "cancel": {},
        }[probe.path]
        name = draw(
            st.text(min_size=1, max_size=20).filter(
                lambda n: (
                    n not in ("orderId", "amount", "currency", "posId", "paymentId", "reference")
                )
            )
        )
        body = {**base, name: draw(json_values)}
    elif defect == "huge":
        probe.method = "POST"
        probe.path = draw(st.sampled_from(["create", "refund", "capture"]))
        probe.content = b'{"orderId": "' + b"x" * (64 * 1024 + draw(st.integers(1, 5000))) + b'"}'
        body = None
    elif defect == "missing_field":
        probe.method = "POST"
        probe.path = draw(st.sampled_from(["create", "refund"]))
        full = (
            PAYMENT if probe.path == "create" else {"paymentId": "p", "amount": 1, "reference": "r"}
        )
        drop = draw(st.sampled_from(sorted(full)))
        body = {k: v for k, v in full.items() if k != drop}
    elif defect == "deep":  # valid JSON nested past the limit (up to Python's own)
        probe.method = "POST"
        probe.path = draw(st.sampled_from(["create", "refund", "capture", "cancel"]))
        depth = draw(st.integers(33, 3000))
        opens = draw(st.text(alphabet="[{", min_size=depth, max_size=depth))
        inner = b"1"
        for bracket in reversed(opens):
            inner = b"[" + inner + b"]" if bracket == "[" else b'{"k":' + inner + b"}"
        name = draw(st.sampled_from(["orderId", "amount", "paymentId", "x"]))
        probe.content = b'{"' + name.encode() + b'":' + inner + b"}"
        body = None
    elif defect == "huge_int":  # past int_max_str_digits, either sign, in any field
        probe.method = "POST"
        probe.path = draw(st.sampled_from(["create", "refund", "capture"]))
        digits = b"9" * draw(st.integers(4301, 20_000))
        number = (b"-" if draw(st.booleans()) else b"") + digits
        name = draw(st.sampled_from(["orderId", "amount", "currency", "paymentId", "x"]))
        probe.content = b'{"' + name.encode() + b'":' + number + b"}"
        body = None
    if probe.content is None and body is not None and probe.method != "GET":
        probe.content = json.dumps(body).encode()
    return probe


def resolve(probe: Probe, fz: Fuzzed) -> tuple[str, str, dict[str, Any], bytes | None]:
    path = probe.path
    if path.startswith("?"):
        path = path_for("get", fz) + path
    elif not path.startswith("/"):
        path = path_for(path, fz)
    p = fz.provider
    headers: dict[str, Any] = {}
    auth = probe.headers.pop("__auth__", True)
    junk = probe.headers.pop("__junk__", "junk")
    version = probe.headers.pop("__version__", "1.0.0")
    good = p.headers()
    if auth is True:
        headers.update(good)
    else:
        headers["x-mobilepay-client-system-version"] = "1.0.0"
        if auth != "no-id":
            headers["x-ibm-client-id"] = p.client_id if auth != "wrong-id" else junk or "x"
        if auth == "wrong-token":
            headers["Authorization"] = f"Bearer {junk}x"
        elif auth == "scheme":
            headers["Authorization"] = f"Token {p.token}"
        elif auth == "wrong-id":
            headers["Authorization"] = f"Bearer {p.token}"
    headers["x-mobilepay-client-system-version"] = version
    if auth is not True and version == "1.0.0":
        pass
    for name, value in probe.headers.items():
        if value is not None:
            headers[name] = value
    return probe.method, path, headers, probe.content


@settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(probe=probes())
def test_malformed_requests_never_5xx(fuzzed: Fuzzed, probe: Probe) -> None:
    method, path, headers, content = resolve(probe, fuzzed)
    if not headers.get("x-mobilepay-client-system-version"):
        headers.pop("x-mobilepay-client-system-version", None)
    r = fuzzed.client.request(method, path, headers=headers, content=content)
    fuzzed.seen += 1
    assert r.status_code < 500, (probe.defect, r.status_code, r.text)
    assert 400 <= r.status_code < 500, (probe.defect, method, path, r.status_code, r.text)
    body = r.json()
    assert set(body) == {"code", "message", "correlationId"}, body
    assert all(isinstance(body[k], str) and body[k] for k in body)
    assert r.headers["x-correlation-id"] == body["correlationId"]
    assert fuzzed.provider.token not in r.text
