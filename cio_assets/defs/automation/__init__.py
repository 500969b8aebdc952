"""Running unattended: the one job that delivers, the source sensor, the daily schedule, the read-back, freshness.

- `refresh` (`job.py`) rebuilds identity and a day's (or a range's) snapshot and event log, runs their checks and
  delivers them to Customer.io. The `source_changes` sensor (`sensor.py`) launches it for today when the shop
  moved or a cart went idle; the `finalize_yesterday` schedule (`schedule.py`) launches it for yesterday once a
  day; `make demo` runs it over every partition.
- The read-back (`customerio_people_reconciled`, `defs/checks/reconcile.py`) is not part of `refresh`: it runs
  alone as `read_back` (`job.py`), which the `read_back_after_sync` sensor (`read_back.py`) launches once per
  people sync after that sync's run has finished, so its settle wait never holds up the events.
- The source is fresh when its newest paid order is recent: the `paid_orders_fresh` check
  (`defs/checks/source.py`), evaluated by every `refresh` run and reported by the sensor's ticks.
- The sync is fresh when `customerio_people` and `customerio_events` last materialised recently: Dagster
  freshness policies (`freshness.py`), which the daemon evaluates from the materialisation history.
"""
