"""Tables the pipeline owns, in the state database: every column it writes, named once.

Every column holds anything its writer can produce. Identifiers are sized for any value the
pipeline keeps (longer ones are set aside with a reason before they get here); free text in the
listings (reasons, raw values) is marked `CLIPPED` and cut to the column's width on write, which is
harmless and documented; payloads and properties are LONGTEXT on MySQL.

Partitioned tables carry a `day` column (the business-time-zone date of the partition) so that a
partition is replaced with one delete and one bulk insert in a single transaction.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.dialects import mysql

state_metadata = MetaData()

# Long enough for any e-mail (RFC 5321: 320 bytes), short enough to index under utf8mb4.
ID_WIDTH = 320
# Text in a listing that is only there to be read: cut to the column's width when written.
CLIPPED = {"clipped": True}
# Customer.io holds at most 1000 bytes per attribute value; longer free text is clipped before this.
ATTRIBUTE_TEXT_WIDTH = 1000


def _long_text() -> Text:
    """Unbounded JSON text: LONGTEXT on MySQL (a plain TEXT holds only 64 KB)."""
    return Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


identity_map = Table(
    "cio_identity_map",
    state_metadata,
    Column("identifier_type", String(16), primary_key=True),  # customer_id | email | phone | anonymous_id
    Column("identifier", String(ID_WIDTH), primary_key=True),
    Column("person_id", String(ID_WIDTH), nullable=False),
    Column("source", String(32), nullable=False),  # the source table the identifier was first seen in
    Index("ix_cio_identity_map_person", "person_id"),
)

identity_conflicts = Table(
    "cio_identity_conflicts",
    state_metadata,
    Column("kind", String(32), primary_key=True),  # shared_email | shared_phone | anonymous_id_many_people
    Column("identifier", String(ID_WIDTH), primary_key=True),
    Column("member", String(ID_WIDTH), primary_key=True),  # the customer id (or person) sharing the identifier
    Column("survivor", String(ID_WIDTH), nullable=False),  # what the identifier resolves to
    Column("is_survivor", Boolean, nullable=False),
)

unresolved_identifiers = Table(
    "cio_unresolved_identifiers",
    state_metadata,
    Column("source_table", String(64), primary_key=True),
    Column("source_key", String(64), primary_key=True),
    Column("identifier_type", String(16), nullable=False),
    Column("identifier", String(ID_WIDTH), info=CLIPPED),  # the raw value, as the source holds it
    Column("reason", String(255), nullable=False, info=CLIPPED),
)

invalid_values = Table(
    "cio_invalid_values",
    state_metadata,
    Column("source_table", String(64), primary_key=True),
    Column("source_key", String(64), primary_key=True),
    Column("column_name", String(64), primary_key=True),
    Column("raw_value", String(1000), info=CLIPPED),
    Column("reason", String(255), nullable=False, info=CLIPPED),
)

# Source rows set aside by the hygiene rules. Kept across runs: a row that passes again is not
# deleted but marked released, so the snapshot and the event log pick it up in the run that saw it.
rejected_rows = Table(
    "cio_rejected_rows",
    state_metadata,
    Column("source_table", String(64), primary_key=True),
    Column("source_key", String(64), primary_key=True),
    Column("column_name", String(64), primary_key=True),
    Column("raw_value", String(255), info=CLIPPED),
    Column("reason", String(32), nullable=False),  # a code from hygiene/rules.py, e.g. negative_amount
    Column("first_rejected_at", BigInteger, nullable=False),  # Unix s: the run that first listed it
    Column("released_at", BigInteger),  # Unix s: the run that found it valid again; NULL while rejected
    Index("ix_cio_rejected_rows_released_at", "released_at"),
)

# Derived rows the contract held back (`held`) or changed to fit Customer.io (`clipped`, `truncated`),
# per asset and day, each with the source row it came from and why.
quarantine = Table(
    "cio_quarantine",
    state_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("asset", String(32), nullable=False),  # attribute_snapshot | event_log
    Column("day", String(10), nullable=False),
    Column("item_key", String(ID_WIDTH), nullable=False),  # person_id or event_id
    Column("outcome", String(16), nullable=False),  # held | clipped | truncated
    Column("source_table", String(64), nullable=False),
    Column("source_key", String(64), nullable=False),
    Column("reason", String(255), nullable=False, info=CLIPPED),
    Index("ix_cio_quarantine_asset_day", "asset", "day"),
)

attribute_snapshot = Table(
    "cio_attribute_snapshot",
    state_metadata,
    Column("day", String(10), primary_key=True),
    Column("person_id", String(ID_WIDTH), primary_key=True),
    Column("as_of", BigInteger, nullable=False),  # end of `day`, Unix seconds: when this state held
    Column("email", String(ID_WIDTH)),
    Column("phone", String(32)),
    Column("first_name", String(ATTRIBUTE_TEXT_WIDTH)),
    Column("last_name", String(ATTRIBUTE_TEXT_WIDTH)),
    Column("created_at", BigInteger),
    Column("first_order_at", BigInteger),
    Column("last_order_at", BigInteger),
    Column("total_orders", Integer, nullable=False),
    Column("lifetime_value", Float, nullable=False),
    Column("lifetime_value_net", Float, nullable=False),
    Column("last_product_category", String(ATTRIBUTE_TEXT_WIDTH)),
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
# Free text from the shop, clipped to Customer.io's attribute value limit in the snapshot.
TEXT_ATTRIBUTES: tuple[str, ...] = ("first_name", "last_name", "last_product_category")

event_log = Table(
    "cio_event_log",
    state_metadata,
    # Derived from the source key (e.g. `order_placed:123`): re-extraction never mints a new id.
    Column("event_id", String(191), primary_key=True),
    Column("day", String(10), nullable=False),
    Column("person_id", String(ID_WIDTH), nullable=False),
    Column("name", String(100), nullable=False),
    Column("timestamp", BigInteger, nullable=False),  # Unix seconds, UTC
    Column("properties", _long_text(), nullable=False),  # JSON object, already fitted to Customer.io's limits
    Index("ix_cio_event_log_day", "day"),
)

# --- Delivery to Customer.io: the sync ledger -------------------------------------------------

people_ledger = Table(
    "cio_people_ledger",
    state_metadata,
    Column("person_id", String(ID_WIDTH), primary_key=True),
    Column("attributes", _long_text(), nullable=False),  # JSON: every attribute value Customer.io now holds
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
    Column("item_key", String(ID_WIDTH), primary_key=True),  # person_id or event_id
    Column("payload", _long_text(), nullable=False),  # the exact batch item, retried on every later run
    Column("as_of", BigInteger, nullable=False),  # snapshot as_of (person) or event timestamp
    Column("reason", String(1000), nullable=False, info=CLIPPED),
    Column("attempts", Integer, nullable=False),
    Column("first_rejected_at", BigInteger, nullable=False),
    Column("last_rejected_at", BigInteger, nullable=False),
)

# One row per state database: which ledger this is. Delivery records the id in the Dagster
# instance, so a ledger that was lost or recreated is noticed before it re-sends history.
ledger_identity = Table(
    "cio_ledger_identity",
    state_metadata,
    Column("ledger_id", String(36), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
)
