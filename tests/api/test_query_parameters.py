"""A query parameter a route does not take is refused (400 VALIDATION_ERROR
naming it), not ignored: a misspelt ``limt`` would otherwise answer another page."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import ADMIN_KEY, bearer
from tests.api.helpers import error_of, json_of, validation_fields
from tests.support import create_event, create_user


def test_a_misspelt_filter_is_refused_naming_it_not_ignored(client: TestClient) -> None:
    create_event(client)

    response = client.get("/events", params={"staus": "active", "limt": 1})

    assert sorted(validation_fields(response)) == ["limt", "staus"]
    messages = {d["message"] for d in error_of(response, 400, "VALIDATION_ERROR")["details"]}
    assert messages == {"Unknown query parameter"}
    assert len(json_of(client.get("/events", params={"status": "active", "limit": 1}), 200)) == 3


def test_a_command_refuses_an_unknown_query_parameter_before_it_runs(client: TestClient) -> None:
    response = client.post("/users", params={"dryRun": "true"}, json={"userId": "q", "name": "Q"})

    assert validation_fields(response) == ["dryRun"]
    error_of(client.get("/users/q"), 404, "USER_NOT_FOUND")


def get_operations(client: TestClient) -> list[str]:
    document = json_of(client.get("/openapi.json"), 200)
    return [path for path, item in document["paths"].items() if "get" in item]


def test_every_get_operation_of_the_api_refuses_a_parameter_it_does_not_take(
    keyed_client: TestClient,
) -> None:
    headers = bearer(ADMIN_KEY)
    user = create_user(keyed_client)
    event = create_event(keyed_client)["eventId"]
    paths = get_operations(keyed_client)
    assert len(paths) >= 15
    for template in paths:
        path = template.replace("{userId}", user).replace("{eventId}", event)
        path = re.sub(r"\{[^}]+\}", "read-tables", path)  # a projection's name
        response = keyed_client.get(path, params={"bogus": "1"}, headers=headers)
        assert validation_fields(response) == ["bogus"], template


@pytest.mark.parametrize("page", ["/console", "/docs"])
def test_a_page_for_people_ignores_a_query_string(client: TestClient, page: str) -> None:
    assert client.get(page, params={"utm_source": "mail"}).status_code == 200
