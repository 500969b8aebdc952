"""Settings fail fast and clearly: a bad value stops the definitions from loading (and a launchpad-edited
run before any step) with one message naming the variable, the value (never a secret) and what is expected."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from cio_assets.config import Environment, SettingsError
from cio_assets.defs.resources import CustomerIO, Settings, SourceDatabase, StateDatabase, resources
from cio_assets.mapping.spec import load

SECRET = "s3cret-pw"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Every test starts from an environment without CIO_ variables (the defaults)."""
    for name in list(os.environ):
        if name.startswith("CIO_") and name != "CIO_TEST_MYSQL_URL":
            monkeypatch.delenv(name)
    return monkeypatch


def load_definitions_settings() -> dict:
    """What building the definitions reads from the environment, through the same entry points."""
    env = Environment.read()
    return {"partitions": env.partitions, **resources(env)}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        # an impossible month (Python's own message, kept as the reason)
        ("CIO_START_DATE", "2026-13-01", "expected a date as YYYY-MM-DD (month must be in 1..12)"),
        # a date in another format
        ("CIO_START_DATE", "01/10/2026", "expected a date as YYYY-MM-DD"),
        # an impossible day
        ("CIO_TIMESTAMP_FLOOR", "2000-02-30", "expected a date as YYYY-MM-DD (day is out of range for month)"),
        # a zone that does not exist
        ("CIO_SOURCE_TZ", "Mars/Base", "expected an IANA time zone name"),
        # the partition zone too
        ("CIO_BUSINESS_TZ", "Mars/Base", "expected an IANA time zone name"),
        # a per-table zone that does not exist
        ("CIO_SOURCE_TZ_OVERRIDES", "orders=Mars/Base", "'Mars/Base' is not one"),
        # an entry without a zone
        ("CIO_SOURCE_TZ_OVERRIDES", "orders", "expected 'table=Zone/Name' entries"),
        # a table the pipeline does not read (a typo would silently do nothing)
        ("CIO_SOURCE_TZ_OVERRIDES", "order=UTC", "'order' is not one"),
        # negative: today it silently wiped state
        ("CIO_CHUNK_SIZE", "-1", "expected a whole number >= 1"),
        # zero: today a ZeroDivisionError mid-run
        ("CIO_CHUNK_SIZE", "0", "expected a whole number >= 1"),
        # not a whole number
        ("CIO_CHUNK_SIZE", "1.5", "expected a whole number >= 1"),
        # not a number at all
        ("CIO_CHUNK_SIZE", "lots", "expected a whole number >= 1"),
        # a cart is never abandoned after 0 minutes
        ("CIO_CART_IDLE_MINUTES", "0", "expected a whole number >= 1"),
        # a live window can be 0 (everything is history) but not negative
        ("CIO_LIVE_WINDOW_HOURS", "-1", "expected a whole number >= 0"),
        # at least one request in flight
        ("CIO_MAX_IN_FLIGHT", "0", "expected a whole number >= 1"),
        # a count of rows
        ("CIO_QUARANTINE_MIN_ROWS", "-1", "expected a whole number >= 0"),
        # zero: today it failed mid-delivery
        ("CIO_RATE_LIMIT", "0", "expected a number > 0"),
        # negative: the same
        ("CIO_RATE_LIMIT", "-5", "expected a number > 0"),
        # not a number
        ("CIO_RATE_LIMIT", "nan", "expected a number > 0"),
        # a budget of no time at all
        ("CIO_RETRY_BUDGET_SECONDS", "0", "expected a number > 0"),
        # a share above 1
        ("CIO_QUARANTINE_MAX_SHARE", "1.5", "expected a number from 0 to 1"),
        # a share below 0
        ("CIO_QUARANTINE_MAX_SHARE", "-0.1", "expected a number from 0 to 1"),
        # an id policy that does not exist
        ("CIO_CANONICAL_ID", "phone", "expected one of customer_id, email"),
        # a history mode that does not exist
        ("CIO_HISTORY_EVENTS", "drop", "expected one of send, skip"),
        # a region Customer.io does not have
        ("CIO_REGION", "ap", "expected one of us, eu"),
        # a flag that is neither on nor off
        ("CIO_DRY_RUN", "maybe", "expected 1, true or yes to turn it on; 0, false, no or empty"),
        # the same rule for the ledger flag
        ("CIO_ACCEPT_NEW_LEDGER", "2", "expected 1, true or yes to turn it on"),
        # tiers out of order
        ("CIO_VIP_TIERS", "gold:500,silver:250", "in ascending order of minimum"),
        # a tier without a minimum
        ("CIO_VIP_TIERS", "gold", "'gold' has no ':'"),
        # a minimum that is not a number
        ("CIO_VIP_TIERS", "gold:lots", "with numeric minimums; 'gold:lots' breaks that"),
        # a tier name wider than the snapshot's 32-character column
        ("CIO_VIP_TIERS", "g" * 33 + ":500", "with names of 1 to 32 characters"),
        # a tier without a name
        ("CIO_VIP_TIERS", ":500", "with names of 1 to 32 characters"),
    ],
)
def test_a_bad_value_stops_the_definitions_naming_variable_value_and_expectation(clean_env, name, value, expected):
    clean_env.setenv(name, value)

    with pytest.raises(SettingsError) as failure:
        load_definitions_settings()

    message = str(failure.value)
    assert message.startswith(f"{name}={value!r} is invalid: ")
    assert expected in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        # not an http(s) URL (and a password in it)
        ("CIO_TRACK_URL", f"ftp://proxy:{SECRET}@track.example.com", "expected an http(s) URL with a host"),
        # no host, only credentials
        ("CIO_TRACK_URL", f"https://proxy:{SECRET}@/api", "expected an http(s) URL with a host"),
        # a port that is not a number
        ("CIO_TRACK_URL", f"https://proxy:{SECRET}@track.example.com:port", "expected an http(s) URL with a host"),
        # SQLAlchemy's own parse error would quote this URL, password included
        ("CIO_MYSQL_URL", f"mysql+mysqldb://reader:{SECRET}@db:port/shop", "does not parse as a SQLAlchemy URL"),
        # not a URL at all
        ("CIO_MYSQL_URL", f"reader:{SECRET}@db/shop", "does not parse as a SQLAlchemy URL"),
        # a backend the pipeline does not speak
        ("CIO_MYSQL_URL", f"postgresql://reader:{SECRET}@db/shop", "backend 'postgresql' is not supported"),
        # a server without a database
        ("CIO_MYSQL_URL", f"mysql+mysqldb://reader:{SECRET}@db/", "it names no database"),
        # the state URL follows the same rules
        ("CIO_STATE_URL", f"mysql+mysqldb://writer:{SECRET}@db:port/cio_sync", "does not parse as a SQLAlchemy URL"),
    ],
)
def test_a_bad_url_is_named_without_its_value(clean_env, name, value, expected):
    clean_env.setenv(name, value)

    with pytest.raises(SettingsError) as failure:
        load_definitions_settings()

    message = str(failure.value)
    assert message.startswith(f"{name} is invalid: ")
    assert expected in message
    assert SECRET not in message and value not in message


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        # a site id without a key: today a silent dry run
        ({"CIO_SITE_ID": "site-1"}, "CIO_SITE_ID is set but CIO_API_KEY is not"),
        # a key without a site id
        ({"CIO_API_KEY": SECRET}, "CIO_API_KEY is set but CIO_SITE_ID is not"),
    ],
)
def test_one_credential_without_the_other_is_an_error(clean_env, variables, expected):
    for name, value in variables.items():
        clean_env.setenv(name, value)

    with pytest.raises(SettingsError) as failure:
        load_definitions_settings()

    assert expected in str(failure.value)
    assert SECRET not in str(failure.value)


