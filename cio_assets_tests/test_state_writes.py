"""Writes to the pipeline's own tables from steps running at once (the multiprocess or Celery executor)."""

from __future__ import annotations

from sqlalchemy import Engine, select, text

from cio_assets.state.tables import cursors, state_metadata
from cio_assets.state.writes import upsert


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
