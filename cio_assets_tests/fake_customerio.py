"""A faithful local fake of Customer.io's Track API v2 `POST /api/v2/batch`, served over real HTTP.

Tests never reach the internet, so the real httpx client talks to this fake instead. It follows the
documentation, not guesses: request items are validated against Customer.io's own OpenAPI 3.1 document
(a copy ships in `openapi/customer-io-track-api-openapi.json`, "[TRACK-SPEC]"), and the limits the
document only states in prose (sizes, counts, ULIDs) are enforced by hand below, each citing its source.
"[NOTES] §n" cites the team's reference notes on the Customer.io APIs (shared/reference/customerio-api.md).

Usage:
    fake = FakeCustomerIO()
    with serve(fake) as base_url:  # "http://127.0.0.1:PORT"
        httpx.post(f"{base_url}/api/v2/batch", auth=("site-test", "key-test"), json={"batch": [...]})
    fake.people, fake.events, fake.requests  # what landed

Fault injection (`fail_next`, `drop_next`, `accept_then_drop_next`, `latency_seconds`) simulates the
failures a sync must survive: throttling, 5xx, lost connections and lost responses.

The App API's read-back (`POST /v1/customers/attributes`, `GET /v1/customers/{id}/attributes`, Bearer
`app_api_key`, 10 requests/s answering 429 + Retry-After) is served from `people`, every attribute as a
string; each answer is validated against the document's `customerAttributesObject`. `corrupt_person` and
`forget_person` change a profile behind the pipeline's back; `throttle_app_next` queues 429s.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import json
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

import uvicorn
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["BATCH_PATH", "FakeCustomerIO", "RecordedRequest", "openapi_document_path", "serve", "validate_batch_body"]

BATCH_PATH = "/api/v2/batch"
OPENAPI_FILENAME = "customer-io-track-api-openapi.json"
OPENAPI_ENV = "CIO_OPENAPI_DIR"

# [TRACK-SPEC] /api/v2/batch: "Your batch request must be smaller than 500kb. Each of the requests within the
# batch must also be 32kb or smaller." KB is read as 1024 bytes (the brief's choice): the lenient reading, so a
# client that keeps to the stricter 1000-byte reading is never refused here, while anything past the binary
# limit still is. The request limit is strict (< 500 KB), the item limit inclusive (<= 32 KB).
MAX_REQUEST_BYTES = 500 * 1024
MAX_ITEM_BYTES = 32 * 1024
# [TRACK-SPEC] info, "Customer limits": ID 150 bytes, attribute name 150 bytes, attribute value 1000 bytes,
# "Unique attributes 300: Max number of attributes allowed per person or Identify call". "Object and
# relationship limits": object ID 150 bytes, same attribute limits.
MAX_ID_BYTES = 150
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1000
MAX_ATTRIBUTES_PER_IDENTIFY = 300
# [TRACK-SPEC] info, "Track API Event limits": event name 100 bytes, event data 100000 bytes.
MAX_EVENT_NAME_BYTES = 100
MAX_EVENT_DATA_BYTES = 100_000
# [TRACK-SPEC] person_event.id: "A valid ULID used to deduplicate events." A ULID is 26 Crockford base32
# characters; the first is at most 7 because 26 characters carry 130 bits for a 128-bit value. The ULID spec
# says decoding is case-insensitive, so lowercase is accepted (I, L, O and U are never valid).
ULID_PATTERN = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", re.IGNORECASE)

# `_update` is a control flag, not an attribute: [TRACK-SPEC] identify_person.attributes._update "If `true`,
# update only existing people ... If no person matches the identifiers, the request does nothing."
UPDATE_FLAG = "_update"
# [TRACK-SPEC] person_common.identifiers: "one of `id`, `email`, `phone`, or `cio_id`".
PERSON_IDENTIFIERS = ("id", "email", "phone", "cio_id")
_DROP_CONNECTION = "fake_customerio.drop_connection"

# The App API ([NOTES] §6): Bearer auth; up to 100 ids per POST, unknown ids left out; 10 requests/s, and a 429
# whose `Retry-After` is an integer >= 1 ([NOTES] §4, [TRACK-SPEC newer mirror] components.responses.429).
APP_PEOPLE_PATH = "/v1/customers/attributes"
APP_PERSON_PATH = "/v1/customers/{customer_id}/attributes"
APP_MAX_IDS = 100
APP_RATE_LIMIT = 10

ErrorDict = dict[str, Any]


# --------------------------------------------------------------------------------------------------------------
# The OpenAPI document and the item validator (built once per process)
# --------------------------------------------------------------------------------------------------------------


def openapi_document_path() -> Path:
    """Where the Track OpenAPI document lives: $CIO_OPENAPI_DIR (a directory, or the file itself), else the
    copy shipped with the tests in `openapi/`."""
    configured = os.environ.get(OPENAPI_ENV)
    if configured:
        path = Path(configured)
        return path / OPENAPI_FILENAME if path.is_dir() else path
    return Path(__file__).resolve().parent / "openapi" / OPENAPI_FILENAME


@dataclass(frozen=True)
class _ItemSchema:
    """The batch item schema from the OpenAPI document, plus one validator per alternative.

    `items` is the exact `anyOf` under requestBody.schema.properties.batch.items and decides validity. The
    document marks each group with `discriminator: {propertyName: action}`, and every alternative pins `type`
    and `action` with an `enum`; `branches` maps that pair to its alternatives. Validating one branch is about
    twice as fast as the whole `anyOf` and gives a precise error message, but it only ever proves an item
    valid: a failure is confirmed against `items`, so the verdict is always the document's.
    """

    items: Draft202012Validator
    branches: dict[tuple[str, str], list[Draft202012Validator]]

    def error(self, item: Any) -> ErrorDict | None:
        """The schema error for one item, or None when the document accepts it."""
        candidates = self._candidates(item)
        if any(branch.is_valid(item) for branch in candidates) or self.items.is_valid(item):
            return None
        if candidates:
            return _schema_error(best_match(e for branch in candidates for e in branch.iter_errors(item)))
        return self._discriminator_error(item)

    def _candidates(self, item: Any) -> list[Draft202012Validator]:
        if not isinstance(item, dict):
            return []
        kind, action = item.get("type"), item.get("action")
        if not (isinstance(kind, str) and isinstance(action, str)):
            return []
        return self.branches.get((kind, action), [])

    def _discriminator_error(self, item: Any) -> ErrorDict:
        if not isinstance(item, dict):
            return _error("invalid", "", f"batch item must be an object, got {type(item).__name__}")
        kind, action = item.get("type"), item.get("action")
        types = sorted({t for t, _ in self.branches})
        if kind not in types:
            return _error("invalid", "type", f"{kind!r} is not one of {types}")
        actions = sorted(a for t, a in self.branches if t == kind)
        return _error(
            "invalid", "action", f"{action!r} is not a valid action for type {kind!r}; expected one of {actions}"
        )


def _schema_error(error: ValidationError | None) -> ErrorDict:
    if error is None:  # cannot happen for an invalid item; kept so the type checker and readers need not trust it
        return _error("invalid", "", "item does not match the OpenAPI schema")
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        path += missing[:1]
    return _error("invalid", ".".join(path), error.message[:500])


@functools.cache
def _item_schema() -> _ItemSchema:
    path = openapi_document_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"Customer.io Track OpenAPI document not found at {path}. Set {OPENAPI_ENV} to the directory holding "
            f"{OPENAPI_FILENAME} (a copy ships in cio_assets_tests/openapi/)."
        )
    document = json.loads(path.read_text(encoding="utf-8"))
    # The document is one resource under a private URI, so the `#/components/schemas/...` refs inside any
    # subschema resolve against the document itself.
    base = "urn:customerio:track-openapi"
    registry: Registry = Registry().with_resource(base, Resource.from_contents(document, DRAFT202012))
    pointer = "/paths/~1api~1v2~1batch/post/requestBody/content/application~1json/schema/properties/batch/items"

    def validator(ref: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": f"{base}#{ref}"}, registry=registry)

    items_schema = _resolve_pointer(document, pointer)
    branches: dict[tuple[str, str], list[Draft202012Validator]] = {}
    for ref in _branch_refs(items_schema):
        schema = _resolve_pointer(document, ref.removeprefix("#"))
        for pair in _discriminator_pairs(document, schema):
            branches.setdefault(pair, []).append(validator(ref.removeprefix("#")))
    return _ItemSchema(items=validator(pointer), branches=branches)


def _resolve_pointer(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for token in pointer.strip("/").split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def _branch_refs(schema: dict[str, Any]) -> Iterator[str]:
    """The `$ref`s of every alternative in the (nested) `anyOf` of the batch item schema."""
    if "$ref" in schema:
        yield schema["$ref"]
    for alternative in schema.get("anyOf", []):
        yield from _branch_refs(alternative)


def _discriminator_pairs(document: dict[str, Any], schema: dict[str, Any]) -> list[tuple[str, str]]:
    types = _enum_of(document, schema, "type")
    actions = _enum_of(document, schema, "action")
    return [(kind, action) for kind in types for action in actions]


def _enum_of(document: dict[str, Any], schema: dict[str, Any], prop: str) -> set[str]:
    """The `enum` a schema (through `$ref` and `allOf`) puts on one property."""
    if "$ref" in schema:
        schema = _resolve_pointer(document, schema["$ref"].removeprefix("#"))
    values = set(schema.get("properties", {}).get(prop, {}).get("enum", []))
    for part in schema.get("allOf", []):
        values |= _enum_of(document, part, prop)
    return values


# --------------------------------------------------------------------------------------------------------------
# Validation: documented limits and the public `validate_batch_body`
# --------------------------------------------------------------------------------------------------------------


def _error(reason: str, field: str, message: str) -> ErrorDict:
    return {"reason": reason, "field": field, "message": message}


def _compact_json(value: Any) -> bytes:
    """How a client serialises JSON on the wire (compact, UTF-8, like orjson); used to measure byte limits."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _value_bytes(value: Any) -> int:
    # Strings count as their UTF-8 bytes. How nested values count is undocumented ([NOTES] §5.3 "presumably
    # covers a serialized nested value"), so other values count as their compact JSON.
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, int) and not isinstance(value, bool):
        return len(str(value))  # the same text JSON writes, without the cost of json.dumps
    return len(_compact_json(value))


