"""Checks on who Customer.io holds, beside what the people sync sent.

`customerio_people_pending_merges` (WARN): duplicates that still hold a Customer.io profile of their own.

A person synced as their own profile and later found to share an e-mail with an older customer is merged
into that survivor by the people sync (`delivery/profiles.py`). Under `CIO_MERGE_DUPLICATES=plan`
it sends no merge, so this check lists every merge `apply` would send; under `apply` it lists merges
still waiting for their survivor's identify to be accepted.

`customerio_people_vanished` (WARN): people Customer.io holds who disappeared from the shop's customers
without an erasure request (`cio_vanished_people`, kept by identity). Under `CIO_VANISHED=keep` they stay
in Customer.io until someone decides; under `delete` the people sync deletes them there, and the check
lists only those still waiting.
"""

import dagster as dg
import pandas as pd

from cio_assets.defs.metadata import markdown_table
from cio_assets.defs.resources import Settings, StateDatabase
from cio_assets.delivery import ledger
from cio_assets.delivery.people import pending_merges_frame

ASSET = "customerio_people"
CHECK = "customerio_people_pending_merges"
VANISHED_CHECK = "customerio_people_vanished"


def pending_merges_result(pending: list[tuple[str, str, bool]], mode: str) -> dg.AssetCheckResult:
    if not pending:
        description = "No duplicate holds a Customer.io profile of its own"
    elif mode == "plan":
        description = (
            f"{len(pending)} duplicates hold Customer.io profiles of their own; CIO_MERGE_DUPLICATES=plan sends no "
            "merge: with apply, each would be merged into its survivor (this cannot be undone)"
        )
    else:
        description = f"{len(pending)} merges wait for their survivor's identify to be accepted by Customer.io"
    return dg.AssetCheckResult(
        check_name=CHECK,
        asset_key=ASSET,
        passed=not pending,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "merge_mode": mode,
            "pending_merges": len(pending),
            "merges": markdown_table(pending_merges_frame(pending), limit=50),
        },
    )


def vanished_result(vanished: pd.DataFrame, mode: str) -> dg.AssetCheckResult:
    action = (
        "they stay in Customer.io under CIO_VANISHED=keep: erase them there, or set delete"
        if mode == "keep"
        else "CIO_VANISHED=delete: the next people sync deletes them in Customer.io"
    )
    return dg.AssetCheckResult(
        check_name=VANISHED_CHECK,
        asset_key=ASSET,
        passed=vanished.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "Everyone Customer.io holds is still a customer of the shop (or was erased on request)"
            if vanished.empty
            else f"{len(vanished)} people Customer.io holds disappeared from the shop without an erasure request; "
            + action
        ),
        metadata={
            "vanished_mode": mode,
            "vanished_people": len(vanished),
            "vanished_sample": markdown_table(vanished, limit=50),
        },
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            CHECK,
            asset=ASSET,
            description=(
                "Warns while duplicates (a shared e-mail) hold Customer.io profiles of their own: the merges "
                "CIO_MERGE_DUPLICATES=plan holds back, or those waiting for their survivor under apply."
            ),
        ),
        dg.AssetCheckSpec(
            VANISHED_CHECK,
            asset=ASSET,
            description=(
                "Warns while Customer.io holds people who disappeared from the shop's customers without an erasure "
                "request (CIO_VANISHED=keep lists them; delete removes them in Customer.io)."
            ),
        ),
    ],
    # One step for both: every run that syncs people runs them, and a step costs more than the two queries.
    name="customerio_people_profile_checks",
)
def customerio_people_profile_checks(state: StateDatabase, settings: Settings):
    with state.connect() as conn:
        pending = ledger.pending_merges(conn)
        vanished = pd.DataFrame(ledger.vanished_still_held(conn), columns=["person_id", "seen_at"])
    yield pending_merges_result(pending, settings.merge_duplicates)
    yield vanished_result(vanished, settings.vanished)
