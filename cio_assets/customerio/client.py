"""Sending batches to Customer.io's Track API v2 `POST /api/v2/batch`.

- Several batches in flight (a thread pool sharing one keep-alive httpx client), under a token
  bucket so the workspace's request rate stays below `rate_limit` per second.
- 429 (honouring Retry-After, seconds or HTTP date), 5xx and transport errors are retried with
  capped exponential backoff and full jitter (tenacity). Deduplicated event ids make a resend harmless.
  Retries stop after `max_attempts`, or when the next wait would pass `retry_budget_seconds`: then a
  `DeliveryError` names the Track URL, the budget and the last failure.
- 207: exactly the items named by `errors[].batch_index` are rejected, the others delivered.
- 400: the whole batch is refused; every item is rejected with the reason given.
- 401/403 stop everything at once with a message that names the site id, never the key.

Messages name the Track URL without any user:password part, and never the API key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import orjson
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from cio_assets.customerio.batching import Batch, Item

REGION_URLS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
BATCH_PATH = "/api/v2/batch"


class AuthenticationError(RuntimeError):
    """Customer.io refused the credentials: nothing more can be sent in this run."""


class DeliveryError(RuntimeError):
    """Customer.io kept failing a batch after every retry the attempts and the retry budget allow."""


@dataclass
class SendStats:
    requests: int = 0
    bytes_sent: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers
    server_errors: int = 0  # 5xx answers
    transport_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


@dataclass(frozen=True)
class BatchResult:
    batch: Batch
    rejected: dict[int, str]  # position in the batch -> Customer.io's reason

    @property
    def delivered(self) -> list[Item]:
        return [item for i, item in enumerate(self.batch.items) if i not in self.rejected]

    @property
    def refused(self) -> list[tuple[Item, str]]:
        return [(self.batch.items[i], reason) for i, reason in sorted(self.rejected.items())]


class TokenBucket:
    """At most `rate` acquisitions per second on average, bursts up to one second's worth."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self.lock:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait_for = (1 - self.tokens) / self.rate
            time.sleep(wait_for)


class TrackClient:
    def __init__(
        self,
        site_id: str,
        api_key: str,
        base_url: str,
        rate_limit: float = 100.0,
        max_in_flight: int = 4,
        max_attempts: int = 8,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        timeout: float = 30.0,
        retry_budget_seconds: float = 120.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.site_id = site_id
        self.url = base_url.rstrip("/") + BATCH_PATH
        self.shown_url = without_userinfo(self.url)
        self.limiter = TokenBucket(rate_limit)
        self.max_in_flight = max_in_flight
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_budget_seconds = retry_budget_seconds
        self.stats = SendStats()
        self.http = httpx.Client(
            auth=httpx.BasicAuth(site_id, api_key),
            timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
            headers={"Content-Type": "application/json", "User-Agent": "cio-assets"},
            limits=httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight),
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> TrackClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, batches: Iterable[Batch]) -> Iterator[BatchResult]:
        """Send every batch; yield each result as soon as Customer.io accepted it (any order).

        At most `max_in_flight` batches are pending at once, so memory stays bounded however many
        batches the iterable produces.
        """
        with ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="customerio") as pool:
            pending: set[Future[BatchResult]] = set()
            try:
                for batch in batches:
                    if len(pending) >= self.max_in_flight:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        yield from (future.result() for future in done)
                    pending.add(pool.submit(self._deliver, batch))
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in done)
            finally:
                for future in pending:
                    future.cancel()

    def _deliver(self, batch: Batch) -> BatchResult:
        attempts = 0

        def attempt() -> BatchResult:
            nonlocal attempts
            attempts += 1
            return self._post_once(batch)

        retrying = Retrying(
            # Stop after max_attempts, or before a wait that would end past the retry budget.
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(self.retry_budget_seconds),
            wait=self._wait,
            retry=retry_if_exception_type((_RetryableAnswer, httpx.TransportError)),
            before_sleep=lambda _: self.stats.add(retries=1),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except (_RetryableAnswer, httpx.TransportError) as error:
            last = str(error) if isinstance(error, _RetryableAnswer) else f"{type(error).__name__}: {error}"
            if attempts >= self.max_attempts:
                gave_up = f"after {attempts} attempts"
            else:
                gave_up = (
                    f"within the {self.retry_budget_seconds:g} s retry budget (CIO_RETRY_BUDGET_SECONDS), "
                    f"after {attempts} attempts"
                )
            raise DeliveryError(
                f"Customer.io at {self.shown_url} did not accept a batch of {len(batch.items)} items {gave_up}; "
                f"last: {last}"
            ) from None

    def _post_once(self, batch: Batch) -> BatchResult:
        body = batch.body
        self.limiter.acquire()
        self.stats.add(requests=1, bytes_sent=len(body))
        try:
            response = self.http.post(self.url, content=body)
        except httpx.TransportError:
            self.stats.add(transport_errors=1)
            raise
        return self._interpret(batch, response)

    def _interpret(self, batch: Batch, response: httpx.Response) -> BatchResult:
        status = response.status_code
        if status == 200:
            return BatchResult(batch, {})
        if status == 207:
            return BatchResult(batch, _item_errors(response, len(batch.items)))
        if status in (401, 403):
            raise AuthenticationError(
                f"Customer.io at {self.shown_url} refused the Track API credentials for site id {self.site_id!r} "
                f"(HTTP {status}); check CIO_SITE_ID and CIO_API_KEY"
            )
        if status == 429:
            self.stats.add(throttled=1)
            raise _RetryableAnswer(response)
        if status >= 500:
            self.stats.add(server_errors=1)
            raise _RetryableAnswer(response)
        reason = f"HTTP {status}: {_error_text(response)}"
        return BatchResult(batch, dict.fromkeys(range(len(batch.items)), reason))

    def _wait(self, state: RetryCallState) -> float:
        """Full-jitter exponential backoff, but never sooner than the server's Retry-After."""
        jittered = wait_random_exponential(multiplier=self.backoff_base, max=self.backoff_cap)(state)
        error = state.outcome.exception() if state.outcome else None
        retry_after = retry_after_seconds(error.response) if isinstance(error, _RetryableAnswer) else None
        return max(jittered, retry_after or 0.0)


class _RetryableAnswer(Exception):
    """A 429 or 5xx: Customer.io did not take the batch, and may if asked again."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def without_userinfo(url: str) -> str:
    """The URL as it may be shown: a proxy's user:password@ part is dropped."""
    try:
        return str(httpx.URL(url).copy_with(userinfo=b""))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "the configured Track URL"


def _item_errors(response: httpx.Response, size: int) -> dict[int, str]:
    rejected: dict[int, str] = {}
    for error in _errors(response):
        index = error.get("batch_index")
        if isinstance(index, int) and 0 <= index < size:
            parts = [str(error.get(k)) for k in ("reason", "field", "message") if error.get(k)]
            rejected[index] = ": ".join(parts) or "rejected by Customer.io"
    return rejected


def _errors(response: httpx.Response) -> list[dict]:
    try:
        errors = orjson.loads(response.content).get("errors", [])
    except (orjson.JSONDecodeError, AttributeError):
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _error_text(response: httpx.Response) -> str:
    messages = [": ".join(str(e[k]) for k in ("reason", "field", "message") if e.get(k)) for e in _errors(response)]
    return "; ".join(m for m in messages if m) or response.text[:300]


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None
