"""identity_map_health: conflicts and unresolved guests and carts against their shares (WARN)."""

import dagster as dg
import pandas as pd
import pytest

from cio_assets.defs.checks.identity import HEALTH, IdentityCounts, _still_counts, health_result, identity_map_health
from cio_assets.defs.resources import Settings
from cio_assets_tests.checks_runner import evaluations, value
from cio_assets_tests.conftest import PIPELINE

CONFLICT_COLUMNS = ["kind", "identifier", "member", "survivor", "is_survivor"]
UNRESOLVED_COLUMNS = ["source_table", "source_key", "identifier_type", "identifier", "reason"]


def _counts(people=100, paid_orders=100, carts=100, conflicts=(), unresolved=()) -> IdentityCounts:
    listing = pd.DataFrame(list(unresolved), columns=UNRESOLVED_COLUMNS)
    return IdentityCounts(
        people=people,
        paid_orders=paid_orders,
        carts=carts,
        conflicts=pd.DataFrame(list(conflicts), columns=CONFLICT_COLUMNS),
        unresolved_guests=int((listing["source_table"] == "orders").sum()),
        unresolved_carts=int((listing["source_table"] == "carts").sum()),
        unresolved_sample=listing.head(20),
    )


SHARED = [("shared_email", "jane@example.com", "1", "2", False), ("shared_email", "jane@example.com", "2", "2", True)]


def _guests(n: int) -> list[tuple]:
    return [("orders", str(i), "email", f"guest{i}@example.com", "guest e-mail matches no customer") for i in range(n)]


def _carts(n: int) -> list[tuple]:
    return [("carts", str(i), "anonymous_id", f"anon-{i}", "anonymous cart linked to no customer") for i in range(n)]


@pytest.mark.parametrize(
    ("counts", "passed"),
    [
        # a clean shop: passes
        (_counts(), True),
        # one shared e-mail among 100 people (1%): not a failure
        (_counts(conflicts=SHARED), True),
        # the demo: one shared e-mail among 2,999 people, 202 of 3,858 paid orders by unknown guests (5%),
        # 217 of 4,434 carts anonymous: passes
        (
            _counts(people=2999, paid_orders=3858, carts=4434, conflicts=SHARED, unresolved=_guests(202) + _carts(217)),
            True,
        ),
        # one shared e-mail among 10 people (10% > 1%): warns
        (_counts(people=10, conflicts=SHARED), False),
        # 12 of 100 paid orders belong to nobody (12% > 10%): warns
        (_counts(unresolved=_guests(12)), False),
        # 60 of 100 carts never linked to anyone (60% > 50%): warns
        (_counts(unresolved=_carts(60)), False),
    ],
)
def test_shares_of_conflicts_and_unresolved_against_the_default_thresholds(counts, passed):
    settings = Settings()

    result = health_result(
        counts,
        settings.check_max_conflict_share,
        settings.check_max_unresolved_guest_share,
        settings.check_max_unresolved_cart_share,
    )

    assert (result.passed, result.severity) == (passed, dg.AssetCheckSeverity.WARN)


def test_the_check_keeps_the_conflicts_sample_and_counts():
    result = health_result(_counts(people=10, conflicts=SHARED), 0.01, 0.02, 0.5)

    assert result.metadata["conflicts"].value == 1
    assert result.metadata["people_in_conflict"].value == 1
    assert result.metadata["conflict_share"].value == 0.1
    assert "jane@example.com" in result.metadata["conflicts_sample"].value


@pytest.mark.parametrize(
    ("guest_email", "passed"),
    [
        # the guest order's e-mail belongs to customer 1: nothing unresolved, passes
        ("ada@example.com", True),
        # the guest e-mail matches no customer: 1 of 2 paid orders is nobody's, warns
        ("stranger@example.com", False),
    ],
)
def test_the_check_on_the_identity_the_pipeline_wrote(shop, pipeline, guest_email, passed):
    shop.customer(1, email="ada@example.com")
    shop.order(1, paid_at="2026-10-02 09:00")
    shop.order(None, email=guest_email, paid_at="2026-10-02 10:00")

    result = pipeline.run(partition="2026-10-02", assets=[*PIPELINE, identity_map_health], settings=Settings())

    health = evaluations(result)[HEALTH]
    assert health.passed is passed
    assert value(health, "unresolved_guest_orders") == (0 if passed else 1)
    assert value(health, "paid_orders") == 2


@pytest.mark.parametrize(
    ("previous", "marks", "now", "reused"),
    [
        # the first evaluation counts
        (None, "m1", 10_000, False),
        # orders moved (a new order, a deletion, a change time): count again
        ({"orders_marks": "m0", "paid_orders": 5, "paid_orders_counted_at": 9_000}, "m1", 10_000, False),
        # nothing moved, counted minutes ago: the count still holds
        ({"orders_marks": "m1", "paid_orders": 5, "paid_orders_counted_at": 9_000}, "m1", 10_000, True),
        # nothing moved, but counted over an hour ago: an edit that kept its change time is caught
        ({"orders_marks": "m1", "paid_orders": 5, "paid_orders_counted_at": 5_000}, "m1", 10_000, False),
    ],
)
def test_the_paid_orders_count_is_reused_only_while_orders_stand_still(previous, marks, now, reused):
    assert _still_counts(previous, marks, now) is reused
