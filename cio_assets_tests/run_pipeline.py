"""Materialise the pipeline in a process of its own, so a test can kill it mid-write (see test_faults.py).

    python -m cio_assets_tests.run_pipeline SOURCE_URL STATE_URL RANGE_START RANGE_END [--chunk-size N] [--wait]

Runs identity_map, rejected_rows, attribute_snapshot and event_log for the partition range with the same
resources as conftest's `Pipeline.run` (a dry-run Customer.io: nothing here sends), on an ephemeral Dagster
instance, logging to stderr. With `--wait` it imports everything, prints "ready" and waits for a line on stdin
before it starts, so the caller can overlap the (slow) imports with its own set-up. Exits 0 when the run
succeeded, 1 when it failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence

# The same partitions as conftest's (read when cio_assets_tests.definitions builds the assets).
os.environ.setdefault("CIO_START_DATE", "2026-10-01")
os.environ.setdefault("CIO_BUSINESS_TZ", "UTC")

import dagster as dg

from cio_assets.defs.resources import CustomerIO, Settings, SourceDatabase, StateDatabase
from cio_assets_tests.definitions import attribute_snapshot, event_log, identity_map, rejected_rows

PIPELINE = [rejected_rows, identity_map, attribute_snapshot, event_log]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cio_assets_tests.run_pipeline", description=__doc__)
    parser.add_argument("source_url")
    parser.add_argument("state_url")
    parser.add_argument("range_start")
    parser.add_argument("range_end")
    parser.add_argument("--chunk-size", type=int, default=None, help="CIO_CHUNK_SIZE for this run")
    parser.add_argument("--wait", action="store_true", help='print "ready", then wait for a line on stdin')
    args = parser.parse_args(argv)

    if args.wait:
        print("ready", flush=True)
        sys.stdin.readline()
    settings = Settings(chunk_size=args.chunk_size) if args.chunk_size else Settings()
    with tempfile.TemporaryDirectory(prefix="cio-outbox-") as outbox:
        result = dg.materialize(
            PIPELINE,
            instance=dg.DagsterInstance.ephemeral(),
            tags={
                "dagster/asset_partition_range_start": args.range_start,
                "dagster/asset_partition_range_end": args.range_end,
            },
            raise_on_error=False,
            resources={
                "settings": settings,
                "source": SourceDatabase(url=args.source_url),
                "state": StateDatabase(url=args.state_url),
                "customerio": CustomerIO(dry_run=True, outbox_dir=outbox),
            },
        )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
