"""Timestamp hygiene: which source timestamps must be sane, and what "sane" means.

A timestamp is rejected when it is null where one is required, before the floor (default
2000-01-01: the 1970 bug), or later than the run's start. A row with any rejected timestamp is kept
out of the attribute snapshot and the event log, and listed with its reason in `rejected_rows`.

The same predicates serve both sides: `rejected_rows` selects rows where `rejection_reason` is
not null, and every downstream query filters with `row_is_valid`, so the rows that are excluded
are exactly the rows that are listed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Table, and_, case, false, literal, null, or_, true

from cio_assets.settings import Settings
from cio_assets.sources.tables import carts, customers, orders, refunds, subscriptions
from cio_assets.timestamps import to_source_naive

NULL_TIMESTAMP = "null_timestamp"
BEFORE_FLOOR = "before_floor"
IN_FUTURE = "in_future"


@dataclass(frozen=True)
class TimestampRule:
    table: Table
    column: str
    # Null is a rejection only when the row says the moment happened (a paid order must have paid_at).
    required_when: Callable[[], ColumnElement[bool]] | None
    # The rule only looks at rows it applies to (a pending order's paid_at is nobody's business).
    applies_when: Callable[[], ColumnElement[bool]] | None = None

    def applies(self) -> ColumnElement[bool]:
        return self.applies_when() if self.applies_when else true()

    def required(self) -> ColumnElement[bool]:
        return self.required_when() if self.required_when else false()


def _always() -> ColumnElement[bool]:
    return true()


RULES: tuple[TimestampRule, ...] = (
    TimestampRule(customers, "created_at", required_when=_always),
    TimestampRule(orders, "paid_at", required_when=_always, applies_when=lambda: orders.c.status == "paid"),
    TimestampRule(refunds, "created_at", required_when=_always),
    TimestampRule(subscriptions, "started_at", required_when=_always),
    TimestampRule(subscriptions, "canceled_at", required_when=lambda: subscriptions.c.status == "canceled"),
    TimestampRule(carts, "updated_at", required_when=_always),
    TimestampRule(carts, "checkout_started_at", required_when=None),
)


@dataclass(frozen=True)
class Bounds:
    """The sane range of timestamps for one run: [floor, now]."""

    floor: datetime
    now: datetime

    @classmethod
    def for_run(cls, settings: Settings, now: datetime) -> Bounds:
        return cls(floor=settings.floor_utc, now=now)


def rejection_reason(rule: TimestampRule, settings: Settings, bounds: Bounds) -> ColumnElement[str | None]:
    """SQL: why this rule rejects the row, or NULL when it does not."""
    column = rule.table.c[rule.column]
    zone = settings.zone_of(rule.table.name)
    floor, now = to_source_naive(bounds.floor, zone), to_source_naive(bounds.now, zone)
    return case(
        (~rule.applies(), null()),
        (and_(column.is_(None), rule.required()), literal(NULL_TIMESTAMP)),
        (column.is_(None), null()),
        (column < floor, literal(BEFORE_FLOOR)),
        (column > now, literal(IN_FUTURE)),
        else_=null(),
    )


def row_is_valid(table: Table, settings: Settings, bounds: Bounds) -> ColumnElement[bool]:
    """SQL: the row passes every timestamp rule of its table."""
    table_rules = [rule for rule in RULES if rule.table is table]
    if not table_rules:
        return true()
    return and_(*(_passes(rule, settings, bounds) for rule in table_rules))


def _passes(rule: TimestampRule, settings: Settings, bounds: Bounds) -> ColumnElement[bool]:
    column = rule.table.c[rule.column]
    zone = settings.zone_of(rule.table.name)
    floor, now = to_source_naive(bounds.floor, zone), to_source_naive(bounds.now, zone)
    sane = and_(column >= floor, column <= now)
    return or_(~rule.applies(), and_(column.is_(None), ~rule.required()), sane)
