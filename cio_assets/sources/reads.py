"""Reading the source into DataFrames, in bounded chunks where a result can be large."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from sqlalchemy import Connection, Select


def read_frame(conn: Connection, statement: Select) -> pd.DataFrame:
    result = conn.execute(statement)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def read_frames(conn: Connection, statement: Select, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Stream a large result (server-side cursor on MySQL) as DataFrames of at most `chunk_rows`."""
    result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(statement)
    columns = list(result.keys())
    for rows in result.partitions(chunk_rows):
        yield pd.DataFrame(rows, columns=columns)
