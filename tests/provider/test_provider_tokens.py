"""POST /token (OAuth2 client credentials) and --token-ttl on the real server."""

from __future__ import annotations

import time

import httpx
import pytest

from payflow.provider._cli import _positive
from payflow.provider.app import TOKEN_PATH
from payflow.provider.testing import running_provider

_seconds = _positive("--token-ttl")
PATH = "/v10/payments?orderId=o-1"


def _grant(p: object, secret: str | None = None) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": p.client_id,  # type: ignore[attr-defined]
        "client_secret": secret or p.token,  # type: ignore[attr-defined]
    }


def test_tokens_expire_with_the_documented_401() -> None:
    with running_provider(token_ttl=0.3) as p:
        reply = httpx.post(p.base_url + TOKEN_PATH, data=_grant(p))
        body = reply.json()
        assert reply.status_code == 200 and body["token_type"] == "Bearer"
        assert body["expires_in"] == 0.3 and reply.headers["cache-control"] == "no-store"
        headers = {**p.headers(), "Authorization": f"Bearer {body['access_token']}"}
        assert httpx.get(p.base_url + PATH, headers=headers).status_code == 200
        time.sleep(0.35)
        expired = httpx.get(p.base_url + PATH, headers=headers)
        assert expired.status_code == 401 and expired.json()["code"] == "token_expired"
        assert set(expired.json()) == {"code", "message", "correlationId"}
        assert expired.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        # With a lifetime, the configured secret is not a bearer token.
        fixed = httpx.get(p.base_url + PATH, headers=p.headers())
        assert fixed.status_code == 401 and fixed.json()["code"] == "unauthorized"


def test_token_endpoint_refuses_bad_credentials_and_grants() -> None:
    with running_provider() as p:
        bad = httpx.post(p.base_url + TOKEN_PATH, data=_grant(p, "wrong"))
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
        grant = {**_grant(p), "grant_type": "password"}
        wrong = httpx.post(p.base_url + TOKEN_PATH, data=grant)
        assert wrong.status_code == 400 and wrong.json()["error"] == "unsupported_grant_type"
        basic = httpx.post(
            p.base_url + TOKEN_PATH,
            data={"grant_type": "client_credentials"},
            auth=(p.client_id, p.token),
        )
        assert basic.status_code == 200 and "expires_in" not in basic.json()
        token = basic.json()["access_token"]
        assert p.token not in bad.text + wrong.text + basic.text
        # Without a lifetime both the issued token and the configured one are accepted.
        for bearer in (token, p.token):
            headers = {**p.headers(), "Authorization": f"Bearer {bearer}"}
            assert httpx.get(p.base_url + PATH, headers=headers).status_code == 200
        assert httpx.get(p.base_url + TOKEN_PATH).status_code == 405
        assert p.expire_tokens() == 1


def test_token_ttl_option_is_checked() -> None:
    import argparse

    assert _seconds("2.5") == 2.5
    for bad in ("0", "-1", "inf", "soon"):
        with pytest.raises(argparse.ArgumentTypeError, match="--token-ttl"):
            _seconds(bad)


def test_ssl_files_are_checked_before_serving(tmp_path: object) -> None:
    from payflow.provider._serve import serve

    with pytest.raises(ValueError, match="give both"):
        serve({"c": "t"}, ssl_certfile="cert.pem")
    with pytest.raises(ValueError, match="--ssl-certfile: no such file"):
        serve({"c": "t"}, ssl_certfile="/nonexistent.pem", ssl_keyfile="/nonexistent.pem")
