"""nextToken on the three listings: only tokens the server issued are accepted.

Tokens are signed (HMAC-SHA256) and their keys checked strictly, so anything else a
client sends (forged, garbled, truncated, out of range) is 400 VALIDATION_ERROR on
nextToken, on either store, and never reaches the store (no 500 or 503).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.main import create_app
from infra.settings import Settings
from projections.paging import (
    DEFAULT_TOKEN_KEY,
    encode_token,
    event_registrations_list,
    events_list,
    set_token_key,
    user_registrations_list,
)
from tests.api.helpers import json_of, validation_fields
from tests.support import create_event, create_user, register


@dataclass(frozen=True)
class Listing:
    """One of the listings, with where its items are in a page."""

    path: str
    items: str
    ident: Callable[[dict[str, Any]], str]
    list_of: str  # what its tokens are signed for


@pytest.fixture(scope="module")
def listings(shared_client: TestClient) -> dict[str, Listing]:
    """The three listings, each with at least four items (so that they page)."""
    user = create_user(shared_client)
    crowded = create_event(shared_client, capacity=2, waitlistEnabled=True)["eventId"]
    for _ in range(4):
        assert register(shared_client, create_user(shared_client), crowded).status_code == 201
    for _ in range(4):
        event = create_event(shared_client)["eventId"]
        assert register(shared_client, user, event).status_code == 201
    return {
        "events": Listing(
            "/events", "events", lambda item: str(item["eventId"]), events_list(None)
        ),
        "user-registrations": Listing(
            f"/users/{user}/registrations",
            "registrations",
            lambda item: str(item["eventId"]),
            user_registrations_list(user),
        ),
        "event-registrations": Listing(
            f"/events/{crowded}/registrations",
            "registrations",
            lambda item: str(item["userId"]),
            event_registrations_list(crowded),
        ),
    }


LISTINGS = ["events", "user-registrations", "event-registrations"]


def issued_token(client: TestClient, listing: Listing) -> str:
    token = json_of(client.get(listing.path, params={"limit": 1}), 200)["nextToken"]
    assert isinstance(token, str)
    return token


def unsigned(key: object) -> str:
    """A token as the server wrote them before they were signed: base64 of the JSON key."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


# Keys of every listing's shape (SQLite and DynamoDB page differently), with bad values.
BAD_KEYS: dict[str, dict[str, Any]] = {
    "int-overflowing-64-bits": {"r": 10**20, "k": 0},
    "int-overflowing-sort-key": {"r": 0, "k": 2**63},
    "int-below-minus-one": {"r": 0, "k": -2},
    "bool-for-int": {"r": True, "k": 0},
    "float-for-int": {"r": 0.5, "k": 0},
    "empty-event-id": {"e": ""},
    "empty-order-and-user": {"o": "", "u": ""},
    "lone-surrogate": {"e": "\ud800"},
    "lone-surrogates-in-order-and-user": {"o": "\ud800", "u": "\udfff"},
    "overlong-string": {"e": "e" * 300},
    "int-for-string": {"e": 5},
    "no-field": {},
    "extra-field": {"e": "a", "x": 1},
}
# Keys a listing would accept if the server took unsigned tokens.
PLAUSIBLE_KEYS: dict[str, object] = {
    "event-id": {"e": "a"},
    "rank-and-sort-key": {"r": 0, "k": 0},
    "order-and-user": {"o": "0#00000000000000000000", "u": "a"},
    "list": ["e"],
    "null": None,
}


@pytest.mark.parametrize("listing", LISTINGS)
@pytest.mark.parametrize(
    "key", [*BAD_KEYS.values(), *PLAUSIBLE_KEYS.values()], ids=[*BAD_KEYS, *PLAUSIBLE_KEYS]
)
def test_a_forged_next_token_is_a_validation_error(
    shared_client: TestClient, listings: dict[str, Listing], listing: str, key: object
) -> None:
    response = shared_client.get(listings[listing].path, params={"nextToken": unsigned(key)})

    assert validation_fields(response) == ["nextToken"]


@pytest.mark.parametrize("listing", LISTINGS)
@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_a_signed_token_with_a_bad_key_is_a_validation_error(
    shared_client: TestClient, listings: dict[str, Listing], listing: str, key: dict[str, Any]
) -> None:
    # As if the signing key had leaked: the key's values are checked all the same.
    token = encode_token(key, list_of=listings[listing].list_of)

    response = shared_client.get(listings[listing].path, params={"nextToken": token})

    assert validation_fields(response) == ["nextToken"]


