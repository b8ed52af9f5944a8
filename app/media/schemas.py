"""How a photo appears in answers."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PhotoRef(BaseModel):
    # Always in answers, so documented as required there.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    id: uuid.UUID
    url: str
    thumbnail_url: str
    width: int
    height: int
    status: Literal["pending", "ready", "failed"] = Field(
        default="ready",
        description=(
            "pending: accepted, its files are still being made (the URLs answer 503 with "
            "Retry-After; width and height are already final); ready: served; failed: it could "
            "not be processed, and the URLs answer 410"
        ),
    )
