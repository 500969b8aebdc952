"""Tables the pipeline owns, in the state database: every column it writes, named once.

Partitioned tables carry a `day` column (the business-time-zone date of the partition) so that a
partition is replaced with one delete and one bulk insert in a single transaction.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

state_metadata = MetaData()

# Long enough for any e-mail (RFC 5321: 320 bytes), short enough to index under utf8mb4.
_ID = 320

identity_map = Table(
    "cio_identity_map",
    state_metadata,
    Column("identifier_type", String(16), primary_key=True),  # customer_id | email | phone | anonymous_id
    Column("identifier", String(_ID), primary_key=True),
    Column("person_id", String(_ID), nullable=False),
    Column("source", String(32), nullable=False),  # the source table the identifier was first seen in
    Index("ix_cio_identity_map_person", "person_id"),
)

identity_conflicts = Table(
    "cio_identity_conflicts",
    state_metadata,
    Column("kind", String(32), primary_key=True),  # shared_email | shared_phone | anonymous_id_many_people
    Column("identifier", String(_ID), primary_key=True),
    Column("member", String(_ID), primary_key=True),  # the customer id (or person) sharing the identifier
    Column("survivor", String(_ID), nullable=False),  # what the identifier resolves to
    Column("is_survivor", Boolean, nullable=False),
)

unresolved_identifiers = Table(
    "cio_unresolved_identifiers",
    state_metadata,
    Column("source_table", String(64), primary_key=True),
    Column("source_key", String(64), primary_key=True),
    Column("identifier_type", String(16), nullable=False),
    Column("identifier", String(_ID)),
    Column("reason", String(64), nullable=False),
)

invalid_values = Table(
    "cio_invalid_values",
    state_metadata,
    Column("source_table", String(64), primary_key=True),
    Column("source_key", String(64), primary_key=True),
    Column("column_name", String(64), primary_key=True),
    Column("raw_value", String(1000)),
    Column("reason", String(255), nullable=False),
)

rejected_rows = Table(
    "cio_rejected_rows",
    state_metadata,
    Column("source_table", String(64), primary_key=True),
    Column("source_key", String(64), primary_key=True),
    Column("column_name", String(64), primary_key=True),
    Column("raw_value", String(64)),
    Column("reason", String(32), nullable=False),  # null_timestamp | before_floor | in_future
)

attribute_snapshot = Table(
    "cio_attribute_snapshot",
    state_metadata,
    Column("day", String(10), primary_key=True),
    Column("person_id", String(_ID), primary_key=True),
    Column("as_of", BigInteger, nullable=False),  # end of `day`, Unix seconds: when this state held
    Column("email", String(_ID)),
    Column("phone", String(32)),
    Column("first_name", String(255)),
    Column("last_name", String(255)),
    Column("created_at", BigInteger),
    Column("first_order_at", BigInteger),
    Column("last_order_at", BigInteger),
    Column("total_orders", Integer, nullable=False),
    Column("lifetime_value", Float, nullable=False),
    Column("lifetime_value_net", Float, nullable=False),
    Column("last_product_category", String(255)),
    Column("is_refunder", Boolean, nullable=False),
    Column("subscription_status", String(16), nullable=False),
    Column("vip_tier", String(32), nullable=False),
    Column("email_opt_in", Boolean, nullable=False),
    Column("sms_opt_in", Boolean, nullable=False),
    Column("email_eligible", Boolean, nullable=False),
    Column("sms_eligible", Boolean, nullable=False),
)

# The attributes sent to Customer.io, in a fixed order (everything but the keys and `as_of`).
# Plain str: SQLAlchemy's names are a str subclass that JSON encoders refuse as keys.
ATTRIBUTE_COLUMNS: tuple[str, ...] = tuple(
    str(c.name) for c in attribute_snapshot.columns if c.name not in ("day", "person_id", "as_of")
)

event_log = Table(
    "cio_event_log",
    state_metadata,
    # Derived from the source key (e.g. `order_placed:123`): re-extraction never mints a new id.
    Column("event_id", String(191), primary_key=True),
    Column("day", String(10), nullable=False),
    Column("person_id", String(_ID), nullable=False),
    Column("name", String(100), nullable=False),
    Column("timestamp", BigInteger, nullable=False),  # Unix seconds, UTC
    Column("properties", Text, nullable=False),  # JSON object
    Index("ix_cio_event_log_day", "day"),
)

# --- Delivery to Customer.io: the sync ledger -------------------------------------------------

people_ledger = Table(
    "cio_people_ledger",
    state_metadata,
    Column("person_id", String(_ID), primary_key=True),
    Column("attributes", Text, nullable=False),  # JSON: every attribute value Customer.io now holds
    Column("as_of", BigInteger, nullable=False),  # the snapshot time those values held; never moves back
    Column("delivered_at", BigInteger, nullable=False),
)

event_ledger = Table(
    "cio_event_ledger",
    state_metadata,
    Column("event_id", String(191), primary_key=True),
    Column("cio_event_id", String(26), nullable=False),  # the ULID Customer.io de-duplicates on
    Column("delivered_at", BigInteger, nullable=False),
)

delivery_rejections = Table(
    "cio_delivery_rejections",
    state_metadata,
    Column("kind", String(16), primary_key=True),  # person | event
    Column("item_key", String(_ID), primary_key=True),  # person_id or event_id
    Column("payload", Text, nullable=False),  # the exact batch item, retried on every later run
    Column("as_of", BigInteger, nullable=False),  # snapshot as_of (person) or event timestamp
    Column("reason", String(1000), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_rejected_at", BigInteger, nullable=False),
    Column("last_rejected_at", BigInteger, nullable=False),
)
