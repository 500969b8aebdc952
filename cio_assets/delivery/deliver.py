"""The delivery loop: pack items by bytes, send them (or write the dry-run outbox), report each answer.

`on_delivered` is called after each batch Customer.io accepted, so the caller can write its ledger
in its own transaction: what the ledger says was delivered always was. Items refused locally (too
big for Customer.io's limits) or by Customer.io (207/400) go to `on_rejected` with their reason.

A dry run sends nothing, so its logs and metadata say "planned", never "sent": items and batches
planned, and no HTTP counters at all. A real run's metadata carries the HTTP counters (requests,
bytes, retries, 429s, 5xx, transport errors) as separate int entries and the rates the delivery
checks judge (`defs/checks/delivery.py`) as floats; the keys are named here, once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cio_assets.customerio.batching import Batch, Item, Refused, pack
from cio_assets.customerio.client import TrackClient
from cio_assets.customerio.outbox import write_outbox

Delivered = Callable[[list[Item]], None]
Rejected = Callable[[list[tuple[Item, str]]], None]

# Metadata keys of a sync materialisation that the delivery checks read.
DRY_RUN = "dry_run"
ITEMS_SENT = "items_sent"
ITEMS_PLANNED = "items_planned"
REFUSED = "rejected"
REQUESTS = "requests"
THROTTLED = "throttled_429"
SERVER_ERRORS = "server_errors_5xx"
REFUSAL_RATE = "refusal_rate"
THROTTLED_RATE = "throttled_429_rate"
SERVER_ERROR_RATE = "server_errors_5xx_rate"
# A progress line every this many batches.
PROGRESS_EVERY = 50


@dataclass(frozen=True)
class Sender:
    """Where a sync's items go: to Customer.io through a Track client, or (a dry run) to an outbox file."""

    sends: bool  # False: a dry run, nothing leaves the machine
    outbox: Path  # where a dry run writes the exact request bodies
    workspace: str  # the Track workspace's short name (no secret): syncs sending to it take turns
    client: Callable[[], TrackClient]


@dataclass
class DeliveryReport:
    sent: int = 0  # items Customer.io accepted (in a dry run: items planned, written to the outbox)
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> items
    rejection_sample: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    batches: int = 0
    dry_run: bool = False
    outbox: str | None = None
    http: dict[str, int] = field(default_factory=dict)  # requests, bytes_sent, retries, throttled, ...
    seconds: float = 0.0

    def then(self, later: DeliveryReport) -> DeliveryReport:
        """This delivery followed by a later one in the same run, as one report."""
        http = {key: self.http.get(key, 0) + later.http.get(key, 0) for key in {*self.http, *later.http}}
        return DeliveryReport(
            sent=self.sent + later.sent,
            rejected=self.rejected + later.rejected,
            rejection_sample=(self.rejection_sample + later.rejection_sample)[:50],
            batches=self.batches + later.batches,
            dry_run=self.dry_run,
            outbox=self.outbox,
            http=http,
            seconds=round(self.seconds + later.seconds, 2),
        )

    def note_rejections(self, refused: list[tuple[Item, str]]) -> None:
        for item, reason in refused:
            self.rejected[_reason_kind(reason)] += 1
            if len(self.rejection_sample) < 50:
                self.rejection_sample.append((item.key, reason))


def deliver(
    items: Iterable[Item],
    sender: Sender,
    on_delivered: Delivered,
    on_rejected: Rejected,
    log: Callable[[str], None],
) -> DeliveryReport:
    started = time.monotonic()
    report = DeliveryReport(dry_run=not sender.sends)

    def refuse(refused: list[tuple[Item, str]]) -> None:
        report.note_rejections(refused)
        if not report.dry_run:
            on_rejected(refused)

    batches = _batches_refusing(items, refuse)
    if report.dry_run:
        report.outbox = str(sender.outbox)
        for batch in write_outbox(sender.outbox, batches):
            report.batches += 1
            report.sent += len(batch.items)
            if report.batches % PROGRESS_EVERY == 0:
                log(f"{report.batches} batches written to the outbox, {report.sent} items planned so far (dry run)")
    else:
        with sender.client() as client:
            for result in client.send(batches):
                report.batches += 1
                on_delivered(result.delivered)
                report.sent += len(result.delivered)
                if result.rejected:
                    refuse(result.refused)
                if report.batches % PROGRESS_EVERY == 0:
                    log(f"{report.batches} batches answered, {report.sent} items delivered so far")
            report.http = client.stats.as_dict()
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _batches_refusing(items: Iterable[Item], refuse: Rejected) -> Iterator[Batch]:
    for packed in pack(items):
        if isinstance(packed, Refused):
            refuse([(packed.item, packed.reason)])
        else:
            yield packed


def _reason_kind(reason: str) -> str:
    """Group reasons for metadata: the text before any byte counts or ids."""
    return reason.split(" is ")[0] if " is " in reason else reason.split(":")[0]


def delivery_rates(items: int, refused: int, requests: int, throttled: int, server_errors: int) -> dict[str, float]:
    """Refused share of the items offered (accepted or planned, plus refused); 429 and 5xx shares of requests."""
    offered = items + refused
    return {
        REFUSAL_RATE: round(refused / offered, 4) if offered else 0.0,
        THROTTLED_RATE: round(throttled / requests, 4) if requests else 0.0,
        SERVER_ERROR_RATE: round(server_errors / requests, 4) if requests else 0.0,
    }
