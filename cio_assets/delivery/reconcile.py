"""Read-back reconciliation: after a people sync, do Customer.io's profiles hold what the ledger says we sent?

The check itself is `customerio_people_reconciled` (`defs/checks/reconcile.py`).

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import ColumnElement, Connection, func, select

from cio_assets.customerio.app_api import AppClient, Attributes
from cio_assets.delivery.consent import UNSUBSCRIBED
from cio_assets.schema.state import people_ledger

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
# Reading back
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    ours: dict[str, dict]  # person id -> ledger attributes
    mismatches: list[Mismatch]
    unsubscribed_themselves: list[str]  # shown unsubscribed in Customer.io, never by us
    requests: int
    throttled: int
    rechecked: int  # people read a second time after the settle delay


def read_back(client: AppClient, ours: dict[str, dict], settle_seconds: float) -> Reading:
    """Read `ours`' people from Customer.io and compare; people that differ are read again after `settle_seconds`."""
    with client:
        theirs = client.read_people(list(ours))
        differing = sorted({m.person_id for m in compare(ours, theirs)})
        if differing and settle_seconds > 0:
            time.sleep(settle_seconds)
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
