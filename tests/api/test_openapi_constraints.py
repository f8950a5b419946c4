"""The OpenAPI document states the constraints the API enforces, and no others.

A request valid by the document is accepted (unless the state forbids it: 404, 409),
and a request that breaks it is refused; tests/api/test_schemathesis.py checks this
by fuzzing, these tests pin the constraints down one by one.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from api.schemas import DATE_PATTERN, ID_PATTERN, LINE_PATTERN, EventCreate, UserCreate
from projections.paging import MAX_TOKEN_LENGTH
from tests.api.helpers import json_of, validation_fields
from tests.support import create_event

LISTINGS = ["/events", "/users/{userId}/registrations", "/events/{eventId}/registrations"]
DATE = re.compile(DATE_PATTERN)


@pytest.fixture(scope="module")
def spec(shared_client: TestClient) -> dict[str, Any]:
    return json_of(shared_client.get("/openapi.json"), 200)


def body_schema(spec: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    content = spec["paths"][path][method]["requestBody"]["content"]["application/json"]
    ref = content["schema"]["$ref"].rsplit("/", 1)[-1]
    schema: dict[str, Any] = spec["components"]["schemas"][ref]
    return schema


def accepts_date(value: str) -> bool:
    body = {"title": "T", "date": value, "capacity": 1}
    try:
        EventCreate.model_validate_json(json.dumps(body))
    except ValidationError:
        return False
    return True


def test_both_event_bodies_state_the_date_pattern(spec: dict[str, Any]) -> None:
    for path, method in (("/events", "post"), ("/events/{eventId}", "put")):
        date_schema = body_schema(spec, path, method)["properties"]["date"]
        assert date_schema["pattern"] == DATE_PATTERN
        assert date_schema["maxLength"] == 32


@given(st.dates(min_value=date(1, 1, 1)))
def test_the_date_pattern_matches_every_calendar_date(day: date) -> None:
    assert DATE.fullmatch(day.isoformat())


@given(st.from_regex(DATE, fullmatch=True))
def test_every_date_the_pattern_matches_is_accepted(value: str) -> None:
    assert accepts_date(value)


@given(st.text(alphabet="0123456789-T:.Z+ ", max_size=34) | st.text(max_size=34))
def test_a_date_the_pattern_does_not_match_is_refused(value: str) -> None:
    assert accepts_date(value) == bool(DATE.fullmatch(value))


@pytest.mark.parametrize(
    "value", ["2023-02-29", "1900-02-29", "0000-01-01", "2024-04-31", "20241215", "2024-W50-1"]
)
def test_dates_python_would_parse_or_the_calendar_lacks_are_refused(value: str) -> None:
    assert not accepts_date(value)


def test_an_update_must_name_a_field_and_may_not_send_null(spec: dict[str, Any]) -> None:
    schema = body_schema(spec, "/events/{eventId}", "put")

    assert schema["minProperties"] == 1
    for name, field in schema["properties"].items():
        assert "anyOf" not in field, name
        assert field.get("type") != "null", name


def test_one_line_strings_state_a_pattern_that_refuses_exactly_what_shows_nothing() -> None:
    pattern = re.compile(LINE_PATTERN)
    controls = {*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
    invisible = {0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF}
    for code in range(sys.maxunicode + 1):
        character = chr(code)
        shows = not character.isspace() and code not in controls | invisible
        assert bool(pattern.search(character)) == shows, hex(code)


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("Ada Lovelace", True),
        ("  Ada ", True),
        ("Zoë Ñandú 李", True),
        ("a\nb", False),
        ("ab\n", False),
        ("a\tb", False),
        ("a\u0000b", False),
        ("a\u202eb", False),
        ("\u2066a", False),
        ("\u200b", False),
        ("\u200b \ufeff", False),
        (" \u00a0 ", False),
    ],
)
def test_a_name_is_one_line_that_shows_something_as_the_pattern_says(
    text: str, accepted: bool
) -> None:
    try:
        UserCreate.model_validate({"userId": "u1", "name": text})
        validated = True
    except ValidationError:
        validated = False

    assert validated == accepted
    # As JSON Schema reads the pattern ($ ends the text; Python's $ would also
    # match before a final line break).
    assert bool(re.compile(LINE_PATTERN.removesuffix("$") + r"\Z").search(text)) == accepted


@pytest.mark.parametrize(
    ("path", "method", "field"),
    [
        ("/users", "post", "name"),
        ("/events", "post", "title"),
        ("/events", "post", "location"),
        ("/events", "post", "organizer"),
        ("/events/{eventId}", "put", "title"),
    ],
)
def test_one_line_fields_state_so(spec: dict[str, Any], path: str, method: str, field: str) -> None:
    schema = body_schema(spec, path, method)["properties"][field]
    options = schema.get("anyOf", [schema])

    assert any(option.get("pattern") == LINE_PATTERN for option in options)


def test_every_request_string_states_a_bound_on_its_length(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if "requestBody" not in operation:
                continue
            for name, field in body_schema(spec, path, method)["properties"].items():
                for option in field.get("anyOf", [field]):
                    if option.get("type") == "string" and "enum" not in option:
                        bounded = "maxLength" in option or option.get("pattern") == ID_PATTERN
                        assert bounded, (method, path, name)


def test_ids_in_paths_and_bodies_state_the_id_pattern(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    assert parameter["schema"]["pattern"] == ID_PATTERN, (path, parameter)
    assert body_schema(spec, "/users", "post")["properties"]["userId"]["pattern"] == ID_PATTERN


def test_capacity_states_its_bounds(spec: dict[str, Any]) -> None:
    for path, method in (("/events", "post"), ("/events/{eventId}", "put")):
        capacity = body_schema(spec, path, method)["properties"]["capacity"]
        assert (capacity["type"], capacity["minimum"], capacity["maximum"]) == (
            "integer",
            1,
            1_000_000_000,
        )


@pytest.mark.parametrize("path", LISTINGS)
def test_next_token_states_its_alphabet_and_length(spec: dict[str, Any], path: str) -> None:
    parameters = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}

    schema = parameters["nextToken"]["schema"]

    assert schema["type"] == "string"
    assert schema["pattern"] == "^[A-Za-z0-9_-]+$"
    assert (schema["minLength"], schema["maxLength"]) == (1, MAX_TOKEN_LENGTH)


def test_an_integral_number_with_a_fraction_part_is_an_integer(shared_client: TestClient) -> None:
    # JSON Schema's integer includes 60.0, so the API takes it; 60.5 stays refused.
    event = create_event(shared_client, capacity=60.0)
    assert event["capacity"] == 60

    path = f"/events/{event['eventId']}"
    assert json_of(shared_client.put(path, json={"capacity": 61.0}), 200)["capacity"] == 61
    assert validation_fields(shared_client.put(path, json={"capacity": 61.5})) == ["capacity"]
