"""Reading the source into DataFrames, in bounded chunks where a result can be large."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from sqlalchemy import ColumnElement, Connection, Select


def read_frame(conn: Connection, statement: Select, dtype: object = None) -> pd.DataFrame:
    """The result as a frame; `dtype=object` keeps values as the driver gave them (a nullable integer column
    stays integers and None, not floats and NaN)."""
    result = conn.execute(statement)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()), dtype=dtype)


def read_frames(conn: Connection, statement: Select, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Stream a large result (server-side cursor on MySQL) as DataFrames of at most `chunk_rows`."""
    result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(statement)
    columns = list(result.keys())
    for rows in result.partitions(chunk_rows):
        yield pd.DataFrame(rows, columns=columns)


def read_pages(conn: Connection, statement: Select, key: ColumnElement, size: int) -> Iterator[pd.DataFrame]:
    """`statement` in pages of `size` rows ordered by the unique integer `key`, each its own short query.

    Unlike a streaming cursor, this leaves the connection free between pages, so the caller can
    run other queries (line items, payments) on it while it walks a large range.
    """
    after = None
    while True:
        page_statement = statement.order_by(key).limit(size)
        if after is not None:
            page_statement = page_statement.where(key > after)
        page = read_frame(conn, page_statement)
        if page.empty:
            return
        yield page
        if len(page) < size:
            return
        after = int(page[key.name].iloc[-1])
