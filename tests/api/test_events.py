"""POST /events, GET /events and GET /events/{eventId}."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from projections.ports import ReadModel
from tests.api.helpers import assert_utc_timestamp, error_of, json_of, validation_fields
from tests.support import create_event, unique

EVENT_KEYS = {
    "eventId",
    "title",
    "description",
    "date",
    "location",
    "capacity",
    "organizer",
    "status",
    "waitlistEnabled",
    "registeredCount",
    "waitlist",
    "waitlistCount",
    "availableSpots",
    "createdAt",
    "updatedAt",
}
STATUSES = ["draft", "published", "active", "cancelled", "completed"]


def minimal(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"title": "Meetup", "date": "2024-12-15", "capacity": 10}
    body.update(fields)
    return body


def test_creating_an_event_with_every_field_answers_201_with_them_and_its_counts(
    client: TestClient,
) -> None:
    sent = {
        "eventId": "pycon-2024",
        "title": "PyCon meetup",
        "description": "Talks and pizza",
        "date": "2024-12-15T18:00:00Z",
        "location": "Berlin",
        "capacity": 50,
        "organizer": "Python Berlin",
        "status": "published",
        "waitlistEnabled": True,
    }
    response = client.post("/events", json=sent)

    body = json_of(response, 201)
    assert set(body) == EVENT_KEYS
    assert {key: body[key] for key in sent} == sent
    assert body["registeredCount"] == 0
    assert body["waitlist"] == []
    assert body["waitlistCount"] == 0
    assert body["availableSpots"] == 50
    assert assert_utc_timestamp(body["createdAt"]) <= assert_utc_timestamp(body["updatedAt"])
    assert response.headers["Location"] == "/events/pycon-2024"


def test_creating_an_event_with_only_required_fields_fills_in_the_defaults(
    client: TestClient,
) -> None:
    response = client.post("/events", json={"title": "T", "date": "2024-12-15", "capacity": 3})

    body = json_of(response, 201)
    assert set(body) == EVENT_KEYS
    assert str(uuid.UUID(body["eventId"])) == body["eventId"]
    assert body["status"] == "active"
    assert body["waitlistEnabled"] is False
    assert body["description"] == ""
    assert body["registeredCount"] == 0
    assert body["waitlist"] == []
    assert body["waitlistCount"] == 0
    assert body["availableSpots"] == body["capacity"] == 3
    assert response.headers["Location"] == f"/events/{body['eventId']}"


def test_events_created_without_an_id_get_distinct_uuids(client: TestClient) -> None:
    ids = {create_event(client, eventId=None)["eventId"] for _ in range(3)}
    assert len(ids) == 3


def test_the_location_of_a_new_event_answers_the_same_event(client: TestClient) -> None:
    created = client.post("/events", json=minimal(eventId=unique("event")))

    fetched = client.get(created.headers["Location"])

    assert json_of(fetched, 200) == json_of(created, 201)


def test_an_empty_description_is_accepted(client: TestClient) -> None:
    assert create_event(client, description="")["description"] == ""


def test_creating_an_existing_event_id_answers_409_and_leaves_the_original_unchanged(
    client: TestClient,
) -> None:
    event = create_event(client, title="Original")

    response = client.post("/events", json=minimal(eventId=event["eventId"], title="Other"))

    error_of(response, 409, "DUPLICATE_EVENT")
    assert json_of(client.get(f"/events/{event['eventId']}"), 200) == event


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", "t"),
        ("title", "t" * 200),
        ("description", ""),
        ("description", "d" * 1000),
        ("location", "l"),
        ("location", "l" * 200),
        ("organizer", "o"),
        ("organizer", "o" * 100),
        ("date", "2024-12-15"),
        ("date", "2024-12-15T18:00:00Z"),
        ("date", "2024-12-15T18:00:00+02:00"),
        ("date", "2024-02-29"),
        ("capacity", 1),
        ("capacity", 100_000),
        ("eventId", "e" * 100),
        ("eventId", "A_b-9"),
        ("waitlistEnabled", True),
        ("waitlistEnabled", False),
    ],
)
def test_values_at_the_limits_are_accepted_and_stored(
    shared_client: TestClient, field: str, value: Any
) -> None:
    body = json_of(shared_client.post("/events", json=minimal(**{field: value})), 201)

    assert body[field] == value
    assert json_of(shared_client.get(f"/events/{body['eventId']}"), 200)[field] == value


@pytest.mark.parametrize("status", STATUSES)
def test_every_status_of_the_enum_is_accepted(shared_client: TestClient, status: str) -> None:
    assert create_event(shared_client, status=status)["status"] == status


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", ""),
        ("title", "t" * 201),
        ("description", "d" * 1001),
        ("location", ""),
        ("location", "l" * 201),
        ("organizer", ""),
        ("organizer", "o" * 101),
        ("date", "15/12/2024"),
        ("date", "2024-13-01"),
        ("date", "2023-02-29"),
        ("date", "2024-12-15T25:00:00Z"),
        ("date", "tomorrow"),
        ("date", ""),
        ("date", 20241215),
        ("capacity", 0),
        ("capacity", -1),
        ("capacity", 1.5),
        ("capacity", "5"),
        ("capacity", True),
        ("capacity", None),
        ("status", "open"),
        ("status", "ACTIVE"),
        ("status", ""),
        ("waitlistEnabled", "true"),
        ("waitlistEnabled", 1),
        ("eventId", ""),
        ("eventId", "e" * 101),
        ("eventId", "a/b"),
        ("eventId", "a b"),
        ("eventId", "caf\u00e9"),
        ("eventId", 12),
    ],
)
def test_values_outside_the_limits_are_validation_errors_naming_the_field(
    shared_client: TestClient, field: str, value: Any
) -> None:
    event_id = unique("refused")
    body = minimal(eventId=event_id)
    body[field] = value

    response = shared_client.post("/events", json=body)

    assert response.status_code != 422
    assert validation_fields(response) == [field]
    if field != "eventId":
        error_of(shared_client.get(f"/events/{event_id}"), 404, "EVENT_NOT_FOUND")


@pytest.mark.parametrize("field", ["title", "date", "capacity"])
def test_a_missing_required_field_is_a_validation_error(
    shared_client: TestClient, field: str
) -> None:
    body = minimal()
    del body[field]

    assert validation_fields(shared_client.post("/events", json=body)) == [field]


@pytest.mark.parametrize(
    "field", ["registeredCount", "waitlist", "waitlistCount", "availableSpots", "createdAt", "x"]
)
def test_read_only_and_unknown_fields_are_validation_errors_on_create(
    shared_client: TestClient, field: str
) -> None:
    response = shared_client.post("/events", json=minimal(**{field: 0}))

    assert validation_fields(response) == [field]


def test_json_that_is_not_an_object_is_a_validation_error_on_create(
    shared_client: TestClient,
) -> None:
    response = shared_client.post("/events", json=[minimal()])

    assert response.status_code != 422
    validation_fields(response)


def test_getting_an_unknown_event_answers_404_event_not_found(client: TestClient) -> None:
    error = error_of(client.get("/events/no-such-event"), 404, "EVENT_NOT_FOUND")
    assert "no-such-event" in error["message"]


# -- listing and paging ------------------------------------------------------------


def list_all(client: TestClient, query: dict[str, Any]) -> tuple[list[str], int]:
    """Every eventId of a listing, following nextToken; and how many pages it took."""
    seen: list[str] = []
    pages = 0
    params = dict(query)
    while True:
        body = json_of(client.get("/events", params=params), 200)
        assert set(body) == {"events", "total", "nextToken"}
        pages += 1
        seen.extend(event["eventId"] for event in body["events"])
        if body["nextToken"] is None:
            return seen, pages
        assert "limit" not in params or len(body["events"]) == params["limit"]
        params = {**query, "nextToken": body["nextToken"]}


def test_listing_no_events_answers_an_empty_page_without_next_token(client: TestClient) -> None:
    assert json_of(client.get("/events"), 200) == {"events": [], "total": 0, "nextToken": None}


def test_every_page_of_the_listing_says_how_many_events_there_are_in_all(
    client: TestClient,
) -> None:
    for _ in range(3):
        create_event(client)
    create_event(client, status="draft")
    first = json_of(client.get("/events", params={"limit": 2}), 200)
    rest = json_of(client.get("/events", params={"limit": 2, "nextToken": first["nextToken"]}), 200)
    drafts = json_of(client.get("/events", params={"status": "draft"}), 200)
    assert (first["total"], rest["total"], drafts["total"]) == (4, 4, 1)


def test_listed_events_have_the_same_fields_as_a_get(client: TestClient) -> None:
    event = create_event(client, waitlistEnabled=True, location="Here", organizer="Me")

    assert json_of(client.get("/events"), 200)["events"] == [event]


def test_the_status_filter_lists_only_events_with_that_status(client: TestClient) -> None:
    by_status = {status: [create_event(client, status=status)["eventId"]] for status in STATUSES}
    by_status["active"].append(create_event(client)["eventId"])

    for status, ids in by_status.items():
        events = json_of(client.get("/events", params={"status": status}), 200)["events"]
        assert sorted(event["eventId"] for event in events) == sorted(ids)
        assert {event["status"] for event in events} == {status}
    assert len(json_of(client.get("/events"), 200)["events"]) == 6


def test_an_unknown_status_filter_is_a_validation_error(shared_client: TestClient) -> None:
    assert validation_fields(shared_client.get("/events", params={"status": "open"})) == ["status"]


def test_following_next_token_lists_every_event_exactly_once(client: TestClient) -> None:
    created = {create_event(client)["eventId"] for _ in range(7)}

    seen, pages = list_all(client, {"limit": 2})

    assert sorted(seen) == sorted(created)
    assert len(seen) == len(set(seen))
    assert pages == 4


def test_paging_with_a_status_filter_lists_every_matching_event_exactly_once(
    client: TestClient,
) -> None:
    drafts = {create_event(client, status="draft")["eventId"] for _ in range(5)}
    for _ in range(4):
        create_event(client, status="active")

    seen, pages = list_all(client, {"status": "draft", "limit": 2})

    assert sorted(seen) == sorted(drafts)
    assert pages == 3


# Creation order of the ids "<prefix>-0" .. "<prefix>-6": neither sorted nor reversed.
SHUFFLED = (4, 0, 6, 2, 5, 1, 3)


def test_events_are_listed_in_event_id_order_across_pages(client: TestClient) -> None:
    prefix = unique("order")
    created = [f"{prefix}-{n}" for n in SHUFFLED]
    for event_id in created:
        create_event(client, eventId=event_id)

    seen, pages = list_all(client, {"limit": 3})

    assert [event_id for event_id in seen if event_id in created] == sorted(created)
    assert seen == sorted(seen)
    assert pages == 3


def test_events_with_a_status_filter_are_listed_in_event_id_order_across_pages(
    client: TestClient,
) -> None:
    prefix = unique("order")
    drafts = []
    for n in SHUFFLED:
        drafts.append(create_event(client, eventId=f"{prefix}-{n}", status="draft")["eventId"])
        create_event(client, eventId=f"{prefix}-{n}-active", status="active")

    seen, pages = list_all(client, {"status": "draft", "limit": 3})

    assert [event_id for event_id in seen if event_id.startswith(prefix)] == sorted(drafts)
    assert pages == 3


@pytest.mark.parametrize("status", [None, "draft"])
def test_total_counts_every_matching_event_on_every_page(
    client: TestClient, status: str | None
) -> None:
    # GET /events does not return ``total``: it is checked on the read model that serves it.
    read_model: ReadModel = client.app.state.container.read_model  # type: ignore[attr-defined]
    prefix = unique("total")
    for n in SHUFFLED:
        create_event(client, eventId=f"{prefix}-{n}", status="draft" if n % 2 else "active")
    create_event(client, eventId=f"{prefix}-7", status="draft")
    matching = 4 if status == "draft" else 8

    totals, sizes, token = [], [], None
    while True:
        page = read_model.list_events(status, 3, token)
        totals.append(page.total)
        sizes.append(len(page.items))
        if page.next_token is None:
            break
        token = page.next_token

    assert sizes == ([3, 1] if status == "draft" else [3, 3, 2])
    assert totals == [matching] * len(sizes)


def test_a_page_exactly_filled_by_the_last_events_has_no_next_token(client: TestClient) -> None:
    for _ in range(4):
        create_event(client)

    seen, pages = list_all(client, {"limit": 2})

    assert len(seen) == 4
    assert pages == 2


def test_the_default_page_holds_50_events(client: TestClient) -> None:
    for _ in range(51):
        create_event(client)

    first = json_of(client.get("/events"), 200)
    assert len(first["events"]) == 50
    assert first["nextToken"] is not None
    second = json_of(client.get("/events", params={"nextToken": first["nextToken"]}), 200)
    assert len(second["events"]) == 1
    assert second["nextToken"] is None
    assert len(json_of(client.get("/events", params={"limit": 500}), 200)["events"]) == 51


@pytest.mark.parametrize("limit", ["0", "501", "-1", "abc", "1.5", ""])
def test_a_limit_outside_1_to_500_is_a_validation_error(
    shared_client: TestClient, limit: str
) -> None:
    assert validation_fields(shared_client.get("/events", params={"limit": limit})) == ["limit"]


@pytest.mark.parametrize(
    "token",
    [
        "garbage!!",
        "not-base64",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"e": 5}').decode(),
        base64.urlsafe_b64encode(b'{"r": 0, "k": 1}').decode(),
        "x" * 3000,
    ],
    ids=["punctuation", "not-base64", "list", "wrong-type", "other-listing", "too-long"],
)
def test_a_garbage_next_token_is_a_validation_error(shared_client: TestClient, token: str) -> None:
    create_event(shared_client)

    response = shared_client.get("/events", params={"nextToken": token})

    assert response.status_code != 422
    assert validation_fields(response) == ["nextToken"]
