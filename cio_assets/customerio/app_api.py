"""Reading people back from Customer.io's App API, `POST /v1/customers/attributes`.

- `Authorization: Bearer <App API key>`; hosts `https://api.customer.io` (us) and `https://api-eu.customer.io`
  (eu), or `CIO_APP_URL`.
- Up to 100 ids per request; ids Customer.io does not know are left out of the answer, so a person
  missing from `read_people`'s result has no profile.
- At most `rate_limit` requests per second (the App API allows 10), evenly spaced so that no one-second
  window holds more.
- A 429 carries `Retry-After` (whole seconds): the next attempt waits at least that long. 429, 5xx and
  transport errors are retried with capped exponential backoff until `max_attempts`, or until the next
  wait would pass `retry_budget_seconds`: then an `AppApiError` names the URL, the budget and the last
  failure.
- 401/403 raise `AppApiAuthError` at once. Messages name the URL (without any user:password part),
  never the key.

Customer.io stores every attribute as a string, and answers with strings (`"1489014595"`, not
`1489014595`); `read_people` returns them as it got them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx
import orjson

from cio_assets.customerio.client import retry_after_seconds, without_userinfo

APP_REGION_URLS = {"us": "https://api.customer.io", "eu": "https://api-eu.customer.io"}
PEOPLE_PATH = "/v1/customers/attributes"
# [APP-DOCS] getPeopleById: "Return attributes and devices for up to 100 customers by ID."
MAX_IDS_PER_REQUEST = 100
# [APP-DOCS]: 10 requests per second.
APP_RATE_LIMIT = 10.0

Attributes = dict[str, str]


class AppApiError(RuntimeError):
    """The App API kept failing a read after every retry the attempts and the retry budget allow."""


class AppApiAuthError(AppApiError):
    """The App API refused the key."""


@dataclass
class ReadStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers
    server_errors: int = 0  # 5xx answers
    transport_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


# Spacing kept above 1/rate by this share, so that network jitter does not squeeze 11 requests into a second.
PACING_MARGIN = 0.02


class Pacer:
    """Requests at least 1/rate seconds apart: no one-second window ever holds more than `rate`."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = (1.0 + PACING_MARGIN) / rate
        self.clock = clock
        self.next_at = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = self.clock()
            start = max(now, self.next_at)
            self.next_at = start + self.interval
        if start > now:
            time.sleep(start - now)


class AppClient:
    def __init__(
        self,
        api_key: str,
        base_url: str,
        rate_limit: float = APP_RATE_LIMIT,
        max_attempts: int = 8,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        retry_budget_seconds: float = 120.0,
        timeout: float = 30.0,
    ) -> None:
        self.url = base_url.rstrip("/") + PEOPLE_PATH
        self.shown_url = without_userinfo(self.url)
        self.pacer = Pacer(rate_limit)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_budget_seconds = retry_budget_seconds
        self.stats = ReadStats()
        self.http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "User-Agent": "cio-assets",
            },
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_people(self, person_ids: Iterable[str]) -> dict[str, Attributes]:
        """person id -> the attributes Customer.io holds (all strings); people without a profile are absent."""
        found: dict[str, Attributes] = {}
        ids = list(dict.fromkeys(person_ids))
        for start in range(0, len(ids), MAX_IDS_PER_REQUEST):
            found.update(self._read_chunk(ids[start : start + MAX_IDS_PER_REQUEST]))
        return found

    def _read_chunk(self, ids: Sequence[str]) -> dict[str, Attributes]:
        body = orjson.dumps({"ids": list(ids)})
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                return self._attempt(body)
            except _Retryable as retryable:
                wait = retryable.wait if retryable.wait is not None else self._backoff(attempts)
                if attempts >= self.max_attempts:
                    gave_up = f"after {attempts} attempts"
                elif time.monotonic() - started + wait > self.retry_budget_seconds:
                    gave_up = (
                        f"within the {self.retry_budget_seconds:g} s retry budget (CIO_RETRY_BUDGET_SECONDS), "
                        f"after {attempts} attempts"
                    )
                else:
                    self.stats.retries += 1
                    time.sleep(wait)
                    continue
                raise AppApiError(
                    f"Customer.io's App API at {self.shown_url} did not answer a read of {len(ids)} people "
                    f"{gave_up}; last: {retryable}"
                ) from None

    def _attempt(self, body: bytes) -> dict[str, Attributes]:
        self.pacer.wait()
        self.stats.requests += 1
        try:
            response = self.http.post(self.url, content=body)
        except httpx.TransportError as error:
            self.stats.transport_errors += 1
            raise _Retryable(f"{type(error).__name__}: {error}") from None
        status = response.status_code
        if status == 200:
            return _people(response, self.shown_url)
        if status in (401, 403):
            raise AppApiAuthError(
                f"Customer.io's App API at {self.shown_url} refused the App API key (HTTP {status}); "
                "check CIO_APP_API_KEY (an App API key, not the Track API key)"
            )
        if status == 429:
            self.stats.throttled += 1
            # [APP-DOCS] 429: "Retry-After tells you how many seconds you must wait". It is absent when a
            # daily quota is spent: then the backoff applies.
            raise _Retryable(
                f"HTTP 429 (Retry-After: {response.headers.get('Retry-After', 'absent')})",
                retry_after_seconds(response),
            )
        if status >= 500:
            self.stats.server_errors += 1
            raise _Retryable(f"HTTP {status}")
        raise AppApiError(
            f"Customer.io's App API at {self.shown_url} refused a read: HTTP {status}: {_error_text(response)}"
        )

    def _backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff, capped."""
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


class _Retryable(Exception):
    """A 429, 5xx or transport error: the read may succeed if asked again, after `wait` seconds if given."""

    def __init__(self, failure: str, wait: float | None = None) -> None:
        super().__init__(failure)
        self.wait = wait


def _people(response: httpx.Response, shown_url: str) -> dict[str, Attributes]:
    """{"customers": [{"customer": {"id", "identifiers", "attributes": {...}, "unsubscribed"}}]} -> id -> attributes,
    with the profile's global `unsubscribed` flag as the attribute of that name."""
    try:
        customers = orjson.loads(response.content)["customers"]
        people: dict[str, Attributes] = {}
        for entry in customers:
            customer = entry["customer"]
            person_id = customer.get("id") or (customer.get("identifiers") or {}).get("id")
            attributes = customer.get("attributes") or {}
            read = {str(k): v if isinstance(v, str) else str(v) for k, v in attributes.items()}
            if isinstance(customer.get("unsubscribed"), bool):  # the global flag, however it was set
                read["unsubscribed"] = "true" if customer["unsubscribed"] else "false"
            people[str(person_id)] = read
        return people
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise AppApiError(
            f"Customer.io's App API at {shown_url} answered 200 with an unexpected body ({type(error).__name__})"
        ) from None


def _error_text(response: httpx.Response) -> str:
    """The App API's `{"errors": [{"detail", "status"}]}`, or the start of the body."""
    try:
        errors = orjson.loads(response.content).get("errors", [])
        details = [str(e.get("detail")) for e in errors if isinstance(e, dict) and e.get("detail")]
    except (orjson.JSONDecodeError, AttributeError):
        details = []
    return "; ".join(details) or response.text[:300]
