"""Tables the pipeline owns, in the state database: every column it writes, named once.

Every column holds anything its writer can produce. Identifiers are sized for any value the
pipeline keeps (longer ones are set aside with a reason before they get here); free text in the
listings (reasons, raw values) is marked `CLIPPED` and cut to the column's width on write, which is
harmless and documented; payloads and properties are LONGTEXT on MySQL.

Partitioned tables carry a `day` column (the business-time-zone date of the partition) so that a
partition is replaced with one delete and one bulk insert in a single transaction.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)
from sqlalchemy.dialects import mysql

from cio_assets.lib.locks import named_lock
from cio_assets.schema.columns import CLIPPED, PII, sources

state_metadata = MetaData()

# Long enough for any e-mail (RFC 5321: 320 bytes), short enough to index under utf8mb4.
ID_WIDTH = 320
# Customer.io holds at most 1000 bytes per attribute value; longer free text is clipped before this.
ATTRIBUTE_TEXT_WIDTH = 1000
# A VIP tier's name (CIO_VIP_TIERS): the settings refuse a longer one.
VIP_TIER_WIDTH = 32


def _long_text() -> Text:
    """Unbounded JSON text: LONGTEXT on MySQL (a plain TEXT holds only 64 KB)."""
    return Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


identity_map = Table(
    "cio_identity_map",
    state_metadata,
    Column("identifier_type", String(16), primary_key=True, comment="customer_id, email, phone or anonymous_id"),
    Column(
        "identifier",
        String(ID_WIDTH),
        primary_key=True,
        info=PII,
        comment="The normalised identifier: a customer id, a lower-cased e-mail, an E.164 phone, an anonymous id",
    ),
    Column("person_id", String(ID_WIDTH), nullable=False, comment="The canonical person it resolves to"),
    Column("source", String(32), nullable=False, comment="The source table the identifier was first seen in"),
    Index("ix_cio_identity_map_person", "person_id"),
)

identity_conflicts = Table(
    "cio_identity_conflicts",
    state_metadata,
    Column("kind", String(32), primary_key=True, comment="shared_email, shared_phone or anonymous_id_many_people"),
    Column("identifier", String(ID_WIDTH), primary_key=True, info=PII, comment="The identifier several share"),
    Column("member", String(ID_WIDTH), primary_key=True, comment="A customer id (or person) sharing it"),
    Column("survivor", String(ID_WIDTH), nullable=False, comment="What the identifier resolves to"),
    Column("is_survivor", Boolean, nullable=False, comment="This member is the survivor"),
)

unresolved_identifiers = Table(
    "cio_unresolved_identifiers",
    state_metadata,
    Column("source_table", String(64), primary_key=True, comment="The source table of the row"),
    Column("source_key", String(64), primary_key=True, comment="The row's primary key in that table"),
    Column("identifier_type", String(16), nullable=False, comment="customer_id, email, phone or anonymous_id"),
    Column("identifier", String(ID_WIDTH), info={**CLIPPED, **PII}, comment="The raw value, as the source holds it"),
    Column("reason", String(255), nullable=False, info=CLIPPED, comment="Why it resolves to nobody"),
)

invalid_values = Table(
    "cio_invalid_values",
    state_metadata,
    Column("source_table", String(64), primary_key=True, comment="The source table of the row"),
    Column("source_key", String(64), primary_key=True, comment="The row's primary key in that table"),
    Column("column_name", String(64), primary_key=True, comment="The column whose value was invalid"),
    Column("raw_value", String(1000), info={**CLIPPED, **PII}, comment="The value as the source holds it (clipped)"),
    Column("reason", String(255), nullable=False, info=CLIPPED, comment="Why it was nulled"),
)

# What identity was resolved from: the rows of the five inputs (customers, guest orders, carts, links,
# orphan subscriptions), each with the keys it connects by (customer id, normalised e-mail and phone,
# anonymous id). An incremental run finds the rows connected to what changed here, through the indexed
# keys, and resolves only those, from these rows rather than from the shop.
identity_inputs = Table(
    "cio_identity_inputs",
    state_metadata,
    Column("source_table", String(32), primary_key=True, comment="customers, orders, carts, identity_links, ..."),
    Column(
        "source_key",
        String(64),
        primary_key=True,
        comment="The row's primary key (for a link, a digest of customer id, anonymous id and time)",
    ),
    Column("customer_id", BigInteger, comment="The customer the row is (customers) or names"),
    Column("email", Text, info=PII, comment="E-mail as the source holds it"),
    Column("email_key", String(ID_WIDTH), info=PII, comment="Normalised e-mail, or null when missing or invalid"),
    Column("phone", Text, info=PII, comment="Phone as the source holds it (customers)"),
    Column("phone_key", String(32), info=PII, comment="E.164 phone, or null when missing or invalid"),
    Column("country", Text, comment="Country as the source holds it, for national phone formats (customers)"),
    Column("anonymous_id", Text, comment="Anonymous id as the source holds it (carts, links)"),
    Column("anonymous_key", String(ID_WIDTH), comment="The anonymous id, when short enough to keep"),
    Column("created_at", BigInteger, comment="Unix seconds, customers: created_at, null when missing or rejected"),
    Column("created_at_raw", BigInteger, comment="Unix seconds, customers: created_at as the source holds it"),
    Column("linked_at", BigInteger, comment="Unix seconds, links: when the link was made"),
    Index("ix_cio_identity_inputs_customer", "customer_id"),
    Index("ix_cio_identity_inputs_email", "email_key"),
    Index("ix_cio_identity_inputs_phone", "phone_key"),
    Index("ix_cio_identity_inputs_anonymous", "anonymous_key"),
    Index("ix_cio_identity_inputs_created", "created_at_raw"),
)

# Where each incremental asset stopped reading the shop: one JSON document per asset, written in the
# same transaction as what the asset derived from it, so a crash never moves it past unwritten work.
cursors = Table(
    "cio_cursors",
    state_metadata,
    Column("asset", String(64), primary_key=True, comment="The asset the cursor belongs to"),
    Column("value", Text, nullable=False, comment="JSON: per source table, the newest change time and largest id seen"),
    Column("updated_at", BigInteger, nullable=False, comment="Unix seconds: the run that wrote it"),
)

# The keys of the shop's rows changed as binlog capture read them (CIO_CHANGE_CAPTURE=binlog, tracking/binlog.py), for
# the runs to compute their people again; dropped once every run that reads them has.
captured_changes = Table(
    "cio_captured_changes",
    state_metadata,
    Column(
        "seq",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
        comment="Order of capture",
    ),
    Column("concept", String(64), nullable=False, comment="The source concept the row belongs to (orders, ...)"),
    Column("key_name", String(64), nullable=False, comment="The concept's key: id, customer_id, email, order_id, ..."),
    Column("key_value", String(255), nullable=False, comment="The key's value, as text"),
    Column("captured_at", BigInteger, nullable=False, comment="Unix seconds: the sensor tick that read it"),
)

# The shop's high-water marks as last read, per concept, with the server's note of when each of the concept's
# tables last changed at that reading: while the notes stay the same, the marks are not read again
# (tracking/marks.py, tracking/table_times.py).
source_marks = Table(
    "cio_source_marks",
    state_metadata,
    Column(
        "concept", String(64), primary_key=True, comment="The source concept (customers, orders, ...) or a figure of it"
    ),
    Column(
        "notes",
        Text,
        nullable=False,
        comment="JSON: per shop table it reads, the server's last-change time (Unix seconds)",
    ),
    Column("marks", Text, nullable=False, comment="JSON: the marks (or figure) read under those notes"),
    Column("read_at", BigInteger, nullable=False, comment="Unix seconds, the server's clock: when the notes were read"),
)

# Per asset and day, when it was last computed and from what (a digest of the shop's high-water marks,
# identity's last change and the settings), so a re-run with nothing new keeps the day (tracking/computed.py).
computed_days = Table(
    "cio_computed_days",
    state_metadata,
    Column("asset", String(32), primary_key=True, comment="The asset"),
    Column("day", String(10), primary_key=True, comment="The partition, or 'all' for an unpartitioned asset"),
    Column("digest", String(64), nullable=False, comment="SHA-256 of what the day was computed from"),
    Column("computed_at", BigInteger, nullable=False, comment="Unix seconds: the computing run's clock"),
)

# Source rows set aside by the hygiene rules. Kept across runs: a row that passes again is not
# deleted but marked released, so the snapshot and the event log pick it up in the run that saw it.
rejected_rows = Table(
    "cio_rejected_rows",
    state_metadata,
    Column("source_table", String(64), primary_key=True, comment="The source table of the row set aside"),
    Column("source_key", String(64), primary_key=True, comment="The row's primary key in that table"),
    Column("column_name", String(64), primary_key=True, comment="The column judged"),
    Column(
        "raw_value", String(255), info={**CLIPPED, **PII}, comment="The judged value as the source holds it (clipped)"
    ),
    Column("reason", String(32), nullable=False, comment="A code from hygiene/rules.py, e.g. negative_amount"),
    Column("first_rejected_at", BigInteger, nullable=False, comment="Unix seconds: the run that first listed it"),
    Column("released_at", BigInteger, comment="Unix seconds: the run that found it valid again; null while rejected"),
    Index("ix_cio_rejected_rows_released_at", "released_at"),
)

# Derived rows the contract held back (`held`) or changed to fit Customer.io (`clipped`, `truncated`),
# per asset and day, each with the source row it came from and why.
quarantine = Table(
    "cio_quarantine",
    state_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="Row number"),
    Column("asset", String(32), nullable=False, comment="attribute_snapshot or event_log"),
    Column("day", String(10), nullable=False, comment="The partition (business-time-zone date)"),
    Column("item_key", String(ID_WIDTH), nullable=False, comment="The person_id or event_id"),
    Column("outcome", String(16), nullable=False, comment="held (not written), clipped or truncated (written)"),
    Column("source_table", String(64), nullable=False, comment="The source table to blame, or (contract)"),
    Column("source_key", String(64), nullable=False, comment="The source row's primary key"),
    Column("reason", String(255), nullable=False, info=CLIPPED, comment="Why, starting with a reason code"),
    Index("ix_cio_quarantine_asset_day", "asset", "day"),
)

attribute_snapshot = Table(
    "cio_attribute_snapshot",
    state_metadata,
    Column(
        "day",
        String(10),
        primary_key=True,
        comment="The partition: the business-time-zone date this state held at the end of",
    ),
    Column(
        "person_id",
        String(ID_WIDTH),
        primary_key=True,
        comment="The canonical person id sent to Customer.io (an e-mail under CIO_CANONICAL_ID=email)",
    ),
    Column("as_of", BigInteger, nullable=False, comment="Unix seconds: the end of `day`, when this state held"),
    Column(
        "email",
        String(ID_WIDTH),
        info=sources("customers", copies="customers.email", **PII),
        comment="Normalised e-mail, or null when missing or invalid",
    ),
    Column(
        "phone",
        String(32),
        info=sources("customers", copies="customers.phone", **PII),
        comment="E.164 phone, or null when missing or invalid",
    ),
    Column(
        "first_name",
        String(ATTRIBUTE_TEXT_WIDTH),
        info=sources("customers", copies="customers.first_name", **PII),
        comment="First name, clipped to Customer.io's 1000-byte value limit",
    ),
    Column(
        "last_name",
        String(ATTRIBUTE_TEXT_WIDTH),
        info=sources("customers", copies="customers.last_name", **PII),
        comment="Last name, clipped to Customer.io's 1000-byte value limit",
    ),
    Column(
        "created_at",
        BigInteger,
        comment="Unix seconds: when the customer record was created",
        info=sources("customers", copies="customers.created_at"),
    ),
    Column("first_order_at", BigInteger, comment="Unix seconds: the first paid order", info=sources("orders")),
    Column("last_order_at", BigInteger, comment="Unix seconds: the latest paid order", info=sources("orders")),
    Column("total_orders", Integer, nullable=False, comment="Paid orders so far", info=sources("orders")),
    Column(
        "lifetime_value",
        Float,
        nullable=False,
        comment="Sum of paid order totals (refunds not subtracted)",
        info=sources("orders"),
    ),
    Column(
        "lifetime_value_net",
        Float,
        nullable=False,
        comment="Lifetime value minus refunds issued by as_of",
        info=sources("orders", "refunds"),
    ),
    Column(
        "last_product_category",
        String(ATTRIBUTE_TEXT_WIDTH),
        comment="Category of the latest paid order's most valuable line",
        info=sources("orders", "order_items", copies="order_items.category"),
    ),
    Column(
        "is_refunder", Boolean, nullable=False, comment="Has had at least one refund", info=sources("orders", "refunds")
    ),
    Column(
        "subscription_status",
        String(16),
        nullable=False,
        comment="active, paused, canceled or none",
        info=sources("subscriptions"),
    ),
    Column(
        "vip_tier",
        String(VIP_TIER_WIDTH),
        nullable=False,
        comment="Tier by net lifetime value (CIO_VIP_TIERS), or none",
        info=sources("orders", "refunds"),
    ),
    Column(
        "email_opt_in",
        Boolean,
        nullable=True,
        comment="E-mail marketing consent: true opted in, false opted out, null unknown (never asked); among merged "
        "duplicates one opt-out is an opt-out, else one opt-in an opt-in",
        info=sources("customers"),
    ),
    Column(
        "sms_opt_in",
        Boolean,
        nullable=True,
        comment="SMS marketing consent: true opted in, false opted out, null unknown (never asked)",
        info=sources("customers"),
    ),
    Column(
        "email_eligible",
        Boolean,
        nullable=False,
        comment="Has a valid e-mail and opted in to e-mail (or consent unknown, under CIO_UNKNOWN_CONSENT_ELIGIBLE)",
        info=sources("customers"),
    ),
    Column(
        "sms_eligible",
        Boolean,
        nullable=False,
        comment="Has a valid phone and opted in to SMS (or consent unknown, under CIO_UNKNOWN_CONSENT_ELIGIBLE)",
        info=sources("customers"),
    ),
)

# The attributes sent to Customer.io, in a fixed order (everything but the keys and `as_of`).
# Plain str: SQLAlchemy's names are a str subclass that JSON encoders refuse as keys.
ATTRIBUTE_COLUMNS: tuple[str, ...] = tuple(
    str(c.name) for c in attribute_snapshot.columns if c.name not in ("day", "person_id", "as_of")
)
# Free text from the shop, clipped to Customer.io's attribute value limit in the snapshot.
TEXT_ATTRIBUTES: tuple[str, ...] = ("first_name", "last_name", "last_product_category")


def event_columns() -> list[Column]:
    """An event's columns, for the log and for the tables its pieces are staged in (events/staging.py)."""
    return [
        Column(
            "event_id",
            String(191),
            primary_key=True,
            comment="Stable id from the source key (e.g. order_placed:123): re-extraction never mints a new one",
        ),
        Column("day", String(10), nullable=False, comment="The partition: the business-time-zone date of `timestamp`"),
        Column("person_id", String(ID_WIDTH), nullable=False, comment="The canonical person the event belongs to"),
        Column("name", String(100), nullable=False, comment="order_placed, checkout_started, cart_abandoned, ..."),
        Column("timestamp", BigInteger, nullable=False, comment="Unix seconds, UTC: when it happened"),
        Column(
            "properties",
            _long_text(),
            nullable=False,
            comment="JSON object, already fitted to Customer.io's limits",
        ),
    ]


