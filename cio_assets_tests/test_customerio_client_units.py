"""The client's pure parts: deterministic ids, documented limits, byte packing, Retry-After, rate limit."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import orjson
import pytest

from cio_assets.customerio.batching import Batch, Item, Refused, pack
from cio_assets.customerio.client import TokenBucket, retry_after_seconds
from cio_assets.customerio.ids import event_ulid
from cio_assets.customerio.limits import MAX_BODY_BYTES, item_problem


def _event(name="order_placed", **attributes) -> dict:
    return {"type": "person", "identifiers": {"id": "1"}, "action": "event", "name": name, "attributes": attributes}


def _identify(person_id="1", **attributes) -> dict:
    return {"type": "person", "identifiers": {"id": person_id}, "action": "identify", "attributes": attributes}


def test_event_ulids_are_deterministic_and_distinct_per_event():
    first = event_ulid("order_placed:1", 1790330400)
    assert first == event_ulid("order_placed:1", 1790330400)
    assert first != event_ulid("order_placed:2", 1790330400)
    assert len(first) == 26
    assert first[:10] == "01M3C03V80"  # the time part encodes 1790330400000 ms


@pytest.mark.parametrize(
    ("event_id", "timestamp", "expected"),
    [
        # Values python-ulid 4.1 gave (ULID.from_bytes of the same 16 bytes): ids already sent stay the same.
        ("order_placed:1", 1790330400, "01M3C03V80SK3JAGXHWZT76KDJ"),
        ("refund_issued:987654", 946684800, "00VHNCZB002WJYZ7Z3VWJDFKW6"),
        ("cart_abandoned:42", 0, "0000000000D3CK5996XZ7NVFCC"),  # the earliest time
        ("cart_abandoned:42", -5, "0000000000D3CK5996XZ7NVFCC"),  # before 1970 counts as 1970
        ("x", 281474976710, "7ZZZZZZZBG5NRHCGNQ4TR480B2"),  # the latest second a ULID's 48-bit time holds
    ],
)
def test_event_ulids_follow_the_ulid_spec(event_id, timestamp, expected):
    assert event_ulid(event_id, timestamp) == expected


def test_a_time_beyond_a_ulid_is_refused_naming_the_event():
    with pytest.raises(ValueError, match="event x: timestamp 281474976711"):
        event_ulid("x", 281474976711)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (_identify(person_id="x" * 151), "person id is 151 bytes (limit 150)"),
        (_identify(note="é" * 501), "attribute 'note' is 1002 bytes (limit 1000)"),
        (_identify(**{f"a{i}": i for i in range(301)}), "301 attributes (limit 300 per call)"),
        (_event(name="n" * 101), "event name is 101 bytes (limit 100)"),
    ],
)
def test_items_beyond_customerio_limits_are_refused_with_a_reason(payload, problem):
    assert item_problem(payload, orjson.dumps(payload)) == problem


def test_an_item_over_32_kb_is_refused_and_one_at_the_limit_fits():
    too_big = _event(items=["x" * 100] * 330)
    fits = _event(items=["x" * 100] * 300)
    assert item_problem(too_big, orjson.dumps(too_big)) == "item is 34096 bytes (limit 32000)"
    assert item_problem(fits, orjson.dumps(fits)) is None


def test_batches_are_packed_under_500_kb_and_keep_item_order():
    items = [Item(str(i), _identify(person_id=str(i), bio="b" * 900)) for i in range(1200)]

    packed = list(pack(items))

    assert all(isinstance(p, Batch) for p in packed)
    assert all(len(batch.body) < MAX_BODY_BYTES for batch in packed)
    assert all(len(batch.body) == batch.size for batch in packed)
    assert [item.key for batch in packed for item in batch.items] == [str(i) for i in range(1200)]
    assert len(packed) == 3  # about 960 bytes an item: 520 fit under 500,000 bytes
    assert orjson.loads(packed[0].body)["batch"][0]["identifiers"] == {"id": "0"}


def test_packing_refuses_what_cannot_fit_and_keeps_the_rest():
    items = [Item("ok-1", _identify()), Item("huge", _event(blob="x" * 40_000)), Item("ok-2", _identify("2"))]

    packed = list(pack(items))

    refused = [p for p in packed if isinstance(p, Refused)]
    assert [(r.item.key, r.reason.split(" (")[0]) for r in refused] == [("huge", "item is 40106 bytes")]
    assert [i.key for p in packed if isinstance(p, Batch) for i in p.items] == ["ok-1", "ok-2"]


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    in_seconds = httpx.Response(429, headers={"Retry-After": "7"})
    as_date = httpx.Response(429, headers={"Retry-After": format_datetime(datetime.now(UTC) + timedelta(seconds=30))})
    assert retry_after_seconds(in_seconds) == 7.0
    assert 28 <= retry_after_seconds(as_date) <= 30
    assert retry_after_seconds(httpx.Response(429)) is None


def test_the_token_bucket_allows_a_burst_then_the_rate():
    now = [0.0]
    bucket = TokenBucket(rate=10, clock=lambda: now[0])
    for _ in range(10):
        bucket.acquire()  # one second's worth at once
    assert bucket.tokens < 1
    now[0] += 0.5
    bucket.acquire()
    bucket.acquire()
    bucket.acquire()
    bucket.acquire()
    bucket.acquire()  # five more after half a second
    assert bucket.tokens < 1
