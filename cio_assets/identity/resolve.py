"""Identity resolution: every source identifier → one canonical person id.

Rules, in the order they apply:
1. A customer is a person. Customers whose e-mails normalise to the same address are one human:
   the oldest (earliest valid `created_at`, then lowest id) survives and the others resolve to it.
   Every such group is reported as a `shared_email` conflict.
2. The canonical id is the survivor's customer id (policy `customer_id`) or the normalised e-mail
   (policy `email`; a customer without a valid e-mail then cannot be sent and is listed).
3. A guest order resolves through its normalised e-mail. Under the `email` policy an e-mail that
   matches no customer is a person of its own; under `customer_id` it is listed as unresolved.
4. An anonymous id resolves through `identity_links` (earliest link first), then through carts that
   carry both the anonymous id and a known customer or e-mail. One anonymous id reaching several
   people is an `anonymous_id_many_people` conflict; the earliest link wins.
5. A cart resolves through its customer id, then its anonymous id, then its e-mail.
6. A subscription resolves through its customer id only.

Whatever cannot be resolved is returned as a row with a reason, never dropped silently; that
includes anonymous ids too long to keep (over `ID_WIDTH` characters), which are never guessed at
by cutting them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import pandas as pd

from cio_assets.identity.normalize import normalize_email, normalize_phone
from cio_assets.schema.state import ID_WIDTH

CUSTOMER_ID = "customer_id"
EMAIL = "email"
PHONE = "phone"
ANONYMOUS_ID = "anonymous_id"

SHARED_EMAIL = "shared_email"
SHARED_PHONE = "shared_phone"
ANONYMOUS_ID_MANY_PEOPLE = "anonymous_id_many_people"

# Customer.io refuses a person id longer than this (bytes); such a person cannot be sent.
MAX_ID_BYTES = 150

IDENTITY_COLUMNS = ["identifier_type", "identifier", "person_id", "source"]
CONFLICT_COLUMNS = ["kind", "identifier", "member", "survivor", "is_survivor"]
UNRESOLVED_COLUMNS = ["source_table", "source_key", "identifier_type", "identifier", "reason"]
UNRESOLVED_KEY = ["source_table", "source_key"]
ANONYMOUS_ID_TOO_LONG = f"anonymous id longer than {ID_WIDTH} characters"
INVALID_COLUMNS = ["source_table", "source_key", "column_name", "raw_value", "reason"]


class IdentityLoader(Protocol):
    """Reads the materialised identity map on demand (`lookup.py`), so a run resolves the identifiers it
    meets rather than loading the whole shop's."""

    def people(self, identifier_type: str, identifiers: list[str]) -> dict[str, str]:
        """identifier -> person_id, for those of `identifiers` the map holds."""
        ...

    def members(self, person_ids: list[str]) -> list[tuple[str, str, str]]:
        """(identifier_type, identifier, person_id) of every identifier of these people."""
        ...

    def is_empty(self) -> bool: ...


