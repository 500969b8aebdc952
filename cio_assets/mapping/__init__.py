"""Source mappings: how a shop's own tables make the concepts the pipeline reads (customers, orders, carts, …).

- `spec.py` reads and checks a mapping file (TOML; the presets are in `presets/`);
- `compile.py` turns each concept into a SELECT over the shop and installs the translation on the source engine;
- `check.py` checks a shop against its mapping, in one message.

The stages name the concepts (`cio_assets/schema/shop.py`) and never a shop's own tables or columns.
"""
