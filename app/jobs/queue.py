"""The job queue: procrastinate on our PostgreSQL.

``queue`` is the procrastinate ``App`` every task is registered on (``app.jobs.tasks``). It
carries no database until ``app.jobs.worker.open_queue`` gives it one, which only the worker
(and tests that run one) need: the API never opens it, because it defers jobs on its own
session, in the transaction of the change the job announces (``app.core.jobs.defer``).
"""

from __future__ import annotations

from procrastinate import App, PsycopgConnector

# A connector without a database: ``open_queue`` swaps in a real one.
queue = App(connector=PsycopgConnector())
