"""The provider misbehaves on purpose (issue 11, "money safety").

Against the real server on 127.0.0.1, with profiles where a misbehaviour has
probability 1: the raw HTTP answer really is garbled / truncated / of the wrong
shape / foreign / in an unknown state / a 409 / trickled / odd, and the ledger
shows the change was made anyway. Then the draws: a profile without
misbehaviour draws exactly the random numbers the code drew before it existed.
"""

from __future__ import annotations

import json
import math
import random
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from payflow.core._api import IDEMPOTENCY_HEADER
from payflow.drivers._httpx import read_reply
from payflow.provider.faults import (
    BODY_MANGLES,
    ODD_POLL_DELAYS,
    ODD_RETRY_AFTER,
    FaultDraw,
    FaultProfile,
    Faults,
    Mangle,
    load_profile,
    parse_profile,
)
from payflow.provider.ledger import PAYMENT_STATES
from payflow.provider.misbehaviour import WireReply, client_view, wire_reply
from payflow.provider.testing import RunningProvider, running_provider

CLIENTS = {"shop": "shop-token-0123456789"}
N = 40  # requests per kind: enough for every form to show up (the seed is fixed)
#: The probability fields added for misbehaviour (``trickle_s`` is their one parameter).
NEW_PROBABILITIES = (
    "p_garbled_body",
    "p_truncated_body",
    "p_wrong_shape",
    "p_foreign_reply",
    "p_unknown_state",
    "p_conflict_after_commit",
    "p_trickle",
    "p_odd_retry_after",
    "p_odd_poll_delay",
)
CONFLICT_CODES = {"conflict", "duplicate_request", "payment_in_progress", "request_in_progress"}


def profile(**kwargs: Any) -> FaultProfile:
    base = {"latency_before_s": 0.0, "latency_after_s": 0.0, "latency_sigma": 0.0}
    return FaultProfile.constant(Faults(**{**base, **kwargs}))


@contextmanager
def serve(**kwargs: Any) -> Iterator[RunningProvider]:
    time_scale = kwargs.pop("time_scale", 1.0)
    with running_provider(CLIENTS, faults=profile(**kwargs), seed=11, time_scale=time_scale) as p:
        yield p


def order(i: int) -> dict[str, Any]:
    return {"orderId": f"order-{i}", "amount": 1000 + i, "currency": "DKK"}


def create_many(p: RunningProvider, n: int = N) -> list[httpx.Response]:
    with httpx.Client(base_url=p.base_url, headers=p.headers(), timeout=10.0) as client:
        return [
            client.post("/v10/payments", json=order(i), headers={IDEMPOTENCY_HEADER: f"key-{i}"})
            for i in range(n)
        ]


def truth(p: RunningProvider) -> dict[str, dict[str, Any]]:
    """The ledger's payments by order id; asserts one per order, with what was asked."""
    payments = p.ledger()["payments"]
    by_order = {x["orderId"]: x for x in payments}
    assert len(by_order) == len(payments)
    for order_id, x in by_order.items():
        i = int(order_id.removeprefix("order-"))
        assert (x["amount"], x["currency"]) == (1000 + i, "DKK")
    return by_order


def all_committed(p: RunningProvider, n: int = N) -> dict[str, dict[str, Any]]:
    payments = truth(p)
    assert sorted(payments) == sorted(f"order-{i}" for i in range(n))  # every change was made
    return payments


def not_json(content: bytes) -> bool:
    try:
        json.loads(content)
    except ValueError:
        return True
    return False


# ------------------------------------------------------------- the real server


def test_garbled_bodies_are_not_json_but_the_payments_were_made() -> None:
    with serve(p_garbled_body=1.0) as p:
        replies = create_many(p)
        all_committed(p)
    forms = set()
    for r in replies:
        assert r.status_code == 201
        assert r.content and not_json(r.content)
        assert int(r.headers["content-length"]) == len(r.content)
        assert read_reply(r).body == {}  # what the client makes of it
        if r.headers["content-type"].startswith("text/html"):
            forms.add("html")
            assert b"<html>" in r.content
        elif r.content.startswith(b"\x1f\x8b"):
            forms.add("bytes")
            assert r.headers["content-type"] == "application/json"  # it says JSON, it is not
        else:
            forms.add("text")
    assert forms == set(BODY_MANGLES["garbled"])


