"""The source mapping: a file a data engineer reads and reviews, checked at load with errors that name the file
and the key; compiled into the pipeline's queries so that they read a shop's own tables by canonical names."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, func, insert, select, text

from cio_assets.config import PipelineSettings, SettingsError, SourceSettings
from cio_assets.lib.engines import Database, Origin
from cio_assets.mapping.compile import UNMAPPED, compile_mapping
from cio_assets.mapping.spec import PRESETS, MappingError, load
from cio_assets.schema.shop import CONCEPTS, SOURCE_TABLES, customers, orders
from cio_assets.tracking.marks import LATELY, observe_table

MINIMAL = """
[customers]
table = "people"
alias = "p"
[customers.columns]
id = "p.pid"

[orders]
table = "sales"
alias = "s"
[orders.columns]
id = "s.sid"
"""


def _file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "shop.toml"
    path.write_text(textwrap.dedent(body))
    return str(path)


@pytest.mark.parametrize(
    ("added", "said"),
    [
        # a concept the pipeline does not know
        ("[baskets]\ntable = 'b'\n", "[baskets] is not a concept; expected [mapping], [options] or concepts among"),
        # a column the concept does not have
        (
            "[refunds]\ntable = 'r'\n[refunds.columns]\nid = 'r.id'\nvalue = 'r.v'\n",
            "'value' is not a column of refunds",
        ),
        # a status mapped onto something the pipeline has no word for
        (
            "[subscriptions]\ntable = 't'\n[subscriptions.columns]\nid = 't.id'\n"
            "status = { sql = 't.s', values = { on = 'live' } }\n",
            "[subscriptions.columns] [status] values: 'on' = 'live': expected one of active, paused, canceled",
        ),
        # a lookup the concept does not define
        (
            "[refunds]\ntable = 'r'\n[refunds.columns]\nid = 'r.id'\nreason = '{meta:why}'\n",
            "[refunds.columns] [reason] lookup 'meta' is not defined",
        ),
        # a time zone that is not one
        ("[mapping]\ntime_zone = 'Mars/Olympus'\n", "[mapping] time_zone 'Mars/Olympus': expected UTC, an IANA zone"),
        # an amount's sign that is neither
        (
            "[refunds]\ntable = 'r'\n[refunds.columns]\nid = 'r.id'\namount = { sql = 'r.a', sign = 2 }\n",
            "[refunds.columns] [amount] sign 2: expected 1 or -1",
        ),
        # a concept without its key
        ("[carts]\ntable = 'c'\n[carts.columns]\nemail = 'c.e'\n", "[carts.columns] lacks id"),
        # where a change shows, on a column that is no time
        (
            "[refunds]\ntable = 'r'\n[refunds.columns]\nid = 'r.id'\n"
            "amount = { sql = 'r.a', seen_in = [{ table = 'x', alias = 'x', key = 'x.r', at = 'x.t' }] }\n",
            "[refunds.columns] [amount] seen_in: refunds.amount is not a time",
        ),
        # a place a change shows without the concept's id in it
        (
            "[refunds]\ntable = 'r'\n[refunds.columns]\nid = 'r.id'\n"
            "created_at = { sql = 'r.c', seen_in = [{ table = 'x', alias = 'x', at = 'x.t' }] }\n",
            "[refunds.columns] [created_at] [seen_in 1] lacks key",
        ),
    ],
)
def test_a_mapping_that_cannot_be_used_is_refused_naming_the_file_and_the_key(tmp_path, added, said):
    path = _file(tmp_path, MINIMAL + added)

    with pytest.raises(MappingError) as refused:
        load(path)

    assert str(refused.value).startswith(f"{path}: ")
    assert said in str(refused.value)


def test_a_mapping_without_customers_or_orders_is_refused(tmp_path):
    path = _file(tmp_path, "[orders]\ntable = 'o'\n[orders.columns]\nid = 'o.id'\n")

    with pytest.raises(MappingError, match=r"\[customers\] is missing"):
        load(path)


def test_the_setting_names_the_presets_when_given_neither_a_preset_nor_a_file():
    with pytest.raises(SettingsError) as refused:
        SourceSettings.check_value("mapping", "shopify")

    assert "CIO_SOURCE_MAPPING='shopify' is invalid" in str(refused.value)
    assert all(preset in str(refused.value) for preset in ("reference", "woocommerce"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads_and_compiles(preset):
    mapping = load(preset)

    relations = compile_mapping(mapping)

    assert {"customers", "orders"} <= relations.present


def test_the_reference_preset_names_every_column_of_every_concept():
    """It is the template a user copies: nothing in it is implicit."""
    mapping = load("reference")

    for name, table in CONCEPTS.items():
        assert list(mapping.concepts[name].columns) == [column.name for column in table.columns], name


@pytest.mark.parametrize(
    ("preset", "zone"),
    [
        # WooCommerce's *_gmt columns are UTC, whatever CIO_SOURCE_TZ says (it used to shift every time by 5 h)
        ("woocommerce", "UTC"),
        # the reference schema's naive DATETIMEs are in CIO_SOURCE_TZ
        ("reference", "America/New_York"),
    ],
)
def test_a_timestamps_zone_comes_from_the_mapping(preset, zone):
    settings = PipelineSettings(source_tz="America/New_York")

    assert str(settings.zones(load(preset)).of("orders")) == zone


def test_the_table_prefix_setting_replaces_the_mappings_own():
    mapping = SourceSettings(mapping="woocommerce", table_prefix="shop2_").spec()

    assert mapping.concepts["orders"].table == "shop2_wc_orders"
    assert "shop2_usermeta" in (mapping.concepts["customers"].where or "")


# --- compiled into the pipeline's queries ------------------------------------------------------------------

RENAMED = """
[mapping]
time_zone = "UTC"