def item_error(item: Any) -> ErrorDict | None:
    """Why Customer.io would refuse one batch item (`reason`, `field`, `message`), or None if it is valid."""
    try:
        encoded = _compact_json(item)
    except (TypeError, ValueError) as exc:
        return _error("invalid", "", f"item is not JSON-serialisable: {exc}")
    if len(encoded) > MAX_ITEM_BYTES:
        # [TRACK-SPEC] /api/v2/batch: "Each of the requests within the batch must also be 32kb or smaller."
        return _error(
            "too_large", "", f"item is {len(encoded)} bytes; each batch item must be at most {MAX_ITEM_BYTES}"
        )
    problem = _encoded_item_error(encoded)
    return dict(problem) if problem is not None else None  # a copy: the cached dict must not be mutated


@functools.lru_cache(maxsize=16384)
def _encoded_item_error(encoded: bytes) -> ErrorDict | None:
    """The verdict for one serialised item. The verdict depends only on the item's content, so it is cached by
    its bytes: retried and replayed batches, and the same body checked by `validate_batch_body` and then sent,
    are validated once (schema validation costs ~0.1-0.2 ms per item)."""
    item = json.loads(encoded)
    return _item_schema().error(item) or _limit_error(item)


def _limit_error(item: dict[str, Any]) -> ErrorDict | None:
    """The prose-only limits of [TRACK-SPEC] info; the item has already passed the schema."""
    id_field = {"person": "id", "object": "object_id"}.get(item["type"], "")
    identifier = (item.get("identifiers") or {}).get(id_field)
    if isinstance(identifier, str) and len(identifier.encode()) > MAX_ID_BYTES:
        return _error(
            "too_long", f"identifiers.{id_field}", f"{id_field} is {len(identifier.encode())} bytes; max {MAX_ID_BYTES}"
        )
    if item["action"] == "identify":
        return _attributes_error(item.get("attributes") or {})
    if item["type"] == "person" and item["action"] == "event":
        return _event_error(item)
    return None


