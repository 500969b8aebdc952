"""The attribute snapshot's data contract, checked with Pandera before a row is written."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from cio_assets.customerio.limits import MAX_ATTRIBUTE_VALUE_BYTES
from cio_assets.schema.shop import SUBSCRIPTION_STATUSES
from cio_assets.schema.state import TEXT_ATTRIBUTES

E164 = r"^\+[1-9]\d{6,14}$"
# The source's statuses, plus "none" for people without a subscription.
SNAPSHOT_SUBSCRIPTION_STATUSES = [*SUBSCRIPTION_STATUSES, "none"]
TIMESTAMP_COLUMNS = ("created_at", "first_order_at", "last_order_at")


class AttributeSnapshotSchema(pa.DataFrameModel):
    """One authoritative row per person and day, every timestamp a sane Unix second."""

    day: Series[str] = pa.Field(str_matches=r"^\d{4}-\d{2}-\d{2}$")
    person_id: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 150})
    as_of: Series[int] = pa.Field(gt=0)
    email: Series[str] = pa.Field(nullable=True, str_matches=r"^[^@\s]+@[^@\s]+$")
    phone: Series[str] = pa.Field(nullable=True, str_matches=E164)
    first_name: Series[str] = pa.Field(nullable=True)
    last_name: Series[str] = pa.Field(nullable=True)
    created_at: Series[pa.Int64] = pa.Field(nullable=True)
    first_order_at: Series[pa.Int64] = pa.Field(nullable=True)
    last_order_at: Series[pa.Int64] = pa.Field(nullable=True)
    total_orders: Series[int] = pa.Field(ge=0)
    lifetime_value: Series[float] = pa.Field(ge=0)
    lifetime_value_net: Series[float]
    last_product_category: Series[str] = pa.Field(nullable=True)
    is_refunder: Series[bool]
    subscription_status: Series[str] = pa.Field(isin=SNAPSHOT_SUBSCRIPTION_STATUSES)
    vip_tier: Series[str]
    # Consent in three states: true (opted in), false (opted out), null (unknown: never asked).
    email_opt_in: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    sms_opt_in: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    email_eligible: Series[bool]
    sms_eligible: Series[bool]

    class Config:
        strict = True
        coerce = True
        unique = ["day", "person_id"]

    @pa.check(*TEXT_ATTRIBUTES, error=f"longer than Customer.io's {MAX_ATTRIBUTE_VALUE_BYTES}-byte value limit")
    def text_fits_customerio(cls, values):
        return values.map(lambda v: not isinstance(v, str) or len(v.encode()) <= MAX_ATTRIBUTE_VALUE_BYTES)

    @pa.dataframe_check(error="a timestamp is later than the snapshot's as_of")
    def timestamps_not_after_as_of(cls, frame):
        ok = True
        for column in TIMESTAMP_COLUMNS:
            ok = ok & (frame[column].isna() | (frame[column] <= frame["as_of"]))
        return ok

    @pa.dataframe_check(error="order facts disagree: orders without dates, or first after last")
    def order_facts_consistent(cls, frame):
        has_orders = frame["total_orders"] > 0
        dated = frame["first_order_at"].notna() & frame["last_order_at"].notna()
        ordered = (frame["first_order_at"] <= frame["last_order_at"]).fillna(True)
        return (has_orders == dated) & ordered

    @pa.dataframe_check(error="eligible despite an opt-out or without a valid channel value")
    def eligibility_implies_consent_and_channel(cls, frame):
        email_ok = ~frame["email_eligible"] | (frame["email_opt_in"].fillna(True) & frame["email"].notna())
        sms_ok = ~frame["sms_eligible"] | (frame["sms_opt_in"].fillna(True) & frame["phone"].notna())
        return (email_ok & sms_ok).astype(bool)


def _eligible_only_when_opted_in(frame) -> pd.Series:
    """With unknown consent not counting as eligible (CIO_UNKNOWN_CONSENT_ELIGIBLE=false): eligible means opted in."""
    email_ok = ~frame["email_eligible"] | frame["email_opt_in"].fillna(False)
    sms_ok = ~frame["sms_eligible"] | frame["sms_opt_in"].fillna(False)
    return (email_ok & sms_ok).astype(bool)


def attribute_snapshot_schema(floor_unix: int, unknown_consent_eligible: bool) -> pa.DataFrameSchema:
    """The contract with the run's settings: the timestamp floor, and whether unknown consent may be eligible
    (configuration, so not static field bounds)."""
    schema = AttributeSnapshotSchema.to_schema().update_columns(
        {
            column: {"checks": [pa.Check.ge(floor_unix, error=f"{column} before the timestamp floor")]}
            for column in TIMESTAMP_COLUMNS
        }
    )
    if unknown_consent_eligible:
        return schema
    only_opted_in = pa.Check(
        _eligible_only_when_opted_in,
        error="eligible with unknown consent (CIO_UNKNOWN_CONSENT_ELIGIBLE is false)",
    )
    schema.checks = [*schema.checks, only_opted_in]  # a new list: update_columns copied the schema, not its checks
    return schema
