"""Issue 16 against the real server, for both clients: access tokens that expire,
the operator deciding on a long poll, and TLS."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from payflow.core.events import Attempt, OperatorAsked, Reauthenticated, Retry, repeat_kind
from payflow.core.messages import AskOperator
from payflow.errors import (
    AuthenticationFailed,
    OutcomeUnknown,
    PaymentCancelled,
    ProviderUnavailable,
)
from payflow.provider.app import TOKEN_PATH
from payflow.provider.ledger import PayerModel
from payflow.provider.testing import running_provider

from .conftest import INSTANT, MakeClient, Provider, ScriptedProfile, fast_policy, order_id

trustme = pytest.importorskip("trustme")

#: Old TLS versions are deprecated in ssl: these tests set them on purpose.
_OLD_TLS = pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")

#: The payer decides after a short while: a payment is polled a few times.
SLOWISH = PayerModel(approve_probability=1.0, decide_after_s=(0.15, 0.15))
NEVER = PayerModel(approve_probability=1.0, decide_after_s=(1000.0, 1000.0))


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    """The conftest provider, but only access tokens from ``POST /token`` are accepted."""
    profile = ScriptedProfile()
    with running_provider(faults=profile, payer=INSTANT, lost_hold_s=5.0, token_ttl=60.0) as run:
        prov = Provider(run, profile)
        yield prov
        prov.close()


class Tokens:
    """A token provider over ``POST /token``; remembers every token it handed out."""

    def __init__(self, provider: Provider, *, expiry: bool = True, bogus: bool = False) -> None:
        self.provider = provider
        self.expiry = expiry
        self.bogus = bogus
        self.fetched: list[str] = []
        self.expire_next = 0  # expire this many fetched tokens at once (in transit)

    def _form(self) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_id": self.provider.client_id,
            "client_secret": self.provider.token,
        }

    def _accept(self, body: dict[str, Any]) -> Any:
        token = "bogus-" + str(len(self.fetched)) if self.bogus else body["access_token"]
        self.fetched.append(token)
        if self.expire_next:
            self.expire_next -= 1
            self.provider.running.expire_tokens()
        return (token, body["expires_in"]) if self.expiry else token

    def __call__(self) -> Any:
        response = httpx.post(self.provider.base_url + TOKEN_PATH, data=self._form())
        response.raise_for_status()
        return self._accept(response.json())

    async def fetch_async(self) -> Any:
        async with httpx.AsyncClient() as http:
            response = await http.post(self.provider.base_url + TOKEN_PATH, data=self._form())
        response.raise_for_status()
        return self._accept(response.json())


def _kind(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["make_client"])


def _source(tokens: Tokens, kind: str) -> Callable[[], Any]:
    """Sync token provider for the sync client; async for the async one."""
    return tokens.fetch_async if kind == "async" else tokens


def _retries(events: list[Any]) -> int:
    """Retries counted as the simulation and compare count them."""
    sent: set[tuple[str, str]] = set()
    repeats = sum(1 for e in events if isinstance(e, Attempt) and repeat_kind(e, sent))
    return repeats + sum(1 for e in events if isinstance(e, Retry))


def _no_secret_in(text: str, provider: Provider, tokens: Tokens) -> None:
    for secret in [provider.token, *tokens.fetched]:
        assert secret not in text


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


# -- access tokens ---------------------------------------------------------------------------


def test_a_token_expiring_before_the_create_ends_in_one_payment(
    make_client: MakeClient, provider: Provider, request: pytest.FixtureRequest,
    debug_logs: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    tokens = Tokens(provider)
    tokens.expire_next = 1  # the first token expires on its way to the client
    events: list[Any] = []
    client = make_client(token=_source(tokens, _kind(request)), hooks=events.append)
    order = order_id()
    result = client.pay(order, 1995)
    assert result.state == "captured"
    assert [p["state"] for p in provider.payments(order)] == ["captured"]
    assert len(tokens.fetched) == 2
    assert [e.operation for e in events if isinstance(e, Reauthenticated)] == ["create"]
    assert _retries(events) == 0
    assert client.journal.pending() == []
    _no_secret_in(debug_logs.text + repr(client.client) + repr(events), provider, tokens)


def test_a_token_expiring_between_polls_ends_in_one_payment(
    make_client: MakeClient, provider: Provider, request: pytest.FixtureRequest,
    debug_logs: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    provider.set_payer(SLOWISH)
    tokens = Tokens(provider)
    events: list[Any] = []

    def hook(event: Any) -> None:
        events.append(event)
        if type(event).__name__ == "Poll" and not any(
            isinstance(e, Reauthenticated) for e in events
        ):
            provider.running.expire_tokens()  # the token expires while the payer decides

    client = make_client(token=_source(tokens, _kind(request)), hooks=hook, sleeps=True)
    order = order_id()
    assert client.pay(order, 2500).state == "captured"
    assert [p["state"] for p in provider.payments(order)] == ["captured"]
    reauth = [e.operation for e in events if isinstance(e, Reauthenticated)]
    assert reauth and set(reauth) <= {"poll", "capture"}
    assert _retries(events) == 0
    _no_secret_in(debug_logs.text + repr(events), provider, tokens)


def test_a_token_expiring_during_recover_settles_the_one_payment(
    make_client: MakeClient, provider: Provider, request: pytest.FixtureRequest,
    debug_logs: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    provider.set_payer(NEVER)
    tokens = Tokens(provider)
    events: list[Any] = []
    client = make_client(
        token=_source(tokens, _kind(request)), hooks=events.append,
        policy=fast_policy(poll_deadline=0.3, cancel_on_give_up=False),
    )  # fmt: skip
    order = order_id()
    with pytest.raises(OutcomeUnknown):
        client.pay(order, 700)
    assert len(client.journal.pending()) == 1
    provider.running.expire_tokens()
    results = client.recover()
    assert [r.action for r in results] == ["cancelled"]
    assert [p["state"] for p in provider.payments(order)] == ["cancelled"]
    assert client.journal.pending() == []
    assert [e.operation for e in events if isinstance(e, Reauthenticated)] == ["status"]
    assert _retries(events) == 0
    _no_secret_in(debug_logs.text + repr(results), provider, tokens)


def test_tokens_are_fetched_again_before_they_expire(
    make_client: MakeClient, provider: Provider, request: pytest.FixtureRequest
) -> None:
    """A token said to last 0.2 s is replaced before the server would refuse it."""
    provider.set_payer(PayerModel(approve_probability=1.0, decide_after_s=(0.3, 0.3)))
    tokens = Tokens(provider)
    events: list[Any] = []
    state = provider.running.state
    state.token_ttl = 0.2
    try:
        client = make_client(token=_source(tokens, _kind(request)), hooks=events.append,
                             sleeps=True)  # fmt: skip
        assert client.pay(order_id(), 900).state == "captured"
    finally:
        state.token_ttl = 60.0
    assert len(tokens.fetched) >= 2
    assert not any(isinstance(e, Reauthenticated) for e in events)  # never refused


def test_two_401s_in_a_row_fail_and_keep_the_record(
    make_client: MakeClient, provider: Provider, request: pytest.FixtureRequest,
    debug_logs: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    tokens = Tokens(provider, bogus=True, expiry=False)
    client = make_client(token=_source(tokens, _kind(request)))
    order = order_id()
    with pytest.raises(AuthenticationFailed) as info:
        client.pay(order, 1200)
    assert info.value.status == 401
    assert [r.state for r in client.journal.pending()] == ["recheck"]
    assert provider.payments(order) == []
    _no_secret_in(debug_logs.text + str(info.value) + repr(info.value), provider, tokens)


def test_a_failing_token_provider_sends_nothing(
    make_client: MakeClient, provider: Provider, debug_logs: pytest.LogCaptureFixture
) -> None:
    def broken() -> str:
        raise RuntimeError("the identity service is down")

    client = make_client(token=broken)
    order = order_id()
    with pytest.raises(ProviderUnavailable):
        client.pay(order, 100)
    assert provider.payments(order) == [] and client.journal.pending() == []
    assert "token provider failed" in debug_logs.text


def test_a_fixed_token_is_refused_when_tokens_expire(make_client: MakeClient) -> None:
    """With a token lifetime only issued tokens are accepted: one 401, nothing kept."""
    from payflow.errors import RequestRejected

    client = make_client()  # the configured client secret as a bearer token
    with pytest.raises(RequestRejected) as info:
        client.pay(order_id(), 100)
    assert info.value.status == 401 and client.journal.pending() == []


# -- the operator ----------------------------------------------------------------------------


def _operator(kind: str, answer: Callable[[AskOperator], Any]) -> Callable[[AskOperator], Any]:
    if kind == "sync":
        return answer

    async def ask(question: AskOperator) -> Any:
        return answer(question)

    return ask


def _token_client(make_client: MakeClient, provider: Provider, kind: str, **kw: Any) -> Any:
    return make_client(token=_source(Tokens(provider), kind), sleeps=True, **kw)


def test_the_operator_keeps_waiting_and_the_payment_goes_through(
    make_client: MakeClient, provider: Provider, request: pytest.FixtureRequest
) -> None:
    provider.set_payer(PayerModel(approve_probability=1.0, decide_after_s=(0.3, 0.3)))
    questions: list[AskOperator] = []
    events: list[Any] = []

    def keep_waiting(question: AskOperator) -> str:
        questions.append(question)
        return "continue"

    kind = _kind(request)
    operator = _operator(kind, keep_waiting)
    client = _token_client(make_client, provider, kind, hooks=events.append,
                           operator=operator, operator_interval_s=0.05)  # fmt: skip
    order = order_id()
    assert client.pay(order, 1500).state == "captured"
    assert questions and all(q.reference == order for q in questions)
    assert [e.give_up for e in events if isinstance(e, OperatorAsked)] == [False] * len(questions)


def test_the_operator_gives_up_and_the_payment_is_cancelled(
    make_client: MakeClient, provider: Provider, request: pytest.FixtureRequest
) -> None:
    provider.set_payer(NEVER)
    kind = _kind(request)
    client = _token_client(make_client, provider, kind,
                           operator=_operator(kind, lambda q: q.waited_s < 0.1),
                           operator_interval_s=0.05)  # fmt: skip
    order = order_id()
    with pytest.raises(PaymentCancelled):
        client.pay(order, 1500)
    assert [p["state"] for p in provider.payments(order)] == ["cancelled"]
    assert client.journal.pending() == []


def test_the_operator_gives_up_as_the_payer_approves_and_the_payment_stands(
    make_client: MakeClient, provider: Provider, request: pytest.FixtureRequest
) -> None:
    """Give up races an approval: the cancel is refused, the payment read and captured."""
    provider.set_payer(PayerModel(approve_probability=1.0, decide_after_s=(0.25, 0.25)))

    def give_up_late(question: AskOperator) -> bool:
        time.sleep(0.3)  # the payer approves while the operator makes up their mind
        return False

    kind = _kind(request)
    operator = _operator(kind, give_up_late)
    client = _token_client(make_client, provider, kind, operator=operator,
                           operator_interval_s=0.05)  # fmt: skip
    order = order_id()
    result = client.pay(order, 1500)
    assert result.state == "captured"
    assert [p["state"] for p in provider.payments(order)] == ["captured"]
    assert client.journal.pending() == []


# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    paths = {name: str(folder / f"{name}.pem") for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(paths["ca"])
    cert.cert_chain_pems[0].write_to_path(paths["cert"])
    cert.private_key_pem.write_to_path(paths["key"])
    return paths


@pytest.fixture(scope="module")
def https_provider(certs: dict[str, str]) -> Iterator[Any]:
    with running_provider(payer=INSTANT, ssl_certfile=certs["cert"], ssl_keyfile=certs["key"]) as p:
        yield p


def _https(make_client: MakeClient, https_provider: Any, **kw: Any) -> Any:
    return make_client(base_url=https_provider.base_url, client_id=https_provider.client_id,
                       token=https_provider.token, **kw)  # fmt: skip


def test_https_verifies_certificates_by_default(
    make_client: MakeClient, https_provider: Any
) -> None:
    assert https_provider.base_url.startswith("https://")
    client = _https(make_client, https_provider)
    with pytest.raises(ProviderUnavailable):  # a payflow error, not an ssl one
        client.pay(order_id(), 100)
    assert client.journal.pending() == []


def test_https_with_the_ca_given_pays(
    make_client: MakeClient, https_provider: Any, certs: dict[str, str]
) -> None:
    client = _https(make_client, https_provider, verify=certs["ca"])
    assert client.pay(order_id(), 100).state == "captured"


def test_https_with_verification_off_pays(make_client: MakeClient, https_provider: Any) -> None:
    client = _https(make_client, https_provider, verify=False)
    assert client.pay(order_id(), 100).state == "captured"


@_OLD_TLS
@pytest.mark.parametrize("verify", [True, False, "ca", "context"])
def test_the_client_never_offers_tls_below_1_2(
    make_client: MakeClient, https_provider: Any, certs: dict[str, str], verify: Any
) -> None:
    if verify == "ca":
        verify = certs["ca"]
    elif verify == "context":
        verify = ssl.create_default_context(cafile=certs["ca"])
        verify.minimum_version = ssl.TLSVersion.TLSv1
    client = _https(make_client, https_provider, verify=verify)
    assert client.tls_context.minimum_version == ssl.TLSVersion.TLSv1_2


def _tls11_server(certs: dict[str, str]) -> tuple[int, Callable[[], None]]:
    """A TLS server that speaks nothing above TLS 1.1 (skips if OpenSSL cannot)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.set_ciphers("ALL:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(f"this OpenSSL cannot serve TLS 1.1 ({exc})")
    context.load_cert_chain(certs["cert"], certs["key"])
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1024)
                        tls.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}")
                except (ssl.SSLError, OSError):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join(timeout=5)
        listener.close()

    return port, close


