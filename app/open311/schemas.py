"""The Open311 documents as JSON Schemas, for the OpenAPI description of the routes.

They say what the JSON form holds (strings for ids and codes, booleans, numbers for
coordinates, null where a field has no value); the XML form is the same tree under its root
element, with null elements left out.
"""

from __future__ import annotations

from typing import Any

from app.core.bodies import declare_schema

_TEXT: dict[str, Any] = {"type": ["string", "null"]}
_TIME: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}
_NUMBER: dict[str, Any] = {"type": ["number", "null"]}

SERVICE: dict[str, Any] = {
    "type": "object",
    "required": ["service_code", "service_name", "metadata", "type"],
    "properties": {
        "service_code": {"type": "string"},
        "service_name": {"type": "string"},
        "description": _TEXT,
        "metadata": {"type": "boolean"},
        "type": {"type": "string", "enum": ["realtime", "batch", "blackbox"]},
        "keywords": _TEXT,
        "group": _TEXT,
    },
}
SERVICE_DEFINITION: dict[str, Any] = {
    "type": "object",
    "required": ["service_code", "attributes"],
    "properties": {
        "service_code": {"type": "string"},
        "attributes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["variable", "code", "datatype", "required", "order"],
                "properties": {
                    "variable": {"type": "boolean"},
                    "code": {"type": "string"},
                    "datatype": {
                        "type": "string",
                        "enum": [
                            "string",
                            "number",
                            "datetime",
                            "text",
                            "singlevaluelist",
                            "multivaluelist",
                        ],
                    },
                    "required": {"type": "boolean"},
                    "datatype_description": _TEXT,
                    "order": {"type": "integer", "minimum": 1},
                    "description": _TEXT,
                    "values": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["key", "name"],
                            "properties": {"key": {"type": "string"}, "name": {"type": "string"}},
                        },
                    },
                },
            },
        },
    },
}
EXTENDED_ATTRIBUTES: dict[str, Any] = {
    "type": "object",
    "description": "With `extensions=true`: Kerbside's own status and facts of the ticket",
    "properties": {
        "detailed_status": {"type": "string"},
        "reference": {"type": "string"},
        "report_count": {"type": "integer"},
        "supporter_count": {"type": "integer"},
        "merged_into": {**_TEXT, "description": "The ticket this duplicate joined"},
        "acknowledged_datetime": _TIME,
        "fixed_datetime": _TIME,
        "closed_datetime": _TIME,
        "media_urls": {"type": "array", "items": {"type": "string"}},
        "url": {"type": "string"},
    },
}
REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["service_request_id", "status", "service_code", "requested_datetime"],
    "properties": {
        "service_request_id": {"type": "string"},
        "status": {"type": "string", "enum": ["open", "closed"]},
        "status_notes": _TEXT,
        "service_name": _TEXT,
        "service_code": {"type": "string"},
        "description": {"type": ["string", "null"]},
        "agency_responsible": _TEXT,
        "service_notice": _TEXT,
        "requested_datetime": {"type": "string", "format": "date-time"},
        "updated_datetime": _TIME,
        "expected_datetime": _TIME,
        "address": _TEXT,
        "address_id": _TEXT,
        "zipcode": _TEXT,
        "lat": _NUMBER,
        "long": _NUMBER,
        "media_url": _TEXT,
        "extended_attributes": EXTENDED_ATTRIBUTES,
    },
}
POST_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["service_request_id"],
    "properties": {
        "service_request_id": {
            "type": "string",
            "description": "The ticket the request opened, or joined as a duplicate",
        },
        "service_notice": _TEXT,
        "account_id": _TEXT,
        "extended_attributes": {
            "type": "object",
            "properties": {
                "detailed_status": {"type": "string"},
                "joined_existing": {"type": "boolean"},
                "reopened": {"type": "boolean"},
                "token": {"type": "string"},
            },
        },
    },
}
TOKEN_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["token"],
    "properties": {"service_request_id": {"type": "string"}, "token": {"type": "string"}},
}
UPDATE: dict[str, Any] = {
    "type": "object",
    "required": ["update_id", "service_request_id", "status", "updated_datetime"],
    "properties": {
        "update_id": {"type": "string"},
        "service_request_id": {"type": "string"},
        "status": {"type": "string"},
        "updated_datetime": {"type": "string", "format": "date-time"},
        "description": {"type": "string"},
        "media_url": {"type": "string"},
        "external_status_code": {"type": "string"},
    },
}
UPDATE_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["update_id"],
    "properties": {
        "update_id": {"type": "string", "description": "Kerbside's id of the comment"},
        "account_id": _TEXT,
    },
}
DISCOVERY: dict[str, Any] = {
    "type": "object",
    "required": ["changeset", "endpoints"],
    "properties": {
        "changeset": {"type": "string"},
        "contact": {"type": "string"},
        "key_service": {"type": "string"},
        "endpoints": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["specification", "url", "type", "formats"],
                "properties": {
                    "specification": {"type": "string"},
                    "url": {"type": "string"},
                    "changeset": {"type": "string"},
                    "type": {"type": "string", "enum": ["production", "test"]},
                    "formats": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
ERRORS: dict[str, Any] = {
    "type": "array",
    "description": "Open311's error document (`<errors><error>` in XML)",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["code", "description"],
        "properties": {"code": {"type": "integer"}, "description": {"type": "string"}},
    },
}


def array_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


# As components (named once, referred to by every spelling of every route).
SERVICES_REF = declare_schema("Open311Services", array_of(SERVICE))
SERVICE_DEFINITION_REF = declare_schema("Open311ServiceDefinition", SERVICE_DEFINITION)
REQUESTS_REF = declare_schema("Open311Requests", array_of(REQUEST))
POST_ANSWER_REF = declare_schema("Open311PostAnswer", array_of(POST_ANSWER))
TOKEN_ANSWER_REF = declare_schema("Open311TokenAnswer", array_of(TOKEN_ANSWER))
UPDATES_REF = declare_schema("Open311ServiceRequestUpdates", array_of(UPDATE))
UPDATE_ANSWER_REF = declare_schema("Open311UpdateAnswer", array_of(UPDATE_ANSWER))
DISCOVERY_REF = declare_schema("Open311Discovery", DISCOVERY)
ERRORS_REF = declare_schema("Open311Errors", ERRORS)
