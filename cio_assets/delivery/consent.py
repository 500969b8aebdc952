"""Consent: what Customer.io's reserved `unsubscribed` attribute should hold for a person, from the shop's e-mail
opt-in and what the pipeline sent before.

Consent reaches Customer.io's own suppression, and never re-subscribes anyone on its own:
- an e-mail opt-out in the shop sends `unsubscribed: true` (`CIO_UNSUBSCRIBE=one_way` or `mirror`);
- `unsubscribed: false` is sent only under `mirror`, only to undo a `true` this pipeline sent (the
  ledger says so) when the shop records a new opt-in, and never for someone the read-back found
  unsubscribed in Customer.io without the pipeline having sent it (they used an unsubscribe link);
- `off` never sends it. SMS has no global flag in Customer.io: `sms_eligible` stays an attribute,
  false unless the person opted in.
"""

from __future__ import annotations

# Customer.io's reserved attribute: a global unsubscribe from e-mail, SMS and push.
UNSUBSCRIBED = "unsubscribed"
# What consent did to a person this run, counted in the metadata.
UNSUBSCRIBING, RESUBSCRIBING, KEPT_UNSUBSCRIBED = "unsubscribed", "resubscribed", "resubscribe_withheld"


def consent(mode: str, email_opt_in: bool, before: bool | None, unsubscribed_themselves: bool) -> bool | None:
    """The `unsubscribed` value Customer.io should hold for a person. `before` is what the pipeline last sent (the
    ledger; None: never sent), `unsubscribed_themselves` whether the read-back found them unsubscribed in
    Customer.io without the pipeline having sent it. Anything but an opt-out, or `mirror` undoing its own
    `true`, keeps what Customer.io holds."""
    if mode == "off":
        return before
    if not email_opt_in:
        return True
    if mode == "mirror" and before is True and not unsubscribed_themselves:
        return False
    return before


def consent_outcome(email_opt_in: bool, before: bool | None, after: bool | None) -> str | None:
    """Whether this person was unsubscribed or re-subscribed now, or kept unsubscribed despite an opt-in."""
    if after is True and before is not True:
        return UNSUBSCRIBING
    if after is False and before is True:
        return RESUBSCRIBING
    if after is True and email_opt_in:
        return KEPT_UNSUBSCRIBED
    return None
