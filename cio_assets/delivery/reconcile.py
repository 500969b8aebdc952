"""Read-back reconciliation: after a people sync, do Customer.io's profiles hold what the ledger says we sent?

The seeds' "spot-check 20 real customers", automated. `CIO_RECONCILE_SAMPLE` people are read back
through the App API: first those the latest people sync delivered (ledger rows delivered at or after
that run's start), then a random sample of everyone else delivered, seeded with that run's id (the
same sync always reads the same people; each new sync reads others). Each is compared, attribute by
attribute, with the people ledger: every value Customer.io accepted from us, as of the last accepted
identify.

Customer.io stores every attribute as a string, so values are compared in string form:
- text: exactly equal;
- a boolean: `"true"` or `"false"` (JSON's spelling);
- an integer (Unix timestamps, counts): their string read as a number is exactly ours
  (`"1489014595"`, also `"1.489014595e+09"`);
- a float (money): their string read as a number is ours within a relative 1e-9, so `"50"`, `"50.0"`
  and `"5e1"` all match 50.0 (how Customer.io prints numbers is not documented);
- null (or empty text): the attribute is absent or empty, since a new profile gets no null and an
  empty string removes an attribute.
Attributes Customer.io holds that we never send (`id`, `cio_id`, `_last_emailed`, ...) are ignored.
A profile Customer.io does not have is one mismatch on `(profile)`.

`unsubscribed` is judged as consent, not as a value: a person we unsubscribed whom Customer.io shows
subscribed is a mismatch, but a person Customer.io shows unsubscribed without the pipeline having sent it
used an unsubscribe link. That is their choice, not an error: they are listed (`unsubscribed_in_customerio`
in the metadata) and remembered in `cio_unsubscribed_in_customerio`, so the pipeline never re-subscribes
them and the shop can record their opt-out.

Customer.io applies identifies asynchronously, so people that differ are read once more after
`CIO_RECONCILE_SETTLE_SECONDS` before they count.
"""

import math
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import dagster as dg
import pandas as pd
from sqlalchemy import ColumnElement, Connection, func, select

from cio_assets.customerio.app_api import Attributes
from cio_assets.delivery import ledger
from cio_assets.delivery.people import UNSUBSCRIBED
from cio_assets.lib.timestamps import unix, utc_now
from cio_assets.metadata import markdown_table
from cio_assets.resources import CustomerIO, StateDatabase
from cio_assets.schema.state import people_ledger

CHECK_NAME = "customerio_people_reconciled"
PEOPLE_ASSET = dg.AssetKey("customerio_people")
PROFILE = "(profile)"
NOT_SET = "(not set)"
DELIVERED = "(delivered)"
NO_PROFILE = "(no profile)"
FLOAT_TOLERANCE = 1e-9
# Rows streamed per fetch while picking sampled positions out of the ledger.
_STREAM_ROWS = 1000


# ---------------------------------------------------------------------------------------------------------
# Comparing string forms
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    person_id: str
    attribute: str
    ours: str
    theirs: str


