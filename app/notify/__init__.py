"""Telling people: the outbox (``notification``), its messages and their delivery.

Rows are written by the event stream in the transaction of each change (migrations 0014,
0020); the worker's ``deliver_notifications`` job claims due rows in batches, renders and
sends them through their channel adapters (``app.channels``), at least once and never twice
where the provider lets us.
"""
