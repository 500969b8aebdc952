"""Consent: what Customer.io's reserved `unsubscribed` attribute should hold for a person, from the shop's e-mail
opt-in and what the pipeline sent before.

The shop's consent has three states (`accepts_email_marketing`): opted in (1, `True`), opted out (0, `False`) and
unknown (NULL, `None`: never asked). Only an opt-out reaches Customer.io's own suppression; the pipeline only ever
undoes what it sent itself:
- an explicit e-mail opt-out sends `unsubscribed: true` (`CIO_UNSUBSCRIBE=mirror`, the default, or `one_way`);
- unknown consent never sends `true` (`email_opt_in` is then null, and eligibility follows
  `CIO_UNKNOWN_CONSENT_ELIGIBLE`, in the snapshot);
- under `mirror`, `unsubscribed: false` undoes a `true` this pipeline sent (the ledger says so) once the shop no
  longer records an opt-out (a new opt-in, or consent now unknown), and never for someone the read-back found
  unsubscribed in Customer.io without the pipeline having sent it (they used an unsubscribe link);
- `one_way` never sends `false`; `off` never sends `unsubscribed` at all. SMS has no global flag in Customer.io:
  `sms_eligible` stays an attribute.
"""

from __future__ import annotations

# Customer.io's reserved attribute: a global unsubscribe from e-mail, SMS and push.
UNSUBSCRIBED = "unsubscribed"
# What consent did to a person this run, counted in the metadata.
UNSUBSCRIBING, RESUBSCRIBING, KEPT_UNSUBSCRIBED = "unsubscribed", "resubscribed", "resubscribe_withheld"


def consent(mode: str, email_opt_in: bool | None, before: bool | None, unsubscribed_themselves: bool) -> bool | None:
    """The `unsubscribed` value Customer.io should hold for a person. `email_opt_in` is the shop's consent (None:
    unknown), `before` what the pipeline last sent (the ledger; None: never sent), `unsubscribed_themselves` whether
    the read-back found them unsubscribed in Customer.io without the pipeline having sent it. Anything but an
    opt-out, or `mirror` undoing its own `true`, keeps what Customer.io holds."""
    if mode == "off":
        return before
    if email_opt_in is False:
        return True
    if mode == "mirror" and before is True and not unsubscribed_themselves:
        return False
    return before


def consent_outcome(email_opt_in: bool | None, before: bool | None, after: bool | None) -> str | None:
    """Whether this person was unsubscribed or re-subscribed now, or kept unsubscribed by the pipeline's own `true`
    although the shop no longer records an opt-out (`one_way`, or they unsubscribed in Customer.io too)."""
    if after is True and before is not True:
        return UNSUBSCRIBING
    if after is False and before is True:
        return RESUBSCRIBING
    if after is True and email_opt_in is not False:
        return KEPT_UNSUBSCRIBED
    return None