def test_truncated_bodies_are_cut_json_with_a_consistent_length() -> None:
    with serve(p_truncated_body=1.0) as p:
        replies = create_many(p)
        payments = all_committed(p)
    lengths = set()
    for i, r in enumerate(replies):
        assert r.status_code == 201
        assert int(r.headers["content-length"]) == len(r.content)
        assert r.content.startswith(b"{") and not_json(r.content)
        assert read_reply(r).body == {}
        x = payments[f"order-{i}"]
        whole = json.dumps(
            {"paymentId": x["paymentId"], "orderId": x["orderId"], "amount": x["amount"]},
            separators=(",", ":"),
        ).encode()[:-1]  # the start of the real answer
        assert whole.startswith(r.content) or r.content.startswith(whole)
        lengths.add(len(r.content))
    assert len(lengths) > N // 2  # cut at random places


def _shape(r: httpx.Response) -> str:
    if r.status_code in (202, 204):
        assert r.content == b""
        return f"empty_{r.status_code}"
    assert r.status_code == 201
    body = r.json()
    if body == []:
        return "[]"
    if body == {}:
        return "{}"
    assert isinstance(body, dict)
    if "state" not in body:
        return "no_state"
    if "paymentId" not in body:
        return "no_id"
    assert body["paymentId"] is None
    return "null_id"


def test_wrong_shapes() -> None:
    with serve(p_wrong_shape=1.0) as p:
        replies = create_many(p)
        all_committed(p)
    shapes = [_shape(r) for r in replies]
    assert set(shapes) == set(BODY_MANGLES["wrong_shape"])


def test_foreign_replies_describe_something_else() -> None:
    with serve(p_foreign_reply=1.0) as p:
        replies = create_many(p)
        payments = all_committed(p)
    seen = set()
    for i, r in enumerate(replies):
        assert r.status_code == 201
        body, sent, real = r.json(), order(i), payments[f"order-{i}"]
        if body["orderId"] != sent["orderId"]:
            seen.add("other_order")
            assert body["paymentId"] != real["paymentId"]
        elif body["paymentId"] != real["paymentId"]:
            seen.add("other_payment")
        elif body["amount"] == 10 * sent["amount"]:
            seen.add("amount_x10")
        else:
            assert body["currency"] not in (sent["currency"], None)
            seen.add("currency")
    assert seen == set(BODY_MANGLES["foreign"])


def test_unknown_states() -> None:
    with serve(p_unknown_state=1.0) as p:
        replies = create_many(p)
        payments = all_committed(p)
    states = set()
    for i, r in enumerate(replies):
        assert r.status_code == 201
        body = r.json()
        assert body["paymentId"] == payments[f"order-{i}"]["paymentId"]  # the right payment
        assert body["state"] not in PAYMENT_STATES
        states.add(body["state"])
    assert states == set(BODY_MANGLES["unknown_state"])


def test_conflict_after_commit_is_a_409_although_the_payment_was_made() -> None:
    with serve(p_conflict_after_commit=1.0) as p:
        replies = create_many(p)
        all_committed(p)
    codes = set()
    for r in replies:
        assert r.status_code == 409
        assert "location" not in r.headers
        body = r.json()
        assert body["correlationId"] == r.headers["x-correlation-id"]
        codes.add(body.get("code", ""))
    assert codes == CONFLICT_CODES | {""}


def test_odd_poll_delays() -> None:
    with serve(p_odd_poll_delay=1.0) as p:
        replies = create_many(p)
        all_committed(p)
    forms = set()
    for r in replies:
        assert r.status_code == 201
        body = r.json()
        assert body["state"] == "initiated"  # the rest of the answer is right
        if "pollDelayInMs" not in body:
            forms.add("missing")
            continue
        value = body["pollDelayInMs"]
        form = {
            (int, -1000): "negative",
            (float, 1500.5): "float",
            (str, "1000"): "string",
            (type(None), None): "null",
            (int, 2**63): "huge",
        }[(type(value), value)]
        forms.add(form)
    assert forms == set(ODD_POLL_DELAYS)


def test_odd_retry_after_on_429s_and_nothing_is_made() -> None:
    with serve(p_throttle=1.0, p_odd_retry_after=1.0) as p:
        replies = create_many(p)
        assert p.ledger()["payments"] == []
    values = set()
    for r in replies:
        assert r.status_code == 429
        raw = dict(r.headers.raw)[b"retry-after"]
        value = raw.decode("latin-1")  # sent as is: "²" is the single byte 0xB2
        assert value in ODD_RETRY_AFTER
        assert r.headers["retry-after"] == value  # httpx reads it the same way
        values.add(value)
    assert values == set(ODD_RETRY_AFTER)


