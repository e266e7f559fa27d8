"""What a misbehaving provider sends instead of the ledger's answer (pure).

:func:`wire_reply` turns the ledger's :class:`~payflow.core.messages.Response`
and a :class:`~payflow.provider.faults.Mangle` into the status, headers and
bytes the ASGI app sends. :func:`client_view` is what payflow's httpx drivers
make of those bytes (``Engine.outcome``: a body that is not a JSON object
becomes ``{}``), and :func:`seen_reply` both at once: the SimPy provider model
hands flows exactly what the real client would have seen.

Only 2xx answers are mangled (an error the ledger made is sent as it is);
trickling (``Mangle.trickle_s``) and odd ``Retry-After`` values (on the 429s the
fault profile makes) are the transport's business, not this module's.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from payflow.core.messages import Response, json_object
from payflow.provider.faults import ODD_POLL_DELAY_VALUES, Mangle

__all__ = ["JSON_TYPE", "WireReply", "client_view", "seen_reply", "wire_reply"]

#: The content type of every JSON answer.
JSON_TYPE: Final = "application/json"

_HTML_PAGE: Final = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>Bad Gateway</h1><p>The upstream server returned an invalid response."
    b"</p><hr><address>nginx</address></body></html>\n"
)
#: Garbled bytes start like a gzip stream (a body compressed without saying so),
#: which is never valid UTF-8, so never JSON.
_GZIP_MAGIC: Final = b"\x1f\x8b\x08\x00"
_CONFLICT_MESSAGE: Final = "request: conflicts with the current state of the payment"


@dataclass(frozen=True, slots=True)
class WireReply:
    """An answer as sent: ``headers`` without ``content-type``/``content-length``
    (``content_type`` None: none is sent; the length is ``len(payload)``)."""

    status: int
    headers: Mapping[str, str]
    payload: bytes
    content_type: str | None = JSON_TYPE


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _made_up_id(seed: float, salt: str) -> str:
    return str(uuid.UUID(int=random.Random(f"{seed}:{salt}").getrandbits(128), version=4))


def _rewrite(body: Mapping[str, Any], fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A copy of ``body`` with ``fn`` applied to it and to each item of ``payments``
    (the order lookup's list), so a lookup misbehaves like a single payment."""
    out = dict(body)
    fn(out)
    items = out.get("payments")
    if isinstance(items, list):
        copies = []
        for item in items:
            if isinstance(item, Mapping):
                item = dict(item)
                fn(item)
            copies.append(item)
        out["payments"] = copies
    return out


def _odd_poll_delay(form: str) -> Callable[[dict[str, Any]], None]:
    def apply(d: dict[str, Any]) -> None:
        if "pollDelayInMs" in d:
            if form == "missing":
                del d["pollDelayInMs"]
            else:
                d["pollDelayInMs"] = ODD_POLL_DELAY_VALUES[form]

    return apply


def _wrong_shape(form: str) -> Callable[[dict[str, Any]], None]:
    def apply(d: dict[str, Any]) -> None:
        if form == "no_state":
            d.pop("state", None)
        else:
            for key in ("paymentId", "refundId"):
                if key in d:
                    if form == "no_id":
                        del d[key]
                    else:  # null_id
                        d[key] = None

    return apply


def _foreign(form: str, seed: float) -> Callable[[dict[str, Any]], None]:
    def apply(d: dict[str, Any]) -> None:
        if form == "currency" and isinstance(d.get("currency"), str):
            d["currency"] = "EUR" if d["currency"] != "EUR" else "DKK"
            return
        if form == "other_order":
            for key in ("paymentId", "refundId"):
                if key in d:
                    d[key] = _made_up_id(seed, key)
            if "orderId" in d:
                d["orderId"] = "other-" + _made_up_id(seed, "orderId")[:8]
            return
        if form == "other_payment" and "paymentId" in d:
            d["paymentId"] = _made_up_id(seed, "paymentId")
            return
        if isinstance(d.get("amount"), int):  # amount_x10, and the fallback of the others
            d["amount"] *= 10

    return apply


def _unknown_state(state: str) -> Callable[[dict[str, Any]], None]:
    def apply(d: dict[str, Any]) -> None:
        if "state" in d:
            d["state"] = state

    return apply


def wire_reply(response: Response, mangle: Mangle | None) -> WireReply:
    """What the provider sends for the ledger's ``response`` under ``mangle``."""
    status, body = response.status, response.body
    headers = dict(response.headers)
    if mangle is None or not 200 <= status < 300:
        return WireReply(status, headers, _dumps(body))
    if mangle.poll_delay is not None:
        body = _rewrite(body, _odd_poll_delay(mangle.poll_delay))
    kind, form, cut = mangle.body, mangle.variant, mangle.cut
    if kind is None:
        return WireReply(status, headers, _dumps(body))
    if kind == "garbled":
        if form == "html":
            return WireReply(status, headers, _HTML_PAGE, "text/html; charset=utf-8")
        if form == "text":
            return WireReply(status, headers, b"OK", "text/plain; charset=utf-8")
        noise = random.Random(int(cut * 2**53)).randbytes(28)
        return WireReply(status, headers, _GZIP_MAGIC + noise)
    if kind == "truncated":
        text = _dumps(body)
        keep = 1 + int(cut * (len(text) - 1))  # 1 .. len - 1 bytes: never the whole object
        return WireReply(status, headers, text[:keep])
    if kind == "wrong_shape":
        if form == "[]":
            return WireReply(status, headers, b"[]")
        if form == "{}":
            return WireReply(status, headers, b"{}")
        if form == "empty_202":
            return WireReply(202, headers, b"", None)
        if form == "empty_204":
            return WireReply(204, headers, b"", None)
        return WireReply(status, headers, _dumps(_rewrite(body, _wrong_shape(form))))
    if kind == "foreign":
        return WireReply(status, headers, _dumps(_rewrite(body, _foreign(form, cut))))
    if kind == "unknown_state":
        return WireReply(status, headers, _dumps(_rewrite(body, _unknown_state(form))))
    # conflict: a 409 although the change was made
    cid = body.get("correlationId") or headers.get("x-correlation-id") or "unknown"
    error: dict[str, Any] = {"code": form} if form else {}
    error.update(message=_CONFLICT_MESSAGE, correlationId=cid)
    kept = {k: v for k, v in headers.items() if k.lower() != "location"}
    return WireReply(409, kept, _dumps(error))


def client_view(reply: WireReply) -> Response:
    """What payflow's drivers make of ``reply``: the same decoding as the httpx
    clients (:func:`payflow.core.messages.json_object`)."""
    return Response(reply.status, json_object(reply.payload), dict(reply.headers))


def seen_reply(response: Response, mangle: Mangle | None) -> Response:
    """``client_view(wire_reply(response, mangle))``: the SimPy model's answer."""
    return client_view(wire_reply(response, mangle))