event_log = Table(
    "cio_event_log",
    state_metadata,
    *event_columns(),
    # A day's rows in event_id order (InnoDB keys a secondary index by the primary key too): its replacement,
    # and the sync's pages, a day at a time.
    Index("ix_cio_event_log_day", "day"),
    # The checks' counts per name and earliest/latest timestamps, from the index alone (a year's log at
    # 100,000 customers: 0.3 s, against 21 s through `day`).
    Index("ix_cio_event_log_day_name_timestamp", "day", "name", "timestamp"),
    # People with an event per day, the figure every materialization reads back, from the index alone (a year's
    # log at 100,000 customers: 0.7 s, against 27 s reading every row).
    Index("ix_cio_event_log_day_person", "day", "person_id"),
)

# The tables in which runs stage the event log's pieces until they publish them (one per piece, dropped once the
# run has published; events/staging.py).
event_log_staging = Table(
    "cio_event_log_staging",
    state_metadata,
    Column("table_name", String(64), primary_key=True, comment="A piece's staging table (cio_stage_<digest>)"),
    Column("run_id", String(64), nullable=False, comment="The Dagster run that planned the piece"),
    Column("created_at", BigInteger, nullable=False, comment="Unix seconds; dropped by a later run after a week"),
    Index("ix_cio_event_log_staging_run", "run_id"),
)

