"""The per-attempt timeout is a total: connect + write + read, headers and body.

Both clients (``make_client`` runs each test sync and async) against a real
server on 127.0.0.1 that trickles its answer a byte at a time (the headers, or
the body after prompt headers) or accepts and never answers. httpx's own
timeouts restart with every byte; these tests bound the behaviour, not the
speed: an attempt ends within its timeout plus ``SLACK``, a whole operation
with its retries within the operation's deadline plus ``SLACK``, and every
connection given up on is closed by the client (nothing leaks).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from payflow import _total_timeout
from payflow.client import PaymentClient
from payflow.core import Policy, RetryPolicy, Timeouts
from payflow.core._backoff import Backoff, Jitter
from payflow.core.events import Attempt, AttemptResult
from payflow.errors import OutcomeUnknown, ProviderUnavailable
from payflow.hooks import EventLog

from .conftest import MakeClient, Provider, order_id
from .trickle import TrickleServer

SLACK = 0.3  # seconds: thread and loop scheduling on a busy machine, not speed
WRITE, READ = 0.4, 0.3


def policy(max_attempts: int = 3, deadline: float | None = 1.2) -> Policy:
    return Policy(
        retry=RetryPolicy(
            max_attempts=max_attempts,
            deadline=deadline,
            backoff=Backoff(Jitter.FULL, 0.001, 0.01),
            timeouts=Timeouts(write=WRITE, read=READ, poll=READ),
        )
    )


@pytest.fixture(params=["headers", "body", "stall"])
def server(request: pytest.FixtureRequest) -> Iterator[TrickleServer]:
    with TrickleServer(request.param) as trickle:
        yield trickle


def attempt_durations(events: EventLog) -> list[tuple[float, float]]:
    """(timeout, seconds taken) of every attempt, from the client's own events."""
    starts = events.of(Attempt)
    ends = events.of(AttemptResult)
    assert len(starts) == len(ends)
    assert all(end.outcome == "timeout" for end in ends)
    return [(s.timeout, e.at - s.at) for s, e in zip(starts, ends, strict=True)]


def test_one_attempt_ends_within_its_timeout(
    provider: Provider, make_client: MakeClient, server: TrickleServer
) -> None:
    events = EventLog()
    client = make_client(
        base_url=server.base_url, policy=policy(max_attempts=1, deadline=None), hooks=[events]
    )
    start = time.monotonic()
    with pytest.raises(ProviderUnavailable):
        client.status("pay-1")
    took = time.monotonic() - start
    assert READ <= took < READ + SLACK
    [(timeout, attempt)] = attempt_durations(events)
    assert timeout == READ and attempt < READ + SLACK
    # The client closed the connection it gave up on (the client itself is still open).
    assert server.wait_all_closed()


def test_status_with_retries_ends_within_the_deadline(
    provider: Provider, make_client: MakeClient, server: TrickleServer
) -> None:
    events = EventLog()
    client = make_client(base_url=server.base_url, policy=policy(max_attempts=6), hooks=[events])
    start = time.monotonic()
    with pytest.raises(ProviderUnavailable):
        client.status("pay-1")
    assert time.monotonic() - start < 1.2 + SLACK
    durations = attempt_durations(events)
    assert len(durations) >= 3  # retried: 0.3 s each within 1.2 s
    assert all(took < timeout + SLACK for timeout, took in durations)
    assert server.wait_all_closed()


def test_pay_with_retries_ends_within_the_deadline_and_keeps_the_record(
    provider: Provider, make_client: MakeClient, server: TrickleServer
) -> None:
    events = EventLog()
    client = make_client(base_url=server.base_url, policy=policy(deadline=1.2), hooks=[events])
    oid = order_id()
    start = time.monotonic()
    with pytest.raises(OutcomeUnknown):
        client.pay(oid, 1995)
    assert time.monotonic() - start < 1.2 + SLACK
    durations = attempt_durations(events)
    assert len(durations) >= 2
    assert all(timeout <= WRITE and took < timeout + SLACK for timeout, took in durations)
    # No attempt outlived the operation: the last one was cut to the time left.
    first, last = events.of(Attempt)[0], events.of(AttemptResult)[-1]
    assert last.at - first.at < 1.2 + SLACK
    # Cut short, the create may have reached the provider: the journal keeps it.
    [record] = client.journal.pending()
    assert record.reference == oid
    assert server.wait_all_closed()


def test_repeated_trickles_leak_no_connection_or_thread(
    provider: Provider, make_client: MakeClient
) -> None:
    with TrickleServer("body") as server:
        client = make_client(base_url=server.base_url, policy=policy(max_attempts=1))
        with pytest.raises(ProviderUnavailable):
            client.status("pay-0")  # the client's first call starts what it keeps running
        assert server.wait_all_closed()
        threads = threading.active_count()
        for i in range(8):
            with pytest.raises(ProviderUnavailable):
                client.status(f"pay-{i}")
        assert server.accepted == 9
        assert server.wait_all_closed()
        # The server's own threads end with their connections; the client adds none.
        time.sleep(0.1)
        assert threading.active_count() <= threads


def test_one_sync_client_many_threads_each_attempt_bounded() -> None:
    """The deadline belongs to the thread running the attempt: one shared client,
    attempts started at different times, each cut at its own total."""
    with (
        TrickleServer("body") as server,
        PaymentClient(
            server.base_url, "client", "token", policy=policy(max_attempts=1), budget=None
        ) as client,
    ):
        took: list[float] = []

        def status(delay: float) -> None:
            time.sleep(delay)
            start = time.monotonic()
            with pytest.raises(ProviderUnavailable):
                client.status("pay-1")
            took.append(time.monotonic() - start)

        workers = [threading.Thread(target=status, args=(i * 0.1,)) for i in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=5)
        assert len(took) == 4
        assert all(READ - 0.05 <= t < READ + SLACK for t in took), took
        assert server.wait_all_closed()


def test_default_and_given_http_clients_are_bound(provider: Provider) -> None:
    """The sync hook relies on two httpx/httpcore internals: fail loudly if they move."""
    with httpx.Client() as http:
        assert _total_timeout.bound(http)
        assert _total_timeout.bound(http)  # idempotent
        # Outside an attempt the bound backend changes nothing for the caller's requests.
        response = http.get(provider.base_url + "/_payflow/ledger")
        assert response.status_code in (401, 403)
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as mock:
        assert not _total_timeout.bound(mock)


def test_a_transport_that_cannot_be_bound_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    mock = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})))
    with caplog.at_level("WARNING", logger="payflow.client"), mock:
        PaymentClient("http://provider.test", "client", "token", http=mock).close()
    assert "cannot bound" in caplog.text
