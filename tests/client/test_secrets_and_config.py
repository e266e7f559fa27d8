"""Tokens never leak; constructor arguments are checked; test mode skips sleeps."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

import payflow
from payflow import is_testing, set_testing
from payflow.client import AsyncPaymentClient, PaymentClient
from payflow.core import Policy, RetryPolicy
from payflow.core._backoff import Backoff, Jitter
from payflow.errors import InvalidRequest, JournalError, OutcomeUnknown, PayflowError

from .conftest import Provider, fast_policy, order_id

TOKEN = "s3cr3t-token-do-not-leak"


def test_package_exports_the_clients() -> None:
    assert payflow.PaymentClient is PaymentClient
    assert payflow.AsyncPaymentClient is AsyncPaymentClient


@pytest.mark.parametrize("cls", [PaymentClient, AsyncPaymentClient])
def test_repr_hides_the_token(cls: type[PaymentClient]) -> None:
    client = cls("http://127.0.0.1:9", "cid", TOKEN)
    assert TOKEN not in repr(client) and TOKEN not in str(client)
    assert "cid" in repr(client)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_url": ""}, "base_url"),
        ({"base_url": "ftp://host"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
        ({"client_id": ""}, "client_id"),
        ({"client_id": "a b"}, "client_id"),
        ({"token": ""}, "token"),
        ({"token": "bad token\n" + TOKEN}, "token"),
        ({"client_version": "1.0"}, "client_version"),
        ({"client_version": "v1.0.0"}, "client_version"),
        ({"policy": "fast"}, "policy"),
        ({"hooks": [1]}, "hooks"),
        ({"journal": 42}, "journal"),
        ({"lease": 0}, "lease"),
    ],
)
def test_constructor_arguments_are_checked(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"base_url": "http://h", "client_id": "c", "token": "t"}
    args.update(kwargs)
    with pytest.raises(InvalidRequest) as info:
        PaymentClient(**args)  # type: ignore[arg-type]
    assert info.value.field == field and isinstance(info.value, ValueError)
    assert TOKEN not in str(info.value)


def test_bad_journal_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="missing-dir"):
        PaymentClient("http://h", "c", "t", journal=tmp_path / "missing-dir" / "j.db")


def test_no_token_in_errors_or_logs(provider: Provider, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = PaymentClient(
        provider.base_url, provider.client_id, provider.token,
        policy=fast_policy(), budget=None,
    )  # fmt: skip
    provider.profile.push(*(["lost"] * 3 + ["error_before"] * 3))
    with pytest.raises(OutcomeUnknown) as info:
        client.pay(order_id(), 100)
    error = info.value
    assert error.correlation_id or error.idempotency_key
    client.recover()
    client.close()
    texts = [str(error), repr(error), repr(client), caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    assert any("payflow" in r.name for r in caplog.records)  # the flow was logged...
    for text in texts:
        assert provider.token not in text  # ...without the token


def test_set_testing_skips_sleeps_and_restores(provider: Provider) -> None:
    slow = Policy(retry=RetryPolicy(backoff=Backoff(Jitter.CONSTANT, 2.0, 2.0)))
    client = PaymentClient(provider.base_url, provider.client_id, provider.token, policy=slow)
    with set_testing(False):
        assert not is_testing()
        provider.profile.push("error_before", "error_before")
        started = time.monotonic()
        with set_testing():
            assert is_testing()
            client.pay(order_id(), 100)  # two retries of 2 s each, not waited for
        assert time.monotonic() - started < 1.5
        assert not is_testing()  # the block restored what it replaced
    assert is_testing()  # ...and so did the outer one (this suite runs in test mode)
    client.close()


def test_set_testing_refuses_a_non_bool() -> None:
    with pytest.raises(TypeError, match="True or False"):
        set_testing("yes")  # type: ignore[arg-type]


def test_errors_are_one_tree() -> None:
    from payflow import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), PayflowError)
    assert issubclass(errors.InvalidRequest, ValueError)