GARBLINGS: dict[str, Callable[[str], str]] = {
    "one-character-changed": lambda t: t[:10] + ("A" if t[10] != "A" else "B") + t[11:],
    "last-character-changed": lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
    "truncated-by-one": lambda t: t[:-1],
    "truncated-by-four": lambda t: t[:-4],
    "truncated-to-half": lambda t: t[: len(t) // 2],
    "signature-only": lambda t: t[:43],
    "signature-dropped": lambda t: t[43:],
    "padded": lambda t: t + "=" * (-len(t) % 4 or 4),
    "standard-base64-alphabet": lambda t: t.replace("-", "+").replace("_", "/") + "+/",
    "with-a-space": lambda t: t[:5] + " " + t[5:],
    "with-a-dot": lambda t: t + ".",
    "doubled": lambda t: t + t,
    "reversed": lambda t: t[::-1],
    "empty": lambda t: "",
    "too-long": lambda t: t + "A" * 2048,
}


@pytest.mark.parametrize("listing", LISTINGS)
@pytest.mark.parametrize("garble", GARBLINGS.values(), ids=GARBLINGS.keys())
def test_a_garbled_or_truncated_next_token_is_a_validation_error(
    shared_client: TestClient,
    listings: dict[str, Listing],
    listing: str,
    garble: Callable[[str], str],
) -> None:
    token = garble(issued_token(shared_client, listings[listing]))

    response = shared_client.get(listings[listing].path, params={"nextToken": token})

    assert validation_fields(response) == ["nextToken"]


@pytest.mark.parametrize("listing", LISTINGS)
def test_a_token_of_another_listing_is_a_validation_error(
    shared_client: TestClient, listings: dict[str, Listing], listing: str
) -> None:
    # Read as a place in another listing, it would page from where that listing
    # never was, and silently skip what lies before it.
    for other in LISTINGS:
        if other == listing:
            continue
        token = issued_token(shared_client, listings[other])
        response = shared_client.get(listings[listing].path, params={"nextToken": token})
        assert validation_fields(response) == ["nextToken"]


def test_a_token_of_another_users_list_is_a_validation_error(shared_client: TestClient) -> None:
    first, second = create_user(shared_client), create_user(shared_client)
    for _ in range(2):
        event = create_event(shared_client)["eventId"]
        for user in (first, second):
            assert register(shared_client, user, event).status_code == 201
    token = issued_token(shared_client, Listing(f"/users/{first}/registrations", "", str, ""))

    response = shared_client.get(f"/users/{second}/registrations", params={"nextToken": token})

    assert validation_fields(response) == ["nextToken"]


def test_a_token_of_another_status_filter_is_a_validation_error(
    shared_client: TestClient,
) -> None:
    for _ in range(2):
        create_event(shared_client)
    active = json_of(shared_client.get("/events", params={"status": "active", "limit": 1}), 200)

    unfiltered = shared_client.get("/events", params={"nextToken": active["nextToken"]})
    drafts = shared_client.get(
        "/events", params={"status": "draft", "nextToken": active["nextToken"]}
    )
    still_active = shared_client.get(
        "/events", params={"status": "active", "nextToken": active["nextToken"]}
    )

    assert validation_fields(unfiltered) == ["nextToken"]
    assert validation_fields(drafts) == ["nextToken"]
    assert still_active.status_code == 200


def walk(client: TestClient, listing: Listing, limit: int) -> list[str]:
    """Every item of a listing, following issued nextTokens."""
    seen: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(1000):
        body = json_of(client.get(listing.path, params=params), 200)
        seen += [listing.ident(item) for item in body[listing.items]]
        token = body.get("nextToken")
        if token is None:
            return seen
        params = {"limit": limit, "nextToken": token}
    pytest.fail("the listing did not end")


@pytest.mark.parametrize("listing", LISTINGS)
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_issued_tokens_page_through_every_item_once_in_order(
    shared_client: TestClient, listings: dict[str, Listing], listing: str, limit: int
) -> None:
    whole = walk(shared_client, listings[listing], 500)

    assert len(whole) >= 4
    assert walk(shared_client, listings[listing], limit) == whole


@pytest.fixture
def restore_token_key() -> Iterator[None]:
    yield
    set_token_key(DEFAULT_TOKEN_KEY)


def with_secret(settings: Settings, secret: str) -> Settings:
    return settings.model_copy(update={"page_token_secret": SecretStr(secret)})


@pytest.mark.usefixtures("restore_token_key")
def test_tokens_are_accepted_by_every_app_that_shares_the_secret_and_no_other(
    settings: Settings,
) -> None:
    listing = Listing("/events", "events", lambda item: str(item["eventId"]), events_list(None))
    with TestClient(create_app(with_secret(settings, "first secret"))) as client:
        for _ in range(3):
            create_event(client)
        token = issued_token(client, listing)
        assert json_of(client.get("/events", params={"nextToken": token}), 200)["events"]

    with TestClient(create_app(with_secret(settings, "second secret"))) as client:
        assert validation_fields(client.get("/events", params={"nextToken": token})) == [
            "nextToken"
        ]

    with TestClient(create_app(with_secret(settings, "first secret"))) as client:
        assert json_of(client.get("/events", params={"nextToken": token}), 200)["events"]


def test_the_secret_is_read_from_page_token_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGE_TOKEN_SECRET", "shared by every process")

    secret = Settings().page_token_secret

    assert secret is not None
    assert secret.get_secret_value() == "shared by every process"
    assert "shared by every process" not in repr(Settings())
