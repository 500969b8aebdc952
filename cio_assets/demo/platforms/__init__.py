"""Real platforms' tables and a small generated shop in each, for testing source mappings against.

`woocommerce.sql` and `magento2.sql` are the platforms' own DDL (their headers name the files and commits they
were checked against); `ddl.load` creates them under any table prefix. `woocommerce.generate` and
`magento2.generate` fill them, deterministically from a seed, with the platform's real quirks, and return the
expected truth (`truth.ShopTruth`): the people a correct mapping finds, their consent, paid orders, refunds and
carts, and what it must set aside. `python -m cio_assets.demo.platforms woocommerce|magento2 URL` prints it.
"""