def test_misbehaviour_leaves_error_answers_alone() -> None:
    everything = {name: 1.0 for name in NEW_PROBABILITIES if name != "p_trickle"}
    with serve(**everything) as p, httpx.Client(base_url=p.base_url, headers=p.headers()) as c:
        missing = c.get("/v10/payments/no-such-payment")
        bad = c.post("/v10/payments", json={"orderId": "x"}, headers={IDEMPOTENCY_HEADER: "k"})
    assert missing.status_code == 404 and missing.json()["code"] == "payment_not_found"
    assert bad.status_code == 400 and "amount" in bad.json()["message"]


def _raw_create(p: RunningProvider, i: int) -> tuple[float, float, int, bytes]:
    """POST over a plain socket: (first byte after s, last byte after s, reads, bytes)."""
    body = json.dumps(order(i)).encode()
    head = ["POST /v10/payments HTTP/1.1", "host: 127.0.0.1", "content-type: application/json"]
    head += [f"{k}: {v}" for k, v in {**p.headers(), IDEMPOTENCY_HEADER: f"key-{i}"}.items()]
    head.append(f"content-length: {len(body)}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    host, port = p.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10.0) as sock:
        started = time.monotonic()
        sock.sendall(request)
        chunks: list[bytes] = []
        first = 0.0
        while chunk := sock.recv(65536):  # the server closes after a trickled answer
            if not chunks:
                first = time.monotonic() - started
            chunks.append(chunk)
        return first, time.monotonic() - started, len(chunks), b"".join(chunks)


def test_a_trickled_answer_arrives_a_few_bytes_at_a_time_over_trickle_s() -> None:
    with serve(p_trickle=1.0, trickle_s=1.0) as p:
        first, last, reads, raw = _raw_create(p, 0)
        all_committed(p, 1)
    assert first < 0.3  # the status line starts at once ...
    assert 0.9 <= last <= 2.0  # ... the rest takes trickle_s
    assert reads >= 10  # in many small pieces
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 201 Created"
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(payload)
    assert json.loads(payload)["orderId"] == "order-0"


def test_a_trickle_is_time_scaled_and_defeats_a_per_read_timeout() -> None:
    # 2 simulated seconds at time scale 2: one real second. httpx's read timeout
    # (0.3 s) is per read, so a trickle never trips it: only a deadline would.
    with serve(p_trickle=1.0, trickle_s=2.0, time_scale=2.0) as p:
        started = time.monotonic()
        r = httpx.post(
            p.base_url + "/v10/payments",
            json=order(0),
            headers={**p.headers(), IDEMPOTENCY_HEADER: "key-0"},
            timeout=httpx.Timeout(5.0, read=0.3),
        )
        elapsed = time.monotonic() - started
        all_committed(p, 1)
    assert r.status_code == 201 and r.json()["orderId"] == "order-0"
    assert 0.9 <= elapsed <= 2.0


def test_a_trickled_mangle_is_both() -> None:
    with serve(p_trickle=1.0, trickle_s=0.3, p_garbled_body=1.0) as p:
        started = time.monotonic()
        (r,) = create_many(p, 1)
        elapsed = time.monotonic() - started
        all_committed(p, 1)
    assert r.status_code == 201 and not_json(r.content)
    assert elapsed >= 0.25


# -------------------------------------------------- what the client makes of it


@pytest.mark.parametrize(
    "mangle",
    [
        Mangle(kind, form, cut)
        for kind, forms in BODY_MANGLES.items()
        for form in forms
        for cut in (0.0, 0.37, 0.999)
    ]
    + [Mangle(poll_delay=form) for form in ODD_POLL_DELAYS],
)
def test_client_view_is_what_the_httpx_driver_sees(mangle: Mangle) -> None:
    ledger_answer = _ledger_answer()
    wire = wire_reply(ledger_answer, mangle)
    headers = dict(wire.headers)
    if wire.content_type is not None:
        headers["content-type"] = wire.content_type
    seen = read_reply(httpx.Response(wire.status, headers=headers, content=wire.payload))
    view = client_view(wire)
    assert (view.status, view.body) == (seen.status, seen.body)
    assert view.headers.items() <= seen.headers.items()


def test_a_lookup_misbehaves_item_by_item() -> None:
    lookup = _ledger_answer()
    body = {"payments": [dict(lookup.body), dict(lookup.body)], "correlationId": "c"}
    answer = type(lookup)(200, body, {"x-correlation-id": "c"})
    view = client_view(wire_reply(answer, Mangle("unknown_state", "PROCESSING")))
    assert [x["state"] for x in view.body["payments"]] == ["PROCESSING", "PROCESSING"]
    view = client_view(wire_reply(answer, Mangle(poll_delay="missing")))
    assert all("pollDelayInMs" not in x for x in view.body["payments"])


def test_wire_reply_without_mangle_or_for_an_error_is_the_ledgers_answer() -> None:
    answer = _ledger_answer()
    assert client_view(wire_reply(answer, None)) == answer
    error = type(answer)(404, {"code": "payment_not_found", "message": "m", "correlationId": "c"})
    assert client_view(wire_reply(error, Mangle("garbled", "html"))) == error
    assert wire_reply(answer, Mangle(trickle_s=5.0)) == WireReply(
        201, answer.headers, json.dumps(answer.body, separators=(",", ":")).encode()
    )


def _ledger_answer() -> Any:
    from payflow.core.messages import Response

    body = {
        "paymentId": "3f2c1a9e-0000-4000-8000-000000000001",
        "orderId": "order-1",
        "amount": 1000,
        "currency": "DKK",
        "posId": None,
        "state": "initiated",
        "pollDelayInMs": 1000,
        "refundedAmount": 0,
        "correlationId": "c0ffee00-0000-4000-8000-000000000000",
    }
    headers = {"x-correlation-id": body["correlationId"], "location": "/v10/payments/x"}
    return Response(201, body, headers)


# ------------------------------------------------------------------- the draws


def _old_lognormal(u: float, median: float, sigma: float, cap: float) -> float:
    """``payflow.provider.faults._lognormal`` before misbehaviour existed (a copy)."""
    from statistics import NormalDist

    if median <= 0:
        return 0.0
    inv = NormalDist().inv_cdf
    return min(median * math.exp(sigma * inv(min(max(u, 1e-12), 1 - 1e-12))), cap)


def old_draw_parts(f: Faults, rng: random.Random) -> tuple[float, float, str]:
    """``Faults.draw_parts`` before misbehaviour existed (commit 4a312b1), copied as the
    reference: profiles without misbehaviour must draw exactly these numbers."""
    random_ = rng.random
    u_throttle = random_()
    u_reset = random_()
    u_error = random_()
    u_after = random_()
    u_lost = random_()
    sigma, cap = f.latency_sigma, f.latency_max_s
    before = _old_lognormal(random_(), f.latency_before_s, sigma, cap)
    after = _old_lognormal(random_(), f.latency_after_s, sigma, cap)
    action = "ok"
    if u_throttle < f.p_throttle:
        action = "throttle"
    elif u_reset < f.p_reset_before_commit:
        action = "reset"
    elif u_error < f.p_server_error:
        action = "error_after" if u_after < f.server_error_after_commit else "error_before"
    elif u_lost < f.p_lost_after_commit:
        action = "lost"
    return before, after, action


STORMY = {
    "latency_before_s": 0.5,
    "latency_after_s": 0.2,
    "latency_sigma": 0.6,
    "p_throttle": 0.1,
    "p_reset_before_commit": 0.1,
    "p_server_error": 0.2,
    "p_lost_after_commit": 0.1,
}
#: The first draws of ``Faults(**STORMY)`` from ``random.Random(2024)`` and the next
#: uniform, recorded with the code of commit 4a312b1 (before misbehaviour existed).
RECORDED = [
    (0.7050692252377085, 0.13726574015402102, "ok"),
    (1.4632766773559165, 0.1484140819097717, "ok"),
    (0.7531067994667767, 0.1907460327769912, "ok"),
    (0.19520234642323755, 0.1585746815615286, "error_after"),
    (0.39377420974134336, 0.12100112239122712, "ok"),
    (0.17548805376711657, 0.1271678328411052, "ok"),
    (0.8363385615177049, 0.1774681760205423, "throttle"),
    (0.4069403454920501, 0.12150331931802774, "ok"),
]
RECORDED_NEXT = 0.49334177818512226

ZEROS = {name: 0.0 for name in NEW_PROBABILITIES}


def test_a_profile_without_misbehaviour_draws_the_recorded_stream() -> None:
    for faults in (Faults(**STORMY), Faults(**STORMY, **ZEROS, trickle_s=0.0)):
        rng = random.Random(2024)
        draws = [faults.draw_parts(rng) for _ in RECORDED]
        assert [d[:3] for d in draws] == RECORDED
        assert all(d[3] is None for d in draws)
        assert rng.random() == RECORDED_NEXT


@pytest.mark.parametrize(
    "faults",
    [
        Faults(),
        Faults(**STORMY),
        Faults(**STORMY, **ZEROS),
        Faults(**ZEROS, trickle_s=30.0, p_throttle=1.0),
        Faults(p_server_error=1.0, server_error_after_commit=0.3, latency_before_s=0.0),
        load_profile("brownout").at(12 * 3600.0),
        load_profile("lost-responses").at(13 * 3600.0),
        load_profile("slow-provider-day").at(11.5 * 3600.0),
        load_profile("outage-recovery").at(12 * 3600.0 + 600),
    ],
)
def test_zero_misbehaviour_draws_exactly_what_the_old_code_drew(faults: Faults) -> None:
    assert not faults.misbehaves
    new, old = random.Random(99), random.Random(99)
    for _ in range(2000):
        before, after, action, mangle = faults.draw_parts(new)
        assert (before, after, action) == old_draw_parts(faults, old)
        assert mangle is None
    assert new.getstate() == old.getstate()
    draw = faults.draw(new)
    assert draw == FaultDraw(*old_draw_parts(faults, old))  # type: ignore[arg-type]


def test_explicit_zeros_equal_the_defaults() -> None:
    assert Faults(**STORMY, **ZEROS) == Faults(**STORMY)
    a, b = random.Random(5), random.Random(5)
    x, y = Faults(**STORMY, **ZEROS), Faults(**STORMY)
    assert [x.draw_parts(a) for _ in range(500)] == [y.draw_parts(b) for _ in range(500)]


@pytest.mark.parametrize("name", NEW_PROBABILITIES)
def test_any_misbehaviour_takes_nine_more_uniforms_after_the_old_ones(name: str) -> None:
    faults = Faults(**STORMY, **{name: 0.3})
    assert faults.misbehaves
    new, old = random.Random(7), random.Random(7)
    for _ in range(300):
        assert faults.draw_parts(new)[:3] == old_draw_parts(faults, old)
        for _ in range(9):
            old.random()
    assert new.getstate() == old.getstate()


def test_misbehaviour_probabilities_and_where_they_apply() -> None:
    faults = Faults(
        p_throttle=0.2,
        p_server_error=0.1,
        server_error_after_commit=0.5,
        p_garbled_body=0.1,
        p_truncated_body=0.1,
        p_conflict_after_commit=0.1,
        p_trickle=0.2,
        trickle_s=4.0,
        p_odd_retry_after=0.5,
        p_odd_poll_delay=0.1,
    )
    rng = random.Random(3)
    draws = [faults.draw(rng) for _ in range(40_000)]
    ok = [d for d in draws if d.action == "ok"]
    throttled = [d for d in draws if d.action == "throttle"]
    others = [d for d in draws if d.action not in ("ok", "throttle")]
    assert all(d.mangle is None for d in others)  # errors are not mangled
    odd = [d for d in throttled if d.mangle is not None]
    assert all(d.mangle.retry_after in ODD_RETRY_AFTER for d in odd if d.mangle)
    assert len(odd) == pytest.approx(0.5 * len(throttled), rel=0.05)
    assert all(d.mangle is None or d.mangle.retry_after is None for d in ok)

    def share(test: Any) -> float:
        return sum(1 for d in ok if d.mangle is not None and test(d.mangle)) / len(ok)

    assert share(lambda m: m.body == "garbled") == pytest.approx(0.1, rel=0.1)
    assert share(lambda m: m.body == "truncated") == pytest.approx(0.9 * 0.1, rel=0.1)
    assert share(lambda m: m.body == "conflict") == pytest.approx(0.9 * 0.9 * 0.1, rel=0.1)
    assert share(lambda m: m.body == "wrong_shape") == 0
    assert share(lambda m: m.trickle_s == 4.0) == pytest.approx(0.2, rel=0.1)
    assert share(lambda m: m.poll_delay is not None) == pytest.approx(0.1, rel=0.1)
    variants = {d.mangle.variant for d in ok if d.mangle and d.mangle.body == "conflict"}
    assert variants == set(BODY_MANGLES["conflict"])


# ------------------------------------------------------------- profile files


def test_toml_profiles_take_the_new_fields_and_interpolate_them() -> None:
    p = parse_profile(
        {
            "defaults": {"trickle_s": 2.0},
            "keyframes": [
                {"at": "10:00"},
                {"at": "12:00", **{name: 0.2 for name in NEW_PROBABILITIES}, "trickle_s": 6.0},
            ],
        }
    )
    mid = p.at(11 * 3600.0)
    for name in NEW_PROBABILITIES:
        assert getattr(mid, name) == pytest.approx(0.1)
    assert mid.trickle_s == pytest.approx(4.0)
    assert mid.misbehaves and not p.at(10 * 3600.0).misbehaves


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[keyframes]]\nat = "00:00"\np_garbled_body = 1.5', "keyframes[0].p_garbled_body"),
        ('[[keyframes]]\nat = "00:00"\np_trickle = "often"', "keyframes[0].p_trickle"),
        ('[[keyframes]]\nat = "00:00"\ntrickle_s = -1.0', "keyframes[0].trickle_s"),
        (
            '[defaults]\np_odd_poll_delay = 2\n[[keyframes]]\nat = "00:00"',
            "defaults.p_odd_poll_delay",
        ),
        ('[[keyframes]]\nat = "00:00"\np_wrong_shape = true', "keyframes[0].p_wrong_shape"),
        ('[[keyframes]]\nat = "00:00"\nmisbehaves = 1', "keyframes[0].misbehaves: unknown field"),
    ],
)
def test_bad_misbehaviour_fields_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.toml") as info:
        load_profile(str(path))
    assert message in str(info.value)


