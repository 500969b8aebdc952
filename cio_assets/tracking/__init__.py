"""What the pipeline remembers between runs: how the shop's tables looked (high-water marks), where each asset
stopped reading them (cursors), what each day was computed from, and the items refused or held back, waiting to
be sent again."""