[customers]
table = "people"
alias = "p"
where = "p.kind = 'customer'"

[customers.lookups.meta]
table = "people_meta"
alias = "m"
match = "m.person = p.pid"
key = "m.k"
value = "m.v"
order = "m.mid"

[customers.columns]
id = "p.pid"
email = "p.mail"
phone = { lookup = "meta", key = "phone" }
accepts_email_marketing = { sql = "p.newsletter", values = { yes = "opted_in", no = "opted_out" } }

[orders]
table = "sales"
alias = "s"

[orders.columns]
id = "s.sid"
customer_id = { sql = "s.buyer", null_if = [0] }
status = { sql = "s.state", values = { done = "paid", open = "pending" } }
discount_total = { sql = "s.discount", sign = -1 }
"""


@pytest.fixture
def renamed_shop(tmp_path):
    """A SQLite shop whose tables share nothing with the reference schema, read through RENAMED."""
    engine = create_engine(f"sqlite:///{tmp_path / 'renamed.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE people (pid INTEGER PRIMARY KEY, mail TEXT, kind TEXT, newsletter TEXT)"))
        conn.execute(text("CREATE TABLE people_meta (mid INTEGER PRIMARY KEY, person INTEGER, k TEXT, v TEXT)"))
        conn.execute(text("CREATE TABLE sales (sid INTEGER PRIMARY KEY, buyer INTEGER, state TEXT, discount REAL)"))
        conn.execute(
            text(
                "INSERT INTO people VALUES (1, 'ada@example.com', 'customer', 'yes'), (2, 'bob@example.com', "
                "'customer', NULL), (3, 'admin@example.com', 'staff', 'yes'), (4, 'cy@example.com', 'customer', 'no')"
            )
        )
        # Ada's phone written twice: the latest row wins.
        conn.execute(
            text("INSERT INTO people_meta VALUES (1, 1, 'phone', '+4915100000001'), (2, 1, 'phone', '+4915100000002')")
        )
        conn.execute(text("INSERT INTO sales VALUES (10, 1, 'done', -5.0), (11, 0, 'open', 0), (12, 2, 'shipped', 0)"))
    relations = compile_mapping(load(_file(tmp_path, RENAMED)))
    relations.install(engine)
    return engine


def test_queries_name_concepts_and_read_the_shops_own_tables_through_the_mapping(renamed_shop):
    with renamed_shop.connect() as conn:
        people = conn.execute(
            select(customers.c.id, customers.c.email, customers.c.phone, customers.c.accepts_email_marketing).order_by(
                customers.c.id
            )
        ).all()
        sales = conn.execute(
            select(orders.c.id, orders.c.customer_id, orders.c.status, orders.c.discount_total).order_by(orders.c.id)
        ).all()

    assert [tuple(row) for row in people] == [
        (1, "ada@example.com", "+4915100000002", True),  # a key/value row written twice: the latest
        (2, "bob@example.com", None, None),  # never asked: unknown, not an opt-out
        (4, "cy@example.com", None, False),  # the staff member is no customer
    ]
    assert [tuple(row) for row in sales] == [
        (10, 1, "paid", 5.0),  # a discount stored negative, read positive
        (11, None, "pending", 0.0),  # the guest id 0 is no customer
        (12, 2, f"{UNMAPPED}shipped", 0.0),  # a status no entry names: kept with its value, to be set aside
    ]


@pytest.mark.parametrize(
    ("where", "found"),
    [
        # compared on the shop's own column (its index serves): the guest's 0 still means no customer
        (orders.c.customer_id.in_([1, 0]), [10]),
        (orders.c.customer_id == 0, []),
        # a join on it, the same
        (customers.c.id == orders.c.customer_id, [10, 12]),
        # anything else is asked of the canonical value
        (orders.c.customer_id.is_(None), [11]),
    ],
)
def test_a_guest_id_compares_as_no_customer_on_the_shops_own_column(renamed_shop, where, found):
    statement = select(orders.c.id).select_from(orders.outerjoin(customers, customers.c.id == orders.c.customer_id))
    with renamed_shop.connect() as conn:
        assert list(conn.execute(statement.where(where).order_by(orders.c.id)).scalars()) == found


@pytest.mark.parametrize(
    ("reads", "meta_joins"),
    [
        # ids and counts join no key/value row at all
        (lambda: select(customers.c.id), 0),
        (lambda: select(func.count()).select_from(customers), 0),
        # the phone is a usermeta-like lookup: one join, for the one key
        (lambda: select(customers.c.id, customers.c.phone), 1),
        # an alias of the concept (hygiene's key rule) reads only what is read through it: no second join
        (lambda: _probed_through_an_alias(), 1),
    ],
)
def test_a_query_joins_only_the_lookups_of_the_columns_it_reads(tmp_path, reads, meta_joins):
    relations = compile_mapping(load(_file(tmp_path, RENAMED)))

    sql = str(relations.translate(reads()).compile(compile_kwargs={"literal_binds": True}))

    assert sql.count("JOIN people_meta AS") == meta_joins


def _probed_through_an_alias():
    same = customers.alias("customers_same_id")
    probe = select(func.count()).select_from(same).where(same.c.id == customers.c.id).scalar_subquery()
    return select(customers.c.phone).where(probe == 1)


def test_a_concept_the_mapping_leaves_out_reads_as_no_rows(renamed_shop):
    from cio_assets.schema.shop import carts, refunds

    with renamed_shop.connect() as conn:
        assert conn.execute(select(carts.c.id)).all() == []
        assert conn.execute(select(refunds.c.amount).where(refunds.c.order_id == 10)).all() == []


def test_writes_are_not_translated(renamed_shop):
    """The pipeline never writes to the shop; the demo and the tests write the reference tables they name."""
    with pytest.raises(Exception, match="no such table: customers"), renamed_shop.begin() as conn:
        conn.execute(insert(customers).values(id=9, email="x@example.com"))


# --- the MySQL session ---------------------------------------------------------------------------------------


def test_every_mysql_session_reads_timestamps_in_utc(database_urls):
    """A TIMESTAMP is stored in UTC and shown in the session's zone: the pipeline never trusts the server's."""
    database = Database(database_urls[0], Origin("source database", "CIO_MYSQL_URL", "test"))
    with database.connect() as conn:
        assert conn.execute(text("SELECT @@session.time_zone")).scalar_one() == "+00:00"
    database.engine.dispose()


def test_the_reference_tables_are_the_concepts():
    assert {table.name for table in SOURCE_TABLES} <= set(CONCEPTS)


# --- where a change shows ----------------------------------------------------------------------------------------

SEEN = """
[mapping]
time_zone = "UTC"