@dataclass
class IdentityResolver:
    """Looks up the person behind an order or a cart, from the materialised identity map: all of it in
    memory (`from_rows`), or, with a `loader`, what each frame asks about, read on first need."""

    by_customer: dict[int, str] = field(default_factory=dict)
    by_email: dict[str, str] = field(default_factory=dict)
    by_anonymous_id: dict[str, str] = field(default_factory=dict)
    loader: IdentityLoader | None = None
    # What the loader was asked already (found or not), so a frame reads only identifiers new to the run.
    _asked: set[tuple[str, object]] = field(default_factory=set, init=False, repr=False)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, str]]) -> IdentityResolver:
        resolver = cls()
        resolver._add(rows)
        return resolver

    def _add(self, rows: Iterable[tuple[str, str, str]]) -> None:
        for identifier_type, identifier, person_id in rows:
            if identifier_type == CUSTOMER_ID:
                self.by_customer[int(identifier)] = person_id
            elif identifier_type == EMAIL:
                self.by_email[identifier] = person_id
            elif identifier_type == ANONYMOUS_ID:
                self.by_anonymous_id[identifier] = person_id

    def _load(self, identifier_type: str, keys: Iterable[object]) -> None:
        """Read the identifiers among `keys` not asked about yet (with a loader; otherwise all are here)."""
        if self.loader is None:
            return
        missing = sorted({k for k in keys if k is not None and (identifier_type, k) not in self._asked}, key=str)
        if not missing:
            return
        found = self.loader.people(identifier_type, [str(k) for k in missing])
        self._asked.update((identifier_type, k) for k in missing)
        self._add((identifier_type, identifier, person_id) for identifier, person_id in found.items())

    def is_empty(self) -> bool:
        if self.loader is not None:
            return self.loader.is_empty()
        return not self.by_customer and not self.by_email

    def person_for_customer(self, customer_id: object) -> str | None:
        if customer_id is None or pd.isna(customer_id):
            return None
        self._load(CUSTOMER_ID, [int(customer_id)])
        return self.by_customer.get(int(customer_id))

    def person_for_email(self, raw_email: str | None) -> str | None:
        email = normalize_email(raw_email).value
        if not email:
            return None
        self._load(EMAIL, [email])
        return self.by_email.get(email)

    def person_for_order(self, customer_id: object, raw_email: str | None) -> str | None:
        return self.person_for_customer(customer_id) or self.person_for_email(raw_email)

    def person_for_cart(self, customer_id: object, anonymous_id: str | None, raw_email: str | None) -> str | None:
        if anonymous_id:
            self._load(ANONYMOUS_ID, [anonymous_id])
        return (
            self.person_for_customer(customer_id)
            or (self.by_anonymous_id.get(anonymous_id) if anonymous_id else None)
            or self.person_for_email(raw_email)
        )

    # Frame-sized lookups: with a loader, one read of the map per kind of identifier and frame.
    def people_for_customers(self, customer_ids: Iterable[object]) -> list[str | None]:
        ids = [None if c is None or pd.isna(c) else int(c) for c in customer_ids]
        self._load(CUSTOMER_ID, ids)
        return [None if c is None else self.by_customer.get(c) for c in ids]

    def people_for_orders(self, frame: pd.DataFrame) -> list[str | None]:
        """The person behind each row of a frame with `customer_id` and `email` columns."""
        return self._or_by_email(self.people_for_customers(frame["customer_id"]), frame["email"])

    def people_for_carts(self, frame: pd.DataFrame) -> list[str | None]:
        """The person behind each row of a frame with `customer_id`, `anonymous_id` and `email` columns."""
        people = self.people_for_customers(frame["customer_id"])
        self._load(ANONYMOUS_ID, [a for p, a in zip(people, frame["anonymous_id"], strict=True) if p is None and a])
        people = [
            p or (self.by_anonymous_id.get(a) if a else None)
            for p, a in zip(people, frame["anonymous_id"], strict=True)
        ]
        return self._or_by_email(people, frame["email"])

    def _or_by_email(self, people: list[str | None], raw_emails: Iterable[str | None]) -> list[str | None]:
        """Each person found so far, else the person of the row's normalised e-mail (read in one go)."""
        emails = [None if p else normalize_email(e).value for p, e in zip(people, raw_emails, strict=True)]
        self._load(EMAIL, emails)
        return [p or (self.by_email.get(e) if e else None) for p, e in zip(people, emails, strict=True)]

    def members(self, person_ids: list[str]) -> tuple[dict[str, list[int]], dict[str, list[str]]]:
        """(customer ids, e-mails) of each of these people."""
        if self.loader is None:
            return self.customers_by_person, self.emails_by_person
        customers: dict[str, list[int]] = defaultdict(list)
        emails: dict[str, list[str]] = defaultdict(list)
        for identifier_type, identifier, person_id in self.loader.members(person_ids):
            if identifier_type == CUSTOMER_ID:
                customers[person_id].append(int(identifier))
            elif identifier_type == EMAIL:
                emails[person_id].append(identifier)
        return customers, emails

    # Reverse indexes of a resolver held whole in memory, built once: every chunk of people asks for them.
    @cached_property
    def customers_by_person(self) -> dict[str, list[int]]:
        members: dict[str, list[int]] = defaultdict(list)
        for customer_id, person_id in self.by_customer.items():
            members[person_id].append(customer_id)
        return members

    @cached_property
    def emails_by_person(self) -> dict[str, list[str]]:
        emails: dict[str, list[str]] = defaultdict(list)
        for email, person_id in self.by_email.items():
            emails[person_id].append(email)
        return emails


