"""`make demo CIO_SOURCE_MAPPING=<preset>`: the demo shows a platform preset on a sample shop in that platform's
own tables, and says which event families the shop cannot have and why."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("preset", "said"),
    [
        # no carts in WooCommerce: the cart families are off, with the reason
        ("woocommerce", "event family off: cart_abandoned: WooCommerce keeps no carts"),
        # Magento's quotes are carts; it has no subscriptions
        ("magento2", "event family off: subscription_canceled: Magento has no product subscriptions"),
    ],
)
def test_the_demo_shows_a_platform_preset(throwaway_database, tmp_path, preset, said):
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("CIO_", "DAGSTER_HOME"))}
    environment.update(
        CIO_SOURCE_MAPPING=preset,
        CIO_DEMO_MYSQL_URL=throwaway_database,
        CIO_DATA_DIR=str(tmp_path / "data"),
        CIO_START_DATE=os.environ["CIO_START_DATE"],
    )

    done = subprocess.run(
        [sys.executable, "-m", "cio_assets.demo"], env=environment, capture_output=True, text=True, timeout=600
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Generated a sample {preset} shop" in done.stdout
    assert said in done.stdout
    assert f"make doctor CIO_SOURCE_MAPPING={preset} CIO_MYSQL_URL=" in done.stdout
    assert "The sample shop's bad rows" not in done.stdout  # the reference sample's cast is not this shop's
