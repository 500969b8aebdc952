"""Running unattended: the one job every trigger launches, the source sensor, the daily schedule, freshness.

- `refresh` (`job.py`) rebuilds identity and a day's (or a range's) snapshot and event log, runs their checks and
  delivers them to Customer.io. The `source_changes` sensor (`sensor.py`) launches it for today when the shop
  moved or a cart went idle; the `finalize_yesterday` schedule (`schedule.py`) launches it for yesterday once a
  day; `make demo` runs it over every partition.
- The source is fresh when its newest paid order is recent: the `paid_orders_fresh` check
  (`defs/checks/source.py`), evaluated by every `refresh` run and reported by the sensor's ticks.
- The sync is fresh when `customerio_people` and `customerio_events` last materialised recently: Dagster
  freshness policies (`freshness.py`), which the daemon evaluates from the materialisation history.
"""