@pytest.mark.parametrize(
    ("variables", "sends"),
    [
        # neither credential: the documented dry run
        ({}, False),
        # one credential, but the dry run is explicit
        ({"CIO_SITE_ID": "site-1", "CIO_DRY_RUN": "1"}, False),
        # both: delivery
        ({"CIO_SITE_ID": "site-1", "CIO_API_KEY": SECRET}, True),
        # both, and an explicit dry run wins
        ({"CIO_SITE_ID": "site-1", "CIO_API_KEY": SECRET, "CIO_DRY_RUN": "TRUE"}, False),
    ],
)
def test_credentials_both_or_neither_or_an_explicit_dry_run(clean_env, variables, sends):
    for name, value in variables.items():
        clean_env.setenv(name, value)

    assert load_definitions_settings()["customerio"].sends is sends


@pytest.mark.parametrize(
    ("value", "on"),
    [
        ("1", True),  # the documented form
        ("TRUE", True),  # any case
        ("Yes", True),  # yes
        ("0", False),  # off
        ("no", False),  # no
        ("False", False),  # any case
        ("", False),  # empty is unset: off
    ],
)
def test_flags_read_the_usual_spellings(clean_env, value, on):
    # With credentials, so that `dry_run` is the flag alone (without them a run is a dry run anyway).
    clean_env.setenv("CIO_SITE_ID", "site-1")
    clean_env.setenv("CIO_API_KEY", SECRET)
    clean_env.setenv("CIO_DRY_RUN", value)
    clean_env.setenv("CIO_ACCEPT_NEW_LEDGER", value)

    loaded = load_definitions_settings()["customerio"]

    assert (loaded.dry_run, loaded.accept_new_ledger) == (on, on)


