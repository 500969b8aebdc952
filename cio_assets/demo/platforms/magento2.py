"""A small Magento 2 shop, generated into the platform's own tables, with its expected truth.

`generate(url, customers, seed, prefix)` creates the tables (`magento2.sql`, names prefixed with `prefix`,
Magento's default being none) and fills them deterministically. The quirks a mapping must handle:

* Two websites (1 base, 2 eu) with one store each (1, 2); store 0 is the admin store. The first customer also
  has an account on website 2 with the same e-mail (`customer_entity` is unique on e-mail and website): one
  person, two customer ids, orders on both.
* Phone (`telephone`) and `country_id` come from the customer's `default_billing` address; some customers also
  have a second, non-default address in another country (not theirs to read), some have no address at all.
* `sales_order.state` is Magento's fixed state; `status` the merchant's label, including the custom `packed`
  (state processing, declared in `sales_order_status` and `_state`). `discount_amount` is negative.
* Paid means invoiced: the paid time is the first `sales_invoice.created_at`. Every state appears; the
  first paid order has two invoices; unpaid orders have none.
* Guests: `customer_is_guest` 1, `customer_id` NULL, `customer_email`, names on the order.
* Configurable products write a parent line and a child line (`parent_item_id`, price 0, row total 0).
* Refunds are `sales_creditmemo` rows (positive `grand_total`); closed orders are refunded in full.
* Carts are quotes: every order's converted quote (`is_active` 0, `reserved_order_id` = the order's
  `increment_id`, `sales_order.quote_id`), active carts of customers and of guests with the e-mail on the
  quote, anonymous guest carts (no e-mail: no person's), and emptied active carts (no lines: not open).
* `newsletter_subscriber` with every status (`CONSENT`), per store; customers with no row; guest subscribers
  (`customer_id` 0); subscribers of no account and no order (not people).

`add_paid_orders(conn, sales)` and `add_cart(conn, customer_id, at)` add paid orders (and new customers' accounts)
and open carts to a generated shop with the same row builders, as the benchmarks do.

Every TIMESTAMP is written in UTC by a session whose time zone is '+00:00', as Magento's own connections do.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import URL, Connection, bindparam, text

from cio_assets.demo.platforms import ddl
from cio_assets.demo.platforms.common import (
    CATALOGUE,
    DAYS,
    END,
    Identity,
    Rows,
    between,
    customer_batches,
    weighted,
    window,
)
from cio_assets.demo.platforms.truth import Cart, Consent, PaidOrder, Person, Refund, ShopTruth, money
from cio_assets.demo.platforms.writing import Sale, next_id, stop_after, utc_session

# (state, status) pairs: every state, Magento's default status for it, and the merchant's own `packed`.
ORDER_KINDS = {
    ("new", "pending"): 6,
    ("pending_payment", "pending_payment"): 4,
    ("processing", "processing"): 14,
    ("processing", "packed"): 5,
    ("complete", "complete"): 50,
    ("closed", "closed"): 4,
    ("canceled", "canceled"): 6,
    ("holded", "holded"): 3,
    ("payment_review", "fraud"): 2,
}
INVOICED_STATES = ("processing", "complete", "closed")  # paid: at least one invoice
# newsletter_subscriber.subscriber_status -> consent: only 3 (unsubscribed) is an opt-out; 2 (not active) and
# 4 (unconfirmed) are no choice either way.
CONSENT: dict[int, Consent] = {1: "opted_in", 2: "unknown", 3: "opted_out", 4: "unknown"}
NEWSLETTER_WEIGHTS = {1: 35, 2: 5, 3: 15, 4: 10, None: 35}
TABLES = (
    "store_website",
    "store",
    "sales_order_status",
    "sales_order_status_state",
    "customer_entity",
    "customer_address_entity",
    "newsletter_subscriber",
    "quote",
    "quote_item",
    "quote_address",
    "sales_order",
    "sales_order_item",
    "sales_order_address",
    "sales_invoice",
    "sales_creditmemo",
)


class _Shop:
    def __init__(self, rng: random.Random, prefix: str, start: datetime, stop: datetime) -> None:
        self.rng, self.prefix, self.start, self.stop = rng, prefix, start, stop
        self.rows = Rows(prefix)
        self.people: dict[str, Person] = {}
        self.set_aside = {"child_lines": 0, "anonymous_carts": 0, "empty_carts": 0, "consent_only_subscribers": 0}
        self.ids = {name: 0 for name in ("customer", "address", "quote", "quote_item", "order", "item", "doc")}
        self.orders_made = 0
        self.double_invoiced = False

    def next(self, name: str) -> int:
        self.ids[name] += 1
        return self.ids[name]

    def kind(self) -> tuple[str, str]:
        kinds = list(ORDER_KINDS)
        if self.orders_made < len(kinds):  # every (state, status) once, then the weights
            return kinds[self.orders_made]
        return self.rng.choices(kinds, weights=list(ORDER_KINDS.values()))[0]

    # --- customers ---------------------------------------------------------------------------------------
    def customer(
        self,
        who: Identity,
        website: int,
        created: datetime,
        address: str,
        updated: datetime | None = None,  # the account's last save; default: an hour after it was created
    ) -> tuple[int, str | None, str | None]:
        """`address`: "billing" (a default billing address), "none", or "both" (plus a non-default one)."""
        customer_id = self.next("customer")
        default_billing = None
        phone = country = None
        if address != "none":
            default_billing = self.address(customer_id, who, who.country, who.phone_stored, created)
            phone, country = who.phone, who.country
            if address == "both":  # a gift address elsewhere: another country and phone, not the customer's
                self.address(customer_id, who, "FR" if who.country != "FR" else "DE", "+33 1 70 36 39 75", created)
        self.rows.add(
            "customer_entity",
            entity_id=customer_id,
            website_id=website,
            email=who.email,
            group_id=1,
            store_id=website,
            created_at=created,
            updated_at=created + timedelta(hours=1) if updated is None else updated,
            is_active=1,
            created_in="Default Store View" if website == 1 else "EU Store View",
            firstname=who.first_name,
            lastname=who.last_name,
            password_hash="x" * 64,
            default_billing=default_billing,
            default_shipping=default_billing,
        )
        return customer_id, phone, country

    def address(self, customer_id: int, who: Identity, country: str, phone: str | None, at: datetime) -> int:
        address_id = self.next("address")
        self.rows.add(
            "customer_address_entity",
            entity_id=address_id,
            parent_id=customer_id,
            created_at=at,
            updated_at=at,
            is_active=1,
            city="Springfield",
            country_id=country,
            firstname=who.first_name,
            lastname=who.last_name,
            postcode="12345",
            street="1 Main Street",
            telephone=phone or "",  # NOT NULL in Magento: a customer without a phone has ''
        )
        return address_id

    def newsletter(self, email: str, customer_id: int, store: int, status: int, at: datetime) -> None:
        self.rows.add(
            "newsletter_subscriber",
            store_id=store,
            change_status_at=at,
            customer_id=customer_id,
            subscriber_email=email,
            subscriber_status=status,
            subscriber_confirm_code=f"{self.rng.getrandbits(64):016x}",
        )

    # --- quotes ------------------------------------------------------------------------------------------
    def lines(self) -> list[tuple[object, int | None, int]]:
        rng = self.rng
        chosen = rng.sample(CATALOGUE, rng.choice((1, 1, 2, 3)))
        return [(p, rng.choice(p.variants) if p.variants else None, rng.choice((1, 1, 2))) for p in chosen]

    def quote(
        self,
        *,
        store: int,
        customer_id: int | None,
        email: str | None,
        who: Identity | None,
        created: datetime,
        updated: datetime,
        active: bool,
        lines: list,
        reserved: str | None = None,
    ) -> tuple[int, int, list[tuple[int, int | None]]]:
        """Returns the quote id, its total in cents and the (parent, child) quote item ids per line."""
        quote_id = self.next("quote")
        total = sum(p.price_cents * qty for p, _, qty in lines)
        item_ids = []
        for product, child, qty in lines:
            parent_id = self.next("quote_item")
            row_total = product.price_cents * qty
            self.rows.add(
                "quote_item",
                item_id=parent_id,
                quote_id=quote_id,
                created_at=created,
                updated_at=updated,
                product_id=product.product_id,
                store_id=store,
                parent_item_id=None,
                sku=product.sku,
                name=product.name,
                qty=qty,
                price=money(product.price_cents),
                base_price=money(product.price_cents),
                row_total=money(row_total),
                base_row_total=money(row_total),
                product_type="configurable" if child else "simple",
            )
            child_id = None
            if child:
                child_id = self.next("quote_item")
                self.rows.add(
                    "quote_item",
                    item_id=child_id,
                    quote_id=quote_id,
                    created_at=created,
                    updated_at=updated,
                    product_id=child,
                    store_id=store,
                    parent_item_id=parent_id,
                    sku=f"{product.sku}-{child}",
                    name=product.name,
                    qty=1,
                    price=0,
                    base_price=0,
                    row_total=0,
                    base_row_total=0,
                    product_type="simple",
                )
            item_ids.append((parent_id, child_id))
        self.rows.add(
            "quote",
            entity_id=quote_id,
            store_id=store,
            created_at=created,
            updated_at=updated,
            converted_at=updated if not active else None,
            is_active=1 if active else 0,
            items_count=len(lines),
            items_qty=sum(q for _, _, q in lines),
            base_currency_code="USD",
            store_currency_code="USD",
            quote_currency_code="USD",
            grand_total=money(total),
            base_grand_total=money(total),
            subtotal=money(total),
            base_subtotal=money(total),
            checkout_method="guest" if customer_id is None else "customer",
            customer_id=customer_id,
            customer_email=email,
            customer_firstname=who.first_name if who and customer_id else None,
            customer_lastname=who.last_name if who and customer_id else None,
            customer_is_guest=1 if customer_id is None else 0,
            reserved_order_id=reserved,
        )
        if email:
            self.rows.add(
                "quote_address",
                quote_id=quote_id,
                created_at=created,
                updated_at=updated,
                customer_id=customer_id,
                address_type="billing",
                email=email,
                firstname=who.first_name if who else None,
                lastname=who.last_name if who else None,
                country_id=who.country if who else None,
                telephone=who.phone_stored if who else None,
            )
        return quote_id, total, item_ids

    def cart(self, person: Person | None, store: int, customer_id: int | None, email: str | None, who) -> None:
        """An active quote: a person's open cart when it has lines and an owner (customer or e-mail)."""
        rng = self.rng
        created = between(rng, self.stop - timedelta(days=20), self.stop - timedelta(hours=2))
        updated = between(rng, created, self.stop)
        empty = person is not None and rng.random() < 0.15
        lines = [] if empty else self.lines()
        quote_id, total, _ = self.quote(
            store=store,
            customer_id=customer_id,
            email=email,
            who=who,
            created=created,
            updated=updated,
            active=True,
            lines=lines,
        )
        if person is None:
            self.set_aside["anonymous_carts"] += 1
        elif empty:
            self.set_aside["empty_carts"] += 1
        else:
            person.carts.append(Cart(quote_id, updated, money(total)))

    # --- orders ------------------------------------------------------------------------------------------
    def order(
        self,
        person: Person,
        who: Identity,
        customer_id: int | None,
        store: int,
        created: datetime,
        kind: tuple[str, str] | None = None,  # (state, status); default: every kind once, then ORDER_KINDS' weights
        paid: datetime | None = None,  # the first invoice's time when invoiced; default: within 20 min of created
    ) -> None:
        rng = self.rng
        state, status = self.kind() if kind is None else kind
        self.orders_made += 1
        lines = self.lines()
        subtotal = sum(p.price_cents * qty for p, _, qty in lines)
        discount = subtotal // 10 if rng.random() < 0.25 else 0
        shipping = 0 if subtotal >= 5000 else 500
        total = subtotal - discount + shipping
        order_id = self.next("order")
        increment = f"{store}{order_id:08d}"
        quote_id, _, item_ids = self.quote(
            store=store,
            customer_id=customer_id,
            email=who.email,
            who=who,
            created=created - timedelta(minutes=20),
            updated=created,
            active=False,
            lines=lines,
            reserved=increment,
        )
        invoices: list[tuple[datetime, int]] = []
        if state in INVOICED_STATES:
            first = paid
            if first is None:
                first = between(rng, created + timedelta(seconds=30), created + timedelta(minutes=20))
            if not self.double_invoiced:  # two partial invoices: paid at the first
                self.double_invoiced = True
                invoices = [(first, total // 2), (first + timedelta(hours=26), total - total // 2)]
            else:
                invoices = [(first, total)]
            invoices = [(at, amount) for at, amount in invoices if at < self.stop] or [(first, total)]
        refunds: list[tuple[datetime, int]] = []
        if invoices:
            paid = invoices[0][0]
            if state == "closed":
                refunds.append((min(paid + timedelta(days=rng.randint(1, 6)), self.stop - timedelta(seconds=1)), total))
            elif state == "complete" and rng.random() < 0.08 and total > 1000:
                at = between(rng, paid + timedelta(hours=3), paid + timedelta(days=10))
                if at < self.stop:
                    refunds.append((at, total // 4))
        updated = max([created, *(at for at, _ in invoices), *(at for at, _ in refunds)])
        invoiced = sum(a for _, a in invoices)
        refunded = sum(a for _, a in refunds)
        self.rows.add(
            "sales_order",
            entity_id=order_id,
            state=state,
            status=status,
            store_id=store,
            customer_id=customer_id,
            customer_is_guest=1 if customer_id is None else 0,
            customer_email=who.email,
            customer_firstname=who.first_name,
            customer_lastname=who.last_name,
            customer_group_id=0 if customer_id is None else 1,
            increment_id=increment,
            quote_id=quote_id,
            created_at=created,
            updated_at=updated,
            subtotal=money(subtotal),
            base_subtotal=money(subtotal),
            discount_amount=-money(discount),
            base_discount_amount=-money(discount),
            shipping_amount=money(shipping),
            base_shipping_amount=money(shipping),
            tax_amount=0,
            base_tax_amount=0,
            grand_total=money(total),
            base_grand_total=money(total),
            total_invoiced=money(invoiced),
            total_paid=money(invoiced),
            total_refunded=money(refunded) if refunded else None,
            total_qty_ordered=sum(q for _, _, q in lines),
            base_currency_code="USD",
            order_currency_code="USD",
            store_currency_code="USD",
            global_currency_code="USD",
            total_item_count=len(lines),
            store_name="Main Website\nMain Website Store\nDefault Store View",
        )
        for (product, child, qty), (quote_parent, quote_child) in zip(lines, item_ids, strict=True):
            parent_item = self.next("item")
            row_total = product.price_cents * qty
            self.rows.add(
                "sales_order_item",
                item_id=parent_item,
                order_id=order_id,
                parent_item_id=None,
                quote_item_id=quote_parent,
                store_id=store,
                created_at=created,
                updated_at=updated,
                product_id=product.product_id,
                product_type="configurable" if child else "simple",
                sku=product.sku,
                name=product.name,
                qty_ordered=qty,
                qty_invoiced=qty if invoices else 0,
                price=money(product.price_cents),
                base_price=money(product.price_cents),
                original_price=money(product.price_cents),
                row_total=money(row_total),
                base_row_total=money(row_total),
                row_invoiced=money(row_total) if invoices else 0,
                base_row_invoiced=money(row_total) if invoices else 0,
            )
            if child:
                self.rows.add(
                    "sales_order_item",
                    item_id=self.next("item"),
                    order_id=order_id,
                    parent_item_id=parent_item,
                    quote_item_id=quote_child,
                    store_id=store,
                    created_at=created,
                    updated_at=updated,
                    product_id=child,
                    product_type="simple",
                    sku=f"{product.sku}-{child}",
                    name=product.name,
                    qty_ordered=qty,
                    qty_invoiced=qty if invoices else 0,
                    price=0,
                    base_price=0,
                    original_price=0,
                    row_total=0,
                    base_row_total=0,
                    row_invoiced=0,
                    base_row_invoiced=0,
                )
                self.set_aside["child_lines"] += 1
        for kind in ("billing", "shipping"):
            self.rows.add(
                "sales_order_address",
                parent_id=order_id,
                customer_id=customer_id,
                postcode="12345",
                lastname=who.last_name,
                firstname=who.first_name,
                street="1 Main Street",
                city="Springfield",
                email=who.email,
                telephone=who.phone_stored,
                country_id=who.country,
                address_type=kind,
            )
        invoice_ids = []
        for at, amount in invoices:
            invoice_id = self.next("doc")
            invoice_ids.append(invoice_id)
            self.rows.add(
                "sales_invoice",
                entity_id=invoice_id,
                store_id=store,
                order_id=order_id,
                state=2,
                grand_total=money(amount),
                base_grand_total=money(amount),
                subtotal=money(amount),
                base_subtotal=money(amount),
                increment_id=f"{store}{invoice_id:08d}",
                created_at=at,
                updated_at=at,
                order_currency_code="USD",
                base_currency_code="USD",
            )
        for at, amount in refunds:
            memo_id = self.next("doc")
            self.rows.add(
                "sales_creditmemo",
                entity_id=memo_id,
                store_id=store,
                order_id=order_id,
                state=2,
                creditmemo_status=None,
                grand_total=money(amount),
                base_grand_total=money(amount),
                subtotal=money(amount),
                base_subtotal=money(amount),
                invoice_id=invoice_ids[0],
                increment_id=f"{store}{memo_id:08d}",
                created_at=at,
                updated_at=at,
                order_currency_code="USD",
                base_currency_code="USD",
            )
            person.refunds.append(Refund(memo_id, order_id, money(amount), at))
        if invoices:
            person.orders.append(PaidOrder(order_id, invoices[0][0], money(total), money(discount), money(shipping)))


def _newsletter_status(rng: random.Random, number: int) -> int | None:
    """Every status among the first customers, one customer never asked, then the weights."""
    forced: list[int | None] = [1, 2, 3, 4, None]
    if number <= len(forced):
        return forced[number - 1]
    return rng.choices(list(NEWSLETTER_WEIGHTS), weights=list(NEWSLETTER_WEIGHTS.values()))[0]


def generate(
    url: str | URL, customers: int = 200, seed: int = 0, prefix: str = "", *, end=END, days: int = DAYS
) -> ShopTruth:
    """(Re)create the Magento tables at `url` with `prefix` and fill them; returns the expected truth."""
    if customers < 12:
        raise ValueError(f"customers={customers}: the shop needs at least 12 to hold every quirk")
    rng = random.Random(seed)
    start, stop = window(end, days)
    shop = _Shop(rng, prefix, start, stop)
    # Website 0 and store 0 (admin) are real rows: Magento's installer writes them with this mode too.
    zero_ids = "SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')"
    with ddl.fresh_tables(url, "magento2", prefix, zero_ids) as conn:
        _stores(shop)
        for batch in customer_batches(customers):
            for number in batch:
                _customer(shop, number)
            shop.rows.flush(conn, TABLES)
        _strangers(shop, customers)
        shop.rows.flush(conn, TABLES)
    for person in shop.people.values():
        person.orders.sort(key=lambda o: o.order_id)
        person.refunds.sort(key=lambda r: r.refund_id)
        person.carts.sort(key=lambda c: c.cart_id)
    return ShopTruth("magento2", prefix, dict(sorted(shop.people.items())), shop.set_aside)


def _stores(shop: _Shop) -> None:
    for website_id, code, name in ((0, "admin", "Admin"), (1, "base", "Main Website"), (2, "eu", "EU Website")):
        shop.rows.add(
            "store_website",
            website_id=website_id,
            code=code,
            name=name,
            default_group_id=website_id,
            is_default=1 if website_id == 1 else 0,
        )
        shop.rows.add(
            "store",
            store_id=website_id,
            code="admin" if website_id == 0 else f"{code}_en",
            website_id=website_id,
            group_id=website_id,
            name=name,
            is_active=1,
        )
    for status, label, state in (
        ("pending", "Pending", "new"),
        ("pending_payment", "Pending Payment", "pending_payment"),
        ("processing", "Processing", "processing"),
        ("packed", "Packed (merchant's own)", "processing"),
        ("complete", "Complete", "complete"),
        ("closed", "Closed", "closed"),
        ("canceled", "Canceled", "canceled"),
        ("holded", "On Hold", "holded"),
        ("fraud", "Suspected Fraud", "payment_review"),
    ):
        shop.rows.add("sales_order_status", status=status, label=label)
        shop.rows.add(
            "sales_order_status_state", status=status, state=state, is_default=int(status == state), visible_on_front=1
        )


def _customer(shop: _Shop, number: int) -> None:
    rng = shop.rng
    who = Identity.invent(rng, number, "example.com")
    website = 2 if rng.random() < 0.1 and number != 1 else 1  # the first has its twin on website 2
    created = between(rng, shop.start - timedelta(days=200), shop.stop - timedelta(hours=1))
    address = (
        "both" if number == 2 else "none" if number in (1, 3) else weighted(rng, {"billing": 80, "both": 8, "none": 12})
    )
    customer_id, phone, country = shop.customer(who, website, created, address)
    person = Person(who.email, who.first_name, who.last_name, phone, country, "unknown", (customer_id,))
    shop.people[who.email] = person
    status = _newsletter_status(rng, number)
    if status:
        person.consent = CONSENT[status]
        shop.newsletter(who.email, customer_id, website, status, created)
    count = 3 if number <= 3 else rng.choices((0, 1, 2, 3, 4), weights=(25, 35, 25, 10, 5))[0]
    for _ in range(count):
        shop.order(
            person, who, customer_id, website, between(rng, max(created, shop.start), shop.stop - timedelta(minutes=25))
        )
    if number == 1:  # the same e-mail on the second website: another customer, the same person
        # Only the twin has an address: the person's phone and country are the twin's.
        twin_id, person.phone, person.country = shop.customer(who, 2, created + timedelta(days=30), "billing")
        person.customer_ids = (customer_id, twin_id)
        shop.order(
            person,
            who,
            twin_id,
            2,
            between(rng, max(created + timedelta(days=30), shop.start), shop.stop - timedelta(minutes=25)),
        )
    if rng.random() < 0.2 or number == 4:
        shop.cart(person, website, customer_id, who.email, who)
    if rng.random() < 0.15 or number == 5:
        _guest(shop, number)


def _guest(shop: _Shop, number: int) -> None:
    rng = shop.rng
    who = Identity.invent(rng, number, "guest.example.net")
    person = Person(who.email, who.first_name, who.last_name, who.phone, who.country, "unknown")
    shop.people[who.email] = person
    store = 2 if rng.random() < 0.1 else 1
    shop.order(person, who, None, store, between(rng, shop.start, shop.stop - timedelta(minutes=25)))
    if rng.random() < 0.3 or number == 5:  # an active guest cart, the e-mail on the quote
        shop.cart(person, store, None, who.email, who)
    if rng.random() < 0.3 or number == 5:
        status = 1 if rng.random() < 0.7 else 3
        person.consent = CONSENT[status]
        shop.newsletter(who.email, 0, store, status, shop.start)
    if rng.random() < 0.5 or number == 5:  # an anonymous visitor's cart: no customer, no e-mail
        shop.cart(None, store, None, None, None)


def _strangers(shop: _Shop, customers: int) -> None:
    """Newsletter subscribers with no account and no order: consent rows of no person."""
    for number in range(2):
        who = Identity.invent(shop.rng, customers + 1 + number, "form.example.org", phone_share=0)
        shop.newsletter(who.email, 0, 1, 1, between(shop.rng, shop.start, shop.stop))
        shop.set_aside["consent_only_subscribers"] += 1


# --- writing into a generated shop (the benchmarks) ------------------------------------------------------------


def add_paid_orders(
    conn: Connection, sales: Sequence[Sale], *, prefix: str = "", rng: random.Random | None = None
) -> list[tuple[int, int]]:
    """Paid orders written into a generated shop, one per (customer ID, paid time in UTC), and committed together.

    Each is the generator's order (`_Shop.order`: its converted quote, a parent `sales_order_item` per product
    with a configurable product's child line, addresses) in state and status `processing`, created a minute before
    its payment, with one paid invoice (`sales_invoice.state` 2) created at the paid time, and `updated_at` the
    paid time. A customer ID of None is a new customer of the main website, whose account comes with the order:
    `customer_entity` with a default billing address, created with the order and saved at the paid time. Returns
    each order's (ID, customer ID)."""
    utc_session(conn)
    stop = stop_after(paid for _, paid in sales)
    shop = _continuing(conn, rng or random.Random(0), prefix, stop)
    known = _identities(conn, prefix, {customer for customer, _ in sales if customer is not None})
    written = []
    for customer_id, paid in sales:
        created = paid - timedelta(minutes=1)
        if customer_id is None:
            # Numbered by the next customer ID, past every generated customer's number: an e-mail no one has.
            who = Identity.invent(shop.rng, shop.ids["customer"] + 1, "example.com")
            website = 1
            customer_id, _, _ = shop.customer(who, website, created, "billing", updated=paid)
        else:
            who, website = known[customer_id]
        person = Person(who.email, who.first_name, who.last_name, who.phone, who.country, "unknown", (customer_id,))
        written.append((shop.ids["order"] + 1, customer_id))
        # Each website has one store, of the same id (`_stores`).
        shop.order(person, who, customer_id, website, created, kind=("processing", "processing"), paid=paid)
    shop.rows.flush(conn, TABLES)
    return written


def add_cart(
    conn: Connection, customer_id: int, at: datetime, *, prefix: str = "", rng: random.Random | None = None
) -> int:
    """An open cart of an existing customer, last changed at `at` (UTC), committed: the generator's active quote
    (`_Shop.quote`) with its `quote_item`s (a configurable product's parent and child) and the customer's e-mail
    and billing address. Returns its ID."""
    utc_session(conn)
    shop = _continuing(conn, rng or random.Random(0), prefix, stop_after([at]))
    who, website = _identities(conn, prefix, {customer_id})[customer_id]
    quote_id, _, _ = shop.quote(
        store=website,
        customer_id=customer_id,
        email=who.email,
        who=who,
        created=at,
        updated=at,
        active=True,
        lines=shop.lines(),
    )
    shop.rows.flush(conn, TABLES)
    return quote_id


def _continuing(conn: Connection, rng: random.Random, prefix: str, stop: datetime) -> _Shop:
    """The generator's row builders, with ids continuing the shop's."""
    shop = _Shop(rng, prefix, stop, stop)  # the row builders alone: no history to spread
    shop.double_invoiced = True  # one invoice per order
    for name, table, column in (
        ("customer", "customer_entity", "entity_id"),
        ("address", "customer_address_entity", "entity_id"),
        ("quote", "quote", "entity_id"),
        ("quote_item", "quote_item", "item_id"),
        ("order", "sales_order", "entity_id"),
        ("item", "sales_order_item", "item_id"),
    ):
        shop.ids[name] = next_id(conn, prefix + table, column) - 1
    # Invoices and credit memos share one sequence of ids here (`_Shop.order`).
    shop.ids["doc"] = max(next_id(conn, prefix + t, "entity_id") for t in ("sales_invoice", "sales_creditmemo")) - 1
    return shop


def _identities(conn: Connection, prefix: str, customer_ids: set[int]) -> dict[int, tuple[Identity, int]]:
    """The customers' e-mails, names, default billing country and phone, and website."""
    if not customer_ids:
        return {}
    rows = conn.execute(
        text(
            "SELECT c.entity_id, c.firstname, c.lastname, c.email, a.country_id, NULLIF(a.telephone, ''), "
            f"c.website_id FROM `{prefix}customer_entity` AS c "
            f"LEFT JOIN `{prefix}customer_address_entity` AS a ON a.entity_id = c.default_billing "
            "WHERE c.entity_id IN :ids"
        ).bindparams(bindparam("ids", expanding=True)),
        {"ids": sorted(customer_ids)},
    ).all()
    found = {int(row[0]): (Identity(row[1], row[2], row[3], row[4], row[5], None), int(row[6])) for row in rows}
    missing = customer_ids - set(found)
    if missing:
        raise ValueError(f"no {prefix}customer_entity row for the customer IDs {sorted(missing)}")
    return found
