"""The service watching itself: request logs, error logs, per-minute performance aggregates.

Imported by ``server`` (middleware, endpoints), ``ai`` and ``execution`` (their timings);
imports only ``persistence``. Everything here is off the request path: requests append to
bounded in-memory buffers, owned tasks write them in batches.
"""