@dataclass
class IdentityResult:
    identity_map: pd.DataFrame
    conflicts: pd.DataFrame
    unresolved: pd.DataFrame
    invalid_values: pd.DataFrame


def resolve_identity(
    customers: pd.DataFrame,
    guest_orders: pd.DataFrame,
    links: pd.DataFrame,
    carts: pd.DataFrame,
    policy: str,
    orphan_subscriptions: pd.DataFrame | None = None,
) -> IdentityResult:
    """Build the identity map.

    customers: id, email, phone, country, created_at (Unix seconds; NA when missing or rejected)
    guest_orders: id, customer_id, email (paid orders naming no existing customer)
    links: anonymous_id, customer_id, linked_at (Unix seconds or NA)
    carts: id, customer_id, anonymous_id, email (carts with an anonymous id or without an existing customer)
    orphan_subscriptions: id, customer_id (subscriptions naming no existing customer)
    """
    identities: list[tuple[str, str, str, str]] = []
    conflicts: list[tuple[str, str, str, str, bool]] = []
    unresolved: list[tuple[str, str, str, str | None, str]] = []

    people = _normalised_customers(customers)
    invalid = _invalid_values(people)
    person_of_customer = _resolve_customers(people, policy, identities, conflicts, unresolved)
    person_of_email = _email_identities(people, person_of_customer, identities)
    _phone_identities(people, person_of_customer, identities, conflicts)
    _resolve_guest_orders(guest_orders, person_of_email, policy, identities, unresolved)
    resolver = IdentityResolver(
        by_customer=person_of_customer,
        by_email=person_of_email,
        by_anonymous_id=_resolve_anonymous_ids(links, carts, person_of_customer, person_of_email, conflicts),
    )
    identities.extend(
        (ANONYMOUS_ID, anonymous_id, person_id, "identity_links")
        for anonymous_id, person_id in resolver.by_anonymous_id.items()
    )
    _list_unresolved_carts(carts, resolver, unresolved)
    _list_too_long_links(links, unresolved)
    if orphan_subscriptions is not None:
        unresolved.extend(
            ("subscriptions", str(int(i)), CUSTOMER_ID, str(int(c)), f"customer id {int(c)} matches no customer")
            for i, c in zip(orphan_subscriptions["id"], orphan_subscriptions["customer_id"], strict=True)
        )

    return IdentityResult(
        identity_map=pd.DataFrame(identities, columns=IDENTITY_COLUMNS),
        conflicts=pd.DataFrame(conflicts, columns=CONFLICT_COLUMNS),
        # One row per source row: the first reason found for it.
        unresolved=pd.DataFrame(unresolved, columns=UNRESOLVED_COLUMNS).drop_duplicates(UNRESOLVED_KEY),
        invalid_values=invalid,
    )


def _normalised_customers(customers: pd.DataFrame) -> pd.DataFrame:
    people = customers.copy()
    emails = [normalize_email(raw) for raw in people["email"]]
    phones = [normalize_phone(raw, country) for raw, country in zip(people["phone"], people["country"], strict=True)]
    people["email_norm"] = [e.value for e in emails]
    people["email_reason"] = [e.reason for e in emails]
    people["phone_norm"] = [p.value for p in phones]
    people["phone_reason"] = [p.reason for p in phones]
    # Oldest first: a missing or rejected created_at never makes a customer the survivor.
    people["_no_created_at"] = people["created_at"].isna()
    return people.sort_values(["_no_created_at", "created_at", "id"], kind="stable").reset_index(drop=True)


