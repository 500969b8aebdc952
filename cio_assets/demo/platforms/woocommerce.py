"""A small WooCommerce (HPOS) + MailPoet shop, generated into the platform's own tables, with its expected truth.

`generate(url, customers, seed, prefix)` creates the tables (`woocommerce.sql`, under `prefix`) and fills them
deterministically. The quirks a mapping must handle, each present whatever the size:

* Users 1 and 2 are an administrator and a shop manager (role in serialised `{prefix}capabilities` usermeta,
  each with a MailPoet row): they are not people. Customers follow, role `customer`.
* Customer names, phone and country are `billing_*` usermeta; the first customer has `billing_phone` written
  twice with different values (WordPress' `get_user_meta(..., true)` reads the first: the truth).
* Orders cycle through every core status, then the custom plugin status `wc-shipped` (paid, but unmapped:
  set aside), then follow `STATUS_WEIGHTS`. Paid orders (processing, completed, refunded) have
  `date_paid_gmt`; on-hold, pending, failed, cancelled and checkout-draft have none.
* Guests have `customer_id` 0 and `billing_email`; one guest order uses a registered customer's e-mail.
* Refunds are `shop_order_refund` rows (`parent_order_id`, negative `total_amount`, status wc-completed,
  customer_id 0) with `_refund_amount`/`_refund_reason` meta; every wc-refunded order is refunded in full.
* Lines are `line_item`s with `_product_id`, `_variation_id`, `_qty`, `_line_subtotal`, `_line_total` (after
  the discount), plus `shipping` and `coupon` items; `wc_order_product_lookup` copies them with
  `date_created` in the site's local time (`SITE_TZ`).
* MailPoet rows with every status (`CONSENT`), customers with none (never asked), guests subscribed at
  checkout, and form signups with no account and no order (not people).

`add_paid_orders(conn, sales)` adds paid orders (and new customers' accounts) to a generated shop with the same row
builders, as the benchmarks do.

All `*_gmt` and MailPoet TIMESTAMP values are UTC; the writing session's time zone is set to '+00:00' so that
TIMESTAMP columns store what is written whatever the server's or the URL's zone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

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
    token,
    weighted,
    window,
)
from cio_assets.demo.platforms.truth import Consent, PaidOrder, Person, Refund, ShopTruth, money
from cio_assets.demo.platforms.writing import Sale, next_id, stop_after, utc_session

# Core statuses, and the one a plugin adds (a mapping that does not map it must set those orders aside).
CORE_STATUSES = (
    "wc-pending",
    "wc-processing",
    "wc-on-hold",
    "wc-completed",
    "wc-cancelled",
    "wc-refunded",
    "wc-failed",
    "wc-checkout-draft",
)
CUSTOM_STATUS = "wc-shipped"
PAID_STATUSES = ("wc-processing", "wc-completed", "wc-refunded")  # date_paid_gmt set
STATUS_WEIGHTS = {
    "wc-completed": 50,
    "wc-processing": 15,
    "wc-on-hold": 4,
    "wc-pending": 6,
    "wc-cancelled": 5,
    "wc-refunded": 4,
    "wc-failed": 6,
    "wc-checkout-draft": 5,
    CUSTOM_STATUS: 1,  # a plugin status on a few orders: set aside and listed, below the contract threshold
}
# MailPoet status -> consent. Only an explicit unsubscribe is an opt-out; unconfirmed (double opt-in never
# confirmed), inactive (MailPoet stopped sending for lack of engagement) and bounced (undeliverable) are no
# choice of the person's either way.
CONSENT: dict[str, Consent] = {
    "subscribed": "opted_in",
    "unsubscribed": "opted_out",
    "unconfirmed": "unknown",
    "inactive": "unknown",
    "bounced": "unknown",
}
MAILPOET_WEIGHTS = {"subscribed": 35, "unsubscribed": 12, "unconfirmed": 10, "inactive": 5, "bounced": 3, None: 35}
SITE_TZ = ZoneInfo("America/New_York")  # the site's zone (wp_options timezone_string): local-time columns
ROLES = {
    "administrator": 'a:1:{s:13:"administrator";b:1;}',
    "shop_manager": 'a:1:{s:12:"shop_manager";b:1;}',
    "customer": 'a:1:{s:8:"customer";b:1;}',
}
FIRST_ORDER_ID = 1000
TABLES = (  # write order
    "users",
    "usermeta",
    "wc_orders",
    "wc_order_addresses",
    "wc_order_operational_data",
    "wc_orders_meta",
    "woocommerce_order_items",
    "woocommerce_order_itemmeta",
    "wc_order_product_lookup",
    "wc_product_meta_lookup",
    "mailpoet_subscribers",
)


class _Shop:
    def __init__(self, rng: random.Random, prefix: str, start: datetime, stop: datetime) -> None:
        self.rng, self.prefix, self.start, self.stop = rng, prefix, start, stop
        self.rows = Rows(prefix)
        self.people: dict[str, Person] = {}
        self.set_aside = {"non_customer_users": 0, "duplicate_usermeta": 0, "custom_status_orders": 0}
        self.set_aside["consent_only_subscribers"] = 0
        self.next_order = FIRST_ORDER_ID
        self.next_item = 1
        self.orders_made = 0
        self.mailpoet_made = 0

    # --- users -------------------------------------------------------------------------------------------
    def user(
        self,
        user_id: int,
        who: Identity,
        role: str,
        registered: datetime,
        phone_twice: str | None = None,
        saved: datetime | None = None,  # when WooCommerce last saved the customer (last_update); default: registered
    ):
        login = who.email.split("@")[0]
        self.rows.add(
            "users",
            ID=user_id,
            user_login=login,
            user_pass="$wp$2y$10$" + token(self.rng, 53),
            user_nicename=login[:50].replace(".", "-"),
            user_email=who.email,
            user_registered=registered,
            display_name=f"{who.first_name} {who.last_name}",
        )
        meta = [
            ("nickname", login),
            ("first_name", who.first_name),
            ("last_name", who.last_name),
            (f"{self.prefix}capabilities", ROLES[role]),
            (f"{self.prefix}user_level", "0"),
            ("billing_first_name", who.first_name),
            ("billing_last_name", who.last_name),
            ("billing_email", who.email),
            ("billing_country", who.country),
        ]
        if who.phone_stored:
            meta.append(("billing_phone", who.phone_stored))
        if phone_twice:  # a plugin's add_user_meta() after WooCommerce's: a second row, read after the first
            meta.append(("billing_phone", phone_twice))
            self.set_aside["duplicate_usermeta"] += 1
        last_update = registered if saved is None else saved
        meta.append(("last_update", str(int((last_update - datetime(1970, 1, 1)).total_seconds()))))
        for key, value in meta:
            self.rows.add("usermeta", user_id=user_id, meta_key=key, meta_value=value)

    def mailpoet(self, who: Identity, status: str, at: datetime, user_id: int | None, source: str) -> None:
        self.mailpoet_made += 1
        self.rows.add(
            "mailpoet_subscribers",
            wp_user_id=user_id,
            is_woocommerce_user=1 if source.startswith("woocommerce") else 0,
            first_name=who.first_name,
            last_name=who.last_name,
            email=who.email,
            status=status,
            created_at=at,
            updated_at=min(at + timedelta(days=1), self.stop - timedelta(seconds=1)),
            last_subscribed_at=at if status in ("subscribed", "inactive", "bounced") else None,
            confirmed_at=at + timedelta(minutes=5) if status != "unconfirmed" else None,
            source=source,
            unsubscribe_token=token(self.rng, 15),
            link_token=token(self.rng, 32),
        )

    # --- orders ------------------------------------------------------------------------------------------
    def status(self) -> str:
        statuses = (*CORE_STATUSES, CUSTOM_STATUS)
        if self.orders_made < len(statuses):
            return statuses[self.orders_made]
        return weighted(self.rng, STATUS_WEIGHTS)

    def order(
        self,
        person: Person,
        who: Identity,
        customer_id: int,
        created: datetime,
        status: str,
        paid: datetime | None = None,  # the payment's time for a paid status; default: within 30 min of created
    ) -> None:
        rng = self.rng
        self.orders_made += 1
        order_id = self.next_order
        self.next_order += 1
        lines = []
        for product in rng.sample(CATALOGUE, rng.choice((1, 1, 2, 3))):
            variation = rng.choice(product.variants) if product.variants else 0
            lines.append((product, variation, rng.choice((1, 1, 1, 2, 3))))
        subtotal = sum(p.price_cents * qty for p, _, qty in lines)
        discount = subtotal // 10 if rng.random() < 0.25 else 0
        shipping = 0 if subtotal >= 5000 else 595
        total = subtotal - discount + shipping
        if paid is None:
            paid = between(rng, created + timedelta(seconds=20), created + timedelta(minutes=30))
        paid_at = paid if status in (*PAID_STATUSES, CUSTOM_STATUS) else None
        completed = None
        if status in ("wc-completed", CUSTOM_STATUS):
            completed = min(paid + timedelta(days=rng.randint(1, 4)), self.stop - timedelta(seconds=1))
        updated = completed or paid_at or created + timedelta(minutes=rng.randint(0, 90))
        refunds: list[tuple[int, datetime, str]] = []
        if status == "wc-refunded":
            refunds.append((total, between(rng, paid + timedelta(hours=2), paid + timedelta(days=5)), "Changed mind"))
        elif status in ("wc-processing", "wc-completed") and rng.random() < 0.08 and total > 1000:
            refunds.append((total // 4, between(rng, paid + timedelta(hours=2), paid + timedelta(days=9)), "Damaged"))
        refunds = [r for r in refunds if r[1] < self.stop]
        if status == "wc-refunded" and not refunds:  # a full refund always exists for a refunded order
            refunds.append((total, min(paid + timedelta(hours=2), self.stop - timedelta(seconds=1)), "Changed mind"))
        updated = max([updated, *(at for _, at, _ in refunds)])
        self.rows.add(
            "wc_orders",
            id=order_id,
            status=status,
            currency="USD",
            type="shop_order",
            tax_amount=0,
            total_amount=money(total),
            customer_id=customer_id,
            billing_email=who.email,
            date_created_gmt=created,
            date_updated_gmt=updated,
            parent_order_id=0,
            payment_method="stripe",
            payment_method_title="Credit card (Stripe)",
            transaction_id=f"ch_{token(rng, 24)}" if paid_at else "",
            ip_address=f"203.0.113.{rng.randint(1, 254)}",
            user_agent="Mozilla/5.0",
            customer_note="",
        )
        for kind in ("billing", "shipping"):
            self.rows.add(
                "wc_order_addresses",
                order_id=order_id,
                address_type=kind,
                first_name=who.first_name,
                last_name=who.last_name,
                address_1=f"{rng.randint(1, 999)} Main Street",
                city="Springfield",
                postcode=f"{rng.randint(10000, 99999)}",
                country=who.country,
                email=who.email if kind == "billing" else None,
                phone=who.phone_stored,
            )
        self.rows.add(
            "wc_order_operational_data",
            order_id=order_id,
            created_via="checkout",
            woocommerce_version="9.9.3",
            prices_include_tax=0,
            coupon_usages_are_counted=1 if discount else 0,
            download_permission_granted=1,
            cart_hash=token(rng, 32),
            new_order_email_sent=1,
            order_key=f"wc_order_{token(rng, 13)}",
            order_stock_reduced=1 if paid_at else 0,
            date_paid_gmt=paid_at,
            date_completed_gmt=completed,
            shipping_tax_amount=0,
            shipping_total_amount=money(shipping),
            discount_tax_amount=0,
            discount_total_amount=money(discount),
            recorded_sales=1 if paid_at else 0,
        )
        local_created = created.replace(tzinfo=ZoneInfo("UTC")).astimezone(SITE_TZ).replace(tzinfo=None)
        for index, (product, variation, qty) in enumerate(lines):
            line_subtotal = product.price_cents * qty
            line_total = line_subtotal - (discount if index == 0 else 0)  # the coupon lands on the first line
            item = self.item(order_id, product.name, "line_item")
            for key, value in (
                ("_product_id", product.product_id),
                ("_variation_id", variation),
                ("_qty", qty),
                ("_tax_class", ""),
                ("_line_subtotal", money(line_subtotal)),
                ("_line_subtotal_tax", 0),
                ("_line_total", money(line_total)),
                ("_line_tax", 0),
            ):
                self.rows.add("woocommerce_order_itemmeta", order_item_id=item, meta_key=key, meta_value=str(value))
            self.rows.add(
                "wc_order_product_lookup",
                order_item_id=item,
                order_id=order_id,
                product_id=product.product_id,
                variation_id=variation,
                customer_id=customer_id or None,
                date_created=local_created,
                product_qty=qty,
                product_net_revenue=line_total / 100,
                product_gross_revenue=line_total / 100,
                coupon_amount=(line_subtotal - line_total) / 100,
                shipping_amount=shipping / 100 if index == 0 else 0,
            )
        if shipping:
            item = self.item(order_id, "Flat rate", "shipping")
            for key, value in (("method_id", "flat_rate"), ("cost", money(shipping))):
                self.rows.add("woocommerce_order_itemmeta", order_item_id=item, meta_key=key, meta_value=str(value))
        if discount:
            item = self.item(order_id, "welcome10", "coupon")
            self.rows.add(
                "woocommerce_order_itemmeta",
                order_item_id=item,
                meta_key="discount_amount",
                meta_value=str(money(discount)),
            )
        for amount, at, reason in refunds:
            refund_id = self.next_order
            self.next_order += 1
            self.rows.add(
                "wc_orders",
                id=refund_id,
                status="wc-completed",
                currency="USD",
                type="shop_order_refund",
                tax_amount=0,
                total_amount=-money(amount),
                customer_id=0,
                billing_email=None,
                date_created_gmt=at,
                date_updated_gmt=at,
                parent_order_id=order_id,
                payment_method="",
                payment_method_title="",
                transaction_id="",
                ip_address="",
                user_agent="",
                customer_note="",
            )
            for key, value in (("_refund_amount", money(amount)), ("_refund_reason", reason), ("_refunded_by", 2)):
                self.rows.add("wc_orders_meta", order_id=refund_id, meta_key=key, meta_value=str(value))
            person.refunds.append(Refund(refund_id, order_id, money(amount), at))
        if status == CUSTOM_STATUS:
            self.set_aside["custom_status_orders"] += 1
        elif paid_at:
            person.orders.append(PaidOrder(order_id, paid_at, money(total), money(discount), money(shipping)))

    def item(self, order_id: int, name: str, kind: str) -> int:
        item = self.next_item
        self.next_item += 1
        self.rows.add(
            "woocommerce_order_items", order_item_id=item, order_item_name=name, order_item_type=kind, order_id=order_id
        )
        return item


def _consent_status(rng: random.Random, number: int) -> str | None:
    """Every MailPoet status among the first customers, one customer never asked, then the weights."""
    forced: list[str | None] = [*CONSENT, None]
    if number <= len(forced):
        return forced[number - 1]
    return rng.choices(list(MAILPOET_WEIGHTS), weights=list(MAILPOET_WEIGHTS.values()))[0]


def _catalogue(shop: _Shop) -> None:
    """The products' SKUs, as WooCommerce keeps them for lookups; a variation without a SKU of its own has ''."""
    for product in CATALOGUE:
        shop.rows.add("wc_product_meta_lookup", product_id=product.product_id, sku=product.sku)
        for variant in product.variants:
            shop.rows.add("wc_product_meta_lookup", product_id=variant, sku="")