def _attributes_error(attributes: dict[str, Any]) -> ErrorDict | None:
    count = len([name for name in attributes if name != UPDATE_FLAG])
    if count > MAX_ATTRIBUTES_PER_IDENTIFY:
        return _error(
            "too_many_attributes",
            "attributes",
            f"cannot identify more than {MAX_ATTRIBUTES_PER_IDENTIFY} attributes in one request ({count} sent)",
        )
    for name, value in attributes.items():
        if len(name.encode()) > MAX_ATTRIBUTE_NAME_BYTES:
            message = f"attribute name cannot be longer than {MAX_ATTRIBUTE_NAME_BYTES} bytes"
            return _error("too_long", f"attributes.{name}", message)
        if _value_bytes(value) > MAX_ATTRIBUTE_VALUE_BYTES:
            # Wording from the documented v1 error ([NOTES] §1.10): "value for attribute '…' cannot be longer
            # than 1000 bytes".
            message = f"value for attribute '{name}' cannot be longer than {MAX_ATTRIBUTE_VALUE_BYTES} bytes"
            return _error("too_long", f"attributes.{name}", message)
    return None


def _event_error(item: dict[str, Any]) -> ErrorDict | None:
    name_bytes = len(item["name"].encode())
    if name_bytes > MAX_EVENT_NAME_BYTES:
        return _error("too_long", "name", f"event name cannot be longer than {MAX_EVENT_NAME_BYTES} bytes")
    data_bytes = len(_compact_json(item.get("attributes") or {}))
    if data_bytes > MAX_EVENT_DATA_BYTES:
        message = f"event data cannot be longer than {MAX_EVENT_DATA_BYTES} bytes ({data_bytes} sent)"
        return _error("too_large", "attributes", message)
    event_id = item.get("id")
    if event_id is not None and not ULID_PATTERN.fullmatch(event_id):
        # [NOTES] §1.5: a maintainer wrote "the API rejects invalid values"; no status is documented, so the fake
        # refuses the item the way it refuses any other invalid item.
        return _error("invalid", "id", f"{event_id!r} is not a valid ULID (26 Crockford base32 characters)")
    return None


