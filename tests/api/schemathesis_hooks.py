"""Schemathesis hooks of tests/api/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

Three kinds of failure are waived, each only in its exact shape; any other failure (another
field refused alongside, another status, another check) still fails the run.

- A made-up nextToken. Page tokens are opaque and signed, so no schema can describe which
  values the server accepts: a schema-valid but invented token is refused with 400
  VALIDATION_ERROR naming nextToken alone, which positive_data_acceptance reports as a valid
  request rejected.
- A 404 about another resource than the one just created. ensure_resource_availability
  follows a link from POST /users to POST /users/{userId}/registrations and counts any 404
  as the new user missing, though the body's made-up eventId earns 404 EVENT_NOT_FOUND.
- An Idempotency-Key used before with another request. Whether a key is fresh depends on
  the requests sent before, which no schema can say: schemathesis draws keys from a small
  alphabet and reuses them, earning 422 IDEMPOTENCY_KEY_REUSED, which
  positive_data_acceptance reports as a valid request rejected.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import Case, HookContext, Response
from schemathesis.core.failures import Failure

SCHEMA_VALID_REQUEST_REJECTED = "ST202"
CREATED_RESOURCE_NOT_FOUND = "ST302"
# The 404 code that says the resource an operation creates is missing.
NOT_FOUND_CODE_OF = {
    "POST /users": "USER_NOT_FOUND",
    "POST /events": "EVENT_NOT_FOUND",
    "POST /users/{userId}/registrations": "REGISTRATION_NOT_FOUND",
}


def _error(response: Response) -> dict[str, Any]:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return {}
    return error if isinstance(error, dict) else {}


def _made_up_token_refused(case: Case[Any], response: Response) -> bool:
    if "nextToken" not in (case.query or {}) or response.status_code != 400:
        return False
    details = _error(response).get("details", [])
    return {detail.get("field") for detail in details} == {"nextToken"}


def _idempotency_key_reused(case: Case[Any], response: Response) -> bool:
    sent = {name.lower() for name in (case.headers or {})}
    return (
        "idempotency-key" in sent
        and response.status_code == 422
        and _error(response).get("code") == "IDEMPOTENCY_KEY_REUSED"
    )


def _another_resource_missing(failure: Failure, response: Response) -> bool:
    created_with = str(getattr(failure, "created_with", failure.operation))
    expected = NOT_FOUND_CODE_OF.get(created_with)
    code = _error(response).get("code")
    return response.status_code == 404 and expected is not None and code not in (None, expected)


@schemathesis.hook
def filter_failure(
    context: HookContext, failure: Failure, case: Case[Any], response: Response
) -> bool:
    """False (drop the failure) only for the three waived shapes above."""
    del context
    if failure.code == SCHEMA_VALID_REQUEST_REJECTED:
        return not (
            _made_up_token_refused(case, response) or _idempotency_key_reused(case, response)
        )
    if failure.code == CREATED_RESOURCE_NOT_FOUND:
        return not _another_resource_missing(failure, response)
    return True