def generate(
    url: str | URL, customers: int = 200, seed: int = 0, prefix: str = "wp_", *, end=END, days: int = DAYS
) -> ShopTruth:
    """(Re)create the WooCommerce tables at `url` under `prefix` and fill them; returns the expected truth."""
    if customers < 12:
        raise ValueError(f"customers={customers}: the shop needs at least 12 to hold every quirk")
    rng = random.Random(seed)
    start, stop = window(end, days)
    shop = _Shop(rng, prefix, start, stop)
    with ddl.fresh_tables(url, "woocommerce", prefix) as conn:
        _staff(shop)
        _catalogue(shop)
        guests: list[tuple[Person, Identity]] = []
        for batch in customer_batches(customers):
            for number in batch:
                _customer(shop, number, guests)
            shop.rows.flush(conn, TABLES)
        _form_signups(shop, customers)
        shop.rows.flush(conn, TABLES)
    for person in shop.people.values():
        person.orders.sort(key=lambda o: o.order_id)
        person.refunds.sort(key=lambda r: r.refund_id)
    return ShopTruth("woocommerce", prefix, dict(sorted(shop.people.items())), shop.set_aside)


def _staff(shop: _Shop) -> None:
    for user_id, role in ((1, "administrator"), (2, "shop_manager")):
        who = Identity(role.title(), "Staff", f"{role.replace('_', '.')}@roastery.example", "US", None, None)
        shop.user(user_id, who, role, shop.start - timedelta(days=400))
        shop.mailpoet(who, "subscribed", shop.start - timedelta(days=400), user_id, "wordpress_user")
        shop.set_aside["non_customer_users"] += 1


