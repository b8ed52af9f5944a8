"""Telling people: the outbox (``notification``), its messages and their delivery.

Rows are written by the event stream in the transaction of each change (migration 0014); the
worker's ``deliver_notification`` job renders and sends each through its channel adapter
(``app.channels``), at least once and never twice where the provider lets us.
"""