def test_the_defaults_load_and_match_the_documented_values(clean_env):
    loaded = load_definitions_settings()

    settings = loaded["settings"]
    assert (loaded["partitions"].start_date, loaded["partitions"].business_tz) == ("2026-10-01", "UTC")
    assert settings == Settings()
    assert (settings.chunk_size, settings.quarantine_max_share, settings.quarantine_min_rows) == (5000, 0.05, 20)
    assert settings.tiers == [("silver", 250.0), ("gold", 500.0), ("platinum", 1000.0)]
    customerio = loaded["customerio"]
    assert (customerio.retry_budget_seconds, customerio.accept_new_ledger, customerio.sends) == (120.0, False, False)
    assert (customerio.region, customerio.rate_limit, customerio.max_in_flight) == ("us", 100.0, 4)


def test_good_values_are_read_and_normalised(clean_env):
    for name, value in {
        "CIO_CHUNK_SIZE": " 250 ",
        "CIO_QUARANTINE_MAX_SHARE": "0.2",
        "CIO_QUARANTINE_MIN_ROWS": "0",
        "CIO_LIVE_WINDOW_HOURS": "0",
        "CIO_SOURCE_TZ_OVERRIDES": "orders=America/New_York, carts=UTC",
        "CIO_RETRY_BUDGET_SECONDS": "2.5",
        "CIO_TRACK_URL": "http://127.0.0.1:9/",
        "CIO_MYSQL_URL": f"mysql+mysqldb://reader:{SECRET}@db.internal/shop",
    }.items():
        clean_env.setenv(name, value)

    loaded = load_definitions_settings()

    settings = loaded["settings"]
    assert (settings.chunk_size, settings.quarantine_max_share, settings.quarantine_min_rows) == (250, 0.2, 0)
    assert str(settings.zones(load("reference")).of("orders")) == "America/New_York"
    assert loaded["customerio"].retry_budget_seconds == 2.5
    # URLs set in the environment reach Dagster as EnvVars: the password is not in the definitions.
    assert isinstance(loaded["source"].url, dg.EnvVar)


def test_every_bad_setting_is_listed_in_one_message(clean_env):
    clean_env.setenv("CIO_CHUNK_SIZE", "0")
    clean_env.setenv("CIO_CANONICAL_ID", "phone")

    with pytest.raises(SettingsError) as failure:
        Settings.from_env()

    assert "CIO_CANONICAL_ID='phone' is invalid" in str(failure.value)
    assert "CIO_CHUNK_SIZE='0' is invalid" in str(failure.value)


