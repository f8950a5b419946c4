"""Two uvicorn worker processes on one store do not oversell."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.servers import running_server
from tests.support import fresh_store_settings, server_env, unique

pytestmark = [pytest.mark.slow, pytest.mark.processes, pytest.mark.xdist_group("servers")]


@pytest.fixture(scope="module")
def base_url(
    tmp_path_factory: pytest.TempPathFactory, store_name: str, endpoint: str | None
) -> Iterator[str]:
    store = server_env(fresh_store_settings(store_name, endpoint))
    data_dir = tmp_path_factory.mktemp("server") / "data"
    with running_server(data_dir, workers=2, extra_env=store) as url:
        yield url


def _users(http: httpx.Client, count: int) -> list[str]:
    ids = [unique("user") for _ in range(count)]
    for user_id in ids:
        assert http.post("/users", json={"userId": user_id, "name": user_id}).status_code == 201
    return ids


def _event(http: httpx.Client, capacity: int, waitlist: bool) -> str:
    event_id = unique("event")
    response = http.post(
        "/events",
        json={
            "eventId": event_id,
            "title": "Hot",
            "date": "2024-12-15",
            "capacity": capacity,
            "waitlistEnabled": waitlist,
        },
    )
    assert response.status_code == 201
    return event_id


def _all_at_once(
    base_url: str, requests: list[tuple[str, str, dict[str, str] | None]]
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(requests))
    with httpx.Client(base_url=base_url, timeout=60, limits=limits) as http:

        def send(request: tuple[str, str, dict[str, str] | None]) -> httpx.Response:
            method, path, body = request
            return http.request(method, path, json=body)

        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            return list(pool.map(send, requests))


def test_sixty_concurrent_registrations_for_fifteen_seats_confirm_fifteen_and_waitlist_45(
    base_url: str,
) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        users = _users(http, 60)
        event_id = _event(http, capacity=15, waitlist=True)

    responses = _all_at_once(
        base_url, [("POST", f"/users/{u}/registrations", {"eventId": event_id}) for u in users]
    )

    assert [r.status_code for r in responses] == [201] * 60, [r.text for r in responses]
    statuses = Counter(r.json()["status"] for r in responses)
    assert statuses == {"confirmed": 15, "waitlist": 45}
    positions = sorted(
        r.json()["waitlistPosition"] for r in responses if r.json()["status"] == "waitlist"
    )
    assert positions == list(range(1, 46))
    with httpx.Client(base_url=base_url, timeout=30) as http:
        event = http.get(f"/events/{event_id}").json()
        listed = http.get(f"/events/{event_id}/registrations", params={"limit": 500}).json()
    confirmed = [r["userId"] for r in listed["registrations"] if r["status"] == "confirmed"]
    waiting = [r["userId"] for r in listed["registrations"] if r["status"] == "waitlist"]
    assert event["registeredCount"] == 15
    assert event["waitlistCount"] == 45
    assert event["availableSpots"] == 0
    assert len(set(confirmed)) == 15
    assert len(set(event["waitlist"])) == 45
    assert not set(confirmed) & set(event["waitlist"])
    assert event["waitlist"] == waiting
    by_position = sorted(
        (r.json()["waitlistPosition"], r.json()["userId"])
        for r in responses
        if r.json()["status"] == "waitlist"
    )
    assert [user for _, user in by_position] == event["waitlist"]


def test_ten_concurrent_copies_of_one_registration_give_one_201_and_nine_409(
    base_url: str,
) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        (user,) = _users(http, 1)
        event_id = _event(http, capacity=5, waitlist=False)

    responses = _all_at_once(
        base_url, [("POST", f"/users/{user}/registrations", {"eventId": event_id})] * 10
    )

    codes = Counter(r.status_code for r in responses)
    assert codes == {201: 1, 409: 9}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "ALREADY_REGISTERED"
    }
    with httpx.Client(base_url=base_url, timeout=30) as http:
        assert http.get(f"/events/{event_id}").json()["registeredCount"] == 1


def test_concurrent_leaves_hand_every_freed_seat_to_the_waitlist_in_fifo_order(
    base_url: str,
) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        users = _users(http, 20)
        event_id = _event(http, capacity=10, waitlist=True)
        for user in users:
            assert (
                http.post(f"/users/{user}/registrations", json={"eventId": event_id}).status_code
                == 201
            )
        waitlist_before = http.get(f"/events/{event_id}").json()["waitlist"]

    responses = _all_at_once(
        base_url, [("DELETE", f"/users/{u}/registrations/{event_id}", None) for u in users[:10]]
    )

    assert [r.status_code for r in responses] == [204] * 10
    with httpx.Client(base_url=base_url, timeout=30) as http:
        event = http.get(f"/events/{event_id}").json()
        listed = http.get(f"/events/{event_id}/registrations").json()["registrations"]
    assert event["registeredCount"] == 10
    assert event["waitlist"] == []
    assert sorted(r["userId"] for r in listed) == sorted(waitlist_before)
    assert all(r["status"] == "confirmed" for r in listed)