# --- Delivery to Customer.io: the sync ledger -------------------------------------------------

people_ledger = Table(
    "cio_people_ledger",
    state_metadata,
    Column("person_id", String(ID_WIDTH), primary_key=True, comment="The person Customer.io holds"),
    Column(
        "attributes",
        _long_text(),
        nullable=False,
        info=PII,
        comment="JSON: every attribute value Customer.io now holds",
    ),
    Column("as_of", BigInteger, nullable=False, comment="The snapshot time those values held; never moves back"),
    Column("delivered_at", BigInteger, nullable=False, comment="Unix seconds: when Customer.io accepted it"),
)

event_ledger = Table(
    "cio_event_ledger",
    state_metadata,
    Column("event_id", String(191), primary_key=True, comment="The event log's stable id"),
    Column("cio_event_id", String(26), nullable=False, comment="The ULID Customer.io de-duplicates on"),
    Column("delivered_at", BigInteger, nullable=False, comment="Unix seconds: when Customer.io accepted it"),
)

delivery_rejections = Table(
    "cio_delivery_rejections",
    state_metadata,
    Column("kind", String(16), primary_key=True, comment="person or event"),
    Column("item_key", String(ID_WIDTH), primary_key=True, comment="The person_id or event_id"),
    Column(
        "payload",
        _long_text(),
        nullable=False,
        info=PII,
        comment="The exact batch item, retried on every later run",
    ),
    Column("as_of", BigInteger, nullable=False, comment="The snapshot's as_of (person) or the event's timestamp"),
    Column("reason", String(1000), nullable=False, info=CLIPPED, comment="Why it was refused or held"),
    Column("attempts", Integer, nullable=False, comment="How many runs tried it"),
    Column("first_rejected_at", BigInteger, nullable=False, comment="Unix seconds: the first refusal"),
    Column("last_rejected_at", BigInteger, nullable=False, comment="Unix seconds: the latest refusal"),
)