def test_the_shipped_misbehaving_profile() -> None:
    # by path: the file of this checkout, whichever checkout payflow.data is installed from
    p = load_profile(str(Path(__file__).parents[2] / "data" / "faults" / "misbehaving.toml"))
    assert p.name == "misbehaving"
    assert "misbehaves" in p.description
    assert not p.at(8 * 3600.0).misbehaves  # a normal morning
    noon = p.at(12 * 3600.0)
    for name in NEW_PROBABILITIES:
        assert 0 < getattr(noon, name) <= 0.5, name
    assert noon.p_server_error == noon.p_lost_after_commit == 0


def test_shutting_down_cuts_a_trickle_short() -> None:
    import threading

    errors: list[BaseException] = []

    def call(p: RunningProvider) -> None:
        try:
            create_many(p, 1)
        except httpx.HTTPError as exc:
            errors.append(exc)

    started = time.monotonic()
    with serve(p_trickle=1.0, trickle_s=60.0) as p:
        caller = threading.Thread(target=call, args=(p,))
        caller.start()
        time.sleep(0.5)
        assert len(p.ledger()["payments"]) == 1  # made; the answer is still trickling
    caller.join(timeout=10.0)
    assert not caller.is_alive()
    assert time.monotonic() - started < 10.0
    assert errors and isinstance(errors[0], httpx.RemoteProtocolError)  # a cut answer


