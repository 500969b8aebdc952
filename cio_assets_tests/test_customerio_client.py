"""The client against the local fake over real HTTP: partial failures, retries, exhaustion, auth."""

import pytest

from cio_assets.customerio.batching import Batch, Item, pack
from cio_assets.customerio.client import AuthenticationError, DeliveryError, TrackClient
from cio_assets.customerio.ids import event_ulid


def _client(customerio, **options) -> TrackClient:
    options = {"rate_limit": 1000.0, "backoff_base": 0.01, "backoff_cap": 0.05, **options}
    return TrackClient(
        customerio.fake.site_id, options.pop("api_key", customerio.fake.api_key), customerio.url, **options
    )


def _event(n: int, name: str = "order_placed") -> Item:
    return Item(
        f"{name}:{n}",
        {
            "type": "person",
            "identifiers": {"id": str(n)},
            "action": "event",
            "name": name,
            "id": event_ulid(f"{name}:{n}", 1790330400 + n),
            "timestamp": 1790330400 + n,
            "attributes": {"n": n},
        },
    )


def _one_batch(items: list[Item]) -> Batch:
    (batch,) = pack(items)
    return batch


def test_a_207_rejects_exactly_the_named_items(customerio):
    customerio.fake.refuse_people({"2"}, reason="suppressed", field="identifiers.id")
    with _client(customerio) as client:
        (result,) = client.send([_one_batch([_event(1), _event(2), _event(3)])])

    assert [item.key for item in result.delivered] == ["order_placed:1", "order_placed:3"]
    assert [(item.key, reason) for item, reason in result.refused] == [
        ("order_placed:2", "suppressed: identifiers.id: person 2 refused")
    ]
    assert sorted(e["identifiers"]["id"] for e in customerio.fake.events) == ["1", "3"]


def test_many_batches_in_flight_all_land_once(customerio):
    items = [_event(n) for n in range(3000)]
    batches = [batch for batch in pack(items, max_body_bytes=20_000)]

    with _client(customerio, max_in_flight=4) as client:
        results = list(client.send(batches))

    assert len(results) == len(batches) > 10
    assert sum(len(r.delivered) for r in results) == 3000
    assert len(customerio.fake.events) == 3000 and customerio.fake.duplicate_events == 0
    assert client.stats.requests == len(batches)


def test_a_batch_that_keeps_failing_stops_with_a_clear_error(customerio):
    customerio.fake.fail_next(3, 503)

    with _client(customerio, max_attempts=3) as client, pytest.raises(DeliveryError) as failure:
        list(client.send([_one_batch([_event(1)])]))

    assert "did not accept a batch of 1 items after 3 attempts; last: HTTP 503" in str(failure.value)
    assert (client.stats.requests, client.stats.retries, client.stats.server_errors) == (3, 2, 3)
    assert customerio.fake.events == []


def test_a_refused_key_stops_at_once(customerio):
    with _client(customerio, api_key="not-the-key") as client, pytest.raises(AuthenticationError) as failure:
        list(client.send([_one_batch([_event(1)])]))

    assert "not-the-key" not in str(failure.value)
    assert f"Customer.io at {customerio.url}/api/v2/batch refused" in str(failure.value)
    assert client.stats.requests == 1