# Anonymous ids Customer.io has been told belong to a person (an identify carrying `anonymous_id`), each once.
anonymous_ledger = Table(
    "cio_anonymous_ledger",
    state_metadata,
    Column("anonymous_id", String(ID_WIDTH), primary_key=True, comment="The anonymous id, as the shop holds it"),
    Column("person_id", String(ID_WIDTH), nullable=False, comment="The person whose identify carried it"),
    Column("delivered_at", BigInteger, nullable=False, comment="Unix seconds: when Customer.io accepted it"),
)

# Duplicates merged into their survivor in Customer.io (a `merge` accepted), each once.
merge_ledger = Table(
    "cio_merge_ledger",
    state_metadata,
    Column("secondary", String(ID_WIDTH), primary_key=True, comment="The duplicate's person id, deleted by the merge"),
    Column("primary", String(ID_WIDTH), nullable=False, comment="The survivor's person id, which remains"),
    Column("merged_at", BigInteger, nullable=False, comment="Unix seconds: when Customer.io accepted the merge"),
)

# People an erasure request names (`erasure_requests` in the shop): purged from every table and ledger of the
# pipeline when first seen, kept out of them from then on, and suppressed or deleted in Customer.io once.
erasures = Table(
    "cio_erasures",
    state_metadata,
    Column("person_id", String(ID_WIDTH), primary_key=True, comment="The canonical person id erased"),
    Column("requested_at", BigInteger, nullable=False, comment="Unix seconds: the earliest request naming them"),
    Column("purged_at", BigInteger, nullable=False, comment="Unix seconds: when the pipeline's rows were purged"),
    Column("customerio_action", String(16), comment="suppress or delete, once Customer.io accepted it"),
    Column("customerio_at", BigInteger, comment="Unix seconds: when Customer.io accepted it; null until then"),
)

