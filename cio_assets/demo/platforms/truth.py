"""The expected truth about a generated platform shop: what a correct source mapping must find in it.

Plain frozen dataclasses, so tests compare them with `==` and print them readably. Times are naive UTC, money is
`Decimal` with two places, e-mails are lower case as the generators write them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

Consent = Literal["opted_in", "opted_out", "unknown"]
CENTS = Decimal("0.01")


def money(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(CENTS)


@dataclass(frozen=True)
class PaidOrder:
    order_id: int
    paid_at: datetime  # UTC: WooCommerce date_paid_gmt; Magento the first invoice's created_at
    total: Decimal  # what the customer paid: lines - discount + shipping (no tax in these shops)
    discount: Decimal  # positive, whatever sign the platform stores it with
    shipping: Decimal


@dataclass(frozen=True)
class Refund:
    refund_id: int  # WooCommerce: the shop_order_refund row's id; Magento: sales_creditmemo.entity_id
    order_id: int
    amount: Decimal  # positive, whatever sign the platform stores it with
    refunded_at: datetime  # UTC


@dataclass(frozen=True)
class Cart:
    cart_id: int  # quote.entity_id
    updated_at: datetime  # UTC
    total: Decimal  # sum of the parent lines


@dataclass
class Person:
    email: str
    first_name: str | None
    last_name: str | None
    phone: str | None  # E.164
    country: str | None  # ISO 3166 alpha-2
    consent: Consent
    customer_ids: tuple[int, ...] = ()  # the account(s) behind the e-mail; () for a guest
    orders: list[PaidOrder] = field(default_factory=list)  # paid orders, by order id
    refunds: list[Refund] = field(default_factory=list)
    carts: list[Cart] = field(default_factory=list)  # open (active) carts; Magento only

    @property
    def is_guest(self) -> bool:
        return not self.customer_ids


@dataclass
class ShopTruth:
    platform: str
    prefix: str
    people: dict[str, Person]  # by e-mail
    # Rows a mapping must set aside or leave out, by reason, e.g. "custom_status_orders" (an unmapped status),
    # "duplicate_usermeta" (a key written twice), "non_customers" (administrators, shop managers).
    set_aside: dict[str, int]

    def summary(self) -> str:
        consent = Counter(p.consent for p in self.people.values())
        lines = [
            f"{self.platform} shop (table prefix {self.prefix!r})",
            f"  people: {len(self.people)} ({sum(p.is_guest for p in self.people.values())} guests)",
            "  consent: " + ", ".join(f"{k} {consent[k]}" for k in ("opted_in", "opted_out", "unknown")),
            f"  paid orders: {sum(len(p.orders) for p in self.people.values())}",
            f"  refunds: {sum(len(p.refunds) for p in self.people.values())}",
            f"  open carts: {sum(len(p.carts) for p in self.people.values())}",
            "  set aside: " + (", ".join(f"{k} {v}" for k, v in sorted(self.set_aside.items())) or "nothing"),
        ]
        return "\n".join(lines)
