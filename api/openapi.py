"""Touches to the generated OpenAPI document, so that it states what the API enforces.

FastAPI derives most constraints from the schemas and parameter declarations; this
adds those it cannot see and removes FastAPI's 422 (validation answers 400).
"""

from __future__ import annotations

from typing import Any

from projections.paging import MAX_TOKEN_LENGTH, URL_SAFE_BASE64_PATTERN

NEXT_PAGE_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_TOKEN_LENGTH,
    "pattern": URL_SAFE_BASE64_PATTERN,
}
NEXT_PAGE_DESCRIPTION = (
    "The nextToken of the previous page, unchanged. Tokens are opaque and signed: any other "
    "value is refused with 400 VALIDATION_ERROR."
)


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        operation
        for item in schema.get("paths", {}).values()
        for operation in item.values()
        if isinstance(operation, dict) and "responses" in operation
    ]


def refine(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (changed in place) with the constraints the API enforces stated."""
    for operation in _operations(schema):
        # Validation failures answer 400 VALIDATION_ERROR, never FastAPI's 422 (the
        # only 422 is IDEMPOTENCY_KEY_REUSED, which routes list themselves).
        if "HTTPValidationError" in str(operation["responses"].get("422", "")):
            operation["responses"].pop("422")
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "query" and parameter.get("name") == "nextToken":
                parameter["schema"] = {**NEXT_PAGE_SCHEMA, "title": "Nexttoken"}
                parameter["description"] = NEXT_PAGE_DESCRIPTION
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    return schema