def _customer(shop: _Shop, number: int, guests: list[tuple[Person, Identity]]) -> None:
    rng = shop.rng
    user_id = number + 2
    who = Identity.invent(rng, number, "example.com", phone_share=1 if number == 1 else 0.85)
    registered = between(rng, shop.start - timedelta(days=200), shop.stop - timedelta(hours=1))
    twice = None
    if number == 1:  # the duplicated usermeta key, the other value second: WordPress reads the first
        twice = Identity.invent(rng, number, "example.com", phone_share=1).phone
    shop.user(user_id, who, "customer", registered, phone_twice=twice)
    status = _consent_status(rng, number)
    person = Person(who.email, who.first_name, who.last_name, who.phone, who.country, "unknown", (user_id,))
    if status:
        person.consent = CONSENT[status]
        shop.mailpoet(who, status, registered, user_id, "woocommerce_user")
    shop.people[who.email] = person
    count = 3 if number <= 3 else rng.choices((0, 1, 2, 3, 4), weights=(25, 35, 25, 10, 5))[0]
    for _ in range(count):
        created = between(rng, max(registered, shop.start), shop.stop - timedelta(minutes=31))
        shop.order(person, who, user_id, created, shop.status())
    if number == 5:  # a registered customer checking out as a guest: customer_id 0, their own e-mail
        shop.order(person, who, 0, between(rng, shop.start, shop.stop - timedelta(minutes=31)), "wc-completed")
    if rng.random() < 0.15 or number == 4:
        _guest(shop, number)