def test_mangling_never_changes_the_ledgers_stored_answer() -> None:
    answer = _ledger_answer()
    body = {**answer.body, "payments": [dict(answer.body)]}
    original = json.dumps(body)
    stored = type(answer)(201, body, dict(answer.headers))
    for kind, forms in BODY_MANGLES.items():
        for form in forms:
            for poll in (None, *ODD_POLL_DELAYS):
                wire_reply(stored, Mangle(kind, form, 0.5, poll))
    assert json.dumps(stored.body) == original


def test_a_client_that_leaves_mid_trickle_stops_it_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serve(p_trickle=1.0, trickle_s=1.5) as p:
        host, port = p.base_url.removeprefix("http://").split(":")
        body = json.dumps(order(0)).encode()
        head = ["POST /v10/payments HTTP/1.1", "host: x", "content-type: application/json"]
        head += [f"{k}: {v}" for k, v in {**p.headers(), IDEMPOTENCY_HEADER: "key-0"}.items()]
        head.append(f"content-length: {len(body)}")
        with socket.create_connection((host, int(port)), timeout=5.0) as sock:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            assert sock.recv(4)  # the trickle began; leave
        time.sleep(2.0)  # the trickle would be over by now
        all_committed(p, 1)
        (r,) = create_many(p, 1)  # the server is fine (a replay, trickled again)
        assert r.status_code == 201 and r.headers.get("idempotent-replayed") == "true"
    noisy = [rec for rec in caplog.records if rec.levelno >= 30]
    assert not noisy, [rec.getMessage() for rec in noisy]
