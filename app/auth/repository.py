"""The SQL of accounts that is not fastapi-users' own. Bound parameters only.

A user's crew is named by table here, as the foreign key ``app_user.crew_id`` names it,
not through ``app.crews``: crews sit above auth (their routes use auth's role gates).
"""

from __future__ import annotations

from sqlalchemy import text

CREW_JURISDICTION = text("SELECT jurisdiction_id FROM crew WHERE id = :id")
JURISDICTION_EXISTS = text("SELECT 1 FROM jurisdiction WHERE id = :id")
CREW_BY_NAME = text("SELECT id FROM crew WHERE jurisdiction_id = :jurisdiction_id AND name = :name")
# Another active admin than :id, its row locked: two admins removing each other at once
# cannot both see the other one left.
OTHER_ADMIN = text(
    "SELECT id FROM app_user WHERE role = 'admin' AND is_active AND id <> :id"
    " ORDER BY id LIMIT 1 FOR UPDATE"
)
