"""A Customer.io Track API v2 client: ids, documented limits, byte-packed batches, sending.

It knows HTTP and Customer.io and nothing of Dagster, so it can be tested and reused on its own.
"""
