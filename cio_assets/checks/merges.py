"""`customerio_people_pending_merges` (WARN): duplicates that still hold a Customer.io profile of their own.

A person synced as their own profile and later found to share an e-mail with an older customer is merged
into that survivor by the people sync (`cio_assets/sync/profiles.py`). Under `CIO_MERGE_DUPLICATES=plan`
it sends no merge, so this check lists every merge `apply` would send; under `apply` it lists merges
still waiting for their survivor's identify to be accepted.
"""

import dagster as dg

from cio_assets.metadata import markdown_table
from cio_assets.resources import StateDatabase
from cio_assets.settings import Settings
from cio_assets.sync import ledger
from cio_assets.sync.people import pending_merges_frame

ASSET = "customerio_people"
CHECK = "customerio_people_pending_merges"


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


@dg.asset_check(
    asset=ASSET,
    name=CHECK,
    description=(
        "Warns while duplicates (a shared e-mail) hold Customer.io profiles of their own: the merges "
        "CIO_MERGE_DUPLICATES=plan holds back, or those waiting for their survivor under apply."
    ),
)
def customerio_people_pending_merges(state: StateDatabase, settings: Settings) -> dg.AssetCheckResult:
    with state.connect() as conn:
        pending = ledger.pending_merges(conn)
    return pending_merges_result(pending, settings.merge_duplicates)
