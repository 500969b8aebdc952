"""The data dictionary is generated from the code that builds the data, committed, versioned, and true.

- docs/ holds exactly what `make reference` generates, so a definition change shows up in review (and so do
  the configuration page and the reference DDL);
- a changed definition needs a new contract_version (the digest of the definitions says when);
- every identify and event the pipeline sends validates against the dictionary's JSON Schema;
- the attribute definitions are the descriptions the Dagster UI shows for the snapshot's columns."""

import orjson
import pytest
from jsonschema import Draft202012Validator

from cio_assets import dictionary
from cio_assets.config import CONFIGURATION_PAGE, configuration_page
from cio_assets.schema.events import DECLARED, EVENT_NAMES
from cio_assets.schema.shop import REFERENCE_DDL_PATH, reference_ddl
from cio_assets_tests.conftest import SYNC
from cio_assets_tests.definitions import attribute_snapshot, event_log


@pytest.mark.parametrize(
    ("path", "generate"),
    [
        # the Markdown people read in review
        (dictionary.MARKDOWN_PATH, dictionary.markdown),
        # the JSON Schema tools validate with
        (dictionary.SCHEMA_PATH, dictionary.schema_json),
        # every setting, from its one declaration in cio_assets/config.py
        (CONFIGURATION_PAGE, configuration_page),
        # the reference schema as MySQL/MariaDB DDL, from the table definitions
        (REFERENCE_DDL_PATH, reference_ddl),
    ],
)
def test_the_committed_reference_is_the_generated_one(path, generate):
    assert path.read_text(encoding="utf-8") == generate(), f"{path.name} is out of date: run `make reference`"


def test_make_reference_writes_every_generated_page():
    assert set(dictionary.GENERATED) == {
        dictionary.MARKDOWN_PATH,
        dictionary.SCHEMA_PATH,
        CONFIGURATION_PAGE,
        REFERENCE_DDL_PATH,
    }


def test_a_changed_definition_needs_a_new_contract_version():
    digest = dictionary.contract_digest()
    assert digest == dictionary.CONTRACT_DIGEST, (
        "The data contract's definitions changed. If a meaning changed, give it a new name; either way bump "
        f"CONTRACT_VERSION to {dictionary.CONTRACT_VERSION + 1}, set CONTRACT_DIGEST = {digest!r} in "
        "cio_assets/dictionary.py and run `make reference`."
    )


def test_every_family_is_in_the_dictionary():
    assert tuple(family.name for family in DECLARED) == EVENT_NAMES


def _every_family(shop) -> None:
    """A person with one event of each family, an order with several lines and a refund with a reason."""
    shop.customer(1, email="ada@shop.com", phone="+12125550143")
    order = shop.order(
        1,
        total=45.0,
        paid_at="2026-10-01 12:00",
        discount_code="HELLO",
        items=[("A", "tea", 2, 10.0), ("B", "mugs", 1, 25.0)],
    )
    shop.refund(order, 10.0, "2026-10-02 09:00", reason="damaged")
    shop.cart(1, updated_at="2026-10-02 10:00", checkout_started_at="2026-10-02 10:05")  # abandoned an hour later
    shop.subscription(1, status="canceled", canceled_at="2026-10-03 08:00", cancel_reason="too much coffee")


def test_everything_sent_validates_against_the_dictionary(shop, pipeline, customerio):
    _every_family(shop)

    pipeline.run(partition_range=("2026-10-01", "2026-10-03"), assets=SYNC, customerio=customerio.resource())

    document = orjson.loads(dictionary.schema_json())
    attributes = Draft202012Validator(document["attributes"])
    events = {name: Draft202012Validator(schema) for name, schema in document["events"].items()}
    items = customerio.fake.batch_items()
    sent = sorted({item["name"] for item in items if item["action"] == "event"})
    assert sent == sorted(EVENT_NAMES)  # every family was exercised
    for item in items:
        validator = attributes if item["action"] == "identify" else events[item["name"]]
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(item["attributes"])]
        assert errors == [], f"{item['action']} {item.get('name', '')}: {errors}"


def test_attribute_definitions_are_the_column_descriptions_the_ui_shows():
    schema = attribute_snapshot.specs_by_key[attribute_snapshot.key].metadata["dagster/column_schema"]
    described = {column.name: column.description for column in schema.columns}
    for attribute in dictionary.attributes():
        if attribute["name"] in described:
            assert attribute["definition"] == described[attribute["name"]]


def test_each_familys_properties_are_shown_on_the_event_log_as_the_dictionary_defines_them():
    metadata = event_log.specs_by_key[event_log.key].metadata
    document = orjson.loads(dictionary.schema_json())
    for family in DECLARED:
        shown = {c.name: c.description for c in metadata[f"properties/{family.name}"].schema.columns}
        defined = document["events"][family.name]["properties"]
        assert shown == {name: p["description"] for name, p in defined.items() if name != "backfill"}
