"""No request the contract allows is refused for a store's transaction size."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from infra.wiring import Container
from tests.support import create_event, unique


def _waitlist(container: Container, event_id: str, people: int) -> list[str]:
    """Registers ``people`` new users concurrently (so they are group-committed);
    returns them seated first, then in waitlist order."""
    service = container.service
    users = [unique("user") for _ in range(people)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda u: service.create_user(u, "Waiting"), users))
        outcomes = list(pool.map(lambda u: service.register(u, event_id), users))
    seated = [o.user_id for o in outcomes if o.waitlist_position is None]
    waiting = sorted(
        (o for o in outcomes if o.waitlist_position is not None),
        key=lambda o: o.waitlist_position or 0,
    )
    return seated + [o.user_id for o in waiting]


def test_a_capacity_raise_that_promotes_a_thousand_waiting_people_succeeds_in_fifo_order(
    client: TestClient,
) -> None:
    container: Container = client.app.state.container  # type: ignore[attr-defined]
    event_id = create_event(client, capacity=1, waitlistEnabled=True)["eventId"]
    seated, *waiting = _waitlist(container, event_id, 1_101)

    response = client.put(f"/events/{event_id}", json={"capacity": 1_001})

    assert response.status_code == 200, response.text
    event = response.json()
    assert (event["registeredCount"], event["waitlistCount"]) == (1_001, 100)
    assert event["waitlist"] == waiting[1_000:]
    listed: list[dict[str, object]] = []
    token: str | None = None
    while True:
        page = client.get(
            f"/events/{event_id}/registrations",
            params={"limit": 500} | ({"nextToken": token} if token else {}),
        ).json()
        listed.extend(page["registrations"])
        token = page.get("nextToken")
        if not token:
            break
    confirmed = [r["userId"] for r in listed if r["status"] == "confirmed"]
    assert confirmed == [seated, *waiting[:1_000]]
    assert client.get(f"/events/{event_id}").json() == event