def _invalid_values(people: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for column in ("email", "phone"):
        bad = people[people[f"{column}_reason"].notna()]
        frames.append(
            pd.DataFrame(
                {
                    "source_table": "customers",
                    "source_key": bad["id"].astype(str),
                    "column_name": column,
                    "raw_value": bad[column].astype(str),
                    "reason": bad[f"{column}_reason"],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[INVALID_COLUMNS]


def _resolve_customers(
    people: pd.DataFrame,
    policy: str,
    identities: list,
    conflicts: list,
    unresolved: list,
) -> dict[int, str]:
    survivor_of: dict[int, int] = {}
    with_email = people[people["email_norm"].notna()]
    for email, group in with_email.groupby("email_norm", sort=False):
        ids = [int(i) for i in group["id"]]  # already oldest first
        for member in ids:
            survivor_of[member] = ids[0]
        if len(ids) > 1:
            survivor_person = str(ids[0]) if policy == CUSTOMER_ID else str(email)
            conflicts.extend(
                (SHARED_EMAIL, str(email), str(member), survivor_person, member == ids[0]) for member in ids
            )

    person_of_customer: dict[int, str] = {}
    for customer_id, email, raw_email in zip(people["id"], people["email_norm"], people["email"], strict=True):
        customer_id = int(customer_id)
        if policy == CUSTOMER_ID:
            person_of_customer[customer_id] = str(survivor_of.get(customer_id, customer_id))
        elif email is not None and _fits_as_id(email):
            person_of_customer[customer_id] = email
        else:
            why = "e-mail longer than the 150-byte id limit" if email else "no valid e-mail for the email id policy"
            unresolved.append(("customers", str(customer_id), EMAIL, raw_email, why))
    identities.extend(
        (CUSTOMER_ID, str(customer_id), person_id, "customers") for customer_id, person_id in person_of_customer.items()
    )
    return person_of_customer


def _email_identities(people: pd.DataFrame, person_of_customer: dict[int, str], identities: list) -> dict[str, str]:
    person_of_email: dict[str, str] = {}
    for customer_id, email in zip(people["id"], people["email_norm"], strict=True):
        if email is not None and email not in person_of_email and int(customer_id) in person_of_customer:
            person_of_email[email] = person_of_customer[int(customer_id)]
    identities.extend((EMAIL, email, person_id, "customers") for email, person_id in person_of_email.items())
    return person_of_email


def _phone_identities(
    people: pd.DataFrame, person_of_customer: dict[int, str], identities: list, conflicts: list
) -> None:
    persons_by_phone: dict[str, list[str]] = defaultdict(list)
    for customer_id, phone in zip(people["id"], people["phone_norm"], strict=True):
        person_id = person_of_customer.get(int(customer_id))
        if phone is not None and person_id is not None and person_id not in persons_by_phone[phone]:
            persons_by_phone[phone].append(person_id)
    for phone, persons in persons_by_phone.items():
        identities.append((PHONE, phone, persons[0], "customers"))
        if len(persons) > 1:
            conflicts.extend((SHARED_PHONE, phone, person, persons[0], person == persons[0]) for person in persons)


def _resolve_guest_orders(
    guest_orders: pd.DataFrame,
    person_of_email: dict[str, str],
    policy: str,
    identities: list,
    unresolved: list,
) -> None:
    for order_id, customer_id, raw_email in zip(
        guest_orders["id"], guest_orders["customer_id"], guest_orders["email"], strict=True
    ):
        email, reason = normalize_email(raw_email)
        if email is not None and email in person_of_email:
            continue
        if email is not None and policy == EMAIL and _fits_as_id(email):
            person_of_email[email] = email
            identities.append((EMAIL, email, email, "orders"))
            continue
        why = reason or _why_guest_unresolved(email, policy)
        if pd.notna(customer_id):
            why = f"customer id {int(customer_id)} matches no customer; {why}"
        unresolved.append(("orders", str(int(order_id)), EMAIL, raw_email, why))


def _fits_as_id(email: str) -> bool:
    return len(email.encode()) <= MAX_ID_BYTES


def _why_guest_unresolved(email: str | None, policy: str) -> str:
    if email is None:
        return "guest order without e-mail"
    if policy == EMAIL:
        return "e-mail longer than the 150-byte id limit"
    return "guest e-mail matches no customer"


def _keepable(anonymous_id: object) -> bool:
    """An anonymous id short enough to be kept (and matched) as it is."""
    return isinstance(anonymous_id, str) and len(anonymous_id) <= ID_WIDTH


def _resolve_anonymous_ids(
    links: pd.DataFrame,
    carts: pd.DataFrame,
    person_of_customer: dict[int, str],
    person_of_email: dict[str, str],
    conflicts: list,
) -> dict[str, str]:
    # Candidates in priority order: explicit links by time, then carts by id.
    candidates: dict[str, list[str]] = defaultdict(list)
    ordered_links = links.assign(_no_time=links["linked_at"].isna()).sort_values(
        ["_no_time", "linked_at", "customer_id"], kind="stable"
    )
    for anonymous_id, customer_id in zip(ordered_links["anonymous_id"], ordered_links["customer_id"], strict=True):
        person_id = person_of_customer.get(int(customer_id))
        if person_id is not None and _keepable(anonymous_id) and person_id not in candidates[anonymous_id]:
            candidates[anonymous_id].append(person_id)
    known = carts[carts["anonymous_id"].notna()].sort_values("id", kind="stable")
    for customer_id, anonymous_id, raw_email in zip(
        known["customer_id"], known["anonymous_id"], known["email"], strict=True
    ):
        person_id = (person_of_customer.get(int(customer_id)) if pd.notna(customer_id) else None) or (
            person_of_email.get(normalize_email(raw_email).value or "")
        )
        if person_id is not None and _keepable(anonymous_id) and person_id not in candidates[anonymous_id]:
            candidates[anonymous_id].append(person_id)

    resolved: dict[str, str] = {}
    for anonymous_id, persons in candidates.items():
        if not persons:
            continue
        resolved[anonymous_id] = persons[0]
        if len(persons) > 1:
            conflicts.extend(
                (ANONYMOUS_ID_MANY_PEOPLE, anonymous_id, person, persons[0], person == persons[0]) for person in persons
            )
    return resolved


def _list_unresolved_carts(carts: pd.DataFrame, resolver: IdentityResolver, unresolved: list) -> None:
    for cart_id, customer_id, anonymous_id, raw_email in zip(
        carts["id"], carts["customer_id"], carts["anonymous_id"], carts["email"], strict=True
    ):
        if resolver.person_for_cart(customer_id, anonymous_id, raw_email) is None:
            identifier_type, identifier = (ANONYMOUS_ID, anonymous_id) if anonymous_id else (EMAIL, raw_email)
            if pd.notna(customer_id):
                why = f"customer id {int(customer_id)} matches no customer"
            elif anonymous_id and not _keepable(anonymous_id):
                why = ANONYMOUS_ID_TOO_LONG
            else:
                why = "anonymous cart linked to no customer"
            unresolved.append(("carts", str(int(cart_id)), identifier_type, identifier, why))


def _list_too_long_links(links: pd.DataFrame, unresolved: list) -> None:
    """Links whose anonymous id is too long to keep: listed under the customer they name."""
    for anonymous_id, customer_id in zip(links["anonymous_id"], links["customer_id"], strict=True):
        if not _keepable(anonymous_id):
            unresolved.append(
                ("identity_links", str(int(customer_id)), ANONYMOUS_ID, anonymous_id, ANONYMOUS_ID_TOO_LONG)
            )
