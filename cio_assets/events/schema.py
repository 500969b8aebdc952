"""The event log's data contract, checked with Pandera before a row is written."""

from __future__ import annotations

import orjson
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from cio_assets.customerio.limits import MAX_EVENT_PROPERTIES_BYTES
from cio_assets.schema.events import EVENT_NAMES


class EventLogSchema(pa.DataFrameModel):
    """One row per event instance with a stable id, a person and a sane UTC timestamp."""

    event_id: Series[str] = pa.Field(unique=True, str_matches=r"^[a-z_]+:\d+$", str_length={"max_value": 150})
    day: Series[str] = pa.Field(str_matches=r"^\d{4}-\d{2}-\d{2}$")
    person_id: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 150})
    name: Series[str] = pa.Field(isin=list(EVENT_NAMES))
    timestamp: Series[int]
    properties: Series[str]

    class Config:
        strict = True
        coerce = True

    @pa.dataframe_check(error="event_id does not start with the event's name")
    def event_id_names_its_event(cls, frame):
        starts = [
            event_id.startswith(f"{name}:") for event_id, name in zip(frame["event_id"], frame["name"], strict=True)
        ]
        return pd.Series(starts, index=frame.index, dtype=bool)

    @pa.check("properties", error="properties is not a JSON object")
    def properties_are_json_objects(cls, properties):
        return properties.map(lambda text: isinstance(orjson.loads(text), dict))

    @pa.check("properties", error=f"properties longer than {MAX_EVENT_PROPERTIES_BYTES} bytes")
    def properties_fit_customerio(cls, properties):
        return properties.map(lambda text: len(text.encode()) <= MAX_EVENT_PROPERTIES_BYTES)


def event_log_schema(floor_unix: int, now_unix: int) -> pa.DataFrameSchema:
    """The contract with the run's timestamp bounds: not before the floor, not in the future."""
    return EventLogSchema.to_schema().update_columns(
        {
            "timestamp": {
                "checks": [
                    pa.Check.ge(floor_unix, error="timestamp before the floor"),
                    pa.Check.le(now_unix, error="timestamp in the future"),
                ]
            }
        }
    )