def _guest(shop: _Shop, number: int) -> None:
    rng = shop.rng
    who = Identity.invent(rng, number, "guest.example.net")
    person = Person(who.email, who.first_name, who.last_name, who.phone, who.country, "unknown")
    shop.people[who.email] = person
    first = between(rng, shop.start, shop.stop - timedelta(days=1))
    shop.order(person, who, 0, first, "wc-completed")  # every guest paid at least once: they are people
    if rng.random() < 0.3:
        shop.order(person, who, 0, between(rng, first, shop.stop - timedelta(minutes=31)), shop.status())
    if rng.random() < 0.3 or number == 4:
        status = "subscribed" if rng.random() < 0.7 else "unsubscribed"
        person.consent = CONSENT[status]
        shop.mailpoet(who, status, first, None, "woocommerce_checkout")


def _form_signups(shop: _Shop, customers: int) -> None:
    """Newsletter signups through a form: consent rows of no account and no order, hence of no person."""
    for number in range(2):
        who = Identity.invent(shop.rng, customers + 1 + number, "form.example.org", phone_share=0)
        shop.mailpoet(who, "subscribed", between(shop.rng, shop.start, shop.stop), None, "form")
        shop.set_aside["consent_only_subscribers"] += 1


# --- writing into a generated shop (the benchmarks) ------------------------------------------------------------


