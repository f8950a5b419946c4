"""A change too big for one atomic commit is refused whole, never half-written."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support import create_event, create_user, register


def test_a_capacity_raise_promotes_everyone_at_once_or_is_refused_whole(
    client: TestClient,
) -> None:
    limit = client.app.state.container.service.max_promotions_per_command  # type: ignore[attr-defined]
    waiting = (limit or 20) + 1
    event = create_event(client, capacity=1, waitlistEnabled=True)
    event_id = event["eventId"]
    for user in [create_user(client) for _ in range(waiting + 1)]:
        assert register(client, user, event_id).status_code == 201
    before = client.get(f"/events/{event_id}").json()

    response = client.put(f"/events/{event_id}", json={"capacity": 1 + waiting})

    after = client.get(f"/events/{event_id}").json()
    if limit is None:
        assert response.status_code == 200
        assert (after["registeredCount"], after["waitlist"]) == (1 + waiting, [])
    else:
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "CHANGE_TOO_LARGE"
        assert after == before
        raised = client.put(f"/events/{event_id}", json={"capacity": 1 + limit})
        assert raised.status_code == 200
        assert raised.json()["waitlist"] == before["waitlist"][limit:]