[customers]
table = "people"
alias = "p"
joins = ["LEFT JOIN addresses AS a ON a.aid = p.billing"]

[customers.lookups.consent]
table = "consents"
alias = "c"
match = "c.person = p.pid"
value = "c.changed"
order = "c.cid"

[customers.columns]
id = "p.pid"
email = "p.mail"
country = "a.country"
# A person changed when their row, their billing address or their consent did: the latest of the three.
updated_at = { sql = "GREATEST(p.edited, COALESCE(a.edited, p.edited), COALESCE({consent}, p.edited))", seen_in = [
    { table = "people", alias = "sp", key = "sp.pid", at = "sp.edited" },
    { table = "addresses", alias = "sa", key = "sa.person", at = "sa.edited" },
    { table = "consents", alias = "sc", key = "sc.person", at = "sc.changed" },
] }

[orders]
table = "sales"
alias = "s"
[orders.columns]
id = "s.sid"
"""


@pytest.fixture
def seen_shop(throwaway_database, tmp_path):
    """A MariaDB shop whose people change in three tables, read through SEEN; the statements it ran."""
    engine = create_engine(throwaway_database)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE people (pid INT PRIMARY KEY, mail TEXT, billing INT, edited DATETIME(6))"))
        conn.execute(text("CREATE TABLE addresses (aid INT PRIMARY KEY, person INT, country TEXT, edited DATETIME(6))"))
        conn.execute(text("CREATE TABLE consents (cid INT PRIMARY KEY, person INT, changed DATETIME(6))"))
        conn.execute(text("CREATE TABLE sales (sid INT PRIMARY KEY)"))
        conn.execute(
            text(
                "INSERT INTO people VALUES (1, 'ada@example.com', 10, '2026-01-01'), "
                "(2, 'bob@example.com', 20, '2026-01-01'), (3, 'cy@example.com', NULL, '2026-03-01')"
            )
        )
        # Ada's address changed in February; Bob's consent in April; Cy's own row in March.
        conn.execute(text("INSERT INTO addresses VALUES (10, 1, 'DE', '2026-02-01'), (20, 2, 'FR', '2026-01-01')"))
        conn.execute(text("INSERT INTO consents VALUES (100, 2, '2026-04-01')"))
    compile_mapping(load(_file(tmp_path, SEEN))).install(engine)
    ran: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, *rest: ran.append(statement))
    yield engine, ran
    engine.dispose()


@pytest.mark.parametrize(
    ("where", "found"),
    [
        # a change in a child table (Bob's consent, Ada's address) is a change of its person
        (customers.c.updated_at > datetime(2026, 1, 15), [1, 2, 3]),
        (customers.c.updated_at >= datetime(2026, 3, 1), [2, 3]),
        # a range: found by both bounds, each person at the latest of their times
        ((customers.c.updated_at >= datetime(2026, 2, 1)) & (customers.c.updated_at < datetime(2026, 3, 1)), [1]),
        (customers.c.updated_at > datetime(2026, 4, 1), []),
    ],
)
def test_a_change_is_found_where_the_mapping_says_it_shows_then_read_by_id(seen_shop, where, found):
    engine, ran = seen_shop

    with engine.connect() as conn:
        ids = sorted(conn.execute(select(customers.c.id).where(where)).scalars())

    assert ids == found
    # Each place was asked for its ids in the range; the people were then read by those ids (none: no read).
    places = [s for s in ran if "customers" not in s]
    assert {s.split(" FROM ")[1].split()[0] for s in places} == {"people", "addresses", "consents"}
    read = [s for s in ran if "customers" in s]
    assert len(read) == 1 and ("customers.id IN (" in read[0] or "WHERE false" in read[0]), read


def test_the_latest_change_is_the_latest_of_the_places_it_shows(seen_shop):
    engine, ran = seen_shop

    with engine.connect() as conn:
        marks = observe_table(conn, customers, PipelineSettings().clock(datetime.now(UTC), load("reference")))

    assert {name: value for name, value in marks.items() if name != LATELY} == {
        "row_count": 3,
        "max_id": 3,
        "max_updated_at": "2026-04-01T00:00:00",
    }
    # The rows changed lately (within ten minutes of 2026-04-01: Bob, by his consent) are found where their changes
    # show, then read by id, never computed for every customer.
    assert str(marks[LATELY]).startswith("1:")
    read = [s for s in ran if "customers" in s and "LIMIT" not in s and "count(" not in s]
    assert len(read) == 1 and "customers.id IN (" in read[0], read


def test_a_join_nothing_read_names_is_left_out(seen_shop):
    engine, ran = seen_shop

    with engine.connect() as conn:
        conn.execute(select(func.count()).select_from(customers)).scalar_one()
        conn.execute(select(customers.c.country)).all()

    counted, countries = ran
    assert "addresses" not in counted  # a LEFT JOIN adds no row and filters none: a count needs no address
    assert "LEFT JOIN addresses" in countries
