"""The OpenAPI document as checked into ``openapi/openapi.json``."""

from __future__ import annotations

import json

from app.main import create_app
from app.settings import Settings


def openapi_json() -> str:
    # Build the app without touching a database: the schema depends on code only.
    app = create_app(Settings(database_url="postgresql://unused@localhost/unused"))
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
