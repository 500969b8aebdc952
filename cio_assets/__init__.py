"""cio-assets: a D2C shop's MySQL data as clean Customer.io people and events, as Dagster assets.

The package is built in floors that only look down (docs/architecture.md): `lib` and `customerio` at the bottom,
then `schema`, `config`, `tracking`, the stages in pipeline order (`hygiene` and `contract`, `identity`,
`attributes` and `events`, `delivery`), and the Dagster wiring in `defs`, which `definitions.py` builds.
"""
