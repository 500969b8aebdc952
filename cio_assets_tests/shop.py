"""A concise builder for hand-made shops: each call inserts one source row with sensible defaults.

Tests state only what matters to them; every value they assert on is written in the test itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count

from sqlalchemy import Engine

from cio_assets.schema.shop import (
    cart_items,
    carts,
    customers,
    erasure_requests,
    identity_links,
    order_items,
    orders,
    refunds,
    subscriptions,
)

_UNSET = object()


def _at(value: str | datetime | None) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


class ShopBuilder:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ids = {name: count(1) for name in ("order", "item", "cart", "cart_item", "refund", "subscription")}

    def _insert(self, table, **row) -> dict:
        with self.engine.begin() as conn:
            conn.execute(table.insert(), [row])
        return row

    def customer(
        self,
        id: int,
        email: str | None = _UNSET,  # type: ignore[assignment]
        phone: str | None = None,
        country: str | None = "US",
        first_name: str | None = "Ada",
        last_name: str | None = "Lovelace",
        email_opt_in: bool | None = True,  # None: never asked (NULL)
        sms_opt_in: bool | None = False,
        created_at: str | datetime | None = "2026-10-01 09:00",
        updated_at: str | datetime | None = _UNSET,  # type: ignore[assignment]
    ) -> dict:
        created = _at(created_at)
        return self._insert(
            customers,
            id=id,
            email=f"customer{id}@shop.com" if email is _UNSET else email,
            phone=phone,
            country=country,
            first_name=first_name,
            last_name=last_name,
            accepts_email_marketing=email_opt_in,
            accepts_sms_marketing=sms_opt_in,
            created_at=created,
            updated_at=created if updated_at is _UNSET else _at(updated_at),
        )

    def order(
        self,
        customer_id: int | None,
        total: float = 50.0,
        status: str = "paid",
        paid_at: str | datetime | None = _UNSET,  # type: ignore[assignment]
        created_at: str | datetime | None = _UNSET,  # type: ignore[assignment]
        email: str | None = None,
        cart_id: int | None = None,
        items: list[tuple[str, str, int, float]] | None = None,  # (sku, category, quantity, unit price)
        discount_code: str | None = None,
        id: int | None = None,
    ) -> int:
        order_id = id or next(self._ids["order"])
        # Defaults keep the times in order: paid two minutes after created, whichever one is given.
        if created_at is _UNSET:
            paid = _at(paid_at) if paid_at is not _UNSET else None
            created = paid - timedelta(minutes=2) if paid else _at("2026-10-02 10:00")
        else:
            created = _at(created_at)
        if paid_at is _UNSET:
            paid = created + timedelta(minutes=2) if status == "paid" and created else None
        else:
            paid = _at(paid_at)
        self._insert(
            orders,
            id=order_id,
            customer_id=customer_id,
            email=email,
            cart_id=cart_id,
            status=status,
            currency="USD",
            subtotal=total,
            discount_total=0,
            shipping_total=0,
            total=total,
            discount_code=discount_code,
            created_at=created,
            paid_at=paid,
            updated_at=paid or created,
        )
        for sku, category, quantity, price in items or [("SKU-1", "coffee", 1, total)]:
            self._insert(
                order_items,
                id=next(self._ids["item"]),
                order_id=order_id,
                sku=sku,
                product_name=f"{sku} name",
                category=category,
                quantity=quantity,
                unit_price=price,
            )
        return order_id

    def refund(self, order_id: int, amount: float, created_at: str | datetime | None, reason: str | None = None) -> int:
        refund_id = next(self._ids["refund"])
        self._insert(refunds, id=refund_id, order_id=order_id, amount=amount, reason=reason, created_at=_at(created_at))
        return refund_id

    def cart(
        self,
        customer_id: int | None = None,
        anonymous_id: str | None = None,
        email: str | None = None,
        updated_at: str | datetime | None = "2026-10-02 10:00",
        checkout_started_at: str | datetime | None = None,
        converted_order_id: int | None = None,
        items: list[tuple[str, str, int, float]] | None = None,
        item_updated_at: str | datetime | None = None,
    ) -> int:
        cart_id = next(self._ids["cart"])
        updated = _at(updated_at)
        self._insert(
            carts,
            id=cart_id,
            customer_id=customer_id,
            anonymous_id=anonymous_id,
            email=email,
            created_at=updated,
            updated_at=updated,
            checkout_started_at=_at(checkout_started_at),
            converted_order_id=converted_order_id,
        )
        for sku, category, quantity, price in [("SKU-1", "coffee", 1, 20.0)] if items is None else items:
            self._insert(
                cart_items,
                id=next(self._ids["cart_item"]),
                cart_id=cart_id,
                sku=sku,
                product_name=f"{sku} name",
                category=category,
                quantity=quantity,
                unit_price=price,
                updated_at=_at(item_updated_at) or updated,
            )
        return cart_id

    def erasure_request(
        self, customer_id: int | None = None, email: str | None = None, requested_at: str = "2026-10-03 09:00"
    ) -> None:
        self._insert(erasure_requests, customer_id=customer_id, email=email, requested_at=_at(requested_at))

    def delete_customer(self, customer_id: int) -> None:
        """The shop deletes a customer's row (nothing else)."""
        with self.engine.begin() as conn:
            conn.execute(customers.delete().where(customers.c.id == customer_id))

    def link(self, anonymous_id: str, customer_id: int, linked_at: str | datetime | None = "2026-10-02 12:00") -> None:
        self._insert(identity_links, anonymous_id=anonymous_id, customer_id=customer_id, linked_at=_at(linked_at))

    def subscription(
        self,
        customer_id: int,
        status: str = "active",
        started_at: str | datetime | None = "2026-10-02 10:00",
        canceled_at: str | datetime | None = None,
        cancel_reason: str | None = None,
        updated_at: str | datetime | None = _UNSET,  # type: ignore[assignment]
        sku: str = "BOX-1",
    ) -> int:
        subscription_id = next(self._ids["subscription"])
        self._insert(
            subscriptions,
            id=subscription_id,
            customer_id=customer_id,
            sku=sku,
            status=status,
            started_at=_at(started_at),
            canceled_at=_at(canceled_at),
            cancel_reason=cancel_reason,
            updated_at=(_at(canceled_at) or _at(started_at)) if updated_at is _UNSET else _at(updated_at),
        )
        return subscription_id
