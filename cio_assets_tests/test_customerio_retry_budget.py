"""Retries end within CIO_RETRY_BUDGET_SECONDS, and the error names the Track URL and the budget, never the key."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator

import pytest

from cio_assets.customerio.batching import Batch, Item, pack
from cio_assets.customerio.client import DeliveryError, TrackClient
from cio_assets.customerio.ids import event_ulid
from cio_assets.defs.resources import CustomerIO

KEY = "key-never-shown"


def _batch(size: int = 1) -> Batch:
    items = [
        Item(
            f"order_placed:{n}",
            {
                "type": "person",
                "identifiers": {"id": str(n)},
                "action": "event",
                "name": "order_placed",
                "id": event_ulid(f"order_placed:{n}", 1790330400 + n),
                "timestamp": 1790330400 + n,
            },
        )
        for n in range(size)
    ]
    (batch,) = pack(items)
    return batch


def _closed_port() -> int:
    """A local port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def seeded_jitter() -> Iterator[None]:
    """Full jitter draws each wait at random, so how many attempts fit in a budget varies from run to run (now
    and then 13 of 1.5 s); a fixed seed makes the count this test bounds the same on every run."""
    state = random.getstate()
    random.seed(20261124)
    yield
    random.setstate(state)


def _client(customerio, budget: float, **options) -> TrackClient:
    options = {"rate_limit": 1000.0, "backoff_base": 0.2, "backoff_cap": 0.5, "max_attempts": 1000, **options}
    return TrackClient(
        customerio.fake.site_id, customerio.fake.api_key, customerio.url, retry_budget_seconds=budget, **options
    )


def test_an_unreachable_track_url_fails_within_the_budget_naming_url_and_budget():
    url = f"http://127.0.0.1:{_closed_port()}"
    resource = CustomerIO(site_id="site-1", api_key=KEY, track_url=url, retry_budget_seconds=2.0)

    started = time.monotonic()
    with resource.client() as client, pytest.raises(DeliveryError) as failure:
        list(client.send([_batch(12)]))
    elapsed = time.monotonic() - started

    message = str(failure.value)
    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert message.startswith(
        f"Customer.io at {url}/api/v2/batch did not accept a batch of 12 items within the 2 s retry budget "
        "(CIO_RETRY_BUDGET_SECONDS)"
    )
    assert "last: ConnectError:" in message
    assert KEY not in message
    assert failure.value.__suppress_context__ and failure.value.__cause__ is None
    assert client.stats.transport_errors == client.stats.requests >= 2


def test_a_track_url_with_credentials_is_named_without_them():
    url = f"http://proxy:{KEY}@127.0.0.1:{_closed_port()}"

    with TrackClient("site-1", KEY, url, retry_budget_seconds=0.5) as client, pytest.raises(DeliveryError) as failure:
        list(client.send([_batch()]))

    assert KEY not in str(failure.value)
    assert "Customer.io at http://127.0.0.1:" in str(failure.value)


def test_answers_of_503_for_longer_than_the_budget_stop_after_bounded_retries_then_a_new_send_succeeds(
    customerio, seeded_jitter
):
    customerio.fake.fail_next(1000, 503)

    started = time.monotonic()
    with _client(customerio, budget=1.5) as client, pytest.raises(DeliveryError) as failure:
        list(client.send([_batch()]))
    elapsed = time.monotonic() - started

    assert elapsed < 4, f"took {elapsed:.1f} s"
    assert "within the 1.5 s retry budget (CIO_RETRY_BUDGET_SECONDS)" in str(failure.value)
    assert str(failure.value).endswith("last: HTTP 503")
    assert 2 <= client.stats.requests <= 12 and client.stats.server_errors == client.stats.requests
    assert customerio.fake.events == []

    customerio.fake.reset()  # Customer.io recovers
    with _client(customerio, budget=1.5) as client:
        (result,) = client.send([_batch()])
    assert len(result.delivered) == 1 and len(customerio.fake.events) == 1


@pytest.mark.parametrize(
    ("failures", "delivered"),
    [
        # two 503s inside the budget are retried and the batch lands
        (2, True),
        # one more failure than attempts allow: the attempt limit stops it first
        (3, False),
    ],
)
def test_retries_inside_the_budget_are_limited_by_attempts(customerio, failures, delivered):
    customerio.fake.fail_next(failures, 503)

    with _client(customerio, budget=30.0, backoff_base=0.01, backoff_cap=0.05, max_attempts=3) as client:
        if delivered:
            (result,) = client.send([_batch()])
            assert len(result.delivered) == 1 and client.stats.retries == 2
        else:
            with pytest.raises(DeliveryError, match="after 3 attempts; last: HTTP 503"):
                list(client.send([_batch()]))


def test_a_retry_after_beyond_the_budget_stops_at_once_instead_of_waiting(customerio):
    customerio.fake.fail_next(1, 429, retry_after="60")

    started = time.monotonic()
    with _client(customerio, budget=2.0) as client, pytest.raises(DeliveryError) as failure:
        list(client.send([_batch()]))

    assert time.monotonic() - started < 2
    assert client.stats.requests == 1 and client.stats.throttled == 1
    assert "within the 2 s retry budget" in str(failure.value) and "last: HTTP 429" in str(failure.value)
