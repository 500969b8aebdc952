"""The source mapping: a file a data engineer reads and reviews, checked at load with errors that name the file
and the key; compiled into the pipeline's queries so that they read a shop's own tables by canonical names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, insert, select, text

from cio_assets.config import PipelineSettings, SettingsError, SourceSettings
from cio_assets.lib.engines import Database, Origin
from cio_assets.mapping.compile import UNMAPPED, compile_mapping
from cio_assets.mapping.spec import PRESETS, MappingError, load
from cio_assets.schema.shop import CONCEPTS, SOURCE_TABLES, customers, orders

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