# People Customer.io holds who disappeared from the shop's customers without an erasure request.
vanished_people = Table(
    "cio_vanished_people",
    state_metadata,
    Column("person_id", String(ID_WIDTH), primary_key=True, comment="A delivered person no identifier resolves to"),
    Column("seen_at", BigInteger, nullable=False, comment="Unix seconds: when identity first found them gone"),
    Column("deleted_at", BigInteger, comment="Unix seconds: when Customer.io accepted their delete (CIO_VANISHED)"),
)

# People who unsubscribed in Customer.io themselves (an unsubscribe link), as the read-back found them: the
# pipeline never re-subscribes them, and the shop should record their opt-out.
unsubscribed_in_customerio = Table(
    "cio_unsubscribed_in_customerio",
    state_metadata,
    Column("person_id", String(ID_WIDTH), primary_key=True, comment="A person Customer.io shows as unsubscribed"),
    Column(
        "seen_at",
        BigInteger,
        nullable=False,
        comment="Unix seconds: when the read-back found them unsubscribed without the pipeline having sent it",
    ),
)

# One row per state database: which ledger this is. Delivery records the id in the Dagster
# instance, so a ledger that was lost or recreated is noticed before it re-sends history.
ledger_identity = Table(
    "cio_ledger_identity",
    state_metadata,
    Column("ledger_id", String(36), primary_key=True, comment="A UUID minted when the ledger was created"),
    Column("created_at", BigInteger, nullable=False, comment="Unix seconds: when"),
)


def create_state_tables(engine: Engine) -> None:
    """Create the pipeline's tables that are missing. Steps starting at once on an empty database (two
    Celery workers, the multiprocess executor) would race in `create_all` (one fails with "table already
    exists"), so on MySQL/MariaDB they take turns under a named lock."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        state_metadata.create_all(engine)
        return
    with named_lock(engine, "cio_assets_create_state_tables", timeout_seconds=60), engine.begin() as conn:
        state_metadata.create_all(conn)


def still_not_null(conn: Connection, table: Table) -> list[str]:
    """The columns `table` declares nullable that the state database still holds NOT NULL: the table was created by
    an older version, and the pipeline never alters a table that exists (the changelog's upgrade notes say how)."""
    held = {column["name"]: column["nullable"] for column in inspect(conn).get_columns(table.name)}
    return [str(column.name) for column in table.columns if column.nullable and held.get(column.name) is False]
