"""The five event families, by the name the event log and event ids use.

A family's name is fixed: it is part of every event id (`order_placed:123`), so the ledger and
Customer.io's de-duplication key never change. What Customer.io sees can differ: `CIO_EVENT_NAMES`
maps a family to the exact name existing journeys listen for, and `CIO_EVENT_FAMILIES` chooses which
families this pipeline sends at all (settings.py).
"""

ORDER_PLACED = "order_placed"
CHECKOUT_STARTED = "checkout_started"
CART_ABANDONED = "cart_abandoned"
REFUND_ISSUED = "refund_issued"
SUBSCRIPTION_CANCELED = "subscription_canceled"
EVENT_NAMES = (ORDER_PLACED, CHECKOUT_STARTED, CART_ABANDONED, REFUND_ISSUED, SUBSCRIPTION_CANCELED)
