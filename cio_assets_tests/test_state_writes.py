"""Writes to the pipeline's own tables: every value stored as given, and steps running at once (the multiprocess or
Celery executor) never waiting for each other."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, Boolean, Column, Engine, Float, Integer, MetaData, Table, Text, select, text

from cio_assets.lib import writes
from cio_assets.lib.writes import upsert
from cio_assets.schema.state import cursors, state_metadata


def test_two_steps_writing_their_own_cursors_at_once_do_not_wait_for_each_other(state_engine: Engine) -> None:
    state_metadata.create_all(state_engine)
    first, second = state_engine.connect(), state_engine.connect()
    try:
        for conn in (first, second):
            # A lock wait fails in 2 s rather than InnoDB's default 50 s.
            conn.execute(text("SET SESSION innodb_lock_wait_timeout = 2"))
            conn.commit()
        with first.begin(), second.begin():
            # Interleaved as two steps' transactions are: each writes its own row of an empty table while the
            # other's transaction is still open. A delete-then-insert here locks the gap both insert into.
            upsert(first, cursors, [{"asset": "identity_map", "value": "{}", "updated_at": 1}])
            upsert(second, cursors, [{"asset": "rejected_rows", "value": "{}", "updated_at": 1}])
            upsert(first, cursors, [{"asset": "identity_map", "value": '{"again": 1}', "updated_at": 2}])
    finally:
        first.close()
        second.close()

    with state_engine.connect() as conn:
        rows = conn.execute(select(cursors.c.asset, cursors.c.value).order_by(cursors.c.asset)).all()
    assert [tuple(r) for r in rows] == [("identity_map", '{"again": 1}'), ("rejected_rows", "{}")]


# Values a row can hold that SQL text must quote, escape or spell out.
AWKWARD = [
    "O'Neil",  # a quote
    "back\\slash \\' and \\\\",  # backslashes, one before a quote
    "50% off %s %(name)s",  # what a driver would read as placeholders
    'double "quotes"',
    "line\nbreak\r\ttab \x00 nul \x1a",
    "😀 emoji, ß, 東京",  # four-byte UTF-8 and others
    "",
    "NULL",  # the word, not the value
]


@pytest.mark.parametrize("statement_bytes", [4 * 1024 * 1024, 200])  # one statement; one per row or two
def test_bulk_inserts_store_every_value_exactly_as_given(
    state_engine: Engine, monkeypatch: pytest.MonkeyPatch, statement_bytes: int
) -> None:
    monkeypatch.setattr(writes, "MAX_STATEMENT_BYTES", statement_bytes)
    metadata = MetaData()
    table = Table(
        "cio_test_awkward",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("text", Text),
        Column("flag", Boolean),
        Column("amount", Float),
        Column("big", BigInteger),
    )
    metadata.drop_all(state_engine)
    metadata.create_all(state_engine)
    rows = [
        (n, text_value, n % 2 == 0, n + 0.25, 2**62 + n)
        for n, text_value in enumerate([*AWKWARD, None], start=1)  # None: NULL
    ]
    rows.append((99, None, None, None, None))
    try:
        with state_engine.begin() as conn:
            assert writes.insert_rows(conn, table, ["id", "text", "flag", "amount", "big"], rows) == len(rows)
        with state_engine.connect() as conn:
            stored = [tuple(row) for row in conn.execute(select(table).order_by(table.c.id))]
    finally:
        metadata.drop_all(state_engine)

    assert stored == rows