def _shape_error(body: Any) -> ErrorDict | None:
    """The top-level shape, from requestBody.schema: an object whose `batch` is an array."""
    if not isinstance(body, dict):
        return _error("invalid", "", "request body must be a JSON object")
    if "batch" not in body:
        return _error("required", "batch", "request body must contain a 'batch' array")
    if not isinstance(body["batch"], list):
        return _error("invalid", "batch", "'batch' must be an array")
    return None


def _item_errors(batch: list[Any]) -> list[ErrorDict]:
    errors = []
    for index, item in enumerate(batch):
        problem = item_error(item)
        if problem is not None:
            errors.append({"batch_index": index, **problem})
    return errors


def validate_batch_body(body: dict[str, Any]) -> list[ErrorDict]:
    """Every reason the fake would refuse this body: `[]` when Customer.io would accept it all.

    Per-item problems carry their `batch_index`; whole-request problems (shape, size >= 500 KB measured as
    compact JSON) carry `batch_index: None`.
    """
    shape = _shape_error(body)
    if shape is not None:
        return [{"batch_index": None, **shape}]
    errors = _item_errors(body["batch"])
    with contextlib.suppress(TypeError, ValueError):  # an unserialisable item is already reported above
        size = len(_compact_json(body))
        if size >= MAX_REQUEST_BYTES:
            errors.insert(0, {"batch_index": None, **_too_large_request(size)})
    return errors


def _too_large_request(size: int) -> ErrorDict:
    return _error(
        "too_large", "batch", f"request is {size} bytes; a batch request must be smaller than {MAX_REQUEST_BYTES}"
    )


# --------------------------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    item_count: int  # items in `batch`, 0 when the body was not a readable batch
    status: int | None  # what the client got; None when the connection was dropped without a response
    applied: bool  # whether the batch's valid items were stored (also true for accept_then_drop)
    fault: str | None  # "fail", "drop", "accept_then_drop" or None
    received_at: float  # time.time()
    received_monotonic: float  # time.monotonic(), for measuring a client's backoff


@dataclass(frozen=True)
class _Fault:
    kind: Literal["fail", "drop", "accept_then_drop"]
    status: int = 0
    retry_after: str | None = None


@dataclass
class _Outcome:
    status: int
    payload: dict[str, Any]
    item_count: int = 0
    applied: bool = False
    headers: dict[str, str] = field(default_factory=dict)


