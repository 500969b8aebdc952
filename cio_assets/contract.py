"""The data contracts, row by row: what passes is written, what breaks them is held back with a reason.

A derived row (a person's day, an event) that breaks its Pandera contract, or whose source row the
hygiene rules set aside, is *held*: not written, not sent, and listed in `cio_quarantine` with its
source key and reason. Rows adjusted to fit Customer.io (`clipped`, `truncated`) are written and
listed there too. Everyone else flows through.

The contract check (`defs/checks/contract.py`) is blocking and reports every held row. It fails only when
the held share of a run passes `CIO_QUARANTINE_MAX_SHARE` with at least `CIO_QUARANTINE_MIN_ROWS` rows held,
because a sudden mass of bad rows means something upstream broke; then nothing is written at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from sqlalchemy import Connection, delete, select

from cio_assets.lib.chunking import chunks
from cio_assets.lib.days import on_days
from cio_assets.lib.frames import counts_by, reason_code
from cio_assets.lib.reads import read_frame
from cio_assets.lib.writes import KEYS_PER_STATEMENT, insert_frame
from cio_assets.schema.state import quarantine

HELD, CLIPPED, TRUNCATED = "held", "clipped", "truncated"
QUARANTINE_COLUMNS = ["day", "item_key", "outcome", "source_table", "source_key", "reason"]
CONTRACT_SOURCE = "(contract)"  # the row broke the derived contract; no single source row to blame


def quarantine_rows(rows: pd.DataFrame | list[dict] | None = None) -> pd.DataFrame:
    """A quarantine listing with exactly QUARANTINE_COLUMNS (empty when `rows` is)."""
    frame = pd.DataFrame(rows if rows is not None else [], columns=QUARANTINE_COLUMNS)
    return frame.astype({"source_key": str}) if len(frame) else frame


def stored_quarantine(conn: Connection, asset: str, days: list[str]) -> pd.DataFrame:
    """The listing `cio_quarantine` holds for one asset's days (what the runs that computed them listed)."""
    q = quarantine.c
    statement = select(*(q[c] for c in QUARANTINE_COLUMNS)).where(q.asset == asset, on_days(q.day, days))
    return quarantine_rows(read_frame(conn, statement))


def replace_quarantine(conn: Connection, asset: str, days: Sequence[str], frame: pd.DataFrame) -> int:
    """Replace one asset's quarantine listing for `days` (the other asset's rows stay)."""
    for chunk in chunks(list(days), 500):
        conn.execute(delete(quarantine).where(quarantine.c.asset == asset, quarantine.c.day.in_(chunk)))
    return insert_frame(conn, quarantine, frame.assign(asset=asset), KEYS_PER_STATEMENT)


class ContractBroken(Exception):
    """The frame as a whole breaks the contract (a missing column, a type): a bug, not bad data."""


def split_by_contract(
    frame: pd.DataFrame, schema: pa.DataFrameSchema, key_column: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows that pass, validated and coerced; quarantine rows for the ones that do not)."""
    try:
        return schema.validate(frame, lazy=True), quarantine_rows()
    except SchemaErrors as errors:
        cases = errors.failure_cases
        if cases["index"].isna().any():
            raise ContractBroken(_summary_text(cases)) from None
        first = cases.drop_duplicates("index").set_index("index")
        bad = frame.loc[first.index]
        held = quarantine_rows(
            {
                "day": bad["day"].to_numpy(),
                "item_key": bad[key_column].astype(str).to_numpy(),
                "outcome": HELD,
                "source_table": CONTRACT_SOURCE,
                "source_key": bad[key_column].astype(str).to_numpy(),
                "reason": [f"contract: {c} {check}" for c, check in zip(first["column"], first["check"], strict=True)],
            }
        )
        passing = frame.drop(index=first.index)
        return (schema.validate(passing, lazy=True) if len(passing) else passing), held


def _summary_text(cases: pd.DataFrame) -> str:
    counts = cases.fillna({"column": "(table)"}).groupby(["column", "check"], dropna=False).size()
    return "; ".join(f"{column}: {check} ({n} rows)" for (column, check), n in counts.items())


@dataclass
class ContractTally:
    """What one run of an asset wrote, held back and adjusted, for its check and metadata."""

    asset: str
    check_name: str
    written: int = 0
    listings: list[pd.DataFrame] = field(default_factory=list)

    def note(self, listing: pd.DataFrame) -> None:
        if len(listing):
            self.listings.append(listing)

    @property
    def quarantine(self) -> pd.DataFrame:
        return pd.concat(self.listings, ignore_index=True) if self.listings else quarantine_rows()

    @property
    def held(self) -> pd.DataFrame:
        listing = self.quarantine
        return listing[listing["outcome"] == HELD]

    @property
    def held_items(self) -> int:
        held = self.held
        return int(held[["day", "item_key"]].drop_duplicates().shape[0])

    @property
    def held_share(self) -> float:
        total = self.written + self.held_items
        return self.held_items / total if total else 0.0

    def held_by_reason(self, *columns: str) -> dict[str, int]:
        """Held rows counted by their reason's code (and `columns`)."""
        held = self.held
        return counts_by(held.assign(code=reason_code(held["reason"])), *columns, "code")

    def exceeded(self, max_share: float, min_rows: int) -> bool:
        """Whether so many rows broke the contract that nothing may be written: a held share above `max_share`
        (CIO_QUARANTINE_MAX_SHARE), with at least `min_rows` (CIO_QUARANTINE_MIN_ROWS) held."""
        mass = self.held_items >= max(min_rows, 1)
        return mass and self.held_share > max_share

    def failure_description(self, max_share: float, min_rows: int) -> str:
        return (
            f"{self.asset}: {self.held_items} of {self.written + self.held_items} rows broke the data contract "
            f"({self.held_share:.1%}, above CIO_QUARANTINE_MAX_SHARE={max_share:.1%} with at least "
            f"CIO_QUARANTINE_MIN_ROWS={min_rows}); so many bad rows at once means something upstream broke, so "
            "nothing was written. Reasons: "
            + ", ".join(f"{reason} ({n})" for reason, n in self.held_by_reason().items())
        )
