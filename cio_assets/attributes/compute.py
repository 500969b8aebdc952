"""Attribute state as of a moment, for many (person, day) requests at once, without Python loops.

Running totals per person are computed once over the chunk's history (cumulative sums), then each
request picks the last history row at or before its `as_of` with `merge_asof`. A 90-day backfill
therefore costs about as much as a single day.

Rules:
- Order facts count paid orders only, at `paid_at` (a failed payment is never a purchase).
- `lifetime_value_net` subtracts refunds issued by `as_of`; `is_refunder` is any such refund.
- Profile values come from the oldest customer record first, falling back to newer duplicates.
- Consent has three states: opted in, opted out, unknown (never asked). Across merged duplicates it is
  conservative: one opt-out is an opt-out; otherwise one opt-in is an opt-in; otherwise it is unknown.
- Eligibility is a valid channel value plus an opt-in, or plus unknown consent when
  `CIO_UNKNOWN_CONSENT_ELIGIBLE` says unknown counts; never with an opt-out.
- Subscription status as of the day: active beats paused beats canceled; no subscription is "none".
- Free text (names, the last product category) longer than Customer.io's 1000-byte value limit is
  clipped to fit, at a character boundary, and listed: the rest of the person still goes out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cio_assets.attributes.queries import History
from cio_assets.contract import CLIPPED, quarantine_rows
from cio_assets.customerio.limits import MAX_ATTRIBUTE_VALUE_BYTES
from cio_assets.lib.text import clip_utf8
from cio_assets.schema.state import TEXT_ATTRIBUTES

SUBSCRIPTION_RANK = {"canceled": 1, "paused": 2, "active": 3}
RANK_STATUS = {rank: status for status, rank in SUBSCRIPTION_RANK.items()}


def compute_attributes(
    requests: pd.DataFrame,
    history: History,
    tiers: list[tuple[str, float]],
    guests_are_people: bool,
    unknown_consent_eligible: bool,
) -> tuple[pd.DataFrame, int]:
    """One snapshot row per request (person_id, day, as_of), and how many requests had no profile yet.

    A request's state counts what happened strictly before `as_of` (Unix seconds). A person with no
    valid customer record by then has no profile, unless guests are people (the `email` id policy).
    """
    requests = requests.assign(cutoff=requests["as_of"].astype("int64") - 1)
    state = _profiles(requests, history.customers)
    state = state.merge(_order_facts(requests, history.orders), on=["person_id", "day"], how="left")
    state = state.merge(_refund_facts(requests, history.refunds), on=["person_id", "day"], how="left")
    state = state.merge(_subscription_status(requests, history.subscriptions), on=["person_id", "day"], how="left")

    state["total_orders"] = _numbers(state["total_orders"]).astype("int64")
    state["lifetime_value"] = _numbers(state["lifetime_value"]).round(2)
    state["lifetime_value_net"] = (state["lifetime_value"] - _numbers(state["refunded"])).round(2)
    state["is_refunder"] = _numbers(state["refunds"]) > 0
    state["subscription_status"] = state["subscription_status"].fillna("none")
    state["vip_tier"] = vip_tier(state["lifetime_value_net"], tiers)

    guests = state["has_profile"].isna() & (state["total_orders"] > 0) & guests_are_people
    if guests.any():
        state.loc[guests, "email"] = state.loc[guests, "person_id"]
        state.loc[guests, "created_at"] = state.loc[guests, "first_order_at"]
    for flag in ("email_opt_in", "sms_opt_in"):  # a guest-only person was never asked: unknown
        state[flag] = state[flag].astype("boolean")
    state["email_eligible"] = eligible(state["email_opt_in"], state["email"], unknown_consent_eligible)
    state["sms_eligible"] = eligible(state["sms_opt_in"], state["phone"], unknown_consent_eligible)

    keep = state["has_profile"].notna() | guests
    without_profile = int((~keep).sum())
    return state[keep].drop(columns=["has_profile", "refunded", "refunds", "cutoff"]).reset_index(
        drop=True
    ), without_profile


def eligible(opt_in: pd.Series, channel: pd.Series, unknown_counts: bool) -> pd.Series:
    """Whether a channel may be marketed to: a valid value (e-mail, phone) and an opt-in, or unknown consent (NA)
    when `unknown_counts` (CIO_UNKNOWN_CONSENT_ELIGIBLE). An opt-out never is."""
    consented = opt_in.fillna(unknown_counts).astype(bool)
    return consented & channel.notna()


def _numbers(values: pd.Series) -> pd.Series:
    """A merged-in numeric column, with 0 where the person had no rows of that kind."""
    return pd.to_numeric(values, errors="raise").fillna(0)


def vip_tier(net_value: pd.Series, tiers: list[tuple[str, float]]) -> pd.Series:
    """The highest tier whose minimum the net lifetime value reaches; 'none' below the first."""
    names = np.array(["none", *(name for name, _ in tiers)], dtype=object)
    minimums = np.array([minimum for _, minimum in tiers], dtype=float)
    return pd.Series(
        names[np.searchsorted(minimums, net_value.to_numpy(dtype=float), side="right")], index=net_value.index
    )


def _profiles(requests: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    members = requests.merge(customers, on="person_id", how="left")
    members = members[members["created_at"].isna() | (members["created_at"] <= members["cutoff"])]
    members = members[members["customer_id"].notna()].sort_values(["created_at", "customer_id"], kind="stable")
    # The left join made the flags objects; as nullable booleans the group minimum runs in C, not Python, and
    # skips the unknown: one opt-out among duplicates is an opt-out, else one opt-in an opt-in, else unknown.
    members = members.astype({"email_opt_in": "boolean", "sms_opt_in": "boolean"})
    grouped = members.groupby(["person_id", "day"], sort=False)
    profiles = grouped.agg(
        email=("email", "first"),
        phone=("phone", "first"),
        first_name=("first_name", "first"),
        last_name=("last_name", "first"),
        created_at=("created_at", "min"),
        email_opt_in=("email_opt_in", "min"),
        sms_opt_in=("sms_opt_in", "min"),
    ).reset_index()
    profiles["has_profile"] = True
    return requests.merge(profiles, on=["person_id", "day"], how="left")


def _last_at_or_before(requests: pd.DataFrame, events: pd.DataFrame, time_column: str) -> pd.DataFrame:
    """For each request, the latest history row with `time_column` <= cutoff (same person)."""
    left = requests[["person_id", "day", "cutoff"]].sort_values("cutoff", kind="stable")
    right = events.sort_values(time_column, kind="stable")
    right = right.assign(**{time_column: right[time_column].astype("int64")})
    return pd.merge_asof(
        left, right, left_on="cutoff", right_on=time_column, by="person_id", direction="backward"
    ).drop(columns="cutoff")


def _order_facts(requests: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    columns = [
        "person_id",
        "day",
        "total_orders",
        "lifetime_value",
        "first_order_at",
        "last_order_at",
        "last_product_category",
    ]
    if orders.empty:
        return pd.DataFrame(columns=columns)
    running = orders.sort_values(["paid_at", "order_id"], kind="stable").copy()
    by_person = running.groupby("person_id", sort=False)
    running["total_orders"] = by_person.cumcount() + 1
    running["lifetime_value"] = by_person["total"].cumsum()
    running["first_order_at"] = by_person["paid_at"].transform("min")
    facts = _last_at_or_before(requests, running, "paid_at")
    facts = facts.rename(columns={"paid_at": "last_order_at", "category": "last_product_category"})
    facts["first_order_at"] = facts["first_order_at"].where(facts["total_orders"].notna())
    for column in ("first_order_at", "last_order_at"):
        facts[column] = facts[column].astype("Int64")
    return facts[columns]


def _refund_facts(requests: pd.DataFrame, refunds: pd.DataFrame) -> pd.DataFrame:
    if refunds.empty:
        return pd.DataFrame(columns=["person_id", "day", "refunded", "refunds"])
    running = refunds.sort_values(["refunded_at", "refund_id"], kind="stable").copy()
    by_person = running.groupby("person_id", sort=False)
    running["refunds"] = by_person.cumcount() + 1
    running["refunded"] = by_person["amount"].cumsum()
    return _last_at_or_before(requests, running, "refunded_at")[["person_id", "day", "refunded", "refunds"]]


def _subscription_status(requests: pd.DataFrame, subscriptions: pd.DataFrame) -> pd.DataFrame:
    if subscriptions.empty:
        return pd.DataFrame(columns=["person_id", "day", "subscription_status"])
    subs = requests.merge(subscriptions, on="person_id")
    subs = subs[subs["started_at"] <= subs["cutoff"]]
    canceled = (subs["status"] == "canceled") & (subs["canceled_at"] <= subs["cutoff"]).fillna(False)
    # A pause has no timestamp of its own: it holds from the row's last update (or always, if unknown).
    paused = (subs["status"] == "paused") & (subs["updated_at"].isna() | (subs["updated_at"] <= subs["cutoff"]))
    subs = subs.assign(rank=np.where(canceled, 1, np.where(paused, 2, 3)))
    ranks = subs.groupby(["person_id", "day"], sort=False)["rank"].max().reset_index()
    ranks["subscription_status"] = ranks.pop("rank").map(RANK_STATUS)
    return ranks


# Where each clipped attribute comes from, for the quarantine listing.
_ORIGIN = {"first_name": "customers", "last_name": "customers", "last_product_category": "order_items"}


def clip_text_attributes(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Free-text attributes clipped to Customer.io's value limit, and a `clipped` listing of each."""
    listing = []
    for column in TEXT_ATTRIBUTES:
        sizes = rows[column].map(lambda v: len(v.encode()) if isinstance(v, str) else 0)
        over = sizes > MAX_ATTRIBUTE_VALUE_BYTES
        if not over.any():
            continue
        clipped = rows.loc[over, column].map(lambda v: clip_utf8(v, MAX_ATTRIBUTE_VALUE_BYTES))
        listing.append(
            quarantine_rows(
                {
                    "day": rows.loc[over, "day"].to_numpy(),
                    "item_key": rows.loc[over, "person_id"].to_numpy(),
                    "outcome": CLIPPED,
                    "source_table": _ORIGIN[column],
                    "source_key": rows.loc[over, "person_id"].to_numpy(),
                    "reason": [
                        f"{column} is {before} bytes, clipped to {len(after.encode())} "
                        f"(Customer.io's limit is {MAX_ATTRIBUTE_VALUE_BYTES})"
                        for before, after in zip(sizes[over], clipped, strict=True)
                    ],
                }
            )
        )
        rows = rows.assign(**{column: rows[column].where(~over, clipped)})
    return rows, pd.concat(listing, ignore_index=True) if listing else quarantine_rows()
