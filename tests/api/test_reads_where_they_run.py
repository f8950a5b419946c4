"""Where a read route runs: on the event loop when the read model is local
(SQLite: no thread hop for a read shorter than the hop), in a worker thread
when each query is a network round trip (DynamoDB: the loop must not wait)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from projections.ports import ReadModel
from tests.support import create_event, unique


def _where(calls: list[str], read: Callable[..., Any]) -> Callable[..., Any]:
    def spy(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            calls.append("worker thread")
        else:
            calls.append("event loop")
        return read(*args, **kwargs)

    return spy


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("get_event", "/events/{event}"),
        ("list_events", "/events?status=active&limit=5"),
        ("get_user", "/users/{user}/registrations"),
        ("get_user", "/users/{user}"),
    ],
)
def test_a_read_runs_on_the_loop_only_where_the_read_model_is_local(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, query: str, path: str
) -> None:
    read_model: ReadModel = client.app.state.container.read_model  # type: ignore[attr-defined]
    event, user = unique("where"), unique("who")
    create_event(client, eventId=event)
    assert client.post("/users", json={"userId": user, "name": "Ada"}).status_code == 201
    calls: list[str] = []
    monkeypatch.setattr(read_model, query, _where(calls, getattr(read_model, query)))

    response = client.get(path.format(event=event, user=user))

    assert response.status_code == 200, response.text
    expected = "event loop" if read_model.local else "worker thread"
    assert set(calls) == {expected}
