"""Generate a platform shop and print its expected truth.

python -m cio_assets.demo.platforms woocommerce mysql+mysqldb://root@127.0.0.1/wc_shop --customers 200
"""

from __future__ import annotations

import argparse
import time

from cio_assets.demo.platforms import magento2, woocommerce

GENERATORS = {"woocommerce": woocommerce.generate, "magento2": magento2.generate}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("platform", choices=sorted(GENERATORS))
    parser.add_argument("url", help="SQLAlchemy URL of the (existing) database to fill; its tables are replaced")
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefix", default=None, help="table prefix (default: wp_ for WooCommerce, none for Magento)")
    parser.add_argument("--people", action="store_true", help="also print every expected person")
    args = parser.parse_args(argv)
    options = {} if args.prefix is None else {"prefix": args.prefix}
    began = time.perf_counter()
    truth = GENERATORS[args.platform](args.url, customers=args.customers, seed=args.seed, **options)
    print(truth.summary())
    print(f"  generated in {time.perf_counter() - began:.1f} s")
    if args.people:
        for person in truth.people.values():
            print(person)


if __name__ == "__main__":
    main()
