"""The capacity and waitlist invariants of a gathering."""

from __future__ import annotations

from domain.model import Gathering


def gathering_violations(gathering: Gathering) -> list[str]:
    """Every invariant the gathering breaks, as sentences; empty when it is sound.

    registeredCount + availableSpots = capacity holds by construction
    (availableSpots is computed), so what can break is what the counters say.
    """
    violations: list[str] = []
    if gathering.registered_count < 0:
        violations.append(f"registered count {gathering.registered_count} is negative")
    if gathering.registered_count > gathering.capacity:
        violations.append(
            f"registered count {gathering.registered_count} exceeds capacity {gathering.capacity}"
        )
    if gathering.waitlist_count < 0:
        violations.append(f"waitlist count {gathering.waitlist_count} is negative")
    if gathering.available_spots > 0 and gathering.waitlist_count > 0:
        violations.append(
            f"{gathering.available_spots} spots are free while "
            f"{gathering.waitlist_count} people wait"
        )
    if gathering.waitlist_count > gathering.next_ticket - gathering.head_ticket:
        violations.append(
            f"waitlist count {gathering.waitlist_count} exceeds the tickets between "
            f"head {gathering.head_ticket} and tail {gathering.next_ticket}"
        )
    return violations
