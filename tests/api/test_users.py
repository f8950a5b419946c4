"""POST /users and GET /users/{userId}."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import assert_utc_timestamp, error_of, json_of, validation_fields
from tests.support import create_user, unique

WHITESPACE = [
    " ",
    "   ",
    "\t",
    "\n\r",
    "\u00a0",  # no-break space
    "\u1680",  # ogham space mark
    "\u2003",  # em space
    "\u200a",  # hair space
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    "\u202f",  # narrow no-break space
    "\u205f",  # medium mathematical space
    "\u3000",  # ideographic space
    "\u0085",  # next line
    " \u3000\t\u00a0 ",
]


def test_creating_a_user_answers_201_with_its_fields_timestamps_and_location(
    client: TestClient,
) -> None:
    user_id = unique("user")
    response = client.post("/users", json={"userId": user_id, "name": "Alice Example"})

    body = json_of(response, 201)
    assert set(body) == {"userId", "name", "erased", "createdAt", "updatedAt"}
    assert body["userId"] == user_id
    assert body["name"] == "Alice Example"
    created = assert_utc_timestamp(body["createdAt"])
    updated = assert_utc_timestamp(body["updatedAt"])
    assert created <= updated
    assert response.headers["Location"] == f"/users/{user_id}"


def test_the_location_of_a_new_user_answers_the_same_user(client: TestClient) -> None:
    user_id = unique("user")
    created = client.post("/users", json={"userId": user_id, "name": "Bob"})

    fetched = client.get(created.headers["Location"])

    assert json_of(fetched, 200) == json_of(created, 201)


def test_getting_an_unknown_user_answers_404_user_not_found(client: TestClient) -> None:
    error = error_of(client.get("/users/nobody-here"), 404, "USER_NOT_FOUND")
    assert "nobody-here" in error["message"]


def test_creating_an_existing_user_answers_409_and_leaves_the_original_unchanged(
    client: TestClient,
) -> None:
    user_id = create_user(client, name="Original Name")
    before = json_of(client.get(f"/users/{user_id}"), 200)

    response = client.post("/users", json={"userId": user_id, "name": "Impostor"})

    error_of(response, 409, "DUPLICATE_USER")
    assert json_of(client.get(f"/users/{user_id}"), 200) == before


@pytest.mark.parametrize("length", [1, 2, 99, 100])
def test_a_user_id_of_1_to_100_characters_is_accepted(
    shared_client: TestClient, length: int
) -> None:
    user_id = ("aZ9_-" * 20)[:length]
    response = shared_client.post("/users", json={"userId": user_id, "name": "N"})

    assert json_of(response, 201)["userId"] == user_id
    assert json_of(shared_client.get(f"/users/{user_id}"), 200)["userId"] == user_id


@pytest.mark.parametrize(
    "user_id",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * 101, id="101-chars"),
        pytest.param("a/b", id="slash"),
        pytest.param("a b", id="space"),
        pytest.param("caf\u00e9", id="e-acute"),
        pytest.param("a.b", id="dot"),
        pytest.param("alice\n", id="trailing-newline"),
        pytest.param("\u0430lice", id="cyrillic-a"),
    ],
)
def test_a_user_id_outside_the_pattern_is_a_validation_error(
    shared_client: TestClient, user_id: str
) -> None:
    response = shared_client.post("/users", json={"userId": user_id, "name": "N"})

    assert validation_fields(response) == ["userId"]


@pytest.mark.parametrize("length", [1, 200])
def test_a_name_of_1_to_200_characters_is_accepted(shared_client: TestClient, length: int) -> None:
    name = ("N\u00e4me " * 40)[: length - 1] + "x"
    response = shared_client.post("/users", json={"userId": unique(), "name": name})

    assert json_of(response, 201)["name"] == name


@pytest.mark.parametrize("name", ["", "x" * 201])
def test_a_name_outside_1_to_200_characters_is_a_validation_error(
    shared_client: TestClient, name: str
) -> None:
    response = shared_client.post("/users", json={"userId": unique(), "name": name})

    assert validation_fields(response) == ["name"]


@pytest.mark.parametrize(("count", "status"), [(200, 201), (201, 400)])
def test_name_length_counts_characters_not_bytes(
    shared_client: TestClient, count: int, status: int
) -> None:
    response = shared_client.post("/users", json={"userId": unique(), "name": "\U0001f600" * count})

    assert response.status_code == status, response.text
    if status == 201:
        assert response.json()["name"] == "\U0001f600" * count


@pytest.mark.parametrize("name", WHITESPACE, ids=[repr(w) for w in WHITESPACE])
def test_a_name_of_only_unicode_whitespace_is_a_validation_error(
    shared_client: TestClient, name: str
) -> None:
    response = shared_client.post("/users", json={"userId": unique(), "name": name})

    assert validation_fields(response) == ["name"]


def test_a_name_with_inner_whitespace_is_kept_as_sent(client: TestClient) -> None:
    response = client.post("/users", json={"userId": unique(), "name": "Ana\u3000Mar\u00eda"})

    assert json_of(response, 201)["name"] == "Ana\u3000Mar\u00eda"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"userId": "typed-u1", "name": 42}, "name", id="name-as-number"),
        pytest.param({"userId": "typed-u1", "name": None}, "name", id="name-as-null"),
        pytest.param({"userId": "typed-u1", "name": ["x"]}, "name", id="name-as-list"),
        pytest.param({"userId": ["typed-u1"], "name": "N"}, "userId", id="userId-as-list"),
        pytest.param({"userId": 7, "name": "N"}, "userId", id="userId-as-number"),
        pytest.param({"userId": True, "name": "N"}, "userId", id="userId-as-bool"),
        pytest.param({"name": "N"}, "userId", id="missing-userId"),
        pytest.param({"userId": "typed-u1"}, "name", id="missing-name"),
        pytest.param({"userId": "typed-u1", "name": "N", "role": "admin"}, "role", id="unknown"),
        pytest.param(
            {"userId": "typed-u1", "name": "N", "createdAt": "2024-01-01T00:00:00Z"},
            "createdAt",
            id="read-only-createdAt",
        ),
    ],
)
def test_wrong_types_missing_and_unknown_fields_are_validation_errors_naming_the_field(
    shared_client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = shared_client.post("/users", json=body)

    assert field in validation_fields(response)
    error_of(shared_client.get("/users/typed-u1"), 404, "USER_NOT_FOUND")


def test_an_empty_object_names_both_missing_fields(client: TestClient) -> None:
    assert sorted(validation_fields(client.post("/users", json={}))) == ["name", "userId"]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"userId": "typed-u1", "name": ', id="truncated"),
        pytest.param(b"{'userId': 'u1'}", id="single-quotes"),
        pytest.param(b"not json", id="text"),
        pytest.param(b'{"userId": "typed-u1", "name": "N",}', id="trailing-comma"),
        pytest.param(b'{"userId": "typed-u1", "name": "\xff\xfe"}', id="not-utf-8"),
    ],
)
def test_a_body_that_is_not_json_is_a_validation_error_not_a_422(
    shared_client: TestClient, raw: bytes
) -> None:
    response = shared_client.post(
        "/users", content=raw, headers={"Content-Type": "application/json"}
    )

    assert response.status_code != 422
    assert validation_fields(response) == ["body"]


@pytest.mark.parametrize(
    "raw",
    [b"[]", b'[{"userId": "typed-u1", "name": "N"}]', b'"typed-u1"', b"42", b"true", b"null"],
    ids=["empty-list", "list", "string", "number", "bool", "null"],
)
def test_json_that_is_not_an_object_is_a_validation_error(
    shared_client: TestClient, raw: bytes
) -> None:
    response = shared_client.post(
        "/users", content=raw, headers={"Content-Type": "application/json"}
    )

    assert response.status_code != 422
    validation_fields(response)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded"],
    ids=["none", "text", "form"],
)
def test_json_sent_as_another_content_type_is_a_validation_error_naming_it(
    shared_client: TestClient, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    raw = b'{"userId": "typed-u1", "name": "N"}'

    response = shared_client.post("/users", content=raw, headers=headers)

    assert validation_fields(response) == ["Content-Type"]


def test_an_empty_body_is_a_validation_error(client: TestClient) -> None:
    response = client.post("/users", headers={"Content-Type": "application/json"})

    validation_fields(response)


@pytest.mark.parametrize(
    "user_id", ["a" * 101, "caf%C3%A9", "a%20b"], ids=["101-chars", "e-acute", "space"]
)
def test_getting_a_user_by_an_id_outside_the_pattern_is_a_validation_error(
    shared_client: TestClient, user_id: str
) -> None:
    assert validation_fields(shared_client.get(f"/users/{user_id}")) == ["userId"]
