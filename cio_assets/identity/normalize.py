"""Normalising the values that identify a person: e-mail addresses and phone numbers.

An invalid value becomes None with a reason; it never raises, because one bad row must not stop a
run. Results are cached: shops repeat the same raw values across customers, orders and carts.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import phonenumbers
from email_validator import EmailNotValidError, validate_email


class Normalized(NamedTuple):
    value: str | None
    reason: str | None  # why a non-empty raw value was turned into None


EMPTY = Normalized(None, None)


@lru_cache(maxsize=1_000_000)
def normalize_email(raw: str | None) -> Normalized:
    """Trimmed, lower-cased and syntax-checked (no DNS: runs must not depend on the network)."""
    if raw is None:
        return EMPTY
    candidate = raw.strip().lower()
    if not candidate:
        return EMPTY
    try:
        validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as error:
        return Normalized(None, f"invalid email: {error}")
    return Normalized(candidate, None)


@lru_cache(maxsize=1_000_000)
def normalize_phone(raw: str | None, country: str | None) -> Normalized:
    """E.164, reading national formats in the customer's country (ISO 3166 alpha-2)."""
    if raw is None or not raw.strip():
        return EMPTY
    region = country.strip().upper() if country and country.strip() else None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as error:
        return Normalized(None, f"invalid phone: {error}")
    if not phonenumbers.is_valid_number(number):
        return Normalized(None, f"invalid phone: not a valid number for region {region or 'unknown'}")
    return Normalized(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None)
