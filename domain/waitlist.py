"""A gathering's FIFO waitlist: where a new ticket goes, who is at the head, and
the promotion of the people the free seats are owed to.

The waitlist is spread over ``WaitlistPage`` aggregates (the page arithmetic
is the page's own, ``domain/model.py``); the ``Gathering`` holds its counters
(head ticket, next ticket, how many wait). ``Waitlist`` works on the
aggregates one command loaded (``Aggregates``: a unit of work), so a
decision reads as what happens to people, not to pages.
"""

from __future__ import annotations

from typing import Protocol, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.errors import InvariantViolationError, RegistrationNotFoundError
from domain.model import (
    Counts,
    Gathering,
    Registration,
    RegistrationStatus,
    WaitlistPage,
    registration_aggregate_id,
    waitlist_page_aggregate_id,
)
from domain.notes import Promotion

A = TypeVar("A", bound=Aggregate)


class Aggregates(Protocol):
    """The aggregates a command loads and changes (``domain.unit_of_work.UnitOfWork``)."""

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None: ...

    def load(self, cls: type[A], aggregate_id: UUID) -> A: ...

    def add(self, aggregate: A) -> A: ...

    def note(self, note: Promotion) -> None: ...


class Waitlist:
    """One gathering's waitlist, over the pages ``aggregates`` loads."""

    def __init__(self, aggregates: Aggregates, gathering: Gathering) -> None:
        self.aggregates = aggregates
        self.gathering = gathering

    def admit(self, user_id: str) -> Registration:
        """Gives ``user_id`` a seat or the ticket at the tail (``Gathering.admit``);
        refuses one who already holds a seat or a ticket."""
        gathering_id = self.gathering.gathering_id
        registration_id = registration_aggregate_id(gathering_id, user_id)
        registration = self.aggregates.find(Registration, registration_id)
        if registration is not None:
            registration.ensure_not_active()
        ticket = self.gathering.admit(user_id)  # checks, then records a seat or a ticket
        if registration is None:
            registration = self.aggregates.add(Registration.admit(gathering_id, user_id, ticket))
        else:
            registration.admitted(ticket)
        if ticket is not None:
            self._page_for_new_ticket(ticket).append(ticket=ticket, user_id=user_id)
        return registration

    def withdraw(self, user_id: str) -> RegistrationStatus:
        """Frees ``user_id``'s seat or waitlist place; returns what they held."""
        gathering_id = self.gathering.gathering_id
        registration = self.aggregates.find(
            Registration, registration_aggregate_id(gathering_id, user_id)
        )
        if registration is None:
            raise RegistrationNotFoundError(
                f"User '{user_id}' is not registered for event '{gathering_id}'"
            )
        registration.ensure_active()
        previous = RegistrationStatus(registration.status)
        ticket = registration.ticket
        if ticket is not None:
            self._page(WaitlistPage.number_of(ticket)).remove(ticket=ticket)
        registration.withdraw()
        self.gathering.release(user_id, ticket)
        return previous

    def promote_due(
        self, cause: str, limit: int | None = None, before: Counts | None = None
    ) -> tuple[str, ...]:
        """Moves the people the free seats are owed to into them, head first, at
        most ``limit`` of them; notes the promotion (``before``: the counts
        before the command changed the gathering, else as they are now)."""
        gathering = self.gathering
        count = gathering.promotions_due if limit is None else min(gathering.promotions_due, limit)
        if not count:
            return ()
        before = before or gathering.counts()
        promoted: list[str] = []
        for _ in range(count):
            page, ticket, user_id = self._first()
            page.remove(ticket=ticket)
            self.aggregates.load(
                Registration, registration_aggregate_id(gathering.gathering_id, user_id)
            ).promote()
            gathering.promote(user_id=user_id, ticket=ticket)
            promoted.append(user_id)
        promotion = Promotion(
            gathering.gathering_id, tuple(promoted), cause, before, gathering.counts()
        )
        self.aggregates.note(promotion)
        return promotion.user_ids

    def head(self, count: int) -> list[str]:
        """The first ``count`` people waiting, in order."""
        gathering = self.gathering
        heads: list[str] = []
        for number in WaitlistPage.numbers_between(gathering.head_ticket, gathering.next_ticket):
            if len(heads) >= count or not gathering.waitlist_count:
                break
            heads.extend(self._page(number).user_ids[: count - len(heads)])
        return heads

    def _first(self) -> tuple[WaitlistPage, int, str]:
        gathering = self.gathering
        for number in WaitlistPage.numbers_between(gathering.head_ticket, gathering.next_ticket):
            page = self._page(number)
            first = page.first()
            if first is not None:
                return page, first[0], first[1]
        raise InvariantViolationError(
            f"Event '{gathering.gathering_id}' counts {gathering.waitlist_count} waiting "
            "but no waitlist page holds anyone"
        )

    def _page(self, number: int) -> WaitlistPage:
        page_id = waitlist_page_aggregate_id(self.gathering.gathering_id, number)
        return self.aggregates.load(WaitlistPage, page_id)

    def _page_for_new_ticket(self, ticket: int) -> WaitlistPage:
        if WaitlistPage.opened_by(ticket):
            gathering_id = self.gathering.gathering_id
            page = WaitlistPage(gathering_id=gathering_id, page=WaitlistPage.number_of(ticket))
            return self.aggregates.add(page)
        return self._page(WaitlistPage.number_of(ticket))
