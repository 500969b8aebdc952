"""Table definitions: the shop's (`shop.py`), the pipeline's own in the state database (`state.py`), the event
families and their declared properties (`events.py`), and what a column's `info=` says (`columns.py`)."""