class FakeCustomerIO:
    """Customer.io's Track v2 batch endpoint, in memory. State is guarded by `lock` (the server runs in
    another thread); reading a dict or list without it is safe under the GIL, iterating one while requests
    land is not."""

    def __init__(
        self, site_id: str = "site-test", api_key: str = "key-test", app_api_key: str = "app-key-test"
    ) -> None:
        _item_schema()  # fail now, with a clear message, if the OpenAPI document is missing
        self.site_id = site_id
        self.api_key = api_key
        self.lock = threading.RLock()
        self.people: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.duplicate_events = 0
        self.other_operations: list[dict[str, Any]] = []  # accepted items the fake does not model
        self.merges: list[tuple[str, str]] = []  # (primary, secondary) of every merge received
        # [TRACK-SPEC] suppress: deletes the profile and suppresses the identifier; later calls referencing it
        # are ignored.
        self.suppressed: set[str] = set()
        self.requests: list[RecordedRequest] = []
        self.latency_seconds = 0.0
        self._attribute_timestamps: dict[str, dict[str, float]] = {}
        self._event_ids: set[str] = set()
        self._faults: deque[_Fault] = deque()
        self._refused_people: tuple[set[str], str, str] = (set(), "invalid", "identifiers.id")
        self.app_api_key = app_api_key
        self.app_requests: list[RecordedRequest] = []  # App API reads, kept apart from Track's `requests`
        self._app_throttles: deque[str] = deque()  # Retry-After values of queued 429s
        self._app_answered: deque[float] = deque()  # monotonic times of App requests in the last second
        self.app = Starlette(
            routes=[
                Route(BATCH_PATH, self._batch_endpoint, methods=["POST"]),
                Route(APP_PEOPLE_PATH, self._app_people_endpoint, methods=["POST"]),
                Route(APP_PERSON_PATH, self._app_person_endpoint, methods=["GET"]),
                Route("/{path:path}", self._not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            ]
        )

    # -- fault injection -------------------------------------------------------------------------------------

    def batch_items(self) -> list[dict[str, Any]]:
        """Every item of every batch the fake applied, in the order they arrived."""
        with self.lock:
            applied = [request for request in self.requests if request.applied and request.item_count]
        return [item for request in applied for item in json.loads(request.body)["batch"]]

    def fail_next(self, count: int, status: int, retry_after: str | None = None) -> None:
        """Answer the next `count` requests with `status` (e.g. 429, 500, 503) without applying them.
        `retry_after` is sent verbatim as `Retry-After`: seconds ("1") or an HTTP-date."""
        if not 400 <= status <= 599:
            raise ValueError(f"fail_next needs an error status, got {status}")
        self._queue(count, _Fault("fail", status, retry_after))

    def drop_next(self, count: int) -> None:
        """Close the next `count` connections without any response and without applying the batch."""
        self._queue(count, _Fault("drop"))

    def accept_then_drop_next(self, count: int) -> None:
        """Apply the next `count` batches, then close the connection without answering: "accepted, response
        lost", as when the client crashes or times out between sending and recording the result."""
        self._queue(count, _Fault("accept_then_drop"))

    def refuse_people(self, person_ids: set[str], reason: str = "invalid", field: str = "identifiers.id") -> None:
        """Answer 207 for any item about these people (by id) until called again with another set.

        Stands in for the refusals Customer.io makes on grounds a client cannot check (workspace settings,
        suppressed identifiers), so tests can prove that exactly those items are rejected and retried."""
        with self.lock:
            self._refused_people = (set(person_ids), reason, field)

    def _refusals(self, batch: list[Any]) -> list[ErrorDict]:
        with self.lock:
            ids, reason, field_name = self._refused_people
        return [
            {**_error(reason, field_name, f"person {item['identifiers']['id']} refused"), "batch_index": index}
            for index, item in enumerate(batch)
            if isinstance(item, dict) and item.get("identifiers", {}).get("id") in ids
        ]

    def reset(self) -> None:
        """Forget everything that landed, every queued fault and any latency."""
        with self.lock:
            self.people.clear()
            self.events.clear()
            self.duplicate_events = 0
            self.other_operations.clear()
            self.merges.clear()
            self.suppressed.clear()
            self.requests.clear()
            self.latency_seconds = 0.0
            self._attribute_timestamps.clear()
            self._event_ids.clear()
            self._faults.clear()
            self._refused_people = (set(), "invalid", "identifiers.id")
            self.app_requests.clear()
            self._app_throttles.clear()
            self._app_answered.clear()

    def _queue(self, count: int, fault: _Fault) -> None:
        if count < 0:
            raise ValueError("count must not be negative")
        with self.lock:
            self._faults.extend([fault] * count)

    def _next_fault(self) -> _Fault | None:
        with self.lock:
            return self._faults.popleft() if self._faults else None

    # -- the App API: reading people back -------------------------------------------------------------------

    def corrupt_person(self, person_id: str, **attributes: Any) -> None:
        """Change a stored profile behind the pipeline's back, as someone editing it in Customer.io would
        (None removes an attribute)."""
        with self.lock:
            person = self.people[person_id]
            for name, value in attributes.items():
                if value is None:
                    person.pop(name, None)
                else:
                    person[name] = value

    def unsubscribe_person(self, person_id: str) -> None:
        """The person uses an unsubscribe link in a message: Customer.io sets their `unsubscribed` attribute."""
        self.corrupt_person(person_id, unsubscribed=True)

    def forget_person(self, person_id: str) -> None:
        """Delete a profile behind the pipeline's back."""
        with self.lock:
            self._delete(person_id)

    def throttle_app_next(self, count: int, retry_after: str = "1") -> None:
        """Answer the next `count` App API requests 429 with `Retry-After: retry_after`."""
        with self.lock:
            self._app_throttles.extend([retry_after] * count)

    async def _app_people_endpoint(self, request: Request) -> Response:
        body = await request.body()
        outcome = self._app_gate(request)
        if outcome is None:
            ids, problem = _app_ids(body)
            outcome = _app_error(400, problem) if problem else _Outcome(200, {"customers": self._customers(ids)})
        return self._app_answer(request, body, outcome)

    async def _app_person_endpoint(self, request: Request) -> Response:
        outcome = self._app_gate(request)
        if outcome is None:
            found = self._customers([request.path_params["customer_id"]])
            outcome = _Outcome(200, found[0]) if found else _app_error(404, "The customer_id does not exist.")
        return self._app_answer(request, b"", outcome)

    def _app_gate(self, request: Request) -> _Outcome | None:
        """401 for a wrong key, 429 past 10 requests in the last second (or when queued), 400 for an id_type
        other than id (the fake knows no other identifiers); None when the request may be answered."""
        scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.app_api_key.encode()):
            return _app_error(401, "Unauthorized request. Make sure that you provided the right credentials.")
        now = time.monotonic()
        with self.lock:
            while self._app_answered and now - self._app_answered[0] >= 1.0:
                self._app_answered.popleft()
            queued = self._app_throttles.popleft() if self._app_throttles else None
            if queued is None and len(self._app_answered) >= APP_RATE_LIMIT:
                queued = "1"
            if queued is None:
                self._app_answered.append(now)
        if queued is not None:
            detail = f"rate limited to {APP_RATE_LIMIT} requests per 1s (fake)"
            return _app_error(429, detail, {"Retry-After": queued})
        if request.query_params.get("id_type", "id") != "id":
            return _app_error(400, "the fake serves id_type=id only")
        return None

    def _customers(self, person_ids: list[str]) -> list[dict[str, Any]]:
        with self.lock:
            found = [
                _customer_object(pid, self.people[pid], self._attribute_timestamps.get(pid, {}))
                for pid in dict.fromkeys(person_ids)
                if pid in self.people
            ]
        for customer in found:
            problem = best_match(_customer_validator().iter_errors(customer))
            if problem is not None:
                raise AssertionError(f"the fake's App API answer breaks customerAttributesObject: {problem.message}")
        return found

    def _app_answer(self, request: Request, body: bytes, outcome: _Outcome) -> Response:
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers=dict(request.headers),
            body=body,
            item_count=len(outcome.payload.get("customers", [])),
            status=outcome.status,
            applied=False,
            fault="throttle" if outcome.status == 429 else None,
            received_at=time.time(),
            received_monotonic=time.monotonic(),
        )
        with self.lock:
            self.app_requests.append(recorded)
        return JSONResponse(outcome.payload, status_code=outcome.status, headers=outcome.headers)

    # -- HTTP ------------------------------------------------------------------------------------------------

    async def _batch_endpoint(self, request: Request) -> Response:
        body = await request.body()
        # Faults are consumed one per request, in order, whatever the request holds: they stand for the
        # network and the infrastructure in front of the API.
        fault = self._next_fault()
        if fault is not None and fault.kind != "accept_then_drop":
            outcome = _fault_outcome(fault, body)
        else:
            outcome = self._process(request.headers.get("authorization"), body)
        dropped = fault is not None and fault.kind in ("drop", "accept_then_drop")
        self._record(request, body, outcome, fault, dropped)
        # Sleep after the state is settled, so a client that times out meets a deterministic "accepted, answer
        # late" (or "refused, answer late") instead of a batch that lands at some later moment.
        if self.latency_seconds > 0:
            await asyncio.sleep(self.latency_seconds)
        if dropped:
            return _DroppedConnection()
        return JSONResponse(outcome.payload, status_code=outcome.status, headers=outcome.headers)

    async def _not_found(self, request: Request) -> Response:
        outcome = _Outcome(
            404, {"errors": [_error("not_found", "", f"{request.method} {request.url.path} is not served")]}
        )
        self._record(request, await request.body(), outcome, None, False)
        return JSONResponse(outcome.payload, status_code=outcome.status)

    def _record(self, request: Request, body: bytes, outcome: _Outcome, fault: _Fault | None, dropped: bool) -> None:
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers=dict(request.headers),
            body=body,
            item_count=outcome.item_count,
            status=None if dropped else outcome.status,
            applied=outcome.applied,
            fault=fault.kind if fault else None,
            received_at=time.time(),
            received_monotonic=time.monotonic(),
        )
        with self.lock:
            self.requests.append(recorded)

    # -- the documented behaviour ----------------------------------------------------------------------------

    def _process(self, authorization: str | None, body: bytes) -> _Outcome:
        # Authentication comes first: a wrong key gets 401 whatever the body holds.
        if not self._authorized(authorization):
            return _unauthorized()
        if len(body) >= MAX_REQUEST_BYTES:
            # [TRACK-SPEC] "Your batch request must be smaller than 500kb"; 400: "The entire request was
            # malformed or invalid", so nothing in it is applied.
            return _bad_request(_too_large_request(len(body)))
        parsed, problem = _parse_body(body)
        if problem is not None:
            return _bad_request(problem)
        batch: list[Any] = parsed["batch"]
        errors = sorted(_item_errors(batch) + self._refusals(batch), key=lambda error: error["batch_index"])
        invalid = {error["batch_index"] for error in errors}
        self._apply([item for index, item in enumerate(batch) if index not in invalid])
        if errors:
            # [TRACK-SPEC] 207: "At least one object in the batch was invalid; all other requests are accepted."
            return _Outcome(207, {"errors": errors}, len(batch), applied=True)
        # [TRACK-SPEC] 200: "A successful request returns an empty object response."
        return _Outcome(200, {}, len(batch), applied=True)

    def _authorized(self, authorization: str | None) -> bool:
        # [TRACK-SPEC] securitySchemes.Tracking-API-Key: HTTP basic, "Site ID and your API key, Base-64 encoded
        # in the format `site_id:api_key`".
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        expected = f"{self.site_id}:{self.api_key}".encode()
        return hmac.compare_digest(decoded, expected)

    def _apply(self, items: list[dict[str, Any]]) -> None:
        received_at = time.time()
        with self.lock:
            for item in items:
                self._apply_item(item, received_at)

    def _apply_item(self, item: dict[str, Any], received_at: float) -> None:
        kind, action = item["type"], item["action"]
        if kind == "person" and action == "identify":
            self._identify(item, received_at)
        elif kind == "person" and action == "event":
            self._track(item)
        elif kind == "person" and action == "delete":
            self._delete(_person_key(item["identifiers"]))
        elif kind == "person" and action == "suppress":
            key = _person_key(item["identifiers"])
            self._delete(key)
            self.suppressed.add(key)
        elif kind == "person" and action == "merge":
            self._merge(_person_key(item["primary"]), _person_key(item["secondary"]))
        else:
            self.other_operations.append(item)

    def _identify(self, item: dict[str, Any], received_at: float) -> None:
        key = _person_key(item["identifiers"])
        if key in self.suppressed:
            return
        attributes = dict(item.get("attributes") or {})
        if attributes.pop(UPDATE_FLAG, False) is True and key not in self.people:
            return  # `_update: true` never creates a person
        person = self.people.setdefault(key, {})
        stamps = self._attribute_timestamps.setdefault(key, {})
        # [TRACK-SPEC] identify_person.timestamp: "The Unix timestamp for when the attribute update occurred.
        # This can be used to control the order of attribute updates". An update carrying an older timestamp
        # than the stored value's does not overwrite it; without a timestamp, the update happened on receipt.
        updated_at = item.get("timestamp", received_at)
        for name, value in attributes.items():
            if name not in stamps or updated_at >= stamps[name]:
                person[name] = value
                stamps[name] = updated_at

    def _track(self, item: dict[str, Any]) -> None:
        # [TRACK-SPEC] dedupe_id: "If an event repeats a value we've already received, we ignore the duplicate."
        # No window is documented ([NOTES] §1.5), so the fake remembers every id until reset().
        event_id = item.get("id")
        if event_id is not None:
            if event_id in self._event_ids:
                self.duplicate_events += 1
                return
            self._event_ids.add(event_id)
        key = _person_key(item["identifiers"])
        if key in self.suppressed:
            return
        self.people.setdefault(key, {})  # an event for an unknown person creates that person
        self._attribute_timestamps.setdefault(key, {})
        self.events.append(item)

    def _merge(self, primary: str, secondary: str) -> None:
        """[TRACK-SPEC] person_merge: "Merges `secondary` into `primary`, then deletes `secondary`", and "`primary`
        must already exist" (otherwise the request does nothing). Attributes empty on the primary are taken from
        the secondary, and the secondary's events become the primary's."""
        self.merges.append((primary, secondary))
        if primary not in self.people or secondary not in self.people:
            return
        person = self.people[primary]
        for name, value in self.people[secondary].items():
            if person.get(name) in (None, ""):
                person[name] = value
        for event in self.events:
            if _person_key(event["identifiers"]) == secondary:
                event["identifiers"] = {"id": primary}
        self._delete(secondary)

    def _delete(self, key: str) -> None:
        self.people.pop(key, None)
        self._attribute_timestamps.pop(key, None)


