"""The fake Customer.io Track API v2 batch endpoint, exercised over real HTTP with httpx.

These tests pin the fake to the documented behaviour the sync relies on (auth, 200/207/400, limits, dedup,
timestamp ordering) and prove its fault injection produces what a real client would see.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from cio_assets_tests.fake_customerio import (
    BATCH_PATH,
    MAX_REQUEST_BYTES,
    FakeCustomerIO,
    validate_batch_body,
)

ULID_A = "01ARZ3NDEKTSV4RRFFQ69G5FAV"  # the example from the ULID spec
ULID_B = "01BX5ZZKBKACTAV9WEVGEMMVRZ"


@pytest.fixture
def server(customerio) -> tuple[FakeCustomerIO, str]:
    """The session's fake (from conftest), reset for this test, and its base URL."""
    return customerio.fake, customerio.url


@pytest.fixture
def fake(server: tuple[FakeCustomerIO, str]) -> FakeCustomerIO:
    return server[0]


@pytest.fixture
def client(server: tuple[FakeCustomerIO, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[1], auth=("site-test", "key-test"), timeout=5) as client:
        yield client


def identify(person_id: str, attributes: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    item = {"type": "person", "identifiers": {"id": person_id}, "action": "identify", **extra}
    if attributes is not None:
        item["attributes"] = attributes
    return item


def event(person_id: str, name: str = "order_placed", **extra: Any) -> dict[str, Any]:
    return {"type": "person", "identifiers": {"id": person_id}, "action": "event", "name": name, **extra}


def post(client: httpx.Client, *items: dict[str, Any]) -> httpx.Response:
    return client.post(BATCH_PATH, json={"batch": list(items)})


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# -- auth and whole-request errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("auth", [None, ("site-test", "wrong"), ("other-site", "key-test")])
def test_missing_or_wrong_credentials_get_401_before_any_other_check(
    fake: FakeCustomerIO, server: tuple[FakeCustomerIO, str], auth: tuple[str, str] | None
) -> None:
    valid = httpx.post(f"{server[1]}{BATCH_PATH}", auth=auth, json={"batch": [identify("1", {"a": 1})]})
    garbage = httpx.post(f"{server[1]}{BATCH_PATH}", auth=auth, content=b"not json")

    for response in (valid, garbage):
        assert response.status_code == 401
        assert response.json()["errors"][0]["reason"] == "unauthorized"
    assert fake.people == {}
    assert [r.status for r in fake.requests] == [401, 401]


def test_unparseable_json_and_wrong_shape_get_400(fake: FakeCustomerIO, client: httpx.Client) -> None:
    bodies = [b"{not json", b'{"batch": [NaN]}', b"[]", b'{"items": []}', b'{"batch": {"type": "person"}}']

    responses = [client.post(BATCH_PATH, content=body) for body in bodies]

    assert [r.status_code for r in responses] == [400] * len(bodies)
    for response in responses:
        (error,) = response.json()["errors"]
        assert set(error) == {"reason", "field", "message"}
    assert [r.json()["errors"][0]["field"] for r in responses[3:]] == ["batch", "batch"]


def test_other_paths_are_404(fake: FakeCustomerIO, client: httpx.Client) -> None:
    assert client.post("/api/v2/entity", json={}).status_code == 404
    assert client.get(BATCH_PATH).status_code == 404
    assert [r.status for r in fake.requests] == [404, 404]


def _body_of_exactly(size: int) -> bytes:
    """A valid batch body of exactly `size` bytes: ~28 KB identify items, then trailing JSON whitespace."""
    filler = {f"attr_{n}": "x" * 900 for n in range(30)}
    items: list[dict[str, Any]] = []
    while len(compact({"batch": [*items, identify("next", filler)]})) < size:
        items.append(identify(f"p{len(items)}", filler))
    encoded = compact({"batch": items})
    return encoded + b" " * (size - len(encoded))


def test_request_of_500_kb_or_more_is_refused_whole(fake: FakeCustomerIO, client: httpx.Client) -> None:
    just_under = _body_of_exactly(MAX_REQUEST_BYTES - 1)
    at_limit = _body_of_exactly(MAX_REQUEST_BYTES)

    refused = client.post(BATCH_PATH, content=at_limit)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["reason"] == "too_large"
    assert fake.people == {}

    accepted = client.post(BATCH_PATH, content=just_under)
    assert accepted.status_code == 200
    assert len(fake.people) == len(json.loads(just_under)["batch"]) > 10


# -- 200 and 207 ------------------------------------------------------------------------------------------------


def test_valid_batch_returns_200_and_applies_identify_and_events(fake: FakeCustomerIO, client: httpx.Client) -> None:
    response = post(
        client,
        identify("42", {"email": "jane@example.com", "plan": "premium"}, timestamp=1_700_000_000),
        event("42", id=ULID_A, timestamp=1_700_000_001, attributes={"total": 12.5}),
        event("77", name="page_viewed"),
    )

    assert response.status_code == 200
    assert response.json() == {}
    assert fake.people == {"42": {"email": "jane@example.com", "plan": "premium"}, "77": {}}
    assert [(e["identifiers"]["id"], e["name"]) for e in fake.events] == [("42", "order_placed"), ("77", "page_viewed")]
    assert fake.events[0]["attributes"] == {"total": 12.5}
    (recorded,) = fake.requests
    assert (recorded.status, recorded.item_count, recorded.applied) == (200, 3, True)
    assert json.loads(recorded.body)["batch"][0]["identifiers"] == {"id": "42"}


def test_identify_merges_attributes_into_the_person(fake: FakeCustomerIO, client: httpx.Client) -> None:
    post(client, identify("1", {"a": 1, "b": 2}))
    post(client, identify("1", {"b": 3, "c": 4}))

    assert fake.people == {"1": {"a": 1, "b": 3, "c": 4}}


def test_207_lists_exactly_the_invalid_items_and_applies_the_rest(fake: FakeCustomerIO, client: httpx.Client) -> None:
    batch = [
        identify("ok-1", {"plan": "gold"}),
        identify("big", {"bio": "x" * 1001}),  # attribute value > 1000 bytes
        event("ok-1", name="n" * 101),  # event name > 100 bytes
        event("ok-1", id="not-a-ulid"),
        {"type": "person", "identifiers": {}, "action": "identify"},  # no identifier: fails the OpenAPI schema
        identify("multi", {"city": "é" * 501}),  # 501 characters but 1002 bytes
        event("ok-2", id=ULID_A),
    ]

    response = client.post(BATCH_PATH, json={"batch": batch})

    assert response.status_code == 207
    errors = response.json()["errors"]
    assert [(e["batch_index"], e["field"]) for e in errors] == [
        (1, "attributes.bio"),
        (2, "name"),
        (3, "id"),
        (4, "identifiers"),
        (5, "attributes.city"),
    ]
    assert all(set(e) == {"batch_index", "reason", "field", "message"} for e in errors)
    assert fake.people == {"ok-1": {"plan": "gold"}, "ok-2": {}}
    assert [e["identifiers"]["id"] for e in fake.events] == ["ok-2"]
    assert fake.requests[-1].status == 207


# -- dedup and ordering -----------------------------------------------------------------------------------------


def test_events_are_deduplicated_by_id(fake: FakeCustomerIO, client: httpx.Client) -> None:
    post(client, event("1", id=ULID_A), event("1", id=ULID_A), event("1"))
    post(client, event("1", id=ULID_A), event("1", id=ULID_B), event("1"))

    assert [e.get("id") for e in fake.events] == [ULID_A, None, ULID_B, None]
    assert fake.duplicate_events == 2


def test_an_older_timestamp_does_not_overwrite_newer_attributes(fake: FakeCustomerIO, client: httpx.Client) -> None:
    post(client, identify("1", {"plan": "gold", "city": "Oslo"}, timestamp=200))
    post(client, identify("1", {"plan": "silver", "country": "NO"}, timestamp=100))
    assert fake.people["1"] == {"plan": "gold", "city": "Oslo", "country": "NO"}

    post(client, identify("1", {"plan": "platinum"}, timestamp=300), identify("1", {"city": "Bergen"}, timestamp=200))
    assert fake.people["1"] == {"plan": "platinum", "city": "Bergen", "country": "NO"}


def test_update_flag_never_creates_a_person(fake: FakeCustomerIO, client: httpx.Client) -> None:
    post(client, identify("ghost", {"_update": True, "plan": "gold"}))
    assert fake.people == {}

    post(client, identify("real", {"plan": "silver"}), identify("real", {"_update": True, "plan": "gold"}))
    assert fake.people == {"real": {"plan": "gold"}}


# -- fault injection --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["1", "Wed, 21 Oct 2026 07:28:00 GMT"])
def test_fail_next_429_sends_retry_after_and_applies_nothing(
    fake: FakeCustomerIO, client: httpx.Client, retry_after: str
) -> None:
    fake.fail_next(2, 429, retry_after=retry_after)

    first, second = post(client, identify("1", {"a": 1})), post(client, identify("1", {"a": 1}))
    assert [first.status_code, second.status_code] == [429, 429]
    assert first.headers["Retry-After"] == retry_after
    assert first.json() == {"errors": [{"detail": first.json()["errors"][0]["detail"], "status": "429"}]}
    assert fake.people == {}

    assert post(client, identify("1", {"a": 1})).status_code == 200
    assert fake.people == {"1": {"a": 1}}
    assert [(r.status, r.fault, r.applied, r.item_count) for r in fake.requests] == [
        (429, "fail", False, 1),
        (429, "fail", False, 1),
        (200, None, True, 1),
    ]


def test_fail_next_5xx_without_retry_after(fake: FakeCustomerIO, client: httpx.Client) -> None:
    fake.fail_next(1, 503)

    response = post(client, event("1", id=ULID_A))

    assert response.status_code == 503
    assert "Retry-After" not in response.headers
    assert fake.events == []


def test_drop_next_is_a_transport_error_and_applies_nothing(fake: FakeCustomerIO, client: httpx.Client) -> None:
    fake.drop_next(1)

    with pytest.raises(httpx.RemoteProtocolError):
        post(client, identify("1", {"a": 1}))
    assert fake.people == {}
    assert [(r.status, r.fault, r.applied) for r in fake.requests] == [(None, "drop", False)]

    assert post(client, identify("1", {"a": 1})).status_code == 200  # the same client recovers
    assert fake.people == {"1": {"a": 1}}


def test_accept_then_drop_applies_but_the_client_sees_a_transport_error(
    fake: FakeCustomerIO, client: httpx.Client
) -> None:
    fake.accept_then_drop_next(1)

    with pytest.raises(httpx.TransportError):
        post(client, identify("1", {"a": 1}), event("1", id=ULID_A))
    assert fake.people == {"1": {"a": 1}}
    assert len(fake.events) == 1
    assert [(r.status, r.fault, r.applied) for r in fake.requests] == [(None, "accept_then_drop", True)]

    # The client's retry of the same batch is safe: identify is an upsert and the event id deduplicates.
    assert post(client, identify("1", {"a": 1}), event("1", id=ULID_A)).status_code == 200
    assert len(fake.events) == 1
    assert fake.duplicate_events == 1


def test_latency_delays_the_answer_after_the_batch_is_applied(fake: FakeCustomerIO, client: httpx.Client) -> None:
    fake.latency_seconds = 0.3

    started = time.monotonic()
    assert post(client, identify("1", {"a": 1})).status_code == 200
    assert time.monotonic() - started >= 0.3

    with pytest.raises(httpx.ReadTimeout):
        client.post(BATCH_PATH, json={"batch": [identify("2", {"b": 2})]}, timeout=0.05)
    assert "2" in fake.people  # applied although the client gave up waiting


def test_concurrent_requests_all_land(fake: FakeCustomerIO, server: tuple[FakeCustomerIO, str]) -> None:
    def send(worker: int) -> list[int]:
        with httpx.Client(base_url=server[1], auth=("site-test", "key-test"), timeout=5) as own:
            return [
                post(own, identify(f"w{worker}-{n}", {"n": n}), event(f"w{worker}-{n}")).status_code for n in range(25)
            ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = [status for batch in pool.map(send, range(8)) for status in batch]

    assert statuses == [200] * 200
    assert len(fake.people) == len(fake.events) == len(fake.requests) == 200


def test_reset_forgets_state_and_faults(fake: FakeCustomerIO, client: httpx.Client) -> None:
    post(client, identify("1", {"a": 1}, timestamp=100), event("1", id=ULID_A))
    fake.fail_next(3, 500)
    fake.latency_seconds = 1

    fake.reset()

    assert (fake.people, fake.events, fake.requests, fake.duplicate_events) == ({}, [], [], 0)
    assert post(client, identify("1", {"a": 2}, timestamp=50), event("1", id=ULID_A)).status_code == 200
    assert fake.people == {"1": {"a": 2}}  # the old timestamp and event id were forgotten too
    assert len(fake.events) == 1


# -- validate_batch_body ----------------------------------------------------------------------------------------


def test_validate_batch_body_accepts_a_well_formed_identify_and_event() -> None:
    body = {
        "batch": [
            identify("42", {"email": "jane@example.com", "vip": True, "tags": ["a", "b"]}, timestamp=1_700_000_000),
            event("42", id=ULID_A, timestamp=1_700_000_000, attributes={"total": 19.99, "items": [{"sku": "x"}]}),
            {"type": "person", "identifiers": {"email": "jane@example.com"}, "action": "identify"},
            {"type": "object", "identifiers": {"object_type_id": "1", "object_id": "acme"}, "action": "identify"},
        ]
    }

    assert validate_batch_body(body) == []


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (identify("1", {"a": 1}, timestamp="yesterday"), "timestamp"),
        (identify(1, {"a": 1}), "identifiers.id"),  # type: ignore[arg-type]
        ({"type": "person", "identifiers": {"id": "1", "email": "a@b.c"}, "action": "identify"}, "identifiers"),
        ({"type": "person", "action": "identify"}, "identifiers"),
        ({"type": "person", "identifiers": {"id": "1"}, "action": "event"}, "name"),
        ({"type": "person", "identifiers": {"id": "1"}, "action": "explode"}, "action"),
        ({"type": "company", "identifiers": {"id": "1"}, "action": "identify"}, "type"),
        ({"type": ["person"], "identifiers": {"id": "1"}, "action": "identify"}, "type"),
        (identify("1", ["not", "an", "object"]), "attributes"),  # type: ignore[arg-type]
        ("not an object", ""),
    ],
)
def test_validate_batch_body_rejects_schema_invalid_items(item: Any, field: str) -> None:
    errors = validate_batch_body({"batch": [identify("ok", {"a": 1}), item]})

    assert [(e["batch_index"], e["reason"], e["field"]) for e in errors] == [(1, "invalid", field)]


@pytest.mark.parametrize(
    ("at_limit", "over_limit", "field"),
    [
        (identify("p" * 150), identify("p" * 151), "identifiers.id"),
        (identify("1", {"a": "x" * 1000}), identify("1", {"a": "x" * 1001}), "attributes.a"),
        (identify("1", {"a": ["x" * 996]}), identify("1", {"a": ["x" * 997]}), "attributes.a"),  # JSON-serialised
        (identify("1", {"n" * 150: 1}), identify("1", {"n" * 151: 1}), "attributes." + "n" * 151),
        (
            identify("1", {f"a{n}": n for n in range(300)} | {"_update": False}),
            identify("1", {f"a{n}": n for n in range(301)}),
            "attributes",
        ),
        (event("1", name="n" * 100), event("1", name="n" * 101), "name"),
        (event("1", id=ULID_A.lower()), event("1", id="81ARZ3NDEKTSV4RRFFQ69G5FAV"), "id"),  # 128-bit overflow
        (event("1", id=ULID_A), event("1", id="01ARZ3NDEKTSV4RRFFQ69G5FAI"), "id"),  # I is not Crockford base32
        (
            identify("1", {f"a{n}": "x" * 900 for n in range(35)} | {"pad": "x" * 877}),
            identify("1", {f"a{n}": "x" * 900 for n in range(35)} | {"pad": "x" * 878}),
            "",
        ),  # the whole item: 32 KB
    ],
)
def test_validate_batch_body_enforces_documented_limits_at_the_boundary(
    at_limit: dict[str, Any], over_limit: dict[str, Any], field: str
) -> None:
    assert validate_batch_body({"batch": [at_limit]}) == []

    errors = validate_batch_body({"batch": [at_limit, over_limit]})

    assert [(e["batch_index"], e["field"]) for e in errors] == [(1, field)]


def test_validate_batch_body_reports_whole_request_problems() -> None:
    assert validate_batch_body([]) == [  # type: ignore[arg-type]
        {"batch_index": None, "reason": "invalid", "field": "", "message": "request body must be a JSON object"}
    ]
    assert validate_batch_body({"batch": "nope"})[0]["field"] == "batch"
    too_big = json.loads(_body_of_exactly(MAX_REQUEST_BYTES + 40_000))
    assert [(e["batch_index"], e["reason"]) for e in validate_batch_body(too_big)] == [(None, "too_large")]