def add_paid_orders(
    conn: Connection, sales: Sequence[Sale], *, prefix: str = "wp_", rng: random.Random | None = None
) -> list[tuple[int, int]]:
    """Paid orders written into a generated shop, one per (customer ID, paid time in UTC), and committed together.

    Each is the generator's order (`_Shop.order`: its lines with their itemmeta, addresses, product lookups) in
    `wc-processing`, created a minute before its payment, with `date_paid_gmt` and `date_updated_gmt` the paid
    time. A customer ID of None is a new customer, registered with the order: a `users` row with the customer role
    in `{prefix}capabilities`, billing usermeta, and `last_update` the paid time. Returns each order's (ID,
    customer ID)."""
    utc_session(conn)
    stop = stop_after(paid for _, paid in sales)
    shop = _Shop(rng or random.Random(0), prefix, stop, stop)  # the row builders alone: no history to spread
    shop.next_order = next_id(conn, f"{prefix}wc_orders", "id")
    shop.next_item = next_id(conn, f"{prefix}woocommerce_order_items", "order_item_id")
    next_user = next_id(conn, f"{prefix}users", "ID")
    known = _identities(conn, prefix, {customer for customer, _ in sales if customer is not None})
    written = []
    for customer_id, paid in sales:
        created = paid - timedelta(minutes=1)
        if customer_id is None:
            customer_id, next_user = next_user, next_user + 1
            # Numbered by the user ID, past every generated customer's number: an e-mail no one has.
            who = Identity.invent(shop.rng, customer_id, "example.com")
            shop.user(customer_id, who, "customer", created, saved=paid)
        else:
            who = known[customer_id]
        person = Person(who.email, who.first_name, who.last_name, who.phone, who.country, "unknown", (customer_id,))
        written.append((shop.next_order, customer_id))
        shop.order(person, who, customer_id, created, "wc-processing", paid=paid)
    shop.rows.flush(conn, TABLES)
    return written


