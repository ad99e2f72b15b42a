"""Signed webhooks: a task's changes posted to its owner's endpoints, as Standard Webhooks.

    events.py        which changes of a task are events, which endpoints want them, the body
    signing.py       secrets, and the `webhook-*` headers (HMAC-SHA256, several signatures)
    destinations.py  where a delivery may go: every address of the host checked, then pinned
    schedule.py      when a failed delivery is tried again (exponential backoff with jitter)
    records.py       endpoints and deliveries as the store keeps them
    metrics.py       the sender's Prometheus metrics

The store's part is `shared/store/webhooks.py`; the sender, which records and sends deliveries,
is `services/webhooks/`; the REST routes are `services/api/webhooks.py`.
"""