def test_every_settings_field_names_its_variable_in_its_description():
    for field, info in Settings.model_fields.items():
        assert (info.description or "").startswith(f"CIO_{field.upper()}: "), field
    for info in CustomerIO.model_fields.values():
        assert (info.description or "").startswith("CIO_")


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        # the launchpad edits chunk_size to 0
        (lambda: Settings(chunk_size=0), "CIO_CHUNK_SIZE='0' is invalid: expected a whole number >= 1"),
        # a zone that does not exist
        (lambda: Settings(source_tz="Mars/Base"), "CIO_SOURCE_TZ='Mars/Base' is invalid"),
        # tiers out of order
        (lambda: Settings(vip_tiers="gold:500,silver:250"), "in ascending order of minimum"),
        # a share above 1
        (lambda: Settings(quarantine_max_share=2.0), "CIO_QUARANTINE_MAX_SHARE='2.0' is invalid"),
        # a date that does not exist
        (lambda: Settings(timestamp_floor="2000-02-30"), "CIO_TIMESTAMP_FLOOR='2000-02-30' is invalid"),
        # a rate of zero
        (lambda: CustomerIO(rate_limit=0), "CIO_RATE_LIMIT='0' is invalid: expected a number > 0"),
        # a retry budget of zero
        (lambda: CustomerIO(retry_budget_seconds=0), "CIO_RETRY_BUDGET_SECONDS='0' is invalid"),
        # a region that does not exist
        (lambda: CustomerIO(region="ap"), "CIO_REGION='ap' is invalid"),
        # a key without a site id
        (lambda: CustomerIO(api_key=SECRET), "CIO_API_KEY is set but CIO_SITE_ID is not"),
        # a source URL with a backend the pipeline does not speak
        (lambda: SourceDatabase(url=f"postgresql://u:{SECRET}@h/db"), "CIO_MYSQL_URL is invalid: its backend"),
        # a state URL that does not parse
        (lambda: StateDatabase(url=f"mysql://u:{SECRET}@h:port/db"), "CIO_STATE_URL is invalid: it does not parse"),
    ],
)
def test_launchpad_style_construction_fails_the_same_way(build, expected):
    with pytest.raises(ValueError) as failure:
        build()

    assert expected in str(failure.value)
    assert SECRET not in str(failure.value)


def test_an_env_var_is_checked_when_the_run_resolves_it_not_before():
    # At definitions load an EnvVar holds the variable's name; its value is checked at launch.
    assert SourceDatabase(url=dg.EnvVar("CIO_MYSQL_URL")).url == "CIO_MYSQL_URL"
    assert CustomerIO(site_id=dg.EnvVar("CIO_SITE_ID"), api_key=dg.EnvVar("CIO_API_KEY")).sends


def test_a_launchpad_override_fails_the_run_before_any_step():
    ran = []

    @dg.asset
    def needs_settings(settings: Settings) -> None:
        ran.append(settings.chunk_size)

    result = dg.materialize(
        [needs_settings],
        resources={"settings": Settings()},
        run_config={"resources": {"settings": {"config": {"chunk_size": 0}}}},
        raise_on_error=False,
    )

    assert not result.success and ran == []
    failure = next(e for e in result.all_events if e.is_failure)
    assert "CIO_CHUNK_SIZE='0' is invalid: expected a whole number >= 1" in str(failure.event_specific_data)


def test_a_negative_chunk_size_can_no_longer_reach_an_asset(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIO_")}
    env.update(CIO_CHUNK_SIZE="-1", CIO_DATA_DIR=str(tmp_path))

    # What Dagster does with a code location: import the module, then build its definitions.
    loaded = subprocess.run(
        [sys.executable, "-c", "import cio_assets.definitions as d; d.defs()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert loaded.returncode != 0
    assert "SettingsError: CIO_CHUNK_SIZE='-1' is invalid: expected a whole number >= 1" in loaded.stderr


# Invalid values of settings read at every stage: the partitions', the pipeline's, a database URL, Customer.io's.
INVALID = {
    "CIO_START_DATE": "2026-13-01",
    "CIO_CHUNK_SIZE": "-1",
    "CIO_MYSQL_URL": "not a url",
    "CIO_REGION": "ap",
    "CIO_EXECUTOR": "threads",
}


def test_every_module_imports_with_invalid_settings_in_the_environment(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIO_")}
    env.update(INVALID, CIO_DATA_DIR=str(tmp_path))
    script = (
        "import importlib, pkgutil, cio_assets\n"
        # `__main__` modules run their command when imported (`python -m cio_assets.demo`): not imported here.
        "modules = pkgutil.walk_packages(cio_assets.__path__, 'cio_assets.')\n"
        "names = [m.name for m in modules if not m.name.endswith('.__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )

    imported = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)

    assert imported.returncode == 0, imported.stderr
    assert int(imported.stdout.split()[-1]) > 60  # every module of the package, not a few


def test_building_the_definitions_with_invalid_settings_names_every_bad_variable(monkeypatch):
    for name, value in INVALID.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as failure:
        Environment.read()

    message = str(failure.value)
    for name in INVALID:
        assert name in message
    assert "not a url" not in message  # a URL may hold a password: it is never echoed
