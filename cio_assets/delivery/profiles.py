"""What the people sync tells Customer.io about who people are, besides their attributes.

- **Merges.** A person Customer.io holds as a profile of their own (the people ledger) whom identity
  has since folded into the survivor of a shared e-mail (the documented duplicate rule; a shared
  phone never merges) gets Customer.io's `merge`: the survivor is the primary, the duplicate the
  secondary. Customer.io ignores a merge whose primary does not exist yet, so it is sent only once the
  survivor's identify has been accepted. A merge cannot be undone: `CIO_MERGE_DUPLICATES=plan` sends
  none and lists them (`customerio_people_pending_merges`).
- **Erasure.** A person an erasure request names (`cio_erasures`, kept by identity) gets Customer.io's
  `suppress` (delete and block the identifier: `CIO_ERASURE=suppress`, the default) or `delete`, once.
- **Vanished people.** A person Customer.io holds who disappeared from the shop's customers without an
  erasure request is listed (`cio_vanished_people`); with `CIO_VANISHED=delete` they get `delete`, once.
- **Anonymous ids.** Each anonymous id identity resolved to a person is sent once, as an identify of
  that person carrying `anonymous_id`, in link order, and only for people Customer.io knows: an
  identify carrying nothing else must not create a bare profile. Merges and anonymous ids are the people
  sync's follow-up (`SyncStream.follow_up`): delivered after its identifies, in the same run.

Each is an item of the people sync with a ledger key of its own (`merge:<secondary>`,
`erase:<person>`, `vanished:<person>`, `anonymous_id:<digest>`): sent once, retried when refused, recorded when
accepted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cio_assets.customerio.batching import Item

# Customer.io's attribute that joins a person to the events sent under an anonymous id.
ANONYMOUS_ID = "anonymous_id"
ANONYMOUS_KEY_PREFIX = "anonymous_id:"
MERGE_KEY_PREFIX = "merge:"
# Why a profile is removed, as its ledger key's prefix.
ERASURE, VANISHED = "erase:", "vanished:"


@dataclass(frozen=True)
class AnonymousLink:
    anonymous_id: str
    person_id: str


@dataclass(frozen=True)
class Merge:
    secondary: str  # the duplicate's person id, deleted by Customer.io
    primary: str  # the survivor's


@dataclass(frozen=True)
class Removal:
    person_id: str
    action: str  # suppress or delete
    why: str  # ERASURE or VANISHED


def anonymous_key(anonymous_id: str) -> str:
    """A digest, so any anonymous id fits the ledger's key column beside person ids."""
    return ANONYMOUS_KEY_PREFIX + hashlib.sha256(anonymous_id.encode()).hexdigest()[:40]


def anonymous_identify(link: AnonymousLink, now: int) -> Item:
    """The person's identify carrying only the anonymous id, so Customer.io joins that id's events to them."""
    return Item(
        key=anonymous_key(link.anonymous_id),
        record=link,
        payload={
            "type": "person",
            "identifiers": {"id": link.person_id},
            "action": "identify",
            "timestamp": now,
            "attributes": {ANONYMOUS_ID: link.anonymous_id},
        },
    )


def merge_item(merge: Merge) -> Item:
    return Item(
        key=MERGE_KEY_PREFIX + merge.secondary,
        record=merge,
        payload={
            "type": "person",
            "action": "merge",
            "primary": {"id": merge.primary},
            "secondary": {"id": merge.secondary},
        },
    )


def removal_item(removal: Removal) -> Item:
    return Item(
        key=removal.why + removal.person_id,
        record=removal,
        payload={"type": "person", "identifiers": {"id": removal.person_id}, "action": removal.action},
    )


def is_profile_key(key: str) -> bool:
    """Whether a ledger key is a merge's, a removal's or an anonymous id's, not a person's."""
    return key.startswith((ANONYMOUS_KEY_PREFIX, MERGE_KEY_PREFIX, ERASURE, VANISHED))


def pending_item(key: str, payload: dict) -> Item:
    """An earlier refusal of a merge, a removal or an anonymous id, ready to send again."""
    if key.startswith(MERGE_KEY_PREFIX):
        return Item(key, payload, record=Merge(payload["secondary"]["id"], payload["primary"]["id"]))
    if key.startswith((ERASURE, VANISHED)):
        why = ERASURE if key.startswith(ERASURE) else VANISHED
        return Item(key, payload, record=Removal(payload["identifiers"]["id"], payload["action"], why))
    return Item(key, payload, record=AnonymousLink(payload["attributes"][ANONYMOUS_ID], payload["identifiers"]["id"]))