def _app_error(status: int, detail: str, headers: dict[str, str] | None = None) -> _Outcome:
    # [NOTES] §6: App API errors are `{"errors": [{"detail", "status", ...}]}`.
    return _Outcome(status, {"errors": [{"detail": detail, "status": str(status)}]}, headers=headers or {})


def _app_ids(body: bytes) -> tuple[list[str], str | None]:
    """The `ids` of a getPeopleById body ([APP-DOCS]: "ids": array of 1 to 100 strings), or why it is refused."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return [], "request body is not valid JSON"
    ids = parsed.get("ids") if isinstance(parsed, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return [], "ids must be an array of strings"
    if not 1 <= len(ids) <= APP_MAX_IDS:
        return [], f"ids must hold 1 to {APP_MAX_IDS} values ({len(ids)} given)"
    return ids, None


def _as_stored_string(value: Any) -> str:
    """An attribute as the App API shows it: "Attributes are all stored as strings" ([TRACK-SPEC]
    customerAttributesObject). Booleans print as JSON does; a whole float prints without ".0", as Go's %v
    does (Customer.io's printing is undocumented, so the client must compare numbers as numbers)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _customer_object(person_id: str, person: dict[str, Any], stamps: dict[str, float]) -> dict[str, Any]:
    """One `customerAttributesObject` ([TRACK-SPEC]): identifiers, string attributes, integer timestamps.
    An attribute set to null or "" is absent: "Pass `null` or an empty string to remove an attribute"
    ([TRACK-SPEC] object_attributes; people are assumed to behave alike)."""
    cio_id = hashlib.sha256(person_id.encode()).hexdigest()[:8]
    attributes = {k: _as_stored_string(v) for k, v in person.items() if v is not None and v != ""}
    attributes.update({"id": person_id, "cio_id": cio_id})
    email = attributes.get("email")
    return {
        "customer": {
            "id": person_id,
            "identifiers": {"id": person_id, "email": email, "cio_id": cio_id},
            "attributes": attributes,
            "timestamps": {k: int(stamps.get(k, 0)) for k in attributes if k in stamps},
            # [TRACK-SPEC] identify attributes.unsubscribed: "Values like `true`, `TRUE`, `1`, and `"1"` count as true".
            "unsubscribed": attributes.get("unsubscribed", "").lower() in ("true", "1"),
            "devices": [],
        }
    }


@functools.cache
def _customer_validator() -> Draft202012Validator:
    document = json.loads(openapi_document_path().read_text(encoding="utf-8"))
    base = "urn:customerio:track-openapi"
    registry: Registry = Registry().with_resource(base, Resource.from_contents(document, DRAFT202012))
    return Draft202012Validator({"$ref": f"{base}#/components/schemas/customerAttributesObject"}, registry=registry)


def _person_key(identifiers: dict[str, Any]) -> str:
    """`people` is keyed by person id; a person addressed by email, phone or cio_id is keyed "email:<value>" and
    so on, since the fake has no workspace to look identifiers up in."""
    if "id" in identifiers:
        return str(identifiers["id"])
    name = next((name for name in PERSON_IDENTIFIERS if name in identifiers), next(iter(identifiers)))
    return f"{name}:{identifiers[name]}"


def _parse_body(body: bytes) -> tuple[dict[str, Any], ErrorDict | None]:
    try:
        parsed = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        return {}, _error("invalid_json", "", f"request body is not valid JSON: {exc}")
    return parsed, _shape_error(parsed)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unauthorized() -> _Outcome:
    # [TRACK-SPEC] 401: "Unauthorized request. Make sure that you provided the right credentials." No body is
    # documented; the v2 error shape is used so clients can log it.
    message = "Unauthorized request. Make sure that you provided the right credentials."
    headers = {"WWW-Authenticate": 'Basic realm="Customer.io Track API"'}  # RFC 9110 §15.5.2 requires it on 401
    return _Outcome(401, {"errors": [_error("unauthorized", "", message)]}, headers=headers)


def _bad_request(problem: ErrorDict) -> _Outcome:
    # [TRACK-SPEC] /api/v2/batch 400: {"errors": [{"reason", "field", "message"}]}.
    return _Outcome(400, {"errors": [problem]})


def _fault_outcome(fault: _Fault, body: bytes) -> _Outcome:
    # No 429 is declared for Track ([NOTES] §4); the App API's documented 429 body is
    # {"errors":[{"detail":"rate limited to 10 requests per 1s (reference …)","status":"429"}]}, reused here.
    detail = "rate limited to 1000 requests per 1s (fake)" if fault.status == 429 else _status_phrase(fault.status)
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    payload = {"errors": [{"detail": detail, "status": str(fault.status)}]}
    return _Outcome(fault.status, payload, item_count=_count_items(body), headers=headers)


def _count_items(body: bytes) -> int:
    """How many items a request carried, for the record of a request the fake refused without reading it."""
    parsed, problem = _parse_body(body)
    return 0 if problem is not None else len(parsed["batch"])


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


# --------------------------------------------------------------------------------------------------------------
# Dropping connections, and serving over real HTTP
# --------------------------------------------------------------------------------------------------------------


class _DroppedConnection(Response):
    """A "response" that hangs up instead. Pure ASGI cannot do this on uvicorn: an app that raises, or returns
    without responding, gets a 500 sent for it. So `serve` runs a protocol that gives every request a way to
    close its own connection (see `_DroppableH11Protocol`); the client then sees the socket close with no
    status line at all (httpx: RemoteProtocolError "Server disconnected without sending a response.")."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        drop: Callable[[], None] | None = scope.get("state", {}).get(_DROP_CONNECTION)
        if drop is None:
            raise RuntimeError("dropping a connection needs the server from fake_customerio.serve()")
        drop()
        # Return only once uvicorn has seen the connection go, or it would answer 500 on our behalf.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while (await receive())["type"] != "http.disconnect":
                    pass


class _DroppableH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with this connection's `transport.close` in every request's scope["state"].

    uvicorn builds scope["state"] as a copy of the protocol's `app_state` for each request, so giving each
    connection its own `app_state` (with the closer added) reaches the app without touching uvicorn's code.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app_state = {**self.app_state, _DROP_CONNECTION: transport.close}


@contextlib.contextmanager
def serve(fake: FakeCustomerIO, startup_timeout: float = 10.0) -> Iterator[str]:
    """Serve `fake.app` with uvicorn on 127.0.0.1 in a background thread; yield "http://127.0.0.1:PORT".

    The socket is bound here (port 0) and handed to uvicorn, so there is no race for a "free" port.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        fake.app,
        http=_DroppableH11Protocol,
        lifespan="off",
        log_config=None,  # leave the test process's logging configuration alone
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"fake-customerio-{port}", daemon=True
    )
    thread.start()
    try:
        _wait_until_serving(server, thread, port, startup_timeout)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _wait_until_serving(server: uvicorn.Server, thread: threading.Thread, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the fake Customer.io server stopped during startup")
        if server.started:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        time.sleep(0.01)
    raise RuntimeError(f"the fake Customer.io server did not start within {timeout}s")