@_OLD_TLS
def test_a_server_offering_only_tls_1_1_is_refused(
    make_client: MakeClient, certs: dict[str, str], tmp_path: Path
) -> None:
    port, close = _tls11_server(certs)
    try:
        control = ssl.create_default_context(cafile=certs["ca"])
        control.set_ciphers("ALL:@SECLEVEL=0")
        control.minimum_version = ssl.TLSVersion.TLSv1_1
        control.maximum_version = ssl.TLSVersion.TLSv1_1
        try:  # the server works for a client that accepts TLS 1.1 ...
            httpx.get(f"https://127.0.0.1:{port}/", verify=control, timeout=2.0)
        except httpx.HTTPError as exc:
            pytest.skip(f"this OpenSSL cannot speak TLS 1.1 at all ({exc})")
        client = make_client(base_url=f"https://127.0.0.1:{port}", verify=certs["ca"])
        with pytest.raises(ProviderUnavailable):  # ... but not for payflow's client
            client.status("p-1")
    finally:
        close()


def test_verify_and_http_together_are_refused(provider: Provider) -> None:
    from payflow import PaymentClient
    from payflow.errors import InvalidRequest

    with httpx.Client() as http, pytest.raises(InvalidRequest) as info:
        PaymentClient(provider.base_url, "c", "t", http=http, verify=False)
    assert info.value.field == "verify"
