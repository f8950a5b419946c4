"""The web console in a real headless Chromium, against a real server whose
history was written through the public API.

Each page's screenshot is saved under artifacts/screenshots.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.api.conftest import ADMIN_KEY, AUDITOR_KEY, CLIENT_KEY
from tests.console.conftest import PHONE, Console, screenshot, sign_in
from tests.support import unique

# Only the SQLite pass: the console calls the same API on either store, which the
# API tests cover on both.
pytestmark = pytest.mark.sqlite_pass

# How each domain event of an event's stream moves (confirmed, waitlisted): the
# expectation the plot is checked against, written apart from the console's own.
MOVES = {
    "SeatTaken": (1, 0),
    "SeatReleased": (-1, 0),
    "WaitlistJoined": (0, 1),
    "WaitlistLeft": (0, -1),
    "PromotedFromWaitlist": (1, -1),
}


@dataclass(frozen=True)
class Seeded:
    event_id: str
    users: dict[str, str]  # short name -> userId
    big_event_id: str


def ok(response: httpx.Response) -> Any:
    assert response.is_success, response.text
    return response.json() if response.content else None


@pytest.fixture(scope="module")
def seeded(console: Console) -> Seeded:
    """An event with a waitlist and a real history: five registrations against two
    seats, a capacity raise that promotes, a leave that promotes, one more waiting.
    And an event whose history (521 entries) is longer than a page."""
    http = console.http
    event_id = unique("conf")
    users = {name: unique(name) for name in ("ada", "bob", "cy", "dan", "eve", "fay")}
    for name, user_id in users.items():
        ok(http.post("/users", json={"userId": user_id, "name": name.title()}))
    ok(
        http.post(
            "/events",
            json={
                "eventId": event_id,
                "title": "PyCon sprint",
                "date": "2025-05-01",
                "capacity": 2,
                "waitlistEnabled": True,
            },
        )
    )
    for name in ("ada", "bob", "cy", "dan", "eve"):
        ok(http.post(f"/users/{users[name]}/registrations", json={"eventId": event_id}))
    ok(http.put(f"/events/{event_id}", json={"capacity": 3}))
    http.delete(f"/users/{users['bob']}/registrations/{event_id}").raise_for_status()
    ok(http.post(f"/users/{users['fay']}/registrations", json={"eventId": event_id}))

    big_event_id = unique("big")
    ok(
        http.post(
            "/events",
            json={"eventId": big_event_id, "title": "Big", "date": "2025-06-01", "capacity": 10},
        )
    )

    def come_and_go(user_id: str) -> None:
        with httpx.Client(base_url=console.url, timeout=30) as own:
            for _ in range(52):
                ok(own.post(f"/users/{user_id}/registrations", json={"eventId": big_event_id}))
                own.delete(f"/users/{user_id}/registrations/{big_event_id}").raise_for_status()

    with ThreadPoolExecutor(5) as pool:
        list(pool.map(come_and_go, [users[n] for n in ("ada", "bob", "cy", "dan", "eve")]))
    return Seeded(event_id, users, big_event_id)


def history(console: Console, event_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500} | ({"nextToken": token} if token else {})
        page = ok(console.http.get(f"/audit/events/{event_id}/history", params=params))
        entries.extend(page["history"])
        token = page.get("nextToken")
        if not token:
            return entries


def counts_after_each(entries: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """(version, confirmed, waitlisted) after each entry."""
    confirmed = waitlisted = 0
    found = []
    for entry in entries:
        moved = MOVES.get(entry["type"], (0, 0))
        confirmed += moved[0]
        waitlisted += moved[1]
        found.append((entry["version"], confirmed, waitlisted))
    return found


def drawn(page: Page, series: str) -> list[dict[str, float]]:
    """The plotted points of one series, as the SVG holds them."""
    result: list[dict[str, float]] = page.eval_on_selector_all(
        f"svg.timeline g.points.{series} circle",
        """dots => dots.map(d => ({version: +d.dataset.version, value: +d.dataset.value,
                                   cy: +d.getAttribute('cy')}))""",
    )
    return result


def open_event(page: Page, console: Console, key: str, event_id: str, suffix: str = "") -> None:
    sign_in(page, console, key)
    expect(page.locator("#events-table")).to_be_visible()
    page.goto(f"{console.url}/console#/events/{event_id}{suffix}")


@pytest.fixture
def auditor_page(page: Page, console: Console) -> Page:
    sign_in(page, console, AUDITOR_KEY)
    expect(page.locator("#who")).to_have_text("role: auditor")
    return page


# -- signing in ------------------------------------------------------------------


def test_a_client_key_is_refused_with_a_clear_message(page: Page, console: Console) -> None:
    sign_in(page, console, CLIENT_KEY)
    refused = page.locator("#login-refused")
    expect(refused).to_contain_text("This API key may not use the console")
    expect(refused).to_contain_text("role client")
    assert page.evaluate("Object.keys(sessionStorage).length") == 0
    expect(page.locator("#nav")).to_be_hidden()
    screenshot(page, "login-refused")


def test_an_unknown_key_shows_the_error_envelopes_message(page: Page, console: Console) -> None:
    sign_in(page, console, "not-a-configured-key-123")
    expect(page.locator("#login-message .error")).to_contain_text("The API key is not valid")
    assert page.evaluate("Object.keys(sessionStorage).length") == 0


def test_the_key_stays_in_session_storage_never_in_a_url_cookie_or_log(
    page: Page, console: Console, seeded: Seeded
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_event(page, console, AUDITOR_KEY, seeded.event_id)
    expect(page.locator("svg.timeline")).to_be_visible()
    assert page.evaluate("Object.values(sessionStorage)") == [AUDITOR_KEY]
    assert not page.context.cookies()
    assert requested
    assert not [url for url in requested if AUDITOR_KEY in url]
    assert AUDITOR_KEY not in page.url
    assert AUDITOR_KEY not in console.log.read_text()
    page.reload()  # the tab keeps it: no second sign-in
    expect(page.locator("#who")).to_have_text("role: auditor")
    page.get_by_role("button", name="Sign out").click()
    assert page.evaluate("Object.keys(sessionStorage).length") == 0
    expect(page.get_by_label("API key")).to_be_visible()


def test_every_page_loads_from_the_service_alone(
    page: Page, console: Console, seeded: Seeded
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    sign_in(page, console, ADMIN_KEY)
    expect(page.locator("#events-table")).to_be_visible()
    for where, ready in (
        (f"#/events/{seeded.event_id}", "svg.timeline"),
        (f"#/users/{seeded.users['ada']}", "#user-history-table"),
        ("#/audit", "#audit-entries > li"),
        ("#/projections", "#projections-table"),
    ):
        page.goto(f"{console.url}/console{where}")
        expect(page.locator(ready).first).to_be_visible()
    assert len(requested) > 10
    assert [url for url in requested if not url.startswith(f"{console.url}/")] == []


def test_signing_in_and_opening_an_event_works_from_the_keyboard(
    page: Page, console: Console, seeded: Seeded
) -> None:
    page.goto(f"{console.url}/console")
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(AUDITOR_KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#events-table")).to_be_visible()
    expect(page.locator("main")).to_be_focused()  # each page starts at its content
    page.keyboard.press("Tab")
    expect(page.get_by_label("Event id")).to_be_focused()
    page.keyboard.type(seeded.event_id)
    page.keyboard.press("Enter")
    expect(page.locator("#page-title")).to_have_text(f"Event {seeded.event_id}: PyCon sprint")
    page.keyboard.press("Shift+Tab")  # back from the content into the header's controls
    expect(page.get_by_role("button", name="Sign out")).to_be_focused()


# -- events ----------------------------------------------------------------------


def test_the_events_list_shows_counts_status_and_waitlist_length(
    auditor_page: Page, console: Console, seeded: Seeded
) -> None:
    page = auditor_page
    now = ok(console.http.get(f"/events/{seeded.event_id}"))
    row = page.locator("#events-table tr", has=page.get_by_role("link", name=seeded.event_id))
    cells = row.locator("td")
    expect(cells).to_have_text(
        [seeded.event_id, "PyCon sprint", "2025-05-01", "active", "3", "3", "2", "0"]
    )
    assert (now["registeredCount"], now["waitlistCount"]) == (3, 2)
    screenshot(page, "events")
    page.get_by_label("Event id").fill(seeded.event_id)
    page.get_by_role("button", name="Open event").click()
    expect(page.locator("#page-title")).to_have_text(f"Event {seeded.event_id}: PyCon sprint")


def test_an_unknown_event_shows_the_services_message(auditor_page: Page, console: Console) -> None:
    auditor_page.get_by_label("Event id").fill("no-such-event")
    auditor_page.get_by_role("button", name="Open event").click()
    expect(auditor_page.locator("#event-now .error")).to_contain_text(
        "Event 'no-such-event' not found"
    )


def test_an_event_shows_its_confirmed_list_and_waitlist_in_order(
    page: Page, console: Console, seeded: Seeded
) -> None:
    open_event(page, console, AUDITOR_KEY, seeded.event_id)
    users = seeded.users
    expect(page.locator("#confirmed-table tbody td:nth-child(2)")).to_have_text(
        [users["ada"], users["cy"], users["dan"]]
    )
    expect(page.locator("#waitlist-table tbody td:nth-child(1)")).to_have_text(["1", "2"])
    expect(page.locator("#waitlist-table tbody td:nth-child(2)")).to_have_text(
        [users["eve"], users["fay"]]
    )


def test_the_timeline_is_drawn_from_the_events_history(
    page: Page, console: Console, seeded: Seeded
) -> None:
    entries = history(console, seeded.event_id)
    expected = counts_after_each(entries)
    open_event(page, console, AUDITOR_KEY, seeded.event_id)
    expect(page.locator("svg.timeline g.points.confirmed circle")).to_have_count(len(entries))
    confirmed = drawn(page, "confirmed")
    waitlisted = drawn(page, "waitlisted")
    assert [(p["version"], p["value"]) for p in confirmed] == [(v, c) for v, c, _ in expected]
    assert [(p["version"], p["value"]) for p in waitlisted] == [(v, w) for v, _, w in expected]
    # Drawn where the values say: more is higher up (a smaller y), equal is level.
    for series in (confirmed, waitlisted):
        for a in series:
            for b in series:
                if a["value"] > b["value"]:
                    assert a["cy"] < b["cy"]
                elif a["value"] == b["value"]:
                    assert a["cy"] == b["cy"]
    # What it ends on is what the event shows now.
    now = ok(console.http.get(f"/events/{seeded.event_id}"))
    assert expected[-1][1:] == (now["registeredCount"], now["waitlistCount"])
    raised = [e["version"] for e in entries if e["type"] == "CapacityChanged"]
    marks = page.locator("svg.timeline .capacity-change")
    expect(marks).to_have_count(len(raised))
    assert [int(v) for v in marks.evaluate_all("m => m.map(x => x.dataset.version)")] == raised
    expect(marks.first).to_contain_text("capacity 3")
    expect(page.locator("#history-table tbody tr")).to_have_count(len(entries))
    screenshot(page, "event")


def test_travelling_to_a_version_shows_the_event_as_it_was(
    page: Page, console: Console, seeded: Seeded
) -> None:
    users = seeded.users
    open_event(page, console, AUDITOR_KEY, seeded.event_id)
    expect(page.locator("svg.timeline")).to_be_visible()
    page.get_by_label("Version (after this entry of its history)").fill("6")
    page.get_by_role("button", name="Show as it was").click()
    then = page.locator("#event-then")
    expect(then.locator("h2")).to_have_text("As it was at version 6")
    # Version 6: two seats taken, three waiting, capacity still 2.
    expect(then.locator("dd").nth(6)).to_have_text("2")  # capacity
    expect(then.locator("dd").nth(7)).to_have_text("2")  # confirmed
    expect(then.locator("#then-waitlist tbody td:nth-child(2)")).to_have_text(
        [users["cy"], users["dan"], users["eve"]]
    )
    expect(page.locator("svg.timeline .travel-marker")).to_have_attribute("data-version", "6")
    assert "version=6" in page.url
    screenshot(page, "event-time-travel")

    # The same moment named by its time instead.
    entries = history(console, seeded.event_id)
    at = next(e["occurredAt"] for e in entries if e["version"] == 6)
    state = ok(console.http.get(f"/audit/events/{seeded.event_id}/state", params={"asOf": at}))
    page.get_by_label("Or as of a time (ISO 8601, UTC)").fill(at)
    page.get_by_role("button", name="Show as it was").click()
    expect(then.locator("h2")).to_have_text(f"As it was at {at}")
    expect(then.locator("#then-waitlist tbody td:nth-child(2)")).to_have_text(state["waitlist"])
    page.get_by_role("button", name="Back to now").click()
    expect(then).to_be_hidden()

    # A point of the plot, clicked, travels to its version.
    page.locator("svg.timeline g.points.waitlisted circle[data-version='8']").click()
    expect(then.locator("h2")).to_have_text("As it was at version 8")
    expect(then.locator("#then-waitlist tbody td:nth-child(2)")).to_have_text(
        [users["dan"], users["eve"]]
    )


def test_travelling_before_the_event_existed_shows_the_services_message(
    page: Page, console: Console, seeded: Seeded
) -> None:
    open_event(page, console, AUDITOR_KEY, seeded.event_id, "?asOf=2000-01-01T00:00:00Z")
    expect(page.locator("#event-then .error")).to_contain_text(
        f"Event '{seeded.event_id}' did not exist at that moment"
    )


def test_a_long_history_is_read_a_page_at_a_time(
    page: Page, console: Console, seeded: Seeded
) -> None:
    entries = history(console, seeded.big_event_id)
    assert len(entries) == 521
    open_event(page, console, AUDITOR_KEY, seeded.big_event_id)
    dots = page.locator("svg.timeline g.points.confirmed circle")
    expect(dots).to_have_count(500)
    expect(page.locator("#history-status")).to_contain_text("more remain")
    page.get_by_role("button", name="Load more history").click()
    expect(dots).to_have_count(521)
    expect(page.locator("#history-status")).to_have_text(
        "All 521 entries of the history are loaded."
    )
    expect(page.get_by_role("button", name="Load more history")).to_be_hidden()


def test_the_event_page_fits_a_phone(browser_phone: Page, console: Console, seeded: Seeded) -> None:
    open_event(browser_phone, console, AUDITOR_KEY, seeded.event_id)
    expect(browser_phone.locator("svg.timeline")).to_be_visible()
    expect(browser_phone.locator("#confirmed-table")).to_be_visible()
    width = browser_phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    screenshot(browser_phone, "event-phone")


@pytest.fixture
def browser_phone(page: Page) -> Page:
    page.set_viewport_size(PHONE)
    return page


# -- users -----------------------------------------------------------------------


def test_a_user_page_shows_the_account_registrations_and_history(
    auditor_page: Page, console: Console, seeded: Seeded
) -> None:
    page = auditor_page
    eve = seeded.users["eve"]
    page.get_by_label("User id").fill(eve)
    page.get_by_role("button", name="Open user").click()
    expect(page.locator("#page-title")).to_have_text(f"User {eve}")
    expect(page.locator("#user-registrations tbody tr")).to_contain_text(
        [f"{seeded.event_id}PyCon sprint2025-05-01waitlist1"]
    )
    expected = ok(console.http.get(f"/audit/users/{eve}/history", params={"limit": 500}))
    expect(page.locator("#user-history-table tbody tr")).to_have_count(len(expected["history"]))
    screenshot(page, "user", full_page=False)


def test_an_erased_user_is_shown_as_erased_and_their_name_appears_nowhere_on_the_page(
    auditor_page: Page, console: Console, seeded: Seeded
) -> None:
    page = auditor_page
    erin = unique("erin")
    ok(console.http.post("/users", json={"userId": erin, "name": "Erin Quartermaine"}))
    ok(console.http.post(f"/users/{erin}/registrations", json={"eventId": seeded.event_id}))
    ok(console.http.post(f"/admin/users/{erin}/erase"))

    page.get_by_label("User id").fill(erin)
    page.get_by_role("button", name="Open user").click()

    expect(page.locator("#page-title")).to_have_text(f"User {erin}")
    expect(page.locator("dl.details")).to_contain_text("erased (personal data destroyed)")
    expect(page.locator("#user-registrations tbody tr")).to_have_count(1)
    expect(page.locator("#user-history-table tbody tr")).to_have_count(3)
    assert "Quartermaine" not in page.content()


# -- the audit trail -------------------------------------------------------------


def test_the_audit_trail_filters_by_request_id(
    auditor_page: Page, console: Console, seeded: Seeded
) -> None:
    page = auditor_page
    entries = history(console, seeded.event_id)
    raise_request = next(e for e in entries if e["type"] == "CapacityChanged")["metadata"][
        "requestId"
    ]
    page.get_by_role("link", name="Audit trail").click()
    expect(page.locator("#audit-status")).to_contain_text("read from the feed")  # unfiltered
    feed_calls: list[str] = []
    page.on(
        "request",
        lambda request: feed_calls.append(request.url) if "/audit/log" in request.url else None,
    )
    page.get_by_label("Request id").fill(raise_request)
    page.get_by_role("button", name="Apply filters").click()
    shown = page.locator("#audit-entries > li")
    # The raise and its promotion: each on the event's stream and the registration's.
    expect(shown.first).to_be_visible()
    expect(page.locator("#audit-status")).to_contain_text(f"of request {raise_request} found")
    # The API filters the feed: every call after the filter is applied names the request.
    assert feed_calls
    assert all(f"requestId={raise_request}" in url for url in feed_calls), feed_calls
    served = ok(console.http.get("/audit/log", params={"requestId": raise_request}))
    expect(shown).to_have_count(len(served["entries"]))
    for entry in shown.all():
        expect(entry).to_contain_text(raise_request)
        expect(entry).to_contain_text("ops")  # the admin key that sent it
    types = shown.locator(".entry-head strong").all_inner_texts()
    assert "CapacityChanged" in types
    assert "PromotedFromWaitlist" in types
    screenshot(page, "audit-request", full_page=False)


def test_the_audit_trail_filters_by_event_and_user(
    auditor_page: Page, console: Console, seeded: Seeded
) -> None:
    page = auditor_page
    bob = seeded.users["bob"]
    page.goto(f"{console.url}/console#/audit?event={seeded.event_id}&user={bob}")
    shown = page.locator("#audit-entries > li .entry-head strong")
    expect(shown).to_have_text(["SeatTaken", "SeatReleased"])


def test_verify_shows_a_whole_chain_as_verified(
    auditor_page: Page, console: Console, seeded: Seeded
) -> None:
    page = auditor_page
    page.get_by_role("link", name="Audit trail").click()
    page.get_by_role("button", name="Verify the hash chains").click()
    result = page.locator("#verify-result")
    expect(result).to_contain_text("Verified: every chain holds.")
    checked = ok(console.http.get("/audit/verify"))["checked"]
    expect(result.locator("dd").first).to_have_text(str(checked))
    screenshot(page, "audit", full_page=False)


def test_verify_links_to_the_first_broken_entry(
    auditor_page: Page, console: Console, seeded: Seeded
) -> None:
    entries = history(console, seeded.event_id)
    seat = next(e for e in entries if e["type"] == "SeatTaken")
    database = console.data_dir / "events.sqlite3"
    where = (uuid.UUID(seat["stream"]).hex, seat["version"])
    query = "SELECT state FROM stored_events WHERE originator_id = ? AND originator_version = ?"
    with sqlite3.connect(database) as db:
        (original,) = db.execute(query, where).fetchone()
    stolen = json.loads(original)
    stolen["user_id"] = seeded.users["fay"]  # someone else took that seat, says the log now
    update = "UPDATE stored_events SET state = ? WHERE originator_id = ? AND originator_version = ?"
    try:
        with sqlite3.connect(database) as db:
            assert db.execute(update, (json.dumps(stolen).encode(), *where)).rowcount == 1
        page = auditor_page
        page.get_by_role("link", name="Audit trail").click()
        page.get_by_role("button", name="Verify the hash chains").click()
        result = page.locator("#verify-result")
        expect(result).to_contain_text("Broken: the log was altered.")
        page.get_by_role("link", name=f"Open entry {seat['position']}").click()
        broken = page.locator(f"#entry-{seat['position']}")
        expect(broken).to_have_class("entry highlight")
        expect(broken).to_be_focused()
        expect(broken).to_contain_text("SeatTaken")
        expect(broken.locator(".broken-label")).to_contain_text("first broken link")
        expect(broken.locator("code.payload")).to_contain_text(seeded.users["fay"])
        screenshot(page, "audit-broken", full_page=False)
    finally:
        with sqlite3.connect(database) as db:
            db.execute(update, (original, *where))
    assert ok(console.http.get("/audit/verify"))["ok"]


# -- projections -----------------------------------------------------------------


def test_an_auditor_sees_no_admin_controls(auditor_page: Page, console: Console) -> None:
    page = auditor_page
    expect(page.get_by_role("link", name="Projections")).to_be_hidden()
    page.goto(f"{console.url}/console#/projections")
    expect(page.locator("main")).to_contain_text("Projections are for keys with role admin")
    expect(page.get_by_role("button", name="Rebuild read-tables")).to_have_count(0)
    expect(page.locator("button.check")).to_have_count(0)


def test_an_admin_rebuilds_the_read_tables_and_watches_it_finish(
    page: Page, console: Console, seeded: Seeded
) -> None:
    sign_in(page, console, ADMIN_KEY)
    page.get_by_role("link", name="Projections").click()
    row = page.locator("#projections-table tr[data-name='read-tables']")
    expect(row.locator("td").nth(1)).to_have_text("live")
    shown: list[str] = []  # every state of the progress line, as it changed

    def progress_shown(text: str) -> None:
        shown.append(text)

    page.expose_function("progressShown", progress_shown)
    page.evaluate(
        """() => { const area = document.getElementById('rebuild-progress');
                   new MutationObserver(() => window.progressShown(area.textContent))
                     .observe(area, {childList: true, characterData: true, subtree: true}); }"""
    )
    polled: list[str] = []
    page.on(
        "response",
        lambda r: (
            polled.append(r.json()["projections"][0]["state"])
            if r.url.endswith("/admin/projections")
            else None
        ),
    )
    with page.expect_response(lambda r: r.url.endswith("/rebuild")) as answer:
        page.get_by_role("button", name="Rebuild read-tables").click()
    assert answer.value.status == 202
    assert answer.value.json()["state"] == "rebuilding"
    text = page.locator("#rebuild-text")
    expect(text).to_contain_text(
        "Rebuild of read-tables finished: live at position", timeout=60_000
    )
    expect(page.locator("#rebuild-bar")).to_have_attribute("value", "1")
    # Watched live: it said it was rebuilding, then polled until the state was live.
    assert shown[0].startswith("Rebuilding")
    assert shown[-1].startswith("Rebuild of read-tables finished")
    assert polled[-1] == "live"
    status = ok(console.http.get("/admin/projections"))["projections"][0]
    assert status["state"] == "live"
    assert status["position"] == status["head"]
    expect(row.locator("td").nth(1)).to_have_text("live")
    expect(row.locator("td").nth(2)).to_have_text(str(status["position"]))
    screenshot(page, "projections")


def test_an_admin_runs_the_drift_check(page: Page, console: Console, seeded: Seeded) -> None:
    sign_in(page, console, ADMIN_KEY)
    page.get_by_role("link", name="Projections").click()
    page.get_by_role("button", name="Check read-tables for drift").click()
    expect(page.locator("#drift-result")).to_contain_text("No drift:")
    screenshot(page, "projections-drift")


def test_the_drift_check_shows_each_difference(
    page: Page, console: Console, seeded: Seeded
) -> None:
    database = console.data_dir / "events.sqlite3"
    forge = "UPDATE gatherings SET title = ? WHERE event_id = ?"
    with sqlite3.connect(database) as db:
        assert db.execute(forge, ("Forged", seeded.big_event_id)).rowcount == 1
    try:
        sign_in(page, console, ADMIN_KEY)
        page.get_by_role("link", name="Projections").click()
        page.get_by_role("button", name="Check read-tables for drift").click()
        expect(page.locator("#drift-result")).to_contain_text("1 difference at position")
        row = page.locator("#drift-table tbody tr")
        expect(row).to_have_count(1)
        (difference,) = ok(console.http.get("/admin/projections/read-tables/check"))["differences"]
        expect(row.locator("td").nth(0)).to_have_text(difference["table"])
        expect(row.locator("td").nth(1)).to_have_text(seeded.big_event_id)
        expect(row.locator("td").nth(2)).to_have_text("title")
        expect(row.locator("td").nth(3)).to_contain_text('"title": "Forged"')
        expect(row.locator("td").nth(4)).to_contain_text('"title": "Big"')
        screenshot(page, "projections-drift-differences")
    finally:
        with sqlite3.connect(database) as db:
            db.execute(forge, ("Big", seeded.big_event_id))
    assert ok(console.http.get("/admin/projections/read-tables/check"))["ok"]
