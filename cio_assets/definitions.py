"""The code location: the Dagster definitions, built from `cio_assets/defs/` with the settings in the environment.

Entry point for `dagster dev -w workspace.yaml` (`make dev`), `dg dev` and `dg check defs`. The environment is
read here, when Dagster loads the definitions, and nowhere at import: a bad `CIO_*` value fails the load with a
message naming the variable (`config.SettingsError`).
"""

import dagster as dg

from cio_assets.config import Environment
from cio_assets.defs import build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Environment.read())
