"""Create a platform's tables (its own DDL, in this package) in a database, under any table prefix."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Literal

from sqlalchemy import URL, Connection, create_engine

Platform = Literal["woocommerce", "magento2"]

# The prefix each file's CREATE TABLE statements are written with: WordPress' default, and Magento's (none).
DEFAULT_PREFIX: dict[Platform, str] = {"woocommerce": "wp_", "magento2": ""}
_PREFIX = re.compile(r"^[A-Za-z0-9_]*$")


def statements(platform: Platform, prefix: str | None = None) -> list[str]:
    """The platform's CREATE TABLE statements, with `prefix` (default: the platform's) on every table name."""
    if platform not in DEFAULT_PREFIX:
        raise ValueError(f"unknown platform {platform!r}: expected one of {sorted(DEFAULT_PREFIX)}")
    prefix = DEFAULT_PREFIX[platform] if prefix is None else prefix
    if not _PREFIX.match(prefix):
        raise ValueError(f"table prefix {prefix!r} for {platform}: only letters, digits and _ are allowed")
    sql = resources.files(__package__).joinpath(f"{platform}.sql").read_text(encoding="utf-8")
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    pattern = re.compile(r"(CREATE TABLE\s+`?)" + re.escape(DEFAULT_PREFIX[platform]))
    return [pattern.sub(lambda m: m.group(1) + prefix, s.strip()) for s in body.split(";\n") if s.strip()]


def table_names(platform: Platform, prefix: str | None = None) -> list[str]:
    """The names of the tables `load` creates, in the file's order."""
    return [re.match(r"CREATE TABLE\s+`?(\w+)", s).group(1) for s in statements(platform, prefix)]  # type: ignore[union-attr]


def load(conn: Connection, platform: Platform, prefix: str | None = None) -> list[str]:
    """Drop and create the platform's tables on `conn`; returns their names."""
    names = table_names(platform, prefix)
    for name in names:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{name}`")
    for statement in statements(platform, prefix):
        conn.exec_driver_sql(statement)
    return names


@contextmanager
def fresh_tables(url: str | URL, platform: Platform, prefix: str, *session: str) -> Iterator[Connection]:
    """A connection to `url` with the platform's tables (re)created empty under `prefix`, in a UTC session (what is
    written to a TIMESTAMP column is stored as written) with the `session` statements run first."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET time_zone = '+00:00'")
            for statement in session:
                conn.exec_driver_sql(statement)
            load(conn, platform, prefix)
            conn.commit()
            yield conn
    finally:
        engine.dispose()
