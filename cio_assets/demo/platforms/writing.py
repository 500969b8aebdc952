"""What the platform modules' writers share (`add_paid_orders`, `add_cart`: the benchmarks' writes into a
generated shop): a UTC session, ids that continue the shop's, and the end of history the row builders see."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Connection

# A paid order to write: (the customer's id, or None for a new customer whose account comes with the order; the
# paid time, naive UTC).
Sale = tuple[int | None, datetime]


def utc_session(conn: Connection) -> None:
    """TIMESTAMP columns store what is written (UTC), whatever the server's or the URL's zone."""
    conn.exec_driver_sql("SET time_zone = '+00:00'")


def next_id(conn: Connection, table: str, column: str) -> int:
    """The id after the largest in `table` (1 when it is empty)."""
    return int(conn.exec_driver_sql(f"SELECT COALESCE(MAX(`{column}`), 0) + 1 FROM `{table}`").scalar_one())


def stop_after(moments: Iterable[datetime]) -> datetime:
    """The end of history the generator's row builders see: a second after the last of `moments`, so that nothing
    they would date later (a refund, a second invoice) is written."""
    moments = list(moments)
    if not moments:
        raise ValueError("nothing to write")
    return max(moments) + timedelta(seconds=1)