def shown(value: object) -> str:
    """Our value as Customer.io would print it (for the mismatch table)."""
    if value is None or value == "":
        return NOT_SET
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def values_match(ours: object, theirs: str | None) -> bool:
    """Whether Customer.io's string `theirs` (None: attribute absent) holds our ledger value `ours`."""
    if ours is None or ours == "":
        return theirs is None or theirs == ""
    if theirs is None:
        return False
    if isinstance(ours, bool):
        return theirs == ("true" if ours else "false")
    if isinstance(ours, int | float):
        number = _number(theirs)
        if number is None:
            return False
        if isinstance(ours, int):
            return number == ours
        return math.isclose(float(number), ours, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    return theirs == str(ours)


def _number(text: str) -> Decimal | None:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def is_unsubscribed(theirs: Attributes) -> bool:
    """Customer.io's reading of `unsubscribed`: "`true`, `TRUE`, `1`, and `"1"` count as true" ([TRACK-SPEC])."""
    return str(theirs.get(UNSUBSCRIBED, "")).strip().lower() in ("true", "1")


def compare_person(person_id: str, ours: Mapping[str, object], theirs: Attributes | None) -> list[Mismatch]:
    """Every attribute of ours that Customer.io's profile does not hold; a missing profile is one mismatch. Of
    `unsubscribed`, only our `true` is ours to hold: Customer.io unsubscribing someone we did not is their choice."""
    if theirs is None:
        return [Mismatch(person_id, PROFILE, DELIVERED, NO_PROFILE)]
    mismatches = [
        Mismatch(person_id, name, shown(value), NOT_SET if theirs.get(name) is None else str(theirs[name]))
        for name, value in ours.items()
        if name != UNSUBSCRIBED and not values_match(value, theirs.get(name))
    ]
    if ours.get(UNSUBSCRIBED) is True and not is_unsubscribed(theirs):
        mismatches.append(Mismatch(person_id, UNSUBSCRIBED, "true", str(theirs.get(UNSUBSCRIBED, NOT_SET))))
    return mismatches


def unsubscribed_themselves(ours: Mapping[str, Mapping[str, object]], theirs: Mapping[str, Attributes]) -> list[str]:
    """People Customer.io shows unsubscribed although the pipeline never sent them `unsubscribed: true`."""
    return sorted(
        person_id
        for person_id, attributes in ours.items()
        if person_id in theirs and is_unsubscribed(theirs[person_id]) and attributes.get(UNSUBSCRIBED) is not True
    )


def compare(ours: Mapping[str, Mapping[str, object]], theirs: Mapping[str, Attributes]) -> list[Mismatch]:
    """Mismatches of every person in `ours` (person id -> ledger attributes), in person order."""
    return [m for person_id in sorted(ours) for m in compare_person(person_id, ours[person_id], theirs.get(person_id))]


# ---------------------------------------------------------------------------------------------------------
# Choosing whom to read
# ---------------------------------------------------------------------------------------------------------


def sample_positions(total: int, size: int, seed: str) -> list[int]:
    """`size` distinct positions in [0, total), in a random order fixed by `seed`."""
    return random.Random(seed).sample(range(total), min(size, total))


def pick(ids: Iterable[str], positions: Sequence[int]) -> list[str]:
    """The ids at `positions` of the ordered `ids`, in the order of `positions`; stops reading after the last."""
    if not positions:
        return []
    order = {position: index for index, position in enumerate(positions)}
    found: list[str | None] = [None] * len(positions)
    last = max(positions)
    for index, person_id in enumerate(ids):
        if index in order:
            found[order[index]] = person_id
        if index >= last:
            break
    return [person_id for person_id in found if person_id is not None]


@dataclass(frozen=True)
class Sample:
    changed: list[str]  # delivered by the latest people sync
    others: list[str]  # delivered before it, at random
    delivered: int  # everyone in the ledger
    changed_total: int

    @property
    def people(self) -> list[str]:
        return [*self.changed, *self.others]


def choose_people(conn: Connection, since: int, size: int, seed: str) -> Sample:
    """Up to `size` people: those delivered at or after `since` first, then a seeded sample of the rest."""
    changed_rows = people_ledger.c.delivered_at >= since
    other_rows = people_ledger.c.delivered_at < since
    changed_total, others_total = _count(conn, changed_rows), _count(conn, other_rows)
    changed = _ids_at(conn, changed_rows, sample_positions(changed_total, size, f"{seed}:changed"))
    others = _ids_at(conn, other_rows, sample_positions(others_total, size - len(changed), f"{seed}:others"))
    return Sample(changed, others, changed_total + others_total, changed_total)


def _count(conn: Connection, condition: ColumnElement[bool]) -> int:
    return int(conn.execute(select(func.count()).select_from(people_ledger).where(condition)).scalar_one())


def _ids_at(conn: Connection, condition: ColumnElement[bool], positions: Sequence[int]) -> list[str]:
    """The person ids at `positions` of the ledger rows matching `condition`, ordered by person id, streamed."""
    if not positions:
        return []
    statement = (
        select(people_ledger.c.person_id)
        .where(condition)
        .order_by(people_ledger.c.person_id)
        .limit(max(positions) + 1)
        .execution_options(yield_per=_STREAM_ROWS)
    )
    result = conn.execute(statement)
    try:
        return pick(result.scalars(), positions)
    finally:
        result.close()


# ---------------------------------------------------------------------------------------------------------
# The latest people sync, and when there is nothing to reconcile
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeopleSync:
    run_id: str
    started_at: int  # Unix seconds: the run's start
    dry_run: bool


def latest_people_sync(instance: dg.DagsterInstance) -> PeopleSync | None:
    """The run of the latest `customerio_people` materialization, if any."""
    entry = instance.get_latest_materialization_event(PEOPLE_ASSET)
    if entry is None:
        return None
    record = instance.get_run_record_by_id(entry.run_id)
    if record is None:
        started = entry.timestamp  # the run was deleted: its materialization's time is the best bound left
    else:
        started = record.start_time if record.start_time is not None else record.create_timestamp.timestamp()
    materialization = entry.asset_materialization
    dry_run = materialization is not None and bool(getattr(materialization.metadata.get("dry_run"), "value", False))
    return PeopleSync(entry.run_id, int(started), dry_run)


def skip_reason(customerio: CustomerIO, sync: PeopleSync | None) -> str | None:
    """Why there is nothing to read back, or None when the check can run."""
    if not customerio.sends:
        return "dry run: nothing is delivered to Customer.io (CIO_DRY_RUN, or no Track credentials)"
    if not customerio.reads_back:
        return "CIO_APP_API_KEY is not set: people cannot be read back from Customer.io's App API"
    if sync is None:
        return "customerio_people has never been materialized: nothing was delivered yet"
    if sync.dry_run:
        return f"the latest people sync (run {sync.run_id}) was a dry run: it delivered nothing"
    return None


# ---------------------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    ours: dict[str, dict]  # person id -> ledger attributes
    mismatches: list[Mismatch]
    unsubscribed_themselves: list[str]  # shown unsubscribed in Customer.io, never by us
    requests: int
    throttled: int
    rechecked: int  # people read a second time after the settle delay


def read_back(customerio: CustomerIO, ours: dict[str, dict]) -> Reading:
    """Read `ours`' people from Customer.io and compare; people that differ are read again after the settle delay."""
    with customerio.app_client() as client:
        theirs = client.read_people(list(ours))
        differing = sorted({m.person_id for m in compare(ours, theirs)})
        if differing and customerio.reconcile_settle_seconds > 0:
            time.sleep(customerio.reconcile_settle_seconds)
            theirs = {**theirs, **client.read_people(differing)}
        mismatches = compare(ours, theirs)
        return Reading(
            ours,
            mismatches,
            unsubscribed_themselves(ours, theirs),
            client.stats.requests,
            client.stats.throttled,
            len(differing),
        )


def reconcile_metadata(sample: Sample, reading: Reading, sync: PeopleSync) -> dict[str, object]:
    table = pd.DataFrame(
        [(m.person_id, m.attribute, m.ours, m.theirs) for m in reading.mismatches],
        columns=["person", "attribute", "ours", "theirs"],
    )
    return {
        "people_checked": len(reading.ours),
        "people_checked_changed": len(sample.changed),
        "people_checked_random": len(sample.others),
        "people_changed_by_sync": sample.changed_total,
        "people_delivered": sample.delivered,
        "attributes_compared": sum(len(attributes) for attributes in reading.ours.values()),
        "mismatches": len(reading.mismatches),
        "people_mismatched": len({m.person_id for m in reading.mismatches}),
        "profiles_missing": sum(m.attribute == PROFILE for m in reading.mismatches),
        "people_rechecked": reading.rechecked,
        "mismatch_table": markdown_table(table, limit=max(len(table), 1)),
        "unsubscribed_in_customerio": len(reading.unsubscribed_themselves),
        "unsubscribed_in_customerio_people": markdown_table(
            pd.DataFrame({"person": reading.unsubscribed_themselves}),
            limit=max(len(reading.unsubscribed_themselves), 1),
        ),
        "app_api_requests": reading.requests,
        "app_api_throttled_429": reading.throttled,
        "people_sync_run": sync.run_id,
    }


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=PEOPLE_ASSET,
            description=(
                "Customer.io's profiles hold what the people ledger says was delivered: CIO_RECONCILE_SAMPLE people "
                "read back through the App API (the latest sync's first), every mismatch listed."
            ),
        )
    ],
    # A subsettable check may emit nothing: a run that skips it (a dry run, no App API key) shows it as
    # Skipped, not as passed.
    can_subset=True,
)
def customerio_people_reconciled(
    context: dg.AssetCheckExecutionContext, state: StateDatabase, customerio: CustomerIO
) -> Iterator[dg.AssetCheckResult]:
    sync = latest_people_sync(context.instance)
    reason = skip_reason(customerio, sync)
    if sync is None or reason is not None:
        context.log.info(f"{CHECK_NAME} skipped: {reason}")
        return
    with state.connect() as conn:
        sample = choose_people(conn, sync.started_at, customerio.reconcile_sample, seed=sync.run_id)
        held = ledger.delivered_people(conn, sample.people)
    if not held:
        context.log.info(f"{CHECK_NAME} skipped: the people ledger is empty, nothing was delivered yet")
        return
    reading = read_back(customerio, {person_id: attributes for person_id, (attributes, _) in held.items()})
    if reading.unsubscribed_themselves:
        with state.begin() as conn:
            ledger.record_unsubscribed_themselves(conn, reading.unsubscribed_themselves, unix(utc_now()))
        context.log.warning(
            f"{len(reading.unsubscribed_themselves)} people unsubscribed in Customer.io without the shop's record "
            f"saying so (an unsubscribe link), e.g. {', '.join(reading.unsubscribed_themselves[:5])}: they are never "
            "re-subscribed; record their opt-out in the shop (listed in cio_unsubscribed_in_customerio)"
        )
    people = len({m.person_id for m in reading.mismatches})
    context.log.info(f"{CHECK_NAME}: {len(reading.mismatches)} mismatches in {people} of {len(held)} people read back")
    yield dg.AssetCheckResult(
        check_name=CHECK_NAME,
        asset_key=PEOPLE_ASSET,
        passed=not reading.mismatches,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(reading.mismatches)} attribute(s) of {people} of {len(held)} people read back differ from what "
            "the ledger says Customer.io holds"
            if reading.mismatches
            else f"all {len(held)} people read back hold what the ledger says was delivered"
        ),
        metadata=reconcile_metadata(sample, reading, sync),
    )