def _identities(conn: Connection, prefix: str, user_ids: set[int]) -> dict[int, Identity]:
    """The customers' e-mails, and their billing names, country and phone as WordPress reads them (a key's first
    usermeta row)."""
    if not user_ids:
        return {}
    keys = {"billing_first_name", "billing_last_name", "billing_country", "billing_phone"}
    found: dict[int, dict[str, str]] = {}
    rows = conn.execute(
        text(
            f"SELECT u.ID, u.user_email, m.meta_key, m.meta_value FROM `{prefix}users` AS u "
            f"LEFT JOIN `{prefix}usermeta` AS m ON m.user_id = u.ID AND m.meta_key IN :keys "
            "WHERE u.ID IN :ids ORDER BY m.umeta_id"
        ).bindparams(bindparam("keys", expanding=True), bindparam("ids", expanding=True)),
        {"keys": sorted(keys), "ids": sorted(user_ids)},
    )
    for user_id, email, key, value in rows:
        meta = found.setdefault(int(user_id), {"email": email})
        if key is not None:
            meta.setdefault(key, value)
    missing = user_ids - set(found)
    if missing:
        raise ValueError(f"no {prefix}users row for the customer IDs {sorted(missing)}")
    return {
        user_id: Identity(
            meta.get("billing_first_name", ""),
            meta.get("billing_last_name", ""),
            meta["email"],
            meta.get("billing_country", ""),
            meta.get("billing_phone"),
            None,
        )
        for user_id, meta in found.items()
    }
