"""The cache of verified waitlists (``infra/dynamodb/waitlists.py``) keeps one
version per gathering, so a long run does not fill it with stale versions."""

from __future__ import annotations

from infra.dynamodb.waitlists import WaitlistCache


def test_a_waitlist_is_served_for_the_version_it_was_cached_under_only() -> None:
    cache = WaitlistCache()
    cache.put(("gatherings", "e-1", 3), ("ann", "bob"))

    assert cache.get(("gatherings", "e-1", 3)) == ("ann", "bob")
    assert cache.get(("gatherings", "e-1", 4)) is None
    assert cache.get(("gatherings-2", "e-1", 3)) is None


def test_a_newer_version_replaces_the_older_one_of_the_same_gathering() -> None:
    cache = WaitlistCache()
    for version in range(1, 1001):
        cache.put(("gatherings", "e-1", version), ("ann",) * (version % 7))

    assert len(cache) == 1
    assert cache.get(("gatherings", "e-1", 1000)) == ("ann",) * (1000 % 7)
    assert cache.get(("gatherings", "e-1", 999)) is None


def test_an_older_version_read_late_does_not_replace_a_newer_one() -> None:
    cache = WaitlistCache()
    cache.put(("gatherings", "e-1", 5), ("bob",))
    cache.put(("gatherings", "e-1", 4), ("ann", "bob"))

    assert cache.get(("gatherings", "e-1", 5)) == ("bob",)
    assert cache.get(("gatherings", "e-1", 4)) is None


def test_the_least_recently_used_gathering_goes_first_when_people_exceed_the_bound() -> None:
    cache = WaitlistCache(capacity=10)
    cache.put(("gatherings", "e-1", 1), ("a", "b", "c"))  # 4 held (people + 1)
    cache.put(("gatherings", "e-2", 1), ("d", "e", "f"))  # 8
    assert cache.get(("gatherings", "e-1", 1)) is not None  # e-1 used last
    cache.put(("gatherings", "e-3", 1), ("g",))  # 10: still within

    cache.put(("gatherings", "e-3", 2), ("g", "h"))  # 11 held: e-2 goes

    assert cache.get(("gatherings", "e-2", 1)) is None
    assert cache.get(("gatherings", "e-1", 1)) == ("a", "b", "c")
    assert cache.get(("gatherings", "e-3", 2)) == ("g", "h")
