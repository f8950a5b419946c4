"""The capacity model at AWS's limits (bench/dynamodb_model.py), from censuses written by hand.

``tests/census/today.json`` mirrors today's design (every registration rewrites
the listing GSI's partition ``"event"``, about 1 WCU, and the indexer copies
each event under ``p="log"``, 4 WCU per registration);
``tests/census/intended.json`` the intended one (per-gathering keys on the
request path, the index as pages of references at under 0.1 WCU per event).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.dynamodb_model import (
    GATHERINGS,
    PARTITION_RCU_PER_S,
    PARTITION_WCU_PER_S,
    Assumptions,
    CensusError,
    build,
    census_from_json,
    load_census,
    main,
    section,
)

CENSUS = Path(__file__).parent / "census"
TODAY = load_census(CENSUS / "today.json")
INTENDED = load_census(CENSUS / "intended.json")
LOG = 'registrations_notifications "log"'
LISTING = 'events / listing-eventId-index "event"'
# A page of 500 references (stream, version) is an item of about 22 KB: within
# DynamoDB's 400 KB, at 0.044 WCU per event.
BIG_PAGES = Assumptions(page_events=500)


def partition(key: str, scope: str, wcu: float, **more: Any) -> dict[str, Any]:
    return {
        "table": more.pop("table", "t"),
        "index": more.pop("index", None),
        "key": key,
        "scope": scope,
        "path": more.pop("path", "request"),
        "commands": more.pop("commands", 1),
        "writes": more.pop("writes", 1),
        "wcu": wcu,
        **more,
    }


def census(*partitions: dict[str, Any], registrations: int = 100, events: int = 200) -> Any:
    return census_from_json(
        {
            "gatherings": 10,
            "registrations": registrations,
            "events": events,
            "partitions": list(partitions),
        }
    )


def test_todays_design_binds_at_the_log_partition_near_250_per_second_at_every_g() -> None:
    model = build(TODAY)

    assert [level.gatherings for level in model.levels] == list(GATHERINGS)
    for level in model.levels:
        assert level.binding == LOG
        assert 200 <= level.registrations_per_s <= 300
        assert level.next_bound == LISTING
    assert {level.registrations_per_s for level in model.levels} == {
        model.levels[0].registrations_per_s
    }


def test_todays_listing_partition_alone_would_hold_it_near_1000_at_every_g() -> None:
    listing = build(TODAY).bound(LISTING)

    assert listing.scope == "global"
    assert list(listing.rates.values()) == pytest.approx([1000] * len(GATHERINGS), rel=0.1)


def test_the_intended_design_reaches_5000_at_g_1000_and_grows_with_g_up_to_the_indexer() -> None:
    model = build(INTENDED, BIG_PAGES)
    rates = {level.gatherings: level.registrations_per_s for level in model.levels}

    assert rates[1000] >= 5000
    assert list(rates.values()) == sorted(rates.values())
    assert rates[10] < rates[1000]
    assert model.levels[0].binding_path == "request"  # few gatherings: their own keys bind
    assert model.levels[-1].binding_path == "indexer"
    shared = [b for b in model.bounds if b.path == "request" and b.scope in {"global", "other"}]
    assert all(
        rate is not None and rate > rates[10_000] for b in shared for rate in b.rates.values()
    )


def test_with_pages_of_100_events_the_indexers_own_ceiling_binds_the_intended_design() -> None:
    model = build(INTENDED, Assumptions(page_events=100, round_trip_ms=10))
    top = model.levels[-1]

    assert top.binding == "indexer (one page per round trip)"
    # 100 events per 10 ms, over the census's events per registration.
    assert top.registrations_per_s == pytest.approx(10_000 / INTENDED.events_per_registration)
    assert top.registrations_per_s < 5000


def test_a_per_gathering_key_carries_one_gth_of_the_registrations() -> None:
    spread = census(
        partition("g-1", "gathering", 150.0),
        partition("g-2", "gathering", 150.0),
        registrations=100,
    )

    model = build(spread, gatherings=(10, 100))
    # 3 WCU per registration, on its gathering's key: 1,000 WCU/s per key.
    assert model.bound("t, per-gathering key").rates == {
        10: pytest.approx(PARTITION_WCU_PER_S * 10 / 3),
        100: pytest.approx(PARTITION_WCU_PER_S * 100 / 3),
    }


def test_a_global_key_carries_every_registration_whatever_g() -> None:
    shared = census(partition("all", "global", 50.0), registrations=100)

    assert set(build(shared).bound('t "all"').rates.values()) == {PARTITION_WCU_PER_S / 0.5}


def test_keys_of_one_family_bind_at_their_busiest_key() -> None:
    markers = census(
        partition("c#a", "indexer", 10.0, path="indexer"),
        partition("c#b", "indexer", 40.0, path="indexer"),
        registrations=100,
    )

    marker = build(markers).bound('t "c#*"')
    assert marker.keys == 2
    assert set(marker.rates.values()) == {PARTITION_WCU_PER_S / 0.4}


def test_keys_of_one_user_or_registration_never_bind() -> None:
    people = census(
        partition("u-1", "user", 10_000.0),
        partition("r-1", "registration", 10_000.0),
        registrations=10,
    )

    model = build(people)
    assert {level.binding for level in model.levels} == {"indexer (one page per round trip)"}


def test_reads_are_held_to_3000_rcu_per_partition_key() -> None:
    read = census(partition("all", "global", 0.0, rcu=60.0), registrations=100)

    bound = build(read).bound('t "all" (reads)')
    assert set(bound.rates.values()) == {PARTITION_RCU_PER_S / 0.6}


def test_stream_shards_that_grow_with_the_tables_writes_never_bind() -> None:
    stream = build(TODAY).bound("registrations_events stream shards")

    assert set(stream.rates.values()) == {None}


def test_a_fixed_number_of_stream_shards_binds_at_1000_records_per_shard() -> None:
    fixed = build(TODAY, Assumptions(stream_shards=1))
    stream = fixed.bound("registrations_events stream shards")

    # Two event items per registration: 1,000 records/s is 500 registrations/s.
    assert list(stream.rates.values()) == pytest.approx([500] * len(GATHERINGS))


def test_records_smaller_than_a_write_unit_would_make_the_stream_bind() -> None:
    many = census(
        partition("g-1", "gathering", 100.0, table="registrations_events", writes=400),
        registrations=100,
    )

    stream = build(many).bound("registrations_events stream shards")
    assert list(stream.rates.values()) == pytest.approx([1000 / 4] * len(GATHERINGS))


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["gathering", "user", "registration", "global", "indexer", "other"]),
            st.floats(min_value=0.1, max_value=1e5),
        ),
        min_size=1,
        max_size=8,
    ),
    st.integers(min_value=1, max_value=10_000),
)
def test_the_rate_is_the_lowest_bound_and_never_falls_as_gatherings_grow(
    keys: list[tuple[str, float]], registrations: int
) -> None:
    model = build(
        census(
            *(partition(f"k{i}", scope, wcu) for i, (scope, wcu) in enumerate(keys)),
            registrations=registrations,
        )
    )

    rates = [level.registrations_per_s for level in model.levels]
    assert rates == sorted(rates)
    for level in model.levels:
        lowest = min(r for b in model.bounds if (r := b.rates[level.gatherings]) is not None)
        assert level.registrations_per_s == lowest


def test_the_command_prints_the_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.json"

    # today.json is the census of the indexer before pages: one transaction,
    # at most about 100 events.
    args = ["--census", str(CENSUS / "today.json"), "--page-events", "100"]
    assert main([*args, "--json", str(out)]) == 0

    printed = capsys.readouterr().out
    assert '| 1,000 | 250 | registrations_notifications "log" |' in printed
    assert "The indexer's own ceiling: 100 events per page" in printed
    written = json.loads(out.read_text())
    assert [level["binding"] for level in written["levels"]] == [LOG] * len(GATHERINGS)
    assert written["indexer"]["events_per_s"] == 10_000


def test_a_file_that_is_not_a_census_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"gatherings": 3, "partitions": []}))

    assert main(["--census", str(bad)]) == 2
    assert "not a census" in capsys.readouterr().err


def test_a_census_without_registrations_or_with_an_unknown_scope_is_refused() -> None:
    with pytest.raises(CensusError, match="no registrations"):
        census(registrations=0)
    with pytest.raises(CensusError, match="unknown scopes"):
        census(partition("x", "tenant", 1.0))


def test_the_benchmarks_section_carries_the_table_under_its_own_heading() -> None:
    text = section(build(INTENDED, BIG_PAGES))

    assert text.startswith("### Capacity model at AWS's limits\n")
    assert '| 1,000 | 6,667 | registrations_notifications "e#*" |' in text
